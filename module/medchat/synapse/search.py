"""Ranked full-text search of one room on Synapse's own search index."""

from __future__ import annotations

import logging

from synapse.api.errors import Codes, SynapseError
from synapse.events.utils import FilteredEvent
from synapse.storage.databases.main.events_worker import EventRedactBehaviour
from synapse.types import JsonDict, Requester
from synapse.visibility import filter_and_transform_events_for_client

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


class SynapseSearch(Family):
    """One room's messages ranked by Synapse's `event_search` index, one page at a time."""

    async def search_room(
        self, requester: Requester, room_id: str, term: str, cursor: str | None, limit: int
    ) -> tuple[list[tuple[float, JsonDict]], int, str | None]:
        """Ranked full-text search over one room's messages, on Synapse's own search index.

        Synapse's /search ranks by loading up to 500 matching events, filtering and highlighting
        all of them, and cannot page a ranked search. This asks the same `event_search` index for
        one page only (keyset on rank, then stream order), leaves out edits (their originals
        carry the bundled edit), and runs Synapse's visibility filter on that page alone.
        Returns ([(rank, serialized event)], total matches, next cursor or None).
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
            for rank, event_id, stream in rows:
                if len(page) == limit:
                    next_cursor = f"{after[0]!r}:{after[1]}" if after else None
                    break
                after = (rank, stream)
                if event_id in visible:
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
