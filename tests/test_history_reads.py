"""History pages at the cost of one Synapse `/messages` page (issue 18 item 2): hidden events
(edits, reactions, redactions, poll responses, state) cost no page and never empty one, and a
sender's own page takes its statuses from the room's receipts and delivery marks in bulk."""

from __future__ import annotations

import re
import time
from functools import partial
from typing import Any
from urllib.parse import quote

import pytest

from harness import Api, SynapseServer, query_plans, send_text, shared_room, transactions
from medchat.synapse import sql

User = dict[str, Any]

# Synapse's pagination query, one transaction per `/messages` page it reads.
PAGINATE = "paginate_room_events_by_topological_ordering"
# Synapse's periodic transactions, which run whatever a request does, and the backfill check
# its pagination starts in the background after a page (which lands in a count or not, by timing).
BACKGROUND = re.compile(r"delayed_events|_stream_pos|background_update|expiring|update_presence|lock|simple_|backfill")


def history(api: Api, user: User, room: str, limit: int, cursor: str | None = None) -> dict[str, Any]:
    path = f"/api/chat/rooms/{quote(room, safe='')}/messages?limit={limit}"
    if cursor is not None:
        path += f"&cursor={quote(cursor, safe='')}"
    response = api.call("GET", path, token=user["access_token"])
    assert response.status_code == 200, response.text
    return response.json()


def walk(api: Api, user: User, room: str, limit: int) -> list[dict[str, Any]]:
    """Every page from the newest on: each full but maybe the last, none empty."""
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = history(api, user, room, limit, cursor)
        items, cursor = page["results"], page["next_cursor"]
        assert items, f"an empty page after {len(found)} messages"
        assert len(items) == limit or cursor is None, "a short page before the room's start"
        found += items
        if cursor is None:
            return found


def send(api: Api, user: User, room: str, event_type: str, content: dict[str, Any]) -> str:
    txn = f"h{time.monotonic_ns()}"
    path = f"/_matrix/client/v3/rooms/{quote(room)}/send/{event_type}/{txn}"
    response = api.call("PUT", path, token=user["access_token"], json=content)
    assert response.status_code == 200, response.text
    return str(response.json()["event_id"])


def edit(api: Api, user: User, room: str, event_id: str, text: str) -> str:
    content = {
        "msgtype": "m.text",
        "body": f"* {text}",
        "m.new_content": {"msgtype": "m.text", "body": text},
        "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
    }
    return send(api, user, room, "m.room.message", content)


def react(api: Api, user: User, room: str, event_id: str, key: str) -> str:
    relation = {"rel_type": "m.annotation", "event_id": event_id, "key": key}
    return send(api, user, room, "m.reaction", {"m.relates_to": relation})


def redact(api: Api, user: User, room: str, event_id: str) -> None:
    path = f"/_matrix/client/v3/rooms/{quote(room)}/redact/{quote(event_id)}/r{time.monotonic_ns()}"
    response = api.call("PUT", path, token=user["access_token"], json={})
    assert response.status_code == 200, response.text


def transactions_of(server: SynapseServer, call: Any) -> dict[str, float]:
    before = transactions(server)
    call()
    after = transactions(server)
    return {d: n - before.get(d, 0) for d, n in after.items() if n > before.get(d, 0) and not BACKGROUND.search(d)}


@pytest.fixture(scope="module")
def edited(server: SynapseServer) -> tuple[User, str, list[str]]:
    """30 messages, then 60 edits of the newest: the room's newest 60 events are all edits."""
    api = Api(server.base_url)
    alice = api.register()
    room = shared_room(api, alice)
    ids = [send_text(api, alice["access_token"], room, f"obs {i}") for i in range(30)]
    for n in range(60):
        edit(api, alice, room, ids[-1], f"obs 29 v{n}")
    return alice, room, ids


def test_trailing_edits_cost_one_synapse_page(
    api: Api, server: SynapseServer, edited: tuple[User, str, list[str]]
) -> None:
    alice, room, ids = edited
    pages: list[dict[str, Any]] = []
    used = transactions_of(server, lambda: pages.append(history(api, alice, room, 20)))
    assert used.get(PAGINATE) == 1, used  # one Synapse page, not one per 20 edits
    first = pages[0]
    assert [m["id"] for m in first["results"]] == ids[::-1][:20] and first["next_cursor"]
    assert first["results"][0]["content"] == "obs 29 v59" and first["results"][0]["is_edited"]
    used = transactions_of(server, lambda: pages.append(history(api, alice, room, 20, first["next_cursor"])))
    # The last page: its Synapse page, and the empty one that says the room starts there (as a
    # Matrix client's last /messages call).
    assert used.get(PAGINATE) == 2, used
    assert [m["id"] for m in pages[1]["results"]] == ids[::-1][20:] and pages[1]["next_cursor"] is None


def test_walking_past_trailing_edits_gives_every_message_once(api: Api, edited: tuple[User, str, list[str]]) -> None:
    alice, room, ids = edited
    for limit in (1, 7, 30, 31):
        assert [m["id"] for m in walk(api, alice, room, limit)] == ids[::-1], limit


def test_more_trailing_edits_than_a_reads_window_still_fill_the_page(api: Api, server: SynapseServer) -> None:
    """A Synapse read looks 8 depth levels back per event asked for (a bounded scan in any
    room): 40 trailing edits fill a 2-message page's first window, and the page is read past it."""
    alice = api.register()
    room = shared_room(api, alice)
    ids = [send_text(api, alice["access_token"], room, f"obs {i}") for i in range(5)]
    for n in range(40):
        edit(api, alice, room, ids[-1], f"obs 4 v{n}")
    pages: list[dict[str, Any]] = []
    used = transactions_of(server, lambda: pages.append(history(api, alice, room, 2)))
    assert [m["id"] for m in pages[0]["results"]] == ids[::-1][:2] and pages[0]["next_cursor"]
    assert pages[0]["results"][0]["content"] == "obs 4 v39"
    assert used.get(PAGINATE) == 2, used  # the window of edits, then the window that holds the page
    assert [m["id"] for m in walk(api, alice, room, 2)] == ids[::-1]


def test_a_pages_reactions_are_kept_until_the_room_moves(api: Api, server: SynapseServer) -> None:
    """A page's reactions are read once while the room has no new event; a reaction, and the
    redaction of one, show on the next read."""
    alice, bob, carol = api.register(), api.register(), api.register()
    room = shared_room(api, alice, bob, carol)
    message = send_text(api, alice["access_token"], room, "handover at 7")

    def reactions() -> list[dict[str, Any]]:
        return history(api, bob, room, 5)["results"][0]["reactions"]

    assert reactions() == []
    used = transactions_of(server, reactions)
    assert "medchat_page_reads" not in used, sorted(used.items())  # known from the first read
    thumbs = react(api, carol, room, message, "👍")
    assert reactions() == [{"key": "👍", "count": 1, "reacted_by_me": False}]
    assert "medchat_page_reads" not in transactions_of(server, reactions)
    redact(api, carol, room, thumbs)
    assert reactions() == []


def test_a_first_pages_start_is_kept_until_the_room_moves(api: Api, server: SynapseServer) -> None:
    """A first page starts where Synapse's /messages starts, the room's greatest depth, which
    Synapse reads from the database each time: it is read once while the room has no new event,
    and a new message, or an edit, shows on the next read, whoever reads."""
    alice, bob = api.register(), api.register()
    room = shared_room(api, alice, bob)
    first = send_text(api, alice["access_token"], room, "bed 4 stable")

    def newest(user: User) -> dict[str, Any]:
        return history(api, user, room, 5)["results"][0]

    assert newest(bob)["id"] == first
    used = transactions_of(server, lambda: newest(alice))
    assert "_get_max_topological_txn" not in used, sorted(used.items())
    assert PAGINATE in used, used  # the page itself is read
    second = send_text(api, bob["access_token"], room, "bed 5 needs review")
    assert newest(alice)["id"] == second
    edit(api, bob, room, second, "bed 5 reviewed")
    assert (newest(alice)["id"], newest(alice)["content"]) == (second, "bed 5 reviewed")
    assert "_get_max_topological_txn" not in transactions_of(server, lambda: newest(bob))


def test_hidden_events_between_messages_never_empty_a_page(api: Api) -> None:
    """Reactions, a redacted reaction, edits, a poll's responses, state changes and redactions
    between messages: every page is full, and every message comes once, with its reactions."""
    alice, bob = api.register(), api.register()
    room = shared_room(api, alice, bob)
    expected: list[str] = []
    reactions: dict[str, list[dict[str, Any]]] = {}
    for i in range(12):
        message = send_text(api, alice["access_token"], room, f"round {i}")
        expected.append(message)
        react(api, bob, room, message, "👍")
        gone = react(api, alice, room, message, "❤️")
        redact(api, alice, room, gone)
        edit(api, alice, room, message, f"round {i} edited")
        relation = {"rel_type": "m.reference", "event_id": message}
        send(api, bob, room, "org.matrix.msc3381.poll.response", {"m.relates_to": relation})
        topic = api.call(
            "PUT",
            f"/_matrix/client/v3/rooms/{quote(room)}/state/m.room.topic",
            token=alice["access_token"],
            json={"topic": f"topic {i}"},
        )
        assert topic.status_code == 200, topic.text
        reactions[message] = [{"key": "👍", "count": 1, "reacted_by_me": False}]
    deleted = send_text(api, bob["access_token"], room, "to be deleted")
    redact(api, bob, room, deleted)
    expected.append(deleted)
    for limit in (1, 4, 5, 13, 50):
        found = walk(api, alice, room, limit)
        assert [m["id"] for m in found] == expected[::-1], limit
    found = walk(api, alice, room, 5)
    assert found[0]["is_deleted"] and found[0]["content"] is None
    for model in found[1:]:
        assert model["reactions"] == reactions[model["id"]], model
        assert model["content"].endswith("edited") and model["is_edited"]


def read_receipt(api: Api, user: User, room: str, event_id: str) -> None:
    path = f"/_matrix/client/v3/rooms/{quote(room)}/receipt/m.read/{quote(event_id)}"
    response = api.call("POST", path, token=user["access_token"], json={})
    assert response.status_code == 200, response.text


def acknowledge(api: Api, user: User, event_id: str) -> None:
    path = f"/api/chat/messages/{quote(event_id)}/status"
    response = api.call("PUT", path, token=user["access_token"], json={"status": "delivered"})
    assert response.status_code == 200, response.text


def status_of(api: Api, user: User, event_id: str) -> str:
    response = api.call("GET", f"/api/chat/messages/{quote(event_id)}/status", token=user["access_token"])
    assert response.status_code == 200, response.text
    return str(response.json()["status"])


def test_a_senders_page_has_each_messages_own_status(api: Api) -> None:
    """Five other members, mixed read receipts and delivery marks: each message's status on the
    sender's page is what its own status endpoint says, all three statuses appearing."""
    alice = api.register()
    others = [api.register() for _ in range(5)]
    room = shared_room(api, alice, *others)
    ids = [send_text(api, alice["access_token"], room, f"m {i}") for i in range(12)]
    # Read: three members up to ids[7], one up to ids[3], one up to ids[1]; delivery marks: the
    # last two up to ids[9] and ids[7]. So ids[:2] are read, ids[2:8] delivered, the rest sent.
    for member in others[:3]:
        read_receipt(api, member, room, ids[7])
    read_receipt(api, others[3], room, ids[3])
    acknowledge(api, others[3], ids[9])
    read_receipt(api, others[4], room, ids[1])
    acknowledge(api, others[4], ids[7])
    page = {m["id"]: m["status"] for m in walk(api, alice, room, 5)}
    assert page == {event_id: status_of(api, alice, event_id) for event_id in ids}
    assert [page[i] for i in ids] == ["read"] * 2 + ["delivered"] * 6 + ["sent"] * 4, page
    # Another member's page shows the model's default for messages not theirs.
    assert {m["status"] for m in walk(api, others[0], room, 12)} == {"sent"}


def test_a_senders_page_counts_members_with_no_receipt_or_mark_by_their_last_sync(api: Api) -> None:
    """Bob has neither a receipt nor a delivery mark, only a Matrix /sync after the first three
    messages; Carol reads them all. The first three are delivered (Bob's sync returned them), the
    last two sent, on the page as on each message's status endpoint."""
    alice, bob, carol = api.register(), api.register(), api.register()
    room = shared_room(api, alice, bob, carol)
    early = [send_text(api, alice["access_token"], room, f"early {i}") for i in range(3)]
    synced = api.call("GET", "/_matrix/client/v3/sync?timeout=0", token=bob["access_token"])
    assert synced.status_code == 200, synced.text
    late = [send_text(api, alice["access_token"], room, f"late {i}") for i in range(2)]
    read_receipt(api, carol, room, late[-1])
    expected = {**dict.fromkeys(early, "delivered"), **dict.fromkeys(late, "sent")}
    deadline = time.monotonic() + 10
    while True:  # the receipt and the sync reach the status reads within moments
        page = {m["id"]: m["status"] for m in walk(api, alice, room, 5)}
        if page == expected or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert page == expected
    assert {event_id: status_of(api, alice, event_id) for event_id in expected} == expected


def test_a_senders_page_reads_no_more_with_more_members(api: Api, server: SynapseServer) -> None:
    """The statuses of a page come from one read of the room's receipts and delivery marks:
    a room of 9 costs the transactions of a room of 2."""
    used: list[float] = []
    for size in (1, 8):
        alice = api.register()
        others = [api.register() for _ in range(size)]
        room = shared_room(api, alice, *others)
        # More messages than the page: it is cut after its tenth message in one Synapse read,
        # whatever state the room's start holds.
        ids = [send_text(api, alice["access_token"], room, f"m {i}") for i in range(12)]
        for n, member in enumerate(others):
            read_receipt(api, member, room, ids[n % 10])
        history(api, alice, room, 10)  # warm Synapse's caches of the room
        page = partial(history, api, alice, room, 10)
        runs = [sum(transactions_of(server, page).values()) for _ in range(3)]
        used.append(min(runs))
    assert used[1] <= used[0], used


def test_a_senders_page_of_a_quiet_room_reads_nothing_again_yet_follows_receipts_and_marks(
    api: Api, server: SynapseServer
) -> None:
    """Positions, the room's read receipts and its delivery marks are kept between reads (the
    receipts while Synapse's receipts stream has nothing new for the room, the marks until one
    moves): a second read of the page costs no read of the module's, and a new acknowledgement,
    receipt or member shows on the next one."""
    alice, bob = api.register(), api.register()
    room = shared_room(api, alice, bob)
    ids = [send_text(api, alice["access_token"], room, f"m {i}") for i in range(3)]

    def statuses() -> list[str]:
        return [m["status"] for m in history(api, alice, room, 3)["results"]]

    assert statuses() == ["sent"] * 3
    used = transactions_of(server, statuses)
    assert not {"medchat_page_reads", "medchat_room_delivery_marks"} & set(used), sorted(used.items())
    acknowledge(api, bob, ids[1])
    assert statuses() == ["sent", "delivered", "delivered"]
    read_receipt(api, bob, room, ids[0])
    assert statuses() == ["sent", "delivered", "read"]
    read_receipt(api, bob, room, ids[2])
    assert statuses() == ["read"] * 3
    # A member who joins now has none of them yet; once they leave, all are read again.
    carol = api.register()
    for path, token in (("invite", alice), ("join", carol)):
        body = {"user_id": carol["user_id"]} if path == "invite" else {}
        joined = api.call("POST", f"/_matrix/client/v3/rooms/{room}/{path}", token=token["access_token"], json=body)
        assert joined.status_code == 200, joined.text
    assert statuses() == ["sent"] * 3
    left = api.call("POST", f"/_matrix/client/v3/rooms/{room}/leave", token=carol["access_token"], json={})
    assert left.status_code == 200, left.text
    assert statuses() == ["read"] * 3


def test_a_senders_page_reads_its_events_by_id_not_the_rooms(api: Api, server: SynapseServer) -> None:
    """The page's reactions and the sender's messages' positions are looked up by event id (and
    the receipts by room): never all the room's events by its room index, as SQLite did with the
    room in the statement (4.7 ms at 15,000 events, and growing with the room)."""
    alice, bob = api.register(), api.register()
    room = shared_room(api, alice, bob)
    ids = [send_text(api, alice["access_token"], room, f"obs {i}") for i in range(5)]
    react(api, bob, room, ids[0], "+1")
    plans = query_plans(server, sql.page_reads_txn, room, ids, ids, True)
    assert len(plans) == 2, plans  # the annotations, then the positions with the receipts
    lines = [line for plan in plans for line in plan]
    if server.database_url:
        assert not [line for line in lines if "Seq Scan" in line], lines
        events_indexes = set(re.findall(r"Index (?:Only )?Scan using (events_\w+) on events", "\n".join(lines)))
        assert events_indexes == {"events_event_id_key"}, lines
    else:
        assert not [line for line in lines if line.startswith("SCAN") and not line.startswith("SCAN (")], lines
        event_reads = [line for line in lines if re.match(r"SEARCH (events|e) ", line)]
        assert event_reads and all("(event_id=?)" in line for line in event_reads), lines
