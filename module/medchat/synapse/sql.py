"""Every SQL statement MedChat runs on Synapse's own tables, in one file.

Synapse's schema is not an API: a Synapse upgrade is reviewed here (and in upload_guard.py). Each
function is a transaction body for `run_db_interaction`, so callers choose the transaction name.
All are reads but one: `forget_erased_user_txn`, the GDPR erasure's removal of what Synapse's own
deactivation leaves behind.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

from synapse.api.constants import EventTypes, ReceiptTypes, RelationTypes
from synapse.storage.database import LoggingTransaction, make_in_list_sql_clause
from synapse.storage.databases.main.search import _parse_query_for_sqlite
from synapse.storage.engines import BaseDatabaseEngine, PostgresEngine

# Ids per statement: well under SQLite's bound-parameter limit.
_BATCH = 500


def in_list(
    engine: BaseDatabaseEngine, column: str, values: Collection[Any], negative: bool = False
) -> tuple[str, list[Any]]:
    """Synapse's `make_in_list_sql_clause` (`= ANY(?)` on PostgreSQL, so one statement plan for
    any number of values), for the module's own tables too; an empty list matches no row (every
    row when negative)."""
    if not values:
        return ("1 = 1" if negative else "1 = 0"), []
    clause, args = make_in_list_sql_clause(engine, column, list(values), negative=negative)
    return clause, list(args)


def is_postgres(engine: BaseDatabaseEngine) -> bool:
    return isinstance(engine, PostgresEngine)


def _batches(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), _BATCH):
        yield items[start : start + _BATCH]


def directory_profiles_txn(txn: LoggingTransaction, user_ids: list[str]) -> dict[str, tuple[str | None, str | None]]:
    """(display name, avatar) of each user in Synapse's `user_directory` (local users and the remote
    users who share a room with a local one; others are missing)."""
    found: dict[str, tuple[str | None, str | None]] = {}
    for batch in _batches(user_ids):
        clause, args = make_in_list_sql_clause(txn.database_engine, "user_id", batch)
        txn.execute(f"SELECT user_id, display_name, avatar_url FROM user_directory WHERE {clause}", args)
        found.update({user_id: (name, avatar) for user_id, name, avatar in txn.fetchall()})
    return found


def annotations_txn(txn: LoggingTransaction, event_ids: list[str]) -> dict[str, list[tuple[str, str, str]]]:
    """event_id -> [(key, sender, reaction_event_id)] of its live `m.reaction` annotations, oldest
    first (a redacted reaction has already been removed from `event_relations`)."""
    found: dict[str, list[tuple[str, str, str]]] = {}
    for batch in _batches(event_ids):
        clause, args = make_in_list_sql_clause(txn.database_engine, "r.relates_to_id", batch)
        txn.execute(
            "SELECT r.relates_to_id, r.aggregation_key, e.sender, e.event_id FROM event_relations AS r"
            " JOIN events AS e ON e.event_id = r.event_id"
            f" WHERE {clause} AND r.relation_type = ? AND e.type = ? ORDER BY e.stream_ordering",
            (*args, RelationTypes.ANNOTATION, EventTypes.Reaction),
        )
        for target, key, sender, reaction_id in txn.fetchall():
            found.setdefault(target, []).append((key, sender, reaction_id))
    return found


def stream_orderings_txn(txn: LoggingTransaction, event_ids: list[str]) -> dict[str, tuple[str, int, int]]:
    """event_id -> (room_id, stream_ordering, received_ts) of persisted events."""
    found: dict[str, tuple[str, int, int]] = {}
    for batch in _batches(event_ids):
        clause, args = make_in_list_sql_clause(txn.database_engine, "event_id", batch)
        txn.execute(f"SELECT event_id, room_id, stream_ordering, received_ts FROM events WHERE {clause}", args)
        found.update({event_id: (room_id, ordering, ts) for event_id, room_id, ordering, ts in txn.fetchall()})
    return found


def notified_events_txn(txn: LoggingTransaction, user_id: str, event_ids: list[str]) -> set[str]:
    """Which of these events Synapse's push rules notified the user about."""
    found: set[str] = set()
    for batch in _batches(event_ids):
        clause, args = make_in_list_sql_clause(txn.database_engine, "event_id", batch)
        txn.execute(
            f"SELECT event_id FROM event_push_actions WHERE user_id = ? AND notif = 1 AND {clause}", (user_id, *args)
        )
        found.update(row[0] for row in txn.fetchall())
    return found


def notified_users_txn(txn: LoggingTransaction, room_id: str, event_id: str) -> set[str]:
    """Whom Synapse's push rules notified about this event, by the push actions' unique index
    (room, event, user); they are written in the event's own persist transaction, so they are
    there once the event is in the stream."""
    txn.execute(
        "SELECT user_id FROM event_push_actions WHERE room_id = ? AND event_id = ? AND notif = 1", (room_id, event_id)
    )
    return {row[0] for row in txn.fetchall()}


def _search_sql(postgres: bool) -> str:
    """The ranked hits of a room search as a message reads now, with their total:
    (rank, event_id, stream_ordering, hit_id, total), `hit_id` being the indexed event that matched.

    Synapse indexes each event's own `content.body`: an original's first text (with a reply's
    quoted fallback) and an edit's `* new text`. So a hit on an original counts only while no
    edit has replaced it, and a hit on an edit counts for its original (by the original's stream
    ordering, so each message appears once) only if it is the edit Synapse applies (the latest of
    the sender's, relations.get_applicable_edits). Deletions Synapse has confirmed are left out,
    of the hit and of the original; one still to be rechecked is left to the visibility filter.
    Every step is an index lookup by event id (`event_relations` by event and by target).
    """
    if postgres:
        matches = """
            SELECT ts_rank_cd(vector, q)::float8 AS rank, event_id, stream_ordering
            FROM event_search, websearch_to_tsquery('english', ?) q
            WHERE vector @@ q AND room_id = ? AND key = 'content.body'
        """
    else:
        # matchinfo() must stay in a plain query over the FTS table: no join, no window.
        matches = """
            SELECT m.rank, m.event_id, e.stream_ordering FROM (
                SELECT rank(matchinfo(event_search)) AS rank, event_id FROM event_search
                WHERE value MATCH ? AND room_id = ? AND key = 'content.body'
            ) AS m JOIN events e ON e.event_id = m.event_id
        """
    confirmed_deletion = "SELECT 1 FROM redactions d WHERE d.redacts = {} AND NOT d.recheck"
    # CROSS JOIN: SQLite then reads the relations first (by target), never the room's events;
    # PostgreSQL plans it as the inner join it is. Events are compared by room as `room_id || ''`,
    # which no index serves: a planner that takes the tables for near-empty (before they are first
    # analysed) would otherwise read the room's events by its room index once per match, all of
    # them each time (1.1M rows, 2.8 s, at 3,000 matches), instead of each event by its id.
    same_room = "{}.room_id || '' = {}.room_id || ''"
    applied_edit = f"""SELECT 1 FROM event_relations a CROSS JOIN events ae
        WHERE ae.event_id = a.event_id AND a.relates_to_id = {{original}}.event_id AND a.relation_type = ?
        AND ae.sender = {{original}}.sender AND ae.type = {{original}}.type
        AND {same_room.format("ae", "{original}")}"""
    originals = f"""
        SELECT m.rank, m.event_id, m.stream_ordering, m.event_id AS hit_id
        FROM matches m JOIN events o ON o.event_id = m.event_id
        WHERE NOT EXISTS (SELECT 1 FROM event_relations r WHERE r.event_id = m.event_id AND r.relation_type = ?)
        AND NOT EXISTS ({applied_edit.format(original="o")})
        AND NOT EXISTS ({confirmed_deletion.format("m.event_id")})
    """
    edits = f"""
        SELECT m.rank, o.event_id, o.stream_ordering, m.event_id AS hit_id
        FROM matches m
        JOIN event_relations r ON r.event_id = m.event_id AND r.relation_type = ?
        JOIN events e ON e.event_id = m.event_id
        JOIN events o ON o.event_id = r.relates_to_id AND o.sender = e.sender AND o.type = e.type
            AND {same_room.format("o", "e")}
        WHERE NOT EXISTS ({applied_edit.format(original="o")} AND (ae.origin_server_ts > e.origin_server_ts
            OR (ae.origin_server_ts = e.origin_server_ts AND ae.event_id > e.event_id)))
        AND NOT EXISTS (SELECT 1 FROM event_relations oe WHERE oe.event_id = o.event_id AND oe.relation_type = ?)
        AND NOT EXISTS ({confirmed_deletion.format("m.event_id")})
        AND NOT EXISTS ({confirmed_deletion.format("o.event_id")})
    """
    return f"""
        WITH matches AS ({matches})
        SELECT rank, event_id, stream_ordering, hit_id, count(*) OVER () AS total
        FROM ({originals} UNION ALL {edits}) AS hits
    """


# The bound values of _search_sql after the query and the room: the relation type of each `?`.
_SEARCH_RELATIONS = (RelationTypes.REPLACE,) * 5


def search_txn(
    txn: LoggingTransaction, room_id: str, term: str, after: tuple[float, int] | None, limit: int
) -> tuple[list[tuple[float, str, int, str]], int]:
    """One page of ranked matches in a room (_search_sql: by what each message says now), after
    the `after` (rank, stream ordering) keyset position: [(rank, event_id, stream_ordering,
    hit_id)] and the total number of matches."""
    postgres = isinstance(txn.database_engine, PostgresEngine)
    if postgres:
        # Until autoanalyze has run on them, PostgreSQL takes event_search and event_relations
        # for near-empty, and plans the anti-joins below as nested loops that seq-scan
        # event_relations once per match: 6.8M comparisons, 3 s, for 17k matches under
        # bench-messages (0.24 s with the index). Index lookups are right at any size (as
        # Synapse does for its push actions); with seq scans priced out a plan's estimate may
        # then pass jit_above_cost, and JIT compiling costs more than one page ever does.
        txn.execute("SET LOCAL enable_seqscan = off")
        txn.execute("SET LOCAL jit = off")
        query = term
    else:
        query = _parse_query_for_sqlite(term)[0]
        if not query:
            return [], 0
    hits = _search_sql(postgres)
    base_args = (query, room_id, *_SEARCH_RELATIONS)
    sql = f"SELECT rank, event_id, stream_ordering, hit_id, total FROM ({hits}) AS hits"
    args: list[Any] = list(base_args)
    if after is not None:
        sql += " WHERE rank < ? OR (rank = ? AND stream_ordering < ?)"
        args += [after[0], after[0], after[1]]
    txn.execute(sql + " ORDER BY rank DESC, stream_ordering DESC LIMIT ?", (*args, limit))
    rows = txn.fetchall()
    if rows:
        return [(float(r[0]), r[1], int(r[2]), r[3]) for r in rows], int(rows[0][4])
    if after is None:
        return [], 0
    txn.execute(f"SELECT count(*) FROM ({hits}) AS hits", base_args)
    (total,) = txn.fetchone() or (0,)
    return [], int(total)


def texts_matching_txn(txn: LoggingTransaction, term: str, texts: list[str]) -> set[int]:
    """Which of `texts` (by index) PostgreSQL's search would match with `term`, as it matches
    `event_search` (the English configuration, websearch syntax): for the text a message shows
    where it differs from the text Synapse indexed (search.py). Reads no table."""
    if not texts:
        return set()
    txn.execute(
        "SELECT t.i - 1 FROM unnest(?::text[]) WITH ORDINALITY AS t(body, i), websearch_to_tsquery('english', ?) q"
        " WHERE to_tsvector('english', t.body) @@ q",
        (texts, term),
    )
    return {int(row[0]) for row in txn.fetchall()}


def forget_erased_user_txn(txn: LoggingTransaction, user_id: str, addresses: list[str]) -> None:
    """What Synapse's deactivation with erasure keeps of a person outside the room history:

    - `deleted_pushers`, the replication log of removed pushers, whose `pushkey` of an e-mail
      pusher is the address (Synapse never prunes it). A pusher worker that has not yet caught up
      keeps the removed pusher until it restarts; it has nothing to send, as the user left every room;
    - pending e-mail validation sessions (password-reset links) of the person's addresses.
    """
    txn.execute("DELETE FROM deleted_pushers WHERE user_id = ?", (user_id,))
    for batch in _batches(addresses):
        clause, args = make_in_list_sql_clause(txn.database_engine, "address", batch)
        sessions = f"SELECT session_id FROM threepid_validation_session WHERE medium = 'email' AND {clause}"
        txn.execute(f"DELETE FROM threepid_validation_token WHERE session_id IN ({sessions})", args)
        txn.execute(f"DELETE FROM threepid_validation_session WHERE medium = 'email' AND {clause}", args)


def statuses_txn(
    txn: LoggingTransaction, room_id: str, event_ids: list[str], with_receipts: bool = True
) -> tuple[dict[str, tuple[str, int, int]], dict[str, int]]:
    """What the statuses of a sender's messages of one room are computed from (with the delivery
    marks, DeliveryStore.room_marks), in one statement: each message's (room_id, stream_ordering,
    received_ts) and, `with_receipts`, each member's public read receipt in the room (as the
    stream ordering it points at). The messages are a page's (at most a few hundred), read by
    their ids alone and kept if in the room: with the room in the statement, SQLite reads all the
    room's events by its room index instead (4.7 ms at 15,000 events and growing; 0.03 ms by id)."""
    parts: list[str] = []
    args: list[Any] = []
    if event_ids:
        clause, in_args = make_in_list_sql_clause(txn.database_engine, "event_id", event_ids)
        parts.append(f"SELECT 'e', event_id, stream_ordering, received_ts, room_id FROM events WHERE {clause}")
        args += in_args
    if with_receipts:
        parts.append(
            "SELECT 'r', user_id, MAX(event_stream_ordering), 0, '' FROM receipts_linearized"
            " WHERE room_id = ? AND receipt_type = ? AND event_stream_ordering IS NOT NULL GROUP BY user_id"
        )
        args += [room_id, ReceiptTypes.READ]
    positions: dict[str, tuple[str, int, int]] = {}
    reads: dict[str, int] = {}
    if not parts:
        return positions, reads
    txn.execute(" UNION ALL ".join(parts), args)
    for kind, key, ordering, received_ts, in_room in txn.fetchall():
        if kind == "r":
            reads[key] = ordering
        elif in_room == room_id:
            positions[key] = (room_id, ordering, received_ts)
    return positions, reads


def page_reads_txn(
    txn: LoggingTransaction, room_id: str, annotation_ids: list[str], position_ids: list[str], with_receipts: bool
) -> tuple[dict[str, list[tuple[str, str, str]]], dict[str, tuple[str, int, int]], dict[str, int]]:
    """What a history page adds to its events, in one transaction: `annotations_txn` of some of
    them and `statuses_txn` of the viewer's own among them (what is not known already)."""
    return annotations_txn(txn, annotation_ids), *statuses_txn(txn, room_id, position_ids, with_receipts)


def directory_name_join(user_id_column: str) -> tuple[str, str]:
    """A LEFT JOIN of Synapse's `user_directory` (by its unique index on user_id) onto a module
    query's user id column, and the display-name column it adds: the names `directory_profiles_txn`
    reads, filtered in the query that pages a module table (contacts `?q=`)."""
    return f" LEFT JOIN user_directory ud ON ud.user_id = {user_id_column}", "ud.display_name"


def undismissed_push_actions_txn(
    txn: LoggingTransaction, user_id: str, before: int | None, limit: int
) -> list[tuple[str, str, int, bool, int]]:
    """Synapse's `get_push_actions_for_user` (what its push rules notified the user about, newest
    first, older than the stream ordering `before`) less the ones the user dismissed in the module
    (`medchat_dismissed_notifications`), in one statement: (event_id, room_id, stream_ordering,
    highlight, received_ts). Each dismissal is looked up by its primary key."""
    sql = (
        "SELECT epa.event_id, epa.room_id, epa.stream_ordering, epa.highlight, e.received_ts"
        " FROM event_push_actions epa JOIN events e ON e.event_id = epa.event_id"
        " WHERE epa.user_id = ? AND epa.notif = 1"
    )
    args: list[Any] = [user_id]
    if before is not None:
        sql += " AND epa.stream_ordering < ?"
        args.append(before)
    sql += (
        " AND NOT EXISTS (SELECT 1 FROM medchat_dismissed_notifications d"
        " WHERE d.user_id = epa.user_id AND d.notification_id = epa.event_id)"
        " ORDER BY epa.stream_ordering DESC LIMIT ?"
    )
    txn.execute(sql, (*args, limit))
    return [
        (event_id, room, ordering, bool(highlight), ts) for event_id, room, ordering, highlight, ts in txn.fetchall()
    ]


# The memberships that make someone a room's participant (a knock is a pending request to join).
_PARTICIPATING = ("join", "invite", "knock")
# Relations that make an event an act on another one (an edit, a reaction, a poll answer).
_ACTING_RELATIONS = (RelationTypes.REPLACE, RelationTypes.ANNOTATION, RelationTypes.REFERENCE)
_MEMBERS_SQL = (
    "SELECT c.state_key, c.membership, m.display_name, m.avatar_url FROM current_state_events AS c"
    " JOIN room_memberships AS m ON m.event_id = c.event_id"
    " WHERE c.room_id = ? AND c.type = ? AND {participating}"
)


def _participating(txn: LoggingTransaction) -> tuple[str, list[Any]]:
    return make_in_list_sql_clause(txn.database_engine, "c.membership", _PARTICIPATING)


def _participant_count(txn: LoggingTransaction, room_id: str) -> int:
    clause, args = _participating(txn)
    txn.execute(
        f"SELECT COUNT(*) FROM current_state_events AS c WHERE c.room_id = ? AND c.type = ? AND {clause}",
        (room_id, EventTypes.Member, *args),
    )
    row = txn.fetchone()
    return int(row[0]) if row else 0


def member_summaries_txn(
    txn: LoggingTransaction, room_ids: list[str], user_id: str, limit: int
) -> dict[str, tuple[int, list[tuple[str, str, str | None, str | None]]]]:
    """room_id -> (participants counted, the first `limit` of them): each (user_id, membership,
    display name, avatar) from the current member events, the others by user id and `user_id`
    last, as sliding sync's heroes (so a direct chat's other person is always there)."""
    clause, args = _participating(txn)
    found = {}
    for room_id in room_ids:
        txn.execute(
            _MEMBERS_SQL.format(participating=clause) + " ORDER BY CASE WHEN c.state_key = ? THEN 1 ELSE 0 END,"
            " c.state_key LIMIT ?",
            (room_id, EventTypes.Member, *args, user_id, limit),
        )
        rows = [(u, m, name, avatar) for u, m, name, avatar in txn.fetchall()]
        found[room_id] = (_participant_count(txn, room_id), rows)
    return found


def members_page_txn(
    txn: LoggingTransaction, room_id: str, offset: int, limit: int
) -> tuple[int, list[tuple[str, str, str | None, str | None]]]:
    """(participants counted, one page of them by user id), as `member_summaries_txn` gives them."""
    clause, args = _participating(txn)
    txn.execute(
        _MEMBERS_SQL.format(participating=clause) + " ORDER BY c.state_key LIMIT ? OFFSET ?",
        (room_id, EventTypes.Member, *args, limit, offset),
    )
    rows = [(u, m, name, avatar) for u, m, name, avatar in txn.fetchall()]
    return _participant_count(txn, room_id), rows


def latest_events_txn(
    txn: LoggingTransaction, room_ids: list[str], types: list[str]
) -> dict[str, tuple[int | None, str | None]]:
    """room_id -> (when its newest event was sent, its newest timeline event of `types` that acts
    on no other event: not an edit, reaction or poll answer), in /messages order; each room's two
    index walks (Synapse's `get_last_event_pos_in_room` is the first)."""
    type_clause, type_args = make_in_list_sql_clause(txn.database_engine, "e.type", types)
    relation_clause, relation_args = make_in_list_sql_clause(txn.database_engine, "r.relation_type", _ACTING_RELATIONS)
    found: dict[str, tuple[int | None, str | None]] = {}
    for room_id in room_ids:
        txn.execute(
            "SELECT origin_server_ts FROM events WHERE room_id = ? AND NOT outlier ORDER BY stream_ordering DESC LIMIT 1",
            (room_id,),
        )
        last = txn.fetchone()
        txn.execute(
            "SELECT e.event_id FROM events AS e"
            f" WHERE e.room_id = ? AND {type_clause} AND e.state_key IS NULL AND NOT e.outlier"
            " AND NOT EXISTS (SELECT 1 FROM rejections AS j WHERE j.event_id = e.event_id)"
            " AND NOT EXISTS (SELECT 1 FROM event_relations AS r"
            f" WHERE r.event_id = e.event_id AND {relation_clause})"
            " ORDER BY e.topological_ordering DESC, e.stream_ordering DESC LIMIT 1",
            (room_id, *type_args, *relation_args),
        )
        shown = txn.fetchone()
        found[room_id] = (last[0] if last else None, shown[0] if shown else None)
    return found
