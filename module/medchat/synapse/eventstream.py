"""The event stream a WebSocket follows: Synapse's `/events`, with a room's new events read once.

Synapse's `/events` (EventStreamHandler.get_stream → Notifier.get_events_for) reads a room's new
events from the database for each user it wakes: a message to a room of 500 open sockets is 500
identical reads, and on a 2-core machine their thread hops and GIL waits, not the SQL, are what
delays the last socket by seconds. This follows the same steps in the same order (presence kept
online, server notices, the notifier's wait, every event source, Synapse's visibility filter per
user, the presence of members who join, Synapse's serialiser) but the room source's read, which is
the same for every user in the room, goes through `_RoomReads`: one read per room and range for
every socket that asks while it runs or shortly after. What each user may see is still decided
for that user alone (their rooms, their membership changes, `filter_and_transform_events_for_client`).

The code mirrors `synapse/notifier.py` and `synapse/handlers/events.py` of the pinned Synapse
range, without the peeking and app-service branches a socket never takes; an upgrade is reviewed
against those two functions.
"""

from __future__ import annotations

from collections.abc import Collection
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from synapse.api.constants import Direction, EduTypes, EventTypes, Membership, PresenceState
from synapse.api.presence import UserPresenceState
from synapse.events import EventBase
from synapse.handlers.presence import format_user_presence_state
from synapse.notifier import EventStreamResult
from synapse.types import JsonDict, Requester, RoomStreamToken, StreamKeyType, StreamToken, UserID
from synapse.visibility import FilteredEvent, filter_and_transform_events_for_client

from medchat.util import Shared, concurrently

if TYPE_CHECKING:
    from synapse.server import HomeServer

# The sockets a message wakes read within a second or two of each other; a range read this long
# ago is read again (a redaction since then shows in the next batch anyway, as its own event).
_KEEP_MS = 2_000

_RoomRead = tuple[list[EventBase], RoomStreamToken, bool]


class _RoomReads:
    """A room's events in (from, to], read once for every caller asking the same range."""

    def __init__(self, hs: HomeServer):
        self._store = hs.get_datastores().main
        self._shared: Shared[tuple[str, RoomStreamToken, RoomStreamToken, int], _RoomRead] = Shared(
            hs.get_clock().time_msec, _KEEP_MS
        )

    async def new_events(
        self, user_id: str, room_ids: Collection[str], from_key: RoomStreamToken, limit: int
    ) -> tuple[list[EventBase], RoomStreamToken]:
        """As RoomEventSource.get_new_events: the user's membership changes and their rooms' new
        events after `from_key`, oldest first, at most `limit`, and the key after the last."""
        to_key = self._store.get_room_max_token()
        if from_key.topological:
            from_key = RoomStreamToken(stream=from_key.stream)
        changed = self._store.get_rooms_that_changed(room_ids, from_key)
        own = await self._store.get_membership_changes_for_user(user_id, from_key, to_key)
        reads: list[_RoomRead] = await concurrently(
            *[
                partial(
                    self._shared.get,
                    (room_id, from_key, to_key, limit),
                    partial(
                        self._store.paginate_room_events_by_stream_ordering,
                        room_id=room_id,
                        from_key=from_key,
                        to_key=to_key,
                        direction=Direction.FORWARDS,
                        limit=limit,
                    ),
                )
                for room_id in changed
            ]
        )
        events = [*own, *(event for found, _, _ in reads for event in found)]
        events.sort(key=lambda e: cast(int, e.internal_metadata.stream_ordering))
        del events[limit:]
        if not events:
            return events, to_key
        return events, RoomStreamToken(stream=cast(int, events[-1].internal_metadata.stream_ordering))


class EventStream:
    """`/events` for one socket's user: everything they may see after a position."""

    def __init__(self, hs: HomeServer):
        self._hs = hs
        self._store = hs.get_datastores().main
        self._notifier = hs.get_notifier()
        self._sources = hs.get_event_sources()
        self._presence = hs.get_presence_handler()
        self._serializer = hs.get_event_client_serializer()
        self._clock = hs.get_clock()
        self._room_reads = _RoomReads(hs)

    async def prepare(self, user_id: str) -> None:
        """Reads, once for a new stream, what Synapse's visibility filter reads of the user alone
        (their ignore list and admin client config; Synapse caches both): otherwise a message to
        500 sockets just opened waits on 1,000 database reads when it wakes them."""
        await filter_and_transform_events_for_client(self._hs.get_storage_controllers(), user_id, [])

    async def events_after(
        self, requester: Requester, position: str, timeout_ms: int, limit: int
    ) -> tuple[list[JsonDict], str]:
        """What EventStreamHandler.get_stream returns: (client-format events, end position).
        Raises 400 for a malformed position."""
        token = await StreamToken.from_string(self._store, position)
        user_id = requester.user.to_string()
        await self._hs.get_server_notices_sender().on_user_syncing(user_id)
        context = await self._presence.user_syncing(
            user_id, requester.device_id, affect_presence=True, presence_state=PresenceState.ONLINE
        )
        with context:
            result = await self._wait(requester.user, token, timeout_ms, limit)
            events: list[Any] = [*result.events, *await self._presence_of_joiners(user_id, result.events)]
            config = await self._serializer.create_config(as_client_event=True, requester=requester)
            chunk = await self._serializer.serialize_events(events, self._clock.time_msec(), config=config)
            return chunk, await result.end_token.to_string(self._store)

    async def _wait(self, user: UserID, from_token: StreamToken, timeout_ms: int, limit: int) -> EventStreamResult:
        """Notifier.get_events_for for a joined (not peeking) user."""
        user_id = user.to_string()
        room_ids = await self._store.get_rooms_for_user(user_id)

        async def check_for_updates(before: StreamToken, after: StreamToken) -> EventStreamResult:
            if after == before:
                return EventStreamResult([], from_token, from_token)
            events: list[JsonDict | FilteredEvent] = []
            end = from_token
            for key, source in self._sources.sources.get_sources():
                if before.get_field(key) == after.get_field(key):
                    continue
                if key == StreamKeyType.ROOM:
                    found, room_key = await self._room_reads.new_events(user_id, room_ids, from_token.room_key, limit)
                    visible = await filter_and_transform_events_for_client(
                        self._hs.get_storage_controllers(), user_id, found
                    )
                    events.extend(visible)
                    end = end.copy_and_replace(key, room_key)
                    continue
                new, new_key = await source.get_new_events(
                    user=user,
                    from_key=from_token.get_field(key),
                    limit=limit,
                    is_guest=False,
                    room_ids=room_ids,
                    explicit_room_id=None,
                )
                if key == StreamKeyType.PRESENCE:
                    now = self._clock.time_msec()
                    new = [
                        {"type": EduTypes.PRESENCE, "content": format_user_presence_state(state, now)}
                        for state in cast(list[UserPresenceState], new)
                    ]
                events.extend(new)
                end = end.copy_and_replace(key, new_key)
            return EventStreamResult(events, from_token, end)

        return await self._notifier.wait_for_events(
            user_id, timeout_ms, check_for_updates, room_ids=room_ids, from_token=from_token
        )

    async def _presence_of_joiners(self, user_id: str, events: list[JsonDict | FilteredEvent]) -> list[JsonDict]:
        """A member who joins brings their presence; the user joining brings everyone's."""
        added: list[JsonDict] = []
        now = self._clock.time_msec()
        for item in events:
            if not isinstance(item, FilteredEvent):
                continue
            event = item.event
            if event.type != EventTypes.Member or event.membership != Membership.JOIN:
                continue
            users = (
                await self._store.get_users_in_room(event.room_id) if event.state_key == user_id else [event.state_key]
            )
            states = await self._presence.get_states(users)
            added += [{"type": EduTypes.PRESENCE, "content": format_user_presence_state(s, now)} for s in states]
        return added
