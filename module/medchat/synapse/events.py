"""Events: send, redact, history pages, single events, reactions, positions."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from synapse.api.constants import Direction, EventTypes
from synapse.api.errors import AuthError, Codes, NotFoundError, SynapseError
from synapse.api.filtering import Filter
from synapse.events import EventBase
from synapse.events.utils import FilteredEvent, SerializeEventConfig
from synapse.handlers.pagination import GetMessagesResult
from synapse.module_api import ModuleApi
from synapse.rest.client.room import SerializeMessagesDeps, encode_messages_response
from synapse.streams.config import PaginationConfig
from synapse.types import JsonDict, Requester, RoomStreamToken, StreamKeyType, StreamToken, UserID
from synapse.visibility import filter_and_transform_events_for_client

from medchat.synapse import sql
from medchat.synapse._base import Family
from medchat.synapse.kept import RoomKept
from medchat.util import concurrently

if TYPE_CHECKING:
    from synapse.server import HomeServer

logger = logging.getLogger(__name__)

# The largest stream position the database holds (a signed 64-bit integer).
_MAX_POSITION = 2**63 - 1
# A history read looks this many depth levels back per event asked for (_window_bound): room for
# a few hundred hidden events (trailing edits) in one read, and a bounded scan in any room.
_WINDOW_LEVELS = 8


class EventPosition(NamedTuple):
    room_id: str
    stream_ordering: int
    received_ts: int


# event_id -> [(key, sender, reaction event id)] of its live annotations, oldest first.
Annotations = dict[str, list[tuple[str, str, str]]]


class PageReads(NamedTuple):
    """What a history page adds to its events (SynapseEvents.page_reads)."""

    annotations: Annotations  # as SynapseEvents.annotations
    positions: dict[str, EventPosition]  # of the viewer's own messages
    receipts: dict[str, int]  # the room's read receipts (sql.statuses_txn), if any own


class Span(NamedTuple):
    """What one Synapse page gave a history page (SynapseEvents.history_span)."""

    kept: list[JsonDict]  # the page's kept events, newest first, at most the number wanted
    token: str | None  # where the next read starts: after the last kept event if `more`, else the page's end
    more: bool  # the page held a kept event beyond those wanted
    read: int  # events the page held
    side: Any  # what the caller's `side` read returned for the page's events


def _window_bound(start: StreamToken, size: int) -> StreamToken | None:
    """Where a history read of `size` events back from `start` stops looking: `_WINDOW_LEVELS`
    × size depth levels back (every level of a room's timeline holds an event), or None near
    the room's start or for a token without a depth.

    Synapse's query for a relation filter (MSC3874) LEFT JOINs `event_relations`, and PostgreSQL,
    estimating that almost no row survives the join's filter, then sorts the whole room instead
    of walking its index back from `start`: a page cost grew with the room once the server
    had edits or reactions anywhere. With a lower bound the scan is of the window only."""
    top = start.room_key.topological
    if top is None or top <= _WINDOW_LEVELS * size:
        return None
    return start.copy_and_replace(
        StreamKeyType.ROOM, RoomStreamToken(topological=top - _WINDOW_LEVELS * size, stream=0)
    )


class SynapseEvents(Family):
    """Events sent, read and serialised by Synapse's own handlers, exactly as for a Matrix client."""

    def __init__(self, api: ModuleApi, hs: HomeServer):
        super().__init__(api, hs)
        now_ms, store = self._clock.time_msec, self._store
        # kept.py: reactions and the room's depth while the room has no new event, receipts while
        # its receipts stream has none, and where events sit (which never changes).
        self._annotations: RoomKept[list[tuple[str, str, str]]] = RoomKept(
            store.get_room_max_stream_ordering, store._events_stream_cache.has_entity_changed, now_ms
        )
        self._receipts: RoomKept[dict[str, int]] = RoomKept(
            lambda: store.get_max_receipt_stream_id().stream, store._receipts_stream_cache.has_entity_changed, now_ms
        )
        self._positions: RoomKept[EventPosition] = RoomKept(lambda: 0, lambda room_id, position: False, now_ms)
        self._depths: RoomKept[int] = RoomKept(
            store.get_room_max_stream_ordering, store._events_stream_cache.has_entity_changed, now_ms
        )

    async def send_event(
        self, requester: Requester, event: JsonDict, txn_id: str | None = None, ratelimit: bool = True
    ) -> EventBase:
        """Sends a non-member event as the requester's device.

        `txn_id` is Synapse's per-device transaction id, the one a native
        PUT /rooms/{id}/send/{type}/{txnId} uses: a repeat returns the first event. `ratelimit`
        False is for the server acting on its own schedule (expiry), never for a user's request.
        """
        event = {**event, "sender": requester.user.to_string()}
        sent, _ = await self._hs.get_event_creation_handler().create_and_send_nonmember_event(
            requester, event, txn_id=txn_id, ratelimit=ratelimit
        )
        return sent

    async def redact(
        self, requester: Requester, room_id: str, event_id: str, reason: str | None = None, ratelimit: bool = True
    ) -> EventBase:
        """A redaction in the shape the room version wants (v11+: `redacts` inside content)."""
        room_version = await self._store.get_room_version(room_id)
        content: JsonDict = {"reason": reason} if reason else {}
        event: JsonDict = {"type": EventTypes.Redaction, "room_id": room_id, "content": content}
        if room_version.updated_redaction_rules:
            content["redacts"] = event_id
        else:
            event["redacts"] = event_id
        return await self.send_event(requester, event, ratelimit=ratelimit)

    async def _token(self, from_token: str | None) -> StreamToken | None:
        """A client's pagination token; 400 M_INVALID_PARAM if it is not one."""
        invalid = SynapseError(400, "Invalid field cursor: not a pagination token of this room.", Codes.INVALID_PARAM)
        # Synapse parses positions of any size, which the database then cannot compare (a 500).
        if from_token and any(int(n) > _MAX_POSITION for n in re.findall(r"\d+", from_token)):
            raise invalid
        try:
            return await StreamToken.from_string(self._store, from_token) if from_token else None
        except SynapseError:
            raise invalid

    async def messages_page(
        self,
        requester: Requester,
        room_id: str,
        from_token: str | None,
        limit: int,
        types: list[str] | None = None,
        not_types: list[str] | None = None,
    ) -> JsonDict:
        """One page of /rooms/{id}/messages (newest first), as Synapse serialises it for clients:
        of `types` if given, without `not_types`.

        Visibility rules and bundled edits (`unsigned.m.relations.m.replace`) come from Synapse.
        Raises 400 M_INVALID_PARAM for a malformed token.
        """
        filter_json: JsonDict = {"not_types": not_types or []}
        if types is not None:
            filter_json["types"] = types
        token = await self._token(from_token) or await self._newest_token(room_id)
        result = await self._get_messages(requester, room_id, token, limit, Filter(self._hs, filter_json))
        return await encode_messages_response(
            get_messages_result=result,
            serialize_options=await self._serializer_config(requester),
            serialize_deps=SerializeMessagesDeps(
                clock=self._clock, event_serializer=self._hs.get_event_client_serializer(), store=self._store
            ),
        )

    async def history_span(
        self,
        requester: Requester,
        room_id: str,
        from_token: str | None,
        size: int,
        wanted: int,
        keep: Callable[[JsonDict], bool],
        not_types: list[str],
        not_rel_types: list[str],
        side: Callable[[list[EventBase]], Awaitable[Any]],
    ) -> Span:
        """One Synapse /messages page of `size` events back from `from_token`, without `not_types`
        and without events whose relation is one of `not_rel_types` (both in Synapse's own query,
        so edits and reactions cost no page), serialised for clients; of it, up to `wanted` events
        that `keep` accepts. It looks back no further than `_window_bound`; a window that holds
        no event Synapse keeps gives an empty span whose token resumes below the window.

        When the page holds more kept events than wanted, the token returned resumes right after
        the last one kept: Synapse's backwards token after an event is its (topological, stream
        - 1) position (storage.databases.main.stream.generate_next_token), made here from the
        event Synapse returned rather than by reading the span again. Raises 400 M_INVALID_PARAM
        for a malformed token.

        `side` gets the page's events (all of them, kept or not) as soon as Synapse has read them:
        what it reads of the database (the page's reactions, senders, statuses) runs while the
        page is serialised here, and its result comes back as the span's `side`.
        """
        event_filter = Filter(self._hs, {"not_types": not_types})
        # MSC3874's relation filter, which Synapse's pagination query and its event check both
        # apply; its filter JSON is honoured only with `msc3874_enabled`, so it is set directly.
        event_filter.not_rel_types = not_rel_types
        start = await self._token(from_token) or await self._newest_token(room_id)
        bound = _window_bound(start, size)
        result = await self._get_messages(requester, room_id, start, size, event_filter, bound)
        if bound is not None and result.end_token is None:  # the window held no kept event
            return Span([], await bound.to_string(self._store), False, 0, await side([]))
        # Synapse 1.162 lists the events themselves, later ones wrap them (FilteredEvent).
        chunk_items: list[Any] = list(result.messages_chunk)
        events: list[EventBase] = [getattr(e, "event", e) for e in chunk_items]
        extra, chunk = await concurrently(
            lambda: side(events),
            lambda: self._serialized_page(requester, result),
        )
        end = await result.end_token.to_string(self._store) if result.end_token is not None else None
        kept = [i for i, event in enumerate(chunk) if keep(event)]
        if len(kept) <= wanted:
            return Span([chunk[i] for i in kept], end, False, len(chunk), extra)
        if wanted == 0:
            return Span([], from_token, True, len(chunk), extra)
        event = events[kept[wanted - 1]]
        ordering = event.internal_metadata.stream_ordering
        assert ordering is not None  # a persisted event's
        after = RoomStreamToken(topological=event.depth, stream=ordering - 1)
        token = result.start_token.copy_and_replace(StreamKeyType.ROOM, after)
        return Span([chunk[i] for i in kept[:wanted]], await token.to_string(self._store), True, len(chunk), extra)

    async def _newest_token(self, room_id: str) -> StreamToken:
        """Synapse's pagination token for the room's newest position (what /messages starts from
        without `from`): the room's greatest depth and the current stream position. Synapse reads
        the depth from the database on every call (`_get_max_topological_txn`, a history page's
        one round trip of its own); only a new event of the room changes it, so it is kept while
        the room has none (kept.py)."""
        stream = self._store.get_room_max_stream_ordering()
        known, _ = self._depths.known(room_id, [room_id])
        if room_id in known:
            key = RoomStreamToken(topological=known[room_id], stream=stream)
        else:
            key = await self._store.get_current_room_stream_token_for_room_id(room_id)
            assert key.topological is not None  # a historic token, with the room's depth
            self._depths.remember(room_id, stream, {room_id: key.topological})
        return StreamToken.START.copy_and_replace(StreamKeyType.ROOM, key)

    async def _serialized_page(self, requester: Requester, result: GetMessagesResult) -> list[JsonDict]:
        """The page as Synapse serialises it, with of its bundled aggregations only what a Message
        model reads: an event's latest edit, as its id, sender, time and content. Synapse's whole
        serialisation of the edits, threads and references doubled a page's serialising."""
        serializer = self._hs.get_event_client_serializer()
        chunk = await serializer.serialize_events(
            result.messages_chunk, self._clock.time_msec(), config=await self._serializer_config(requester)
        )
        aggregations = result.bundled_aggregations
        for event in chunk:
            bundled = aggregations.get(event["event_id"])
            edit = bundled.replace if bundled is not None else None
            if edit is not None:
                event.setdefault("unsigned", {})["m.relations"] = {
                    "m.replace": {
                        "event_id": edit.event_id,
                        "sender": edit.sender,
                        "type": edit.type,
                        "origin_server_ts": edit.origin_server_ts,
                        "content": edit.content,  # read by key: its parts become dicts when read
                    }
                }
        return chunk

    async def _get_messages(
        self,
        requester: Requester,
        room_id: str,
        from_token: StreamToken | None,
        limit: int,
        event_filter: Filter,
        to_token: StreamToken | None = None,
    ) -> GetMessagesResult:
        config = PaginationConfig(from_token=from_token, to_token=to_token, direction=Direction.BACKWARDS, limit=limit)
        pagination = self._hs.get_pagination_handler()
        try:
            return await pagination.get_messages(requester, room_id, config, event_filter=event_filter)
        except KeyError:
            # A retention purge removed the page's events (and their state) while Synapse read
            # them; read again, without them (Synapse's own /messages answers 500 here).
            return await pagination.get_messages(requester, room_id, config, event_filter=event_filter)

    async def _serializer_config(self, requester: Requester) -> SerializeEventConfig:
        return await self._hs.get_event_client_serializer().create_config(requester=requester)

    async def relations(
        self,
        requester: Requester,
        room_id: str,
        event_id: str,
        relation_type: str,
        limit: int,
        from_token: str | None = None,
        forwards: bool = False,
    ) -> JsonDict:
        """One page of /relations/{event_id}/{relation_type} (`chunk`, `next_batch`), as Synapse
        serves it to clients (visibility and bundled edits included); newest first unless
        `forwards`. The caller has checked that the event is one of the room's, visible to them."""
        config = PaginationConfig(
            from_token=await self._token(from_token),
            to_token=None,
            direction=Direction.FORWARDS if forwards else Direction.BACKWARDS,
            limit=limit,
        )
        return await self._hs.get_relations_handler().get_relations(
            requester,
            event_id,
            room_id,
            config,
            recurse=False,
            include_original_event=False,
            relation_type=relation_type,
        )

    async def event_json(self, requester: Requester, room_id: str, event_id: str) -> JsonDict | None:
        """One event as the requester may see it (with its bundled edit), or None."""
        try:
            event = await self._hs.get_event_handler().get_event(requester.user, room_id, event_id)
        except (AuthError, NotFoundError):
            return None
        if event is None:
            return None
        return (await self._serialized(requester, [event]))[0]

    async def joined_events_json(self, requester: Requester, event_ids: list[str]) -> dict[str, JsonDict]:
        """event_id -> the event as the requester sees it (bundled edit included), of those they may
        see, for events of rooms the requester has joined (a room list's last messages): one
        look-up, one visibility check and one serialisation for all of them, whatever the rooms."""
        if not event_ids:
            return {}
        events = await self._store.get_events_as_list(event_ids)
        visible = await filter_and_transform_events_for_client(
            self._hs.get_storage_controllers(), requester.user.to_string(), events
        )
        return {event["event_id"]: event for event in await self._serialized(requester, visible)}

    async def _serialized(self, requester: Requester, events: list[FilteredEvent]) -> list[JsonDict]:
        """Events as Synapse serves them to this requester, with their bundled aggregations."""
        if not events:
            return []
        aggregations = await self._hs.get_relations_handler().get_bundled_aggregations(
            events, requester.user.to_string()
        )
        serializer = self._hs.get_event_client_serializer()
        return await serializer.serialize_events(
            events,
            self._clock.time_msec(),
            bundle_aggregations=aggregations,
            config=await serializer.create_config(requester=requester),
        )

    async def annotations(self, room_id: str, event_ids: list[str]) -> Annotations:
        """event_id -> [(key, sender, reaction_event_id)] of its live `m.reaction` annotations.

        Synapse no longer bundles annotation counts, so they are read from its relations table,
        or known from an earlier read while the room has had no event since (AnnotationCache).
        """
        return (await self.page_reads(room_id, event_ids, [])).annotations

    async def page_reads(self, room_id: str, event_ids: list[str], own_ids: list[str]) -> PageReads:
        """The annotations of a page's events and, for the viewer's own among them, their
        positions and the room's read receipts: what is not known already (kept.py) in one
        transaction, so none for a page of a quiet room."""
        annotations, unknown = self._annotations.known(room_id, event_ids)
        positions, unplaced = self._positions.known(room_id, own_ids)
        kept_receipts = self._receipts.known(room_id, [room_id])[0] if own_ids else {}
        receipts = kept_receipts.get(room_id, {})
        with_receipts = bool(own_ids) and room_id not in kept_receipts
        if not unknown and not unplaced and not with_receipts:
            return PageReads(annotations, positions, receipts)
        events_at, receipts_at = self._annotations.position(), self._receipts.position()
        found, rows, read = await self.api.run_db_interaction(
            "medchat_page_reads", sql.page_reads_txn, room_id, unknown, unplaced, with_receipts
        )
        self._annotations.remember(room_id, events_at, {e: found.get(e, []) for e in unknown})
        placed = {e: EventPosition(*row) for e, row in rows.items()}
        self._positions.remember(room_id, 0, placed)
        if with_receipts:
            receipts = read
            self._receipts.remember(room_id, receipts_at, {room_id: read})
        return PageReads({**annotations, **found}, {**positions, **placed}, receipts)

    async def visible_event(self, user_id: str, event_id: str) -> EventBase | None:
        """The event if it exists and `user_id` may see it, by the rules of
        `/rooms/{room}/event/{id}` (membership, history visibility, erasure)."""
        try:
            found = await self._hs.get_event_handler().get_event(UserID.from_string(user_id), None, event_id)
        except AuthError:
            return None
        return found.event if found is not None else None

    async def events(self, event_ids: list[str]) -> dict[str, EventBase]:
        return await self._store.get_events(event_ids)

    async def stream_orderings(self, event_ids: list[str]) -> dict[str, EventPosition]:
        """Where persisted events sit: room, stream ordering, and when this server received them."""
        if not event_ids:
            return {}
        rows = await self.api.run_db_interaction("medchat_stream_orderings", sql.stream_orderings_txn, event_ids)
        return {event_id: EventPosition(*row) for event_id, row in rows.items()}
