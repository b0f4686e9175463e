"""Reads of a room kept for as long as a Synapse stream says the room has not changed since.

A reaction, and the redaction that takes one back, is an event of the room; a read receipt is a
row of the receipts stream. While Synapse's stream change cache for the room event stream (or the
receipts stream) says a room has had nothing new since a read, that read still holds: so the
history pages of a quiet room read their reactions and receipts once however often they are read
(they were a page's one database round trip of its own). Each worker's stream change caches follow
replication, so this holds on every worker. A purge removes events without a new one, so nothing
is kept longer than `_KEEP_MS` either.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Generic, NamedTuple, TypeVar

V = TypeVar("V")

_MAX_ROOMS = 2000
_MAX_ENTRIES_PER_ROOM = 2000
_KEEP_MS = 60_000


class _Known(NamedTuple, Generic[V]):
    as_of: int  # the stream position the entries were read at (or after)
    read_ms: int  # when the oldest of them was read
    entries: dict[str, V]


class RoomKept(Generic[V]):
    """Entries (by key: an event id, or the room itself) read of rooms, each room's valid until
    `changed_since(room, as_of)`: True when its stream may have moved for the room."""

    def __init__(
        self, position: Callable[[], int], changed_since: Callable[[str, int], bool], now_ms: Callable[[], int]
    ):
        self._position = position
        self._changed_since = changed_since
        self._now_ms = now_ms
        self._rooms: OrderedDict[str, _Known[V]] = OrderedDict()  # least recently used first

    def position(self) -> int:
        """Where a read that starts now is as of: everything at or before it is persisted."""
        return self._position()

    def known(self, room_id: str, keys: Iterable[str]) -> tuple[dict[str, V], list[str]]:
        """(the entries known still to hold, by key; the keys not known)."""
        known = self._valid(room_id)
        entries = known.entries if known is not None else {}
        found = {k: entries[k] for k in keys if k in entries}
        return found, [k for k in keys if k not in found]

    def remember(self, room_id: str, as_of: int, entries: dict[str, V]) -> None:
        """What a read that started at `as_of` found."""
        if not entries:
            return
        known = self._valid(room_id)
        if known is not None and len(known.entries) + len(entries) <= _MAX_ENTRIES_PER_ROOM:
            # Both reads hold now, so together they do, as of the older one's position.
            self._rooms[room_id] = _Known(min(known.as_of, as_of), known.read_ms, {**known.entries, **entries})
        elif not self._changed_since(room_id, as_of):
            self._rooms[room_id] = _Known(as_of, self._now_ms(), entries)
            self._rooms.move_to_end(room_id)
            if len(self._rooms) > _MAX_ROOMS:
                self._rooms.popitem(last=False)

    def _valid(self, room_id: str) -> _Known[V] | None:
        known = self._rooms.get(room_id)
        if known is None:
            return None
        if self._now_ms() - known.read_ms > _KEEP_MS or self._changed_since(room_id, known.as_of):
            del self._rooms[room_id]
            return None
        self._rooms.move_to_end(room_id)
        return known
