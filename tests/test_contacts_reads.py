"""The read paths of issue 18 item 3: contacts `?q=` filtered in the query that pages the list (so
a search costs the page, not the address book), and the notification list's paging."""

from __future__ import annotations

import re
import secrets
import time
from typing import Any
from urllib.parse import quote

from harness import SERVER_NAME, Api, SynapseServer, execute_db, send_text, shared_room
from test_contacts import C, befriend, path
from test_metrics import metrics


def matches(needle: str, texts: tuple[str | None, ...]) -> bool:
    """The documented rule, as the list applied it before it moved into SQL: the case-folded
    needle is part of the nickname, the display name or the username, case-folded."""
    return any(needle.casefold() in (text or "").casefold() for text in texts)


def walk(api: Api, user: dict[str, Any], query: str, limit: int, start: str | None = None) -> list[str]:
    """Every contact id of the filtered list (after `start`), page by page."""
    seen: list[str] = []
    cursor = "" if start is None else f"&cursor={quote(start)}"
    while True:
        response = api.call("GET", f"{C}?limit={limit}{query}{cursor}", token=user["access_token"])
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["results"]) <= limit
        seen += [c["id"] for c in page["results"]]
        if page["next_cursor"] is None:
            return seen
        assert len(page["results"]) == limit
        cursor = f"&cursor={quote(page['next_cursor'])}"


def test_q_matches_names_nicknames_and_usernames_across_pages(api: Api) -> None:
    tag = secrets.token_hex(3)
    me = api.register()
    people = [
        # (registration fields, nickname)
        ({"username": f"mueller_{tag}", "full_name": "Jürgen MÜLLER"}, None),
        ({"username": f"strauss_{tag}", "full_name": "Anna Straße"}, "Chef"),
        ({"username": f"quill_{tag}", "full_name": "Dr. Zed Quill"}, "Night shift"),
        ({"username": f"night_{tag}", "full_name": "Ola Nordmann"}, None),
        ({"username": f"oz_{tag}", "full_name": "Özlem Kaya"}, "ÄRZTIN vom Dienst"),
        ({"username": f"plain_{tag}", "full_name": "Pat Plain"}, "mittag"),
        ({"username": f"pct_{tag}", "full_name": "100% Sure_Thing"}, None),
    ]
    rows: dict[str, tuple[str | None, ...]] = {}
    for fields, nickname in people:
        other = api.register(**fields)
        befriend(api, me, other)
        if nickname is not None:
            response = api.call("PUT", path(other["user_id"]), token=me["access_token"], json={"nickname": nickname})
            assert response.status_code == 200, response.text
        rows[other["user_id"]] = (nickname, fields["full_name"], fields["username"])
    for q in (
        "müller",  # display name, upper-case non-ASCII letters folded
        "MÜLLER",
        "strasse",  # ß folds to ss
        "STRASSE",
        "zed q",
        "NIGHT",  # a nickname and a username
        "ärztin",  # nickname with non-ASCII case folded
        "özlem",
        "tag",  # nickname "mittag" and every username (tag is in all of them)
        tag.upper(),
        "%",  # SQL wildcards are text
        "_",
        "e_t",
        "mercy",  # institutions are not searched
        "zzz",
    ):
        expected = sorted(uid for uid, texts in rows.items() if matches(q, texts))
        for limit in (1, 2, 50):
            assert walk(api, me, f"&q={quote(q)}", limit) == expected, (q, limit)
    # q with the other filters and a cursor that is not a match itself.
    favorite = next(uid for uid, texts in rows.items() if texts[0] == "Chef")
    assert api.call("POST", path(favorite, "/favorite"), token=me["access_token"]).status_code == 200
    assert walk(api, me, f"&q={tag}&favorite=true", 1) == [favorite]
    assert walk(api, me, f"&q={tag}&favorite=false", 2) == sorted(set(rows) - {favorite})
    first = min(rows)
    after = sorted(uid for uid, texts in rows.items() if matches("night", texts) and uid > first)
    assert walk(api, me, "&q=night", 1, start=first) == after


def _statements(server: SynapseServer) -> tuple[float, float]:
    """(the module's transactions, all SELECT statements) the server has run so far, from its own
    metrics (transactions by name: `medchat_*` are the module's, so Synapse's background work does
    not count; statements have no name, so they do)."""
    text = metrics(server)
    txns = re.findall(
        r'^synapse_storage_transaction_time_count(?:_total)?\{.*desc="medchat_[^"]*".*\} (\S+)$', text, re.M
    )
    selects = re.findall(r'^synapse_storage_query_time_count\{.*verb="SELECT".*\} (\S+)$', text, re.M)
    return sum(map(float, txns)), sum(map(float, selects))


def _costs(api: Api, server: SynapseServer, users: list[dict[str, Any]], query: str) -> list[tuple[float, float]]:
    """Per user, the fewest (module transactions, SELECTs) of five identical requests, taken in
    turns: the server's background work (its user directory, presence, client IPs) only adds."""
    costs: list[list[tuple[float, float]]] = [[] for _ in users]
    for _ in range(5):
        for user, seen in zip(users, costs):
            before = _statements(server)
            response = api.call("GET", f"{C}{query}", token=user["access_token"])
            assert response.status_code == 200, response.text
            after = _statements(server)
            seen.append((after[0] - before[0], after[1] - before[1]))
    return [min(seen) for seen in costs]


def test_a_search_reads_the_page_not_the_whole_list(api: Api, server: SynapseServer) -> None:
    """A `?q=` page costs the same database work with 3 contacts as with 2,500: the same module
    transactions, and SELECTs within the noise of Synapse's background work (the names of the
    whole list were read in batches of 500 before, 5 more statements here; now only the page's)."""
    tag = secrets.token_hex(3)
    small, large = api.register(), api.register()
    friends = [api.register(username=f"findme_{tag}_{i}") for i in range(3)]
    for owner in (small, large):
        for friend in friends:
            befriend(api, owner, friend)
    # The module's own table only: 2,500 more contacts of `large` (ids no account has).
    execute_db(
        server,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2500)"
        " INSERT INTO medchat_contacts (owner_id, contact_id, nickname, is_favorite, created_ts, updated_ts)"
        " SELECT ?, '@ghost' || i || ':' || ?, 'Nick ' || i, ?, 0, 0 FROM n",
        (large["user_id"], SERVER_NAME, False),
    )
    query = f"?q=findme_{tag}&limit=2"
    assert walk(api, large, f"&q=findme_{tag}", 2) == sorted(f["user_id"] for f in friends)
    time.sleep(2)  # the user directory takes in the new accounts in the background
    (large_txns, large_selects), (small_txns, small_selects) = _costs(api, server, [large, small], query)
    assert large_txns == small_txns
    assert large_selects - small_selects <= 2, (large_selects, small_selects)
    # Non-ASCII texts are confirmed in Python; a list full of them still pages right.
    execute_db(
        server,
        "UPDATE medchat_contacts SET nickname = 'Nächt ' || contact_id WHERE owner_id = ? AND contact_id LIKE ?",
        (large["user_id"], "@ghost%"),
    )
    assert walk(api, large, f"&q=findme_{tag}", 2) == sorted(f["user_id"] for f in friends)
    assert len(walk(api, large, "&q=N%C3%84CHT", 100)) == 2500


# --- notifications -----------------------------------------------------------------------------


def test_notification_pages_join_up(api: Api) -> None:
    """Pages of any size, followed by their cursors, give the one-page list: newest first, each
    notification once, Matrix and module kinds merged, dismissed ones and read ones as before."""
    bob, alice = api.register(), api.register()
    room = shared_room(api, alice, bob)
    sent = [send_text(api, alice["access_token"], room, f"{bob['username']} hello {i}") for i in range(7)]
    asker = api.register()
    response = api.call("POST", C, token=asker["access_token"], json={"user_id": bob["user_id"], "message": "hi"})
    assert response.status_code == 202, response.text
    sent += [send_text(api, alice["access_token"], room, f"{bob['username']} later {i}") for i in range(3)]
    token = bob["access_token"]
    assert api.call("DELETE", f"/api/chat/notifications/{quote(sent[2])}", token=token).status_code == 200

    def listing(query: str, limit: int) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        cursor = ""
        while True:
            response = api.call("GET", f"/api/chat/notifications?limit={limit}{query}{cursor}", token=token)
            assert response.status_code == 200, response.text
            body = response.json()
            seen += body["results"]
            if body["next_cursor"] is None:
                return seen
            cursor = f"&cursor={quote(body['next_cursor'])}"

    whole = listing("", 100)
    ids = [n["id"] for n in whole]
    messages = [n["id"] for n in whole if n["type"] == "new_message"]
    assert messages == sent[::-1][:-3] + sent[::-1][-2:]  # the dismissed one left out
    assert [n["type"] for n in whole].count("group_invite") == 1  # the (answered) invitation to the room
    assert [n["type"] for n in whole].count("contact_request") == 1
    assert len(ids) == len(set(ids)) == len(sent) + 1
    assert [n["created_at"] for n in whole] == sorted((n["created_at"] for n in whole), reverse=True)
    for limit in (1, 2, 3, 4):
        assert listing("", limit) == whole, limit
    assert api.call("PUT", f"/api/chat/notifications/{quote(sent[5])}/read", token=token).status_code == 200
    unread = listing("&unread=true", 100)
    for limit in (1, 3):
        assert listing("&unread=true", limit) == unread, limit
    assert [n["id"] for n in unread if n["id"].startswith("$")] == sent[::-1][:4]
