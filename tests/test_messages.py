"""/api/chat/rooms/{id}/messages: history, media, edits, deletions, replies, search, reactions,
forwarding and idempotent sends, checked against the Matrix events Synapse stores."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import pytest

from harness import Api, SynapseServer, expect_error, query_plans
from medchat.synapse import sql
from test_rooms import create_room, room_path


@pytest.fixture
def chat(api: Api) -> dict[str, Any]:
    """Alice (group admin) and Bob (member) in a group; Mallory outside it."""
    alice, bob, mallory = api.register(), api.register(), api.register()
    room = create_room(api, alice["access_token"], type="group", name="Case discussion", participants=[bob["user_id"]])
    api.call(
        "POST", room_path(room["id"], "/participants"), token=bob["access_token"], json={"user_id": bob["user_id"]}
    )
    return {"alice": alice, "bob": bob, "mallory": mallory, "room": room["id"]}


def send(api: Api, user: dict[str, Any], room_id: str, **body: Any) -> dict[str, Any]:
    response = api.call("POST", room_path(room_id, "/messages"), token=user["access_token"], json=body)
    assert response.status_code == 201, response.text
    return response.json()


def msg_path(room_id: str, event_id: str, suffix: str = "") -> str:
    return room_path(room_id, f"/messages/{quote(event_id, safe='')}{suffix}")


def raw_event(api: Api, user: dict[str, Any], room_id: str, event_id: str) -> dict[str, Any]:
    response = api.call(
        "GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/event/{quote(event_id)}", token=user["access_token"]
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_text_history_and_pagination(api: Api, chat: dict[str, Any]) -> None:
    alice, bob, room = chat["alice"], chat["bob"], chat["room"]
    sent = [send(api, alice if i % 2 == 0 else bob, room, content=f"message {i}") for i in range(5)]
    first = sent[0]
    assert first["content"] == "message 0" and first["message_type"] == "text" and first["status"] == "sent"
    assert (
        first["sender"]["id"] == alice["user_id"] and first["sender"]["full_name"] == f"Dr. {alice['username'].title()}"
    )
    assert first["id"].startswith("$") and first["is_edited"] is False and first["reply_to"] is None
    assert raw_event(api, bob, room, first["id"])["content"] == {"msgtype": "m.text", "body": "message 0"}

    page = api.call("GET", room_path(room, "/messages?limit=3"), token=bob["access_token"]).json()
    assert [m["content"] for m in page["results"]] == ["message 4", "message 3", "message 2"]
    rest = api.call(
        "GET", room_path(room, f"/messages?limit=3&cursor={quote(page['next_cursor'])}"), token=bob["access_token"]
    ).json()
    assert [m["content"] for m in rest["results"]] == ["message 1", "message 0"]

    one = api.call("GET", msg_path(room, sent[3]["id"]), token=alice["access_token"])
    assert (
        one.status_code == 200 and one.json()["content"] == "message 3" and one.json()["sender"]["id"] == bob["user_id"]
    )


def test_media_messages(api: Api, chat: dict[str, Any]) -> None:
    alice, room = chat["alice"], chat["room"]
    image = send(
        api,
        alice,
        room,
        message_type="image",
        media_url="mxc://medchat.test/xRay123",
        file_name="chest.png",
        file_size=2048,
        mime_type="image/png",
        width=640,
        height=480,
        content="PA view",
    )
    assert (image["message_type"], image["media_url"], image["file_name"], image["file_size"], image["content"]) == (
        "image",
        "mxc://medchat.test/xRay123",
        "chest.png",
        2048,
        "PA view",
    )
    raw = raw_event(api, alice, room, image["id"])["content"]
    assert raw == {
        "msgtype": "m.image",
        "body": "PA view",
        "filename": "chest.png",
        "url": "mxc://medchat.test/xRay123",
        "info": {"mimetype": "image/png", "size": 2048, "w": 640, "h": 480},
    }
    voice = send(
        api,
        alice,
        room,
        message_type="audio",
        media_url="mxc://medchat.test/voice_1",
        duration=3000,
        mime_type="audio/ogg",
    )
    assert voice["message_type"] == "audio" and voice["content"] is None and voice["file_name"] == "audio"
    assert raw_event(api, alice, room, voice["id"])["content"]["msgtype"] == "m.audio"


def test_edit_delete_and_their_rules(api: Api, chat: dict[str, Any]) -> None:
    alice, bob, room = chat["alice"], chat["bob"], chat["room"]
    original = send(api, bob, room, content="BP 120/80")
    edited = api.call("PUT", msg_path(room, original["id"]), token=bob["access_token"], json={"content": "BP 130/85"})
    assert edited.status_code == 200, edited.text
    assert edited.json()["content"] == "BP 130/85" and edited.json()["is_edited"] is True and edited.json()["edited_at"]
    # The answer is built from the edit just sent: it must read as Synapse's bundled edit does.
    assert edited.json() == api.call("GET", msg_path(room, original["id"]), token=bob["access_token"]).json()
    history = api.call("GET", room_path(room, "/messages"), token=alice["access_token"]).json()["results"]
    assert [m["id"] for m in history] == [original["id"]] and history[0]["content"] == "BP 130/85"
    expect_error(
        api.call("PUT", msg_path(room, original["id"]), token=alice["access_token"], json={"content": "hijack"}),
        403,
        "M_FORBIDDEN",
    )

    mine = send(api, alice, room, content="admin's note")
    expect_error(api.call("DELETE", msg_path(room, mine["id"]), token=bob["access_token"]), 403, "M_FORBIDDEN")
    own_delete = api.call("DELETE", msg_path(room, original["id"]), token=bob["access_token"])
    assert (
        own_delete.status_code == 200
        and own_delete.json()["is_deleted"] is True
        and own_delete.json()["content"] is None
    )
    assert "redacted_because" in raw_event(api, alice, room, original["id"])["unsigned"]
    expect_error(
        api.call("PUT", msg_path(room, original["id"]), token=bob["access_token"], json={"content": "again"}),
        400,
        "M_INVALID_PARAM",
    )

    # The group admin may delete a member's message.
    other = send(api, bob, room, content="off-topic")
    assert api.call("DELETE", msg_path(room, other["id"]), token=alice["access_token"]).json()["is_deleted"] is True


def test_reply_search_reactions_forward(api: Api, chat: dict[str, Any]) -> None:
    alice, bob, room = chat["alice"], chat["bob"], chat["room"]
    question = send(api, alice, room, content="Troponin result for bed 4?")
    reply = api.call(
        "POST", msg_path(room, question["id"], "/reply"), token=bob["access_token"], json={"content": "Negative x2"}
    )
    assert reply.status_code == 201, reply.text
    assert reply.json()["reply_to"] == question["id"] and reply.json()["content"] == "Negative x2"
    raw = raw_event(api, alice, room, reply.json()["id"])["content"]
    assert raw["m.relates_to"] == {"m.in_reply_to": {"event_id": question["id"]}}
    assert raw["body"] == f"> <{alice['user_id']}> Troponin result for bed 4?\n\nNegative x2"
    assert raw["formatted_body"].startswith("<mx-reply><blockquote>") and raw["formatted_body"].endswith("Negative x2")

    found = api.call("GET", room_path(room, "/messages/search?q=troponin"), token=bob["access_token"])
    assert found.status_code == 200, found.text
    # Synapse indexes the whole body, the reply's quoted fallback too: only the question matches.
    assert [m["id"] for m in found.json()["results"]] == [question["id"]]
    assert not api.call("GET", room_path(room, "/messages/search?q=appendix"), token=bob["access_token"]).json()[
        "results"
    ]

    for user, key in ((alice, "👍"), (bob, "👍"), (bob, "❤️")):
        assert (
            api.call(
                "POST", msg_path(room, question["id"], "/reactions"), token=user["access_token"], json={"key": key}
            ).status_code
            == 201
        )
    again = api.call(
        "POST", msg_path(room, question["id"], "/reactions"), token=bob["access_token"], json={"key": "👍"}
    )
    assert again.status_code == 200
    counts = {r["key"]: (r["count"], r["reacted_by_me"]) for r in again.json()["reactions"]}
    assert counts == {"👍": (2, True), "❤️": (1, True)}
    removed = api.call("DELETE", msg_path(room, question["id"], f"/reactions/{quote('👍')}"), token=bob["access_token"])
    assert removed.status_code == 200
    assert {r["key"]: r["count"] for r in removed.json()["reactions"]} == {"👍": 1, "❤️": 1}
    assert removed.json() == api.call("GET", msg_path(room, question["id"]), token=bob["access_token"]).json()
    expect_error(
        api.call("DELETE", msg_path(room, question["id"], f"/reactions/{quote('👍')}"), token=bob["access_token"]),
        404,
        "M_NOT_FOUND",
    )

    elsewhere = create_room(api, bob["access_token"], type="direct", participants=[alice["user_id"]])["id"]
    forwarded = api.call(
        "POST",
        msg_path(room, reply.json()["id"], "/forward"),
        token=bob["access_token"],
        json={"room_ids": [elsewhere]},
    )
    assert forwarded.status_code == 201, forwarded.text
    copy = forwarded.json()["messages"][0]
    assert copy["room_id"] == elsewhere and copy["content"] == "Negative x2" and copy["reply_to"] is None
    image = send(api, alice, room, message_type="image", media_url="mxc://medchat.test/scan42", file_name="ct.png")
    media_copy = api.call(
        "POST", msg_path(room, image["id"], "/forward"), token=alice["access_token"], json={"room_ids": [elsewhere]}
    )
    assert media_copy.status_code == 404  # Alice has not joined the DM Bob opened: she may only forward where she is
    api.call(
        "POST", room_path(elsewhere, "/participants"), token=alice["access_token"], json={"user_id": alice["user_id"]}
    )
    media_copy = api.call(
        "POST", msg_path(room, image["id"], "/forward"), token=alice["access_token"], json={"room_ids": [elsewhere]}
    )
    assert media_copy.json()["messages"][0]["media_url"] == "mxc://medchat.test/scan42"


def test_idempotent_send(api: Api, chat: dict[str, Any]) -> None:
    alice, room = chat["alice"], chat["room"]
    first = send(api, alice, room, content="Once only", client_msg_id="app-msg-1")
    again = send(api, alice, room, content="Once only", client_msg_id="app-msg-1")
    assert again["id"] == first["id"] and first["client_msg_id"] == "app-msg-1"
    headers = {"Idempotency-Key": "retry-42"}
    path = room_path(room, "/messages")

    def post(_: int) -> str:
        response = api.call(
            "POST", path, token=alice["access_token"], json={"content": "Retried"}, headers=dict(headers)
        )
        assert response.status_code == 201, response.text
        return response.json()["id"]

    with ThreadPoolExecutor(4) as pool:
        ids = set(pool.map(post, range(4)))
    assert len(ids) == 1
    history = api.call("GET", path, token=alice["access_token"]).json()["results"]
    assert [m["content"] for m in history].count("Retried") == 1 and [m["content"] for m in history].count(
        "Once only"
    ) == 1


def test_message_bad_input_and_access(api: Api, chat: dict[str, Any]) -> None:
    alice, mallory, room = chat["alice"], chat["mallory"], chat["room"]
    token = alice["access_token"]
    path = room_path(room, "/messages")
    expect_error(api.call("POST", path, token=token, json={"content": ""}), 400, "M_MISSING_PARAM")
    expect_error(api.call("POST", path, token=token, json={"content": "   "}), 400, "M_MISSING_PARAM")
    body = expect_error(
        api.call("POST", path, token=token, json={"content": "x", "message_type": "sticker"}), 400, "M_INVALID_PARAM"
    )
    assert "message_type" in body["error"]
    body = expect_error(
        api.call("POST", path, token=token, json={"message_type": "image", "media_url": "https://evil.example/a.png"}),
        400,
        "M_INVALID_PARAM",
    )
    assert "media_url" in body["error"]
    expect_error(
        api.call("POST", path, token=token, json={"message_type": "image", "media_url": "mxc://other.server/abc"}),
        400,
        "M_INVALID_PARAM",
    )
    expect_error(api.call("POST", path, token=token, json={"message_type": "file"}), 400, "M_MISSING_PARAM")
    expect_error(api.call("POST", path, token=token, json={"content": "x", "file_size": -1}), 400, "M_INVALID_PARAM")
    expect_error(api.call("GET", path + "?cursor=garbage", token=token), 400, "M_INVALID_PARAM")
    expect_error(api.call("GET", path + "/search", token=token), 400, "M_MISSING_PARAM")
    expect_error(api.call("GET", path + "/search?q=" + "x" * 201, token=token), 400, "M_INVALID_PARAM")
    expect_error(api.call("GET", msg_path(room, "$nope"), token=token), 404, "M_NOT_FOUND")
    expect_error(api.call("POST", path, token=token, json={"content": "x", "reply_to": "$nope"}), 404, "M_NOT_FOUND")

    message = send(api, alice, room, content="members only")
    outsider = mallory["access_token"]
    for method, url, json in (
        ("GET", path, None),
        ("POST", path, {"content": "let me in"}),
        ("GET", path + "/search?q=members", None),
        ("GET", msg_path(room, message["id"]), None),
        ("PUT", msg_path(room, message["id"]), {"content": "x"}),
        ("DELETE", msg_path(room, message["id"]), None),
        ("POST", msg_path(room, message["id"], "/reply"), {"content": "x"}),
        ("POST", msg_path(room, message["id"], "/reactions"), {"key": "👍"}),
        ("POST", msg_path(room, message["id"], "/forward"), {"room_ids": [room]}),
    ):
        expect_error(api.call(method, url, token=outsider, json=json), 404, "M_NOT_FOUND")
    # A message id from another room is not found through this room.
    own_room = create_room(api, outsider, type="group", name="Mallory's")["id"]
    expect_error(api.call("GET", msg_path(own_room, message["id"]), token=outsider), 404, "M_NOT_FOUND")


def test_search_pages_by_rank_without_edits_or_deletions(api: Api, chat: dict[str, Any]) -> None:
    alice, bob, room = chat["alice"], chat["bob"], chat["room"]
    sent = [send(api, alice, room, content=("sepsis " * (i % 3 + 1)) + f"bundle note {i}")["id"] for i in range(7)]
    edited = api.call(
        "PUT", msg_path(room, sent[0]), token=alice["access_token"], json={"content": "sepsis bundle revised"}
    )
    assert edited.status_code == 200, edited.text
    assert api.call("DELETE", msg_path(room, sent[1]), token=alice["access_token"]).status_code == 200

    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(5):
        query = "/messages/search?q=sepsis&limit=3" + (f"&cursor={quote(cursor)}" if cursor else "")
        page = api.call("GET", room_path(room, query), token=bob["access_token"])
        assert page.status_code == 200, page.text
        assert len(page.json()["results"]) <= 3
        seen += page.json()["results"]
        assert page.json()["count"] == 6  # neither the edit event nor the deleted message
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    ids = [m["id"] for m in seen]
    # Every live original once: not the edit event (its original carries it), not the deleted one.
    assert sorted(ids) == sorted(sent[:1] + sent[2:])
    ranks = [m["rank"] for m in seen]
    assert ranks == sorted(ranks, reverse=True)
    assert next(m for m in seen if m["id"] == sent[0])["content"] == "sepsis bundle revised"
    expect_error(
        api.call("GET", room_path(room, "/messages/search?q=sepsis&cursor=nonsense"), token=bob["access_token"]),
        400,
        "M_INVALID_PARAM",
    )
    expect_error(
        api.call("GET", room_path(room, "/messages/search?q=sepsis"), token=chat["mallory"]["access_token"]),
        404,
        "M_NOT_FOUND",
    )


def search_ids(api: Api, user: dict[str, Any], room: str, q: str) -> list[str]:
    response = api.call("GET", room_path(room, f"/messages/search?q={quote(q)}"), token=user["access_token"])
    assert response.status_code == 200, response.text
    return [m["id"] for m in response.json()["results"]]


def test_search_matches_what_a_message_says_now(api: Api, chat: dict[str, Any]) -> None:
    """Issue 17: an edit is found by its current text and no longer by the text it replaced (nor
    by an earlier edit's), a reply by its own words and never by the parent quoted in its
    fallback, and deleted or expired messages never."""
    alice, bob, room = chat["alice"], chat["bob"], chat["room"]
    parent = send(api, alice, room, content="Patient stable, ECG normal")
    reply = api.call(
        "POST", msg_path(room, parent["id"], "/reply"), token=bob["access_token"], json={"content": "Check lead II"}
    ).json()
    assert search_ids(api, bob, room, "ecg") == [parent["id"]]
    assert search_ids(api, bob, room, "lead") == [reply["id"]]

    drip = send(api, alice, room, content="Start heparin drip")
    for text in ("Start dalteparin", "Start enoxaparin instead"):
        edited = api.call("PUT", msg_path(room, drip["id"]), token=alice["access_token"], json={"content": text})
        assert edited.status_code == 200, edited.text
    found = api.call("GET", room_path(room, "/messages/search?q=enoxaparin"), token=bob["access_token"]).json()
    assert [(m["id"], m["content"]) for m in found["results"]] == [(drip["id"], "Start enoxaparin instead")]
    assert search_ids(api, bob, room, "heparin") == []  # the replaced text
    assert search_ids(api, bob, room, "dalteparin") == []  # an earlier edit
    assert search_ids(api, bob, room, "start") == [drip["id"]]  # once, though three events match

    # An edited reply: its new words, still never the parent's.
    assert (
        api.call(
            "PUT", msg_path(room, reply["id"]), token=bob["access_token"], json={"content": "Check lead V1 again"}
        ).status_code
        == 200
    )
    assert search_ids(api, bob, room, "v1") == [reply["id"]]
    assert search_ids(api, bob, room, "ecg") == [parent["id"]] and search_ids(api, bob, room, "lead") == [reply["id"]]

    # A Matrix client's edit (Element's `* ` fallback body, m.new_content) and reply fallback.
    element = api.call(
        "PUT",
        f"/_matrix/client/v3/rooms/{quote(room)}/send/m.room.message/edit-{drip['id'][1:9]}",
        token=alice["access_token"],
        json={
            "msgtype": "m.text",
            "body": " * Start tinzaparin",
            "m.new_content": {"msgtype": "m.text", "body": "Start tinzaparin"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": drip["id"]},
        },
    )
    assert element.status_code == 200, element.text
    assert search_ids(api, bob, room, "tinzaparin") == [drip["id"]]
    assert search_ids(api, bob, room, "enoxaparin") == []

    # Deleted, and expired (redacted at expiry), messages never appear, nor do their edits.
    gone = send(api, alice, room, content="Warfarin dose note")
    api.call("PUT", msg_path(room, gone["id"]), token=alice["access_token"], json={"content": "Warfarin 5 mg"})
    assert search_ids(api, bob, room, "warfarin") == [gone["id"]]
    assert api.call("DELETE", msg_path(room, gone["id"]), token=alice["access_token"]).status_code == 200
    assert search_ids(api, bob, room, "warfarin") == []
    expiring = send(api, alice, room, content="Digoxin level pending", expires_in=1)
    assert search_ids(api, bob, room, "digoxin") == [expiring["id"]]
    deadline = time.monotonic() + 15
    while not api.call("GET", msg_path(room, expiring["id"]), token=bob["access_token"]).json()["is_deleted"]:
        assert time.monotonic() < deadline, "the message did not expire"
        time.sleep(0.2)
    assert search_ids(api, bob, room, "digoxin") == []


def test_search_plan_is_index_lookups(server: SynapseServer, api: Api, chat: dict[str, Any]) -> None:
    """The search statement (as search_txn runs it) reads Synapse's tables by index only: no
    sequential scan on PostgreSQL with its settings, no full scan of a table on SQLite."""
    alice, room = chat["alice"], chat["room"]
    first = send(api, alice, room, content="plan check sepsis")
    api.call("PUT", msg_path(room, first["id"]), token=alice["access_token"], json={"content": "plan sepsis now"})
    postgres = server.database_url is not None
    plans = query_plans(server, sql.search_txn, room, "sepsis", None, 5)
    assert len(plans) == 1, plans  # the one ranked page of hits (its count comes with it)
    plan = "\n".join(plans[0])
    if postgres:
        assert "Seq Scan" not in plan, plan
        assert "event_relations" in plan and "Index" in plan, plan
        # Each event by its id: never the room's events by the room index, once per match (the
        # plan PostgreSQL chose before the tables were first analysed, 2.8 s at 3,000 matches).
        events_indexes = set(re.findall(r"(?:Index|Index Only) Scan using (events_\w+) on events ", plan))
        assert events_indexes == {"events_event_id_key"}, plan
    else:  # the FTS table answers by its own index, every other table by event id or target
        for line in (line.strip() for line in plan.splitlines()):
            if line.startswith("SCAN"):
                assert line.startswith(("SCAN event_search VIRTUAL TABLE", "SCAN m", "SCAN hits", "SCAN (")), plan
            elif line.startswith("SEARCH"):
                assert any(key in line for key in ("(event_id=?)", "(relates_to_id=?", "(redacts=?)")), plan


def test_search_reads_past_hits_the_caller_may_not_see(api: Api, chat: dict[str, Any]) -> None:
    """A member who joined late, in a room whose history is for joined members only: the best-ranked
    hits are all from before the join, so the search reads further ahead (in growing batches)
    until it has a page of hits the member may see."""
    alice, room = chat["alice"], chat["room"]
    visibility = {"history_visibility": "joined"}
    response = api.call(
        "PUT",
        f"/_matrix/client/v3/rooms/{quote(room)}/state/m.room.history_visibility/",
        token=alice["access_token"],
        json=visibility,
    )
    assert response.status_code == 200, response.text
    for i in range(30):
        send(api, alice, room, content=f"sepsis sepsis sepsis sepsis round {i}")
    carol = api.register()
    api.call("POST", room_path(room, "/participants"), token=alice["access_token"], json={"user_id": carol["user_id"]})
    joined = api.call(
        "POST", room_path(room, "/participants"), token=carol["access_token"], json={"user_id": carol["user_id"]}
    )
    assert joined.status_code in (200, 201), joined.text
    after = [send(api, alice, room, content=f"sepsis once, note {i}")["id"] for i in range(2)]

    first = api.call("GET", room_path(room, "/messages/search?q=sepsis&limit=1"), token=carol["access_token"]).json()
    second = api.call(
        "GET",
        room_path(room, f"/messages/search?q=sepsis&limit=1&cursor={quote(first['next_cursor'])}"),
        token=carol["access_token"],
    ).json()
    assert sorted(m["id"] for m in first["results"] + second["results"]) == sorted(after)
    assert second["next_cursor"] is None
    everything = api.call(
        "GET", room_path(room, "/messages/search?q=sepsis&limit=50"), token=alice["access_token"]
    ).json()
    assert len(everything["results"]) == 32 and everything["results"][0]["content"].startswith("sepsis sepsis")


def test_message_queries_and_bodies_name_what_they_refuse(api: Api, chat: dict[str, Any]) -> None:
    alice, room = chat["alice"], chat["room"]
    token = alice["access_token"]
    path = room_path(room, "/messages")
    for query, errcode, field in (
        ("/search?q=%20%20", "M_INVALID_PARAM", "q"),
        ("/search?limit=5", "M_MISSING_PARAM", "q"),
        ("/search?q=x&limit=0", "M_INVALID_PARAM", "limit"),
        ("?limit=101", "M_INVALID_PARAM", "limit"),
    ):
        assert field in expect_error(api.call("GET", path + query, token=token), 400, errcode)["error"]
    message = send(api, alice, room, content="forward me")
    twice = api.call("POST", msg_path(room, message["id"], "/forward"), token=token, json={"room_ids": [room, room]})
    assert "room_ids" in expect_error(twice, 400, "M_INVALID_PARAM")["error"]
    blank = api.call("PUT", msg_path(room, message["id"]), token=token, json={"content": "  "})
    assert "content" in expect_error(blank, 400, "M_INVALID_PARAM")["error"]
    media = api.call("POST", path, token=token, json={"message_type": "image", "media_url": "mxc://medchat.test/a b"})
    assert "media_url" in expect_error(media, 400, "M_INVALID_PARAM")["error"]
