"""The reactions of a room's events, kept for as long as the room's timeline has not moved.

A reaction, and the redaction that takes one back, is an event of the room: while Synapse's room
event stream says a room has had no event since a read of its reactions, that read still holds.
So the history pages of a quiet room read their reactions once however often they are read (the
annotations query was a page's one database round trip of its own). Each worker's stream change
cache follows replication, so this holds on every worker. A purge removes events without a new
one, so nothing is kept longer than `_KEEP_MS` either.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from synapse.storage.databases.main import DataStore

# (key, sender, reaction event id), oldest first: as sql.annotations_txn reads them.
Annotations = dict[str, list[tuple[str, str, str]]]

_MAX_ROOMS = 2000
_MAX_EVENTS_PER_ROOM = 2000
_KEEP_MS = 60_000


class _Known(NamedTuple):
    as_of: int  # the room stream position the entries were read at (or after)
    read_ms: int  # when the oldest of them was read
    entries: Annotations  # event id -> its annotations ([] for none), for the events read


class AnnotationCache:
    def __init__(self, store: DataStore, now_ms: Callable[[], int]):
        self._store = store
        self._now_ms = now_ms
        self._rooms: OrderedDict[str, _Known] = OrderedDict()  # least recently used first

    def position(self) -> int:
        """Where a read that starts now is as of: every event at or before it is persisted."""
        return self._store.get_room_max_stream_ordering()

    def known(self, room_id: str, event_ids: list[str]) -> tuple[Annotations, list[str]]:
        """(the annotations known still to hold, by event id; the events not known)."""
        known = self._valid(room_id)
        if known is None:
            return {}, list(event_ids)
        found = {e: known.entries[e] for e in event_ids if e in known.entries}
        return found, [e for e in event_ids if e not in found]

    def remember(self, room_id: str, as_of: int, event_ids: list[str], found: Annotations) -> None:
        """What a read that started at `as_of` found for `event_ids` (those absent have none)."""
        read = {e: found.get(e, []) for e in event_ids}
        known = self._valid(room_id)
        if known is not None and len(known.entries) + len(read) <= _MAX_EVENTS_PER_ROOM:
            # Both reads hold now, so together they do, as of the older one's position.
            self._rooms[room_id] = _Known(min(known.as_of, as_of), known.read_ms, {**known.entries, **read})
        elif not self._changed_since(room_id, as_of):
            self._rooms[room_id] = _Known(as_of, self._now_ms(), read)
            self._rooms.move_to_end(room_id)
            if len(self._rooms) > _MAX_ROOMS:
                self._rooms.popitem(last=False)

    def _valid(self, room_id: str) -> _Known | None:
        known = self._rooms.get(room_id)
        if known is None:
            return None
        if self._now_ms() - known.read_ms > _KEEP_MS or self._changed_since(room_id, known.as_of):
            del self._rooms[room_id]
            return None
        self._rooms.move_to_end(room_id)
        return known

    def _changed_since(self, room_id: str, position: int) -> bool:
        """Whether the room may have had an event after `position` (Synapse's room event stream
        change cache: True when it cannot tell)."""
        return self._store._events_stream_cache.has_entity_changed(room_id, position)
