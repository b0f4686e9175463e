"""The room list at sliding-sync cost (issue 18 item 1): a participant summary, a paginated
participants endpoint, batched last messages and unread counts, and a page whose database
transactions do not grow with the number of rooms the caller is in."""

from __future__ import annotations

from typing import Any

from harness import Api, SynapseServer, expect_error, send_text, shared_room, transactions
from test_rooms import create_room, room_path

PARTICIPANTS = "/participants"


def rooms(api: Api, user: dict[str, Any], query: str = "") -> dict[str, Any]:
    response = api.call("GET", f"/api/chat/rooms{query}", token=user["access_token"])
    assert response.status_code == 200, response.text
    return response.json()


def test_list_carries_a_participant_summary_and_the_view_everyone(api: Api) -> None:
    alice, bob = api.register(), api.register()
    others = [api.register() for _ in range(6)]
    group = create_room(
        api, alice["access_token"], type="group", name="Ward 7", participants=[u["user_id"] for u in others]
    )
    direct = create_room(api, alice["access_token"], type="direct", participants=[bob["user_id"]])
    listed = {r["id"]: r for r in rooms(api, alice)["results"]}

    summary = listed[group["id"]]
    assert summary["participant_count"] == 7 and len(summary["participants"]) == 5
    expected = sorted(u["user_id"] for u in others)[:5]
    assert [p["id"] for p in summary["participants"]] == expected  # the others first, by user id
    assert {p["membership"] for p in summary["participants"]} == {"invite"}
    assert set(summary["participants"][0]) == {"id", "user", "role", "membership", "is_online", "last_seen"}

    dm = listed[direct["id"]]
    assert [p["id"] for p in dm["participants"]] == [bob["user_id"], alice["user_id"]]
    assert dm["participant_count"] == 2 and dm["type"] == "direct"
    assert dm["name"] == f"Dr. {bob['username'].title()}"
    assert [p["role"] for p in dm["participants"]] == ["admin", "admin"]  # a trusted private chat

    view = api.call("GET", room_path(group["id"]), token=alice["access_token"]).json()
    assert view["participant_count"] == 7 and len(view["participants"]) == 7
    roles = {p["id"]: p["role"] for p in view["participants"]}
    assert roles[alice["user_id"]] == "admin" and roles[others[0]["user_id"]] == "member"


def test_participants_are_paginated(api: Api) -> None:
    alice = api.register()
    others = [api.register() for _ in range(7)]
    group = create_room(
        api, alice["access_token"], type="group", name="Paging", participants=[u["user_id"] for u in others]
    )
    path = room_path(group["id"], PARTICIPANTS)
    seen: list[str] = []
    cursor: str | None = None
    while True:
        query = "?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = api.call("GET", path + query, token=alice["access_token"]).json()
        assert page["count"] == 8 and len(page["results"]) <= 3
        seen += [p["id"] for p in page["results"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted([alice["user_id"], *(u["user_id"] for u in others)])
    whole = api.call("GET", path, token=alice["access_token"]).json()
    assert [p["id"] for p in whole["results"]] == seen and whole["next_cursor"] is None
    expect_error(api.call("GET", path + "?cursor=nope", token=alice["access_token"]), 400, "M_INVALID_PARAM")
    expect_error(api.call("GET", path + "?limit=101", token=alice["access_token"]), 400, "M_INVALID_PARAM")
    expect_error(api.call("GET", path, token=api.register()["access_token"]), 404, "M_NOT_FOUND")


def test_order_follows_activity_and_invites(api: Api) -> None:
    alice, bob = api.register(), api.register()
    first = shared_room(api, alice, bob)
    second = shared_room(api, alice, bob)
    space = api.call(
        "POST",
        "/_matrix/client/v3/createRoom",
        token=alice["access_token"],
        json={"creation_content": {"type": "m.space"}},
    ).json()["room_id"]
    invite = api.call(
        "POST", "/_matrix/client/v3/createRoom", token=bob["access_token"], json={"invite": [alice["user_id"]]}
    ).json()["room_id"]
    page = rooms(api, alice)
    assert [r["id"] for r in page["results"]] == [invite, second, first] and page["count"] == 3
    assert space not in [r["id"] for r in page["results"]]
    assert page["results"][0]["membership"] == "invite" and page["results"][0]["last_message"] is None

    send_text(api, bob["access_token"], first, "news")
    page = rooms(api, alice, "?limit=2")
    assert [r["id"] for r in page["results"]] == [first, invite] and page["next_cursor"] == "2"
    rest = rooms(api, alice, "?limit=2&cursor=2")
    assert [r["id"] for r in rest["results"]] == [second] and rest["next_cursor"] is None
    expect_error(api.call("GET", "/api/chat/rooms?cursor=x", token=alice["access_token"]), 400, "M_INVALID_PARAM")


def test_last_message_skips_edits_and_reactions(api: Api) -> None:
    alice, bob = api.register(), api.register()
    room = shared_room(api, alice, bob)
    original = send_text(api, bob["access_token"], room, "draft")
    send_text(
        api,
        bob["access_token"],
        room,
        "* final",
        **{
            "m.new_content": {"msgtype": "m.text", "body": "final"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": original},
        },
    )
    reacted = api.call(
        "PUT",
        f"/_matrix/client/v3/rooms/{room}/send/m.reaction/r1",
        token=alice["access_token"],
        json={"m.relates_to": {"rel_type": "m.annotation", "event_id": original, "key": "👍"}},
    )
    assert reacted.status_code == 200
    listed = next(r for r in rooms(api, alice)["results"] if r["id"] == room)
    last = listed["last_message"]
    assert (last["id"], last["content"], last["sender"]) == (original, "final", bob["user_id"])
    view = api.call("GET", room_path(room), token=alice["access_token"]).json()
    assert view["last_message"] == last

    ciphertext = {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgA", "sender_key": "k", "session_id": "s"}
    sent = api.call(
        "PUT", f"/_matrix/client/v3/rooms/{room}/send/m.room.encrypted/e1", token=bob["access_token"], json=ciphertext
    )
    assert sent.status_code == 200
    last = next(r for r in rooms(api, alice)["results"] if r["id"] == room)["last_message"]
    assert (last["id"], last["message_type"], last["content"]) == (sent.json()["event_id"], "encrypted", None)


def test_unread_counts_are_synapses(api: Api) -> None:
    alice, bob = api.register(), api.register()
    busy, quiet = shared_room(api, alice, bob), shared_room(api, alice, bob)
    for body in ("one", "two", "three"):
        send_text(api, bob["access_token"], busy, body)
    send_text(api, bob["access_token"], quiet, "hello")
    sync = api.call("GET", "/_matrix/client/v3/sync?timeout=0", token=alice["access_token"]).json()
    native = {r: sync["rooms"]["join"][r]["unread_notifications"]["notification_count"] for r in (busy, quiet)}
    assert native == {busy: 3, quiet: 1}
    listed = {r["id"]: r["unread_count"] for r in rooms(api, alice)["results"]}
    assert {r: listed[r] for r in native} == native
    count = api.call("GET", "/api/chat/notifications/unread-count", token=alice["access_token"]).json()
    assert {r: count["rooms"][r] for r in native} == native
    read_all = api.call("PUT", "/api/chat/notifications/read-all", token=alice["access_token"])
    assert read_all.status_code == 200, read_all.text
    assert {r["id"]: r["unread_count"] for r in rooms(api, alice)["results"]} == {busy: 0, quiet: 0}


def _transactions(server: SynapseServer) -> float:
    """All database transactions the server has run, from Synapse's own metrics."""
    return sum(transactions(server).values())


def _page_cost(api: Api, server: SynapseServer, user: dict[str, Any]) -> float:
    """The fewest transactions one warm room-list page of 3 took, over a few tries."""
    rooms(api, user, "?limit=3")
    costs = []
    for _ in range(4):
        before = _transactions(server)
        rooms(api, user, "?limit=3")
        costs.append(_transactions(server) - before)
    return min(costs)


def test_page_transactions_do_not_grow_with_rooms(api: Api, server: SynapseServer) -> None:
    few, many = api.register(), api.register()
    for user, count in ((few, 3), (many, 10)):  # Synapse's room-creation limit: a burst of 10
        for n in range(count):
            room = shared_room(api, user)
            send_text(api, user["access_token"], room, f"message {n}")
    small, large = _page_cost(api, server, few), _page_cost(api, server, many)
    assert small <= 12, small  # a fixed few per page, not several per room
    assert large <= small + 2, (small, large)
