"""Ranked full-text search of one room on Synapse's own search index."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping

from synapse.api.errors import Codes, SynapseError
from synapse.events import EventBase
from synapse.events.utils import FilteredEvent
from synapse.storage.databases.main.events_worker import EventRedactBehaviour
from synapse.storage.databases.main.search import _parse_query_for_sqlite
from synapse.storage.engines import PostgresEngine
from synapse.types import JsonDict, Requester
from synapse.visibility import filter_and_transform_events_for_client

from medchat.models import strip_reply_fallback
from medchat.synapse import sql
from medchat.synapse._base import Family

logger = logging.getLogger(__name__)


_SEARCH_ROUNDS = 5  # extra pages fetched when Synapse's visibility filter hides hits


def _search_cursor(cursor: str | None) -> tuple[float, int] | None:
    """A search cursor is the (rank, stream ordering) of the last hit the previous page consumed."""
    if cursor is None:
        return None
    rank, _, stream = cursor.partition(":")
    try:
        return float(rank), int(stream)
    except ValueError:
        raise SynapseError(400, "Invalid field cursor: not a search cursor.", Codes.INVALID_PARAM)


def shown_text(original: EventBase, edit: EventBase | None) -> str:
    """What a message says now, as the words search should match: the applied edit's
    `m.new_content` body, or the original's body; a reply without its quoted fallback (the
    parent's words are the parent's, not the reply's)."""
    content = edit.content.get("m.new_content") if edit is not None else original.content
    body = content.get("body") if isinstance(content, Mapping) else None
    if not isinstance(body, str):
        return ""
    relation = original.content.get("m.relates_to")
    is_reply = isinstance(relation, Mapping) and isinstance(relation.get("m.in_reply_to"), Mapping)
    return strip_reply_fallback(body) if is_reply else body


def _sqlite_matches(term: str, texts: list[str]) -> set[int]:
    """Which of `texts` (by index) Synapse's SQLite index (FTS4, its default tokenizer) would
    match with `term`: an in-memory FTS4 table of the same SQLite, so the match is the index's own."""
    query = _parse_query_for_sqlite(term)[0]
    if not texts or not query:
        return set()
    db = sqlite3.connect(":memory:")
    try:
        db.execute("CREATE VIRTUAL TABLE t USING fts4(value)")
        db.executemany("INSERT INTO t (docid, value) VALUES (?, ?)", enumerate(texts))
        return {row[0] for row in db.execute("SELECT docid FROM t WHERE value MATCH ?", (query,))}
    finally:
        db.close()


class SynapseSearch(Family):
    """One room's messages ranked by Synapse's `event_search` index, one page at a time."""

    async def search_room(
        self, requester: Requester, room_id: str, term: str, cursor: str | None, limit: int
    ) -> tuple[list[tuple[float, JsonDict]], int, str | None]:
        """Ranked full-text search over one room's messages, on Synapse's own search index.

        Synapse's /search ranks by loading up to 500 matching events, filtering and highlighting
        all of them, and cannot page a ranked search. This asks the same `event_search` index for
        one page only (keyset on rank, then stream order), by what each message says now (an
        edit's hit counts for its original, a replaced text no longer matches: sql._search_sql),
        checks the hits whose shown text is not the indexed one again (an edit's new content, a
        reply without the quoted parent), and runs Synapse's visibility filter on that page alone.
        Returns ([(rank, serialized event)], total matches, next cursor or None); the total is the
        index's, before the visibility filter and the second check.
        """
        after = _search_cursor(cursor)
        user_id = requester.user.to_string()
        page: list[tuple[float, FilteredEvent]] = []
        total, next_cursor, batch = 0, None, limit + 1
        for _ in range(_SEARCH_ROUNDS):
            rows, total = await self._store.db_pool.runInteraction(
                "medchat_search_room", sql.search_txn, room_id, term, after, batch
            )
            events = await self._store.get_events_as_list(
                [r[1] for r in rows], redact_behaviour=EventRedactBehaviour.block
            )
            visible = {
                f.event.event_id: f
                for f in await filter_and_transform_events_for_client(
                    self._hs.get_storage_controllers(), user_id, events
                )
            }
            matching = await self._still_matching(term, rows, visible)
            for rank, event_id, stream, _ in rows:
                if len(page) == limit:
                    next_cursor = f"{after[0]!r}:{after[1]}" if after else None
                    break
                after = (rank, stream)
                if event_id in matching:
                    page.append((rank, visible[event_id]))
            if next_cursor or len(rows) < batch:
                break
            batch *= 4  # most of what was read was hidden: read further ahead
        else:  # more to read than these rounds took: a short page, and the client pages on
            next_cursor = f"{after[0]!r}:{after[1]}" if after else None
        aggregations = await self._hs.get_relations_handler().get_bundled_aggregations([f for _, f in page], user_id)
        serializer = self._hs.get_event_client_serializer()
        serialized = await serializer.serialize_events(
            [f for _, f in page],
            self._clock.time_msec(),
            bundle_aggregations=aggregations,
            config=await serializer.create_config(requester=requester),
        )
        return [(rank, event) for (rank, _), event in zip(page, serialized)], total, next_cursor

    async def _still_matching(
        self, term: str, rows: list[tuple[float, str, int, str]], visible: Mapping[str, FilteredEvent]
    ) -> set[str]:
        """The visible hits whose shown text (shown_text) the term matches. The index matched the
        hit's own body; where that is the shown text there is nothing to check, otherwise (an
        edit's `* new text`, a reply with its fallback) the shown text is matched again by the
        database's own rules, one statement for the page."""
        edit_ids = [hit_id for _, event_id, _, hit_id in rows if hit_id != event_id and event_id in visible]
        edits = {e.event_id: e for e in await self._store.get_events_as_list(edit_ids)}
        matching: set[str] = set()
        recheck: list[tuple[str, str]] = []
        for _, event_id, _, hit_id in rows:
            if event_id not in visible:
                continue
            original = visible[event_id].event
            edit = edits.get(hit_id) if hit_id != event_id else None
            if hit_id != event_id and edit is None:
                continue  # the edit is gone since the query ran
            text = shown_text(original, edit)
            if edit is None and text == original.content.get("body"):
                matching.add(event_id)
            else:
                recheck.append((event_id, text))
        texts = [text for _, text in recheck]
        if isinstance(self._store.database_engine, PostgresEngine):
            found = await self._store.db_pool.runInteraction(
                "medchat_search_recheck", sql.texts_matching_txn, term, texts
            )
        else:
            found = _sqlite_matches(term, texts)
        return matching | {recheck[i][0] for i in found}
