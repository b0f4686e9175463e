"""Notifications from Synapse's push rules, read state from receipts, and push to a gateway."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import quote

from nio import SyncResponse

from harness import (
    Api,
    SynapseServer,
    expect_error,
    free_port,
    nio_login,
    query_db,
    register_admin,
    run,
    send_text,
    shared_room,
)


def notifications(api: Api, token: str, query: str = "") -> list[dict]:
    response = api.call("GET", "/api/chat/notifications" + query, token=token)
    assert response.status_code == 200, response.text
    return response.json()["results"]


def test_list_types_counts_and_read_state(api: Api, server: SynapseServer) -> None:
    alice, bob = api.register(), api.register()
    room = shared_room(api, alice, bob)
    bobs = send_text(api, bob["access_token"], room, "Can someone cover my shift?")
    plain = send_text(api, alice["access_token"], room, "Morning all")
    reply = send_text(
        api,
        alice["access_token"],
        room,
        "> Can someone cover my shift?\n\nI can",
        **{"m.relates_to": {"m.in_reply_to": {"event_id": bobs}}},
    )
    invite_room = api.call(
        "POST",
        "/_matrix/client/v3/createRoom",
        token=alice["access_token"],
        json={"name": "Journal club", "invite": [bob["user_id"]]},
    ).json()["room_id"]

    listed = notifications(api, bob["access_token"])
    assert [n["type"] for n in listed[:3]] == ["group_invite", "message_reply", "new_message"]
    assert [n["id"] for n in listed[1:3]] == [reply, plain]
    assert listed[0]["room_id"] == invite_room and listed[0]["message_id"] is None
    assert listed[2]["content"] == "Morning all" and listed[2]["sender"] == alice["user_id"]
    assert not any(n["is_read"] for n in listed[:3])
    answered = [n for n in listed if n["type"] == "group_invite" and n["room_id"] == room]
    assert answered and answered[0]["is_read"]  # bob joined: the invite is done with

    count = api.call("GET", "/api/chat/notifications/unread-count", token=bob["access_token"]).json()

    async def matrix_counts() -> int:
        nio = await nio_login(server.base_url, bob["user_id"], bob["password"])
        try:
            sync = await nio.sync(timeout=0)
            assert isinstance(sync, SyncResponse)
            return sync.rooms.join[room].unread_notifications.notification_count
        finally:
            await nio.close()

    assert count["rooms"][room] == run(matrix_counts()) == 2
    # The pending invitation is counted as the list shows it (issue 17), in the total too.
    unread = notifications(api, bob["access_token"], "?unread=true&limit=100")
    assert count["invites"] == len([n for n in unread if n["type"] == "group_invite"]) == 1
    assert count["count"] == len(unread) == 3

    assert api.call("PUT", f"/api/chat/notifications/{quote(plain)}/read", token=bob["access_token"]).status_code == 200
    state = {n["id"]: n["is_read"] for n in notifications(api, bob["access_token"])}
    assert (state[plain], state[reply]) == (True, False)
    assert [n["id"] for n in notifications(api, bob["access_token"], "?unread=true")][:2] == [listed[0]["id"], reply]

    assert api.call("PUT", "/api/chat/notifications/read-all", token=bob["access_token"]).status_code == 200
    assert (
        api.call("GET", "/api/chat/notifications/unread-count", token=bob["access_token"]).json()["rooms"].get(room)
        is None
    )
    assert all(n["is_read"] for n in notifications(api, bob["access_token"]) if n["room_id"] == room)

    assert api.call("DELETE", f"/api/chat/notifications/{quote(reply)}", token=bob["access_token"]).status_code == 200
    assert reply not in [n["id"] for n in notifications(api, bob["access_token"])]


def test_muted_room_set_from_a_matrix_client_does_not_notify(api: Api) -> None:
    alice, bob = api.register(), api.register()
    room = shared_room(api, alice, bob)
    rule = api.call(
        "PUT",
        f"/_matrix/client/v3/pushrules/global/room/{quote(room)}",
        token=bob["access_token"],
        json={"actions": []},
    )
    assert rule.status_code == 200, rule.text
    muted = send_text(api, alice["access_token"], room, "muted chatter")
    assert muted not in [n["id"] for n in notifications(api, bob["access_token"])]


def test_pagination_and_bad_input(api: Api) -> None:
    alice, bob, carol = api.register(), api.register(), api.register()
    room = shared_room(api, alice, bob)
    sent = [send_text(api, alice["access_token"], room, f"msg {i}") for i in range(5)]
    first = api.call("GET", "/api/chat/notifications?limit=2", token=bob["access_token"]).json()
    second = api.call(
        "GET", f"/api/chat/notifications?limit=2&cursor={first['next_cursor']}", token=bob["access_token"]
    ).json()
    assert [n["id"] for n in first["results"] + second["results"]] == sent[::-1][:4]

    expect_error(api.call("GET", "/api/chat/notifications?limit=0", token=bob["access_token"]), 400, "M_INVALID_PARAM")
    expect_error(
        api.call("GET", "/api/chat/notifications?limit=abc", token=bob["access_token"]), 400, "M_INVALID_PARAM"
    )
    expect_error(
        api.call("GET", "/api/chat/notifications?unread=maybe", token=bob["access_token"]), 400, "M_INVALID_PARAM"
    )
    expect_error(api.call("GET", "/api/chat/notifications"), 401, "M_MISSING_TOKEN")
    expect_error(
        api.call("PUT", f"/api/chat/notifications/{quote(sent[0])}/read", token=carol["access_token"]),
        404,
        "M_NOT_FOUND",
    )
    expect_error(
        api.call("DELETE", "/api/chat/notifications/%24nothing", token=bob["access_token"]), 404, "M_NOT_FOUND"
    )


class PushGateway:
    """A Matrix push gateway sink on loopback (POST /_matrix/push/v1/notify)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[tuple[float, dict]] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/_matrix/push/v1/notify":
                    gateway.received.append((time.monotonic(), body["notification"]))
                payload = b'{"rejected": []}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self._server = HTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/_matrix/push/v1/notify"

    def stop(self) -> None:
        self._server.shutdown()


def test_offline_recipient_is_pushed_within_a_second(api: Api) -> None:
    alice, bob = api.register(), api.register()
    room = shared_room(api, alice, bob)
    gateway = PushGateway()
    try:
        pusher = {
            "kind": "http",
            "app_id": "org.medchat.app",
            "pushkey": "phone-token-1",
            "app_display_name": "MedChat",
            "device_display_name": "Bob's phone",
            "lang": "en",
            "data": {"url": gateway.url, "format": "event_id_only"},
        }
        assert (
            api.call("POST", "/_matrix/client/v3/pushers/set", token=bob["access_token"], json=pusher).status_code
            == 200
        )
        sent_at = time.monotonic()
        message = send_text(api, alice["access_token"], room, "Patient in bay 4 needs review")
        deadline = sent_at + 5
        while time.monotonic() < deadline and not gateway.received:
            time.sleep(0.02)
        assert gateway.received, "the push gateway got nothing"
        arrived, notification = gateway.received[0]
        assert notification["event_id"] == message and notification["room_id"] == room
        assert notification["devices"][0]["pushkey"] == "phone-token-1"
        assert arrived - sent_at < 1.0
    finally:
        gateway.stop()


def test_contact_requests_and_verification_decisions_are_listed(api: Api, server: SynapseServer) -> None:
    alice, bob = api.register(), api.register()
    admin = register_admin(server)
    room = shared_room(api, alice, bob)
    send_text(api, alice["access_token"], room, "hello")
    asked = api.call(
        "POST",
        "/api/chat/contacts",
        token=alice["access_token"],
        json={"user_id": bob["user_id"], "message": "Met at the CPD day"},
    )
    assert asked.status_code == 202, asked.text
    request = api.call(
        "POST",
        "/api/chat/verification/requests",
        token=bob["access_token"],
        json={"registration_body": "GMC", "license_number": "7654321"},
    )
    assert request.status_code == 201, request.text
    decided = api.call(
        "POST", f"/api/chat/verification/requests/{request.json()['id']}/approve", token=admin["access_token"], json={}
    )
    assert decided.status_code == 200, decided.text

    listed = notifications(api, bob["access_token"])
    kinds = [n["type"] for n in listed]
    assert kinds[:3] == ["verification_decision", "contact_request", "new_message"]
    contact = listed[1]
    assert (contact["sender"], contact["content"], contact["is_read"]) == (
        alice["user_id"],
        "Met at the CPD day",
        False,
    )
    assert listed[0]["data"]["status"] == "approved"
    count = api.call("GET", "/api/chat/notifications/unread-count", token=bob["access_token"]).json()
    assert (count["other"], count["count"]) == (2, count["rooms"][room] + 2)

    # One page at a time across both sources: nothing twice, nothing lost.
    first = api.call("GET", "/api/chat/notifications?limit=2", token=bob["access_token"]).json()
    rest = api.call(
        "GET", f"/api/chat/notifications?limit=50&cursor={first['next_cursor']}", token=bob["access_token"]
    ).json()
    assert [n["id"] for n in first["results"] + rest["results"]] == [n["id"] for n in listed]
    assert rest["next_cursor"] is None

    assert (
        api.call("PUT", f"/api/chat/notifications/{contact['id']}/read", token=bob["access_token"]).status_code == 200
    )
    assert api.call("GET", "/api/chat/notifications/unread-count", token=bob["access_token"]).json()["other"] == 1
    assert (
        api.call("DELETE", f"/api/chat/notifications/{listed[0]['id']}", token=bob["access_token"]).status_code == 200
    )
    assert listed[0]["id"] not in [n["id"] for n in notifications(api, bob["access_token"])]
    # Another user cannot touch them, and a made-up cursor is refused.
    expect_error(
        api.call("PUT", f"/api/chat/notifications/{contact['id']}/read", token=alice["access_token"]),
        404,
        "M_NOT_FOUND",
    )
    expect_error(
        api.call("DELETE", f"/api/chat/notifications/{contact['id']}", token=alice["access_token"]), 404, "M_NOT_FOUND"
    )
    expect_error(
        api.call("GET", "/api/chat/notifications?cursor=yesterday", token=bob["access_token"]), 400, "M_INVALID_PARAM"
    )


def test_notification_query_refusals_name_the_parameter(api: Api) -> None:
    token = api.register()["access_token"]
    for query, name in (("?unread=maybe", "unread"), ("?cursor=" + "x" * 1001, "cursor"), ("?limit=101", "limit")):
        body = expect_error(api.call("GET", "/api/chat/notifications" + query, token=token), 400, "M_INVALID_PARAM")
        assert name in body["error"], body
    assert api.call("GET", "/api/chat/notifications?unread=false&limit=100", token=token).status_code == 200


def send_event(api: Api, token: str, room: str, event_type: str, content: dict) -> str:
    """Any event with the native Matrix API, as another client would send it; its event id."""
    txn = f"t{time.monotonic_ns()}"
    response = api.call(
        "PUT", f"/_matrix/client/v3/rooms/{quote(room)}/send/{event_type}/{txn}", token=token, json=content
    )
    assert response.status_code == 200, response.text
    return response.json()["event_id"]


def test_every_notification_opens_and_only_notifications_answer(api: Api, server: SynapseServer) -> None:
    """Issue 17: with a push rule that notifies on every event (Synapse then notifies reactions,
    edits, calls, custom events and state), the list shows only what the API can open, each
    `new_message`/`message_reply` opens with GET …/messages/{id}, the count is the list's unread
    items, and read/dismiss answer 404 for any id that is not one of the caller's notifications."""
    alice, bob = api.register(), api.register()
    room = shared_room(api, alice, bob)
    rule = api.call(
        "PUT",
        "/_matrix/client/v3/pushrules/global/override/everything",
        token=bob["access_token"],
        json={"conditions": [], "actions": ["notify"]},
    )
    assert rule.status_code == 200, rule.text
    token = alice["access_token"]
    text = send_text(api, token, room, "Ward round at 9")
    reply = send_text(
        api, token, room, "> <@x:y> q\n\nAnd at 5", **{"m.relates_to": {"m.in_reply_to": {"event_id": text}}}
    )
    others = {
        "reaction": send_event(
            api,
            token,
            room,
            "m.reaction",
            {"m.relates_to": {"rel_type": "m.annotation", "event_id": text, "key": "👍"}},
        ),
        "edit": send_event(
            api,
            token,
            room,
            "m.room.message",
            {
                "msgtype": "m.text",
                "body": " * Ward round at 10",
                "m.new_content": {"msgtype": "m.text", "body": "Ward round at 10"},
                "m.relates_to": {"rel_type": "m.replace", "event_id": text},
            },
        ),
        "custom": send_event(api, token, room, "org.example.whiteboard", {"strokes": []}),
        "call": send_event(
            api,
            token,
            room,
            "m.call.invite",
            {"call_id": "c1", "version": "1", "lifetime": 60000, "offer": {"type": "offer", "sdp": "v=0"}},
        ),
    }
    kinds = {
        "encrypted": send_event(
            api,
            token,
            room,
            "m.room.encrypted",
            {
                "algorithm": "m.megolm.v1.aes-sha2",
                "ciphertext": "AwgA",
                "sender_key": "k",
                "session_id": "s",
                "device_id": "D",
            },
        ),
        "poll": send_event(
            api,
            token,
            room,
            "m.poll.start",
            {
                "m.poll": {
                    "kind": "m.disclosed",
                    "max_selections": 1,
                    "question": {"m.text": [{"body": "Lunch?"}]},
                    "answers": [{"m.id": "a", "m.text": [{"body": "Yes"}]}],
                },
                "m.text": [{"body": "Lunch?"}],
            },
        ),
    }
    own = send_text(api, bob["access_token"], room, "My own message")

    # Synapse did notify bob of each (so leaving them out is the list's doing).
    notified = query_db(
        server,
        "SELECT event_id FROM event_push_actions WHERE user_id = ? AND notif = 1",
        (bob["user_id"],),
    )
    assert set(others.values()) <= {row[0] for row in notified}

    listed = notifications(api, bob["access_token"], "?limit=100")
    ids = [n["id"] for n in listed if n["room_id"] == room]
    assert ids[-2:] == [reply, text] or {reply, text} <= set(ids)
    assert not set(others.values()) & set(ids) and own not in ids
    for item in listed:
        if item["type"] in ("new_message", "message_reply"):
            opened = api.call(
                "GET",
                f"/api/chat/rooms/{quote(item['room_id'])}/messages/{quote(item['message_id'])}",
                token=bob["access_token"],
            )
            assert opened.status_code == 200, (item, opened.text)
    for event_id in kinds.values():  # listed exactly when the message endpoints can show the kind
        shows = api.call(
            "GET", f"/api/chat/rooms/{quote(room)}/messages/{quote(event_id)}", token=bob["access_token"]
        ).status_code
        assert (event_id in ids) == (shows == 200), (event_id, shows)

    count = api.call("GET", "/api/chat/notifications/unread-count", token=bob["access_token"]).json()
    unread = notifications(api, bob["access_token"], "?unread=true&limit=100")
    assert count["count"] == len(unread) and count["rooms"][room] == len([n for n in unread if n["room_id"] == room])

    for event_id in [*others.values(), own, "$nothing"]:
        for method, path in (("PUT", f"/{quote(event_id)}/read"), ("DELETE", f"/{quote(event_id)}")):
            expect_error(
                api.call(method, f"/api/chat/notifications{path}", token=bob["access_token"]), 404, "M_NOT_FOUND"
            )
    assert api.call("PUT", f"/api/chat/notifications/{quote(text)}/read", token=bob["access_token"]).status_code == 200
    assert api.call("DELETE", f"/api/chat/notifications/{quote(reply)}", token=bob["access_token"]).status_code == 200
    after = api.call("GET", "/api/chat/notifications/unread-count", token=bob["access_token"]).json()
    assert after["count"] == len(notifications(api, bob["access_token"], "?unread=true&limit=100"))
