"""Message status: sent (persisted) < delivered (a device of the recipient got it) < read (a Matrix
`m.read` receipt). Read is Matrix's own, so Element and the app agree; delivered is the module's
compact per-user-per-room mark."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Mapping
from itertools import accumulate, repeat
from typing import NamedTuple

from medchat import errors
from medchat.models import JsonDict
from medchat.store.realtime import DeliveryStore
from medchat.synapse import EventPosition, SynapseEvents, SynapseRooms, SynapseServer, SynapseStream
from medchat.util import concurrently

STATUSES = ("sent", "delivered", "read")
ACKABLE = ("delivered", "read")
_NEVER = 2**63  # the earliest last sync of no member: later than any message arrived


def aggregate(states: list[str]) -> str:
    """The status of a message as its sender sees it: the least advanced recipient's state."""
    return min(states, key=STATUSES.index) if states else "sent"


DeliveryListener = Callable[[str, list[tuple[str, str, str]]], None]


class RoomPeers(NamedTuple):
    """A room's members other than a sender, their last syncs and the room's delivery marks."""

    members: list[str]
    synced: Mapping[str, int]
    deliveries: Mapping[str, int]


class _Marks:
    """What the other members of a room have of the sender's messages: read by receipt; delivered
    by the module's mark (WebSocket or acknowledgement) or by a /sync that ended after the message
    arrived.

    `aggregate` answers `aggregate(state(m) for every member m)` without visiting the members: a
    message is read when the least advanced receipt reaches it, and delivered when every member
    whose receipt and mark fall short of it (a prefix of the members sorted by the further of the
    two) has synced since it arrived, which the earliest last sync of that prefix says."""

    def __init__(
        self, members: list[str], reads: Mapping[str, int], deliveries: Mapping[str, int], synced: Mapping[str, int]
    ):
        self.members = members
        self._reads = reads
        self._deliveries = deliveries
        self._synced = synced
        # Set operations, map and zip over the members rather than a Python loop, and only the
        # members with a receipt or a mark sorted: a sender's page in a room of hundreds builds
        # one of these per read, and most members of a big room have neither.
        self._least_read = min(map(reads.get, members, repeat(-1)), default=None)
        present = set(members)
        marked = list((reads.keys() | deliveries.keys()) & present)
        # The members with neither come first in mark order (below every message): one group.
        unmarked_sync = min(map(synced.get, present.difference(marked), repeat(0)), default=_NEVER)
        by_mark = sorted(
            zip(
                map(max, map(reads.get, marked, repeat(-1)), map(deliveries.get, marked, repeat(-1))),
                map(synced.get, marked, repeat(0)),
            )
        )
        marks, syncs = zip(*by_mark) if by_mark else ((), ())
        self._marks: tuple[int, ...] = marks
        # _earliest_sync[k]: the earliest last sync among the unmarked members and the k marked
        # members with the lowest marks.
        self._earliest_sync = list(accumulate(syncs, min, initial=unmarked_sync))

    def state(self, member: str, position: EventPosition) -> str:
        if self._reads.get(member, -1) >= position.stream_ordering:
            return "read"
        if (
            self._deliveries.get(member, -1) >= position.stream_ordering
            or self._synced.get(member, 0) > position.received_ts
        ):
            return "delivered"
        return "sent"

    def aggregate(self, position: EventPosition) -> str:
        if self._least_read is None:  # nobody else in the room
            return "sent"
        if self._least_read >= position.stream_ordering:
            return "read"
        short = bisect_left(self._marks, position.stream_ordering)  # members with mark < the message
        return "delivered" if self._earliest_sync[short] > position.received_ts else "sent"


class MessageStatus:
    def __init__(
        self,
        synapse_server: SynapseServer,
        synapse_rooms: SynapseRooms,
        synapse_events: SynapseEvents,
        synapse_stream: SynapseStream,
        deliveries: DeliveryStore,
    ):
        self._synapse_server = synapse_server
        self._synapse_rooms = synapse_rooms
        self._synapse_events = synapse_events
        self._synapse_stream = synapse_stream
        self._deliveries = deliveries
        self._listeners: list[DeliveryListener] = []

    def on_delivered(self, listener: DeliveryListener) -> None:
        """`listener(recipient, [(message_id, room_id, sender)])` after each recorded delivery."""
        self._listeners.append(listener)

    async def _visible(self, user_id: str, event_id: str) -> tuple[str, str]:
        """(room_id, sender) of a message the user may see; 404 otherwise."""
        event = await self._synapse_events.visible_event(user_id, event_id)
        if event is None or not await self._synapse_rooms.is_joined(event.room_id, user_id):
            raise errors.not_found("No such message in a room you are in.")
        return event.room_id, event.sender

    async def of(self, viewer: str, event_id: str) -> JsonDict:
        room_id, sender = await self._visible(viewer, event_id)
        states = await self._states(room_id, sender, [event_id])
        participants = [{"user_id": member, "status": state} for member, state in sorted(states[event_id].items())]
        return {
            "message_id": event_id,
            "room_id": room_id,
            "sender": sender,
            "status": aggregate([p["status"] for p in participants]),
            "participants": participants,
        }

    async def room_peers(self, room_id: str, sender: str) -> RoomPeers:
        """The other members, their last syncs and the room's delivery marks: with the room's
        read receipts (sql.statuses_txn), all the statuses of `sender`'s messages need
        (`aggregates`); nothing is read when nobody else is in the room."""
        members = [m for m in await self._synapse_rooms.joined_members(room_id) if m != sender]
        if not members:
            return RoomPeers([], {}, {})
        synced, deliveries = await concurrently(
            lambda: self._synapse_stream.last_sync_ts(members), lambda: self._deliveries.room_marks(room_id)
        )
        return RoomPeers(members, synced, deliveries)

    @staticmethod
    def aggregates(
        peers: RoomPeers, positions: dict[str, EventPosition], receipts: Mapping[str, int]
    ) -> dict[str, str]:
        """The status of each of the sender's messages (at `positions`) as the sender sees it (the
        Message model's `status`), in time proportional to the page (with one pass over the
        members), not to page × members (_Marks)."""
        summary = _Marks(peers.members, receipts, peers.deliveries, peers.synced)
        return {event_id: summary.aggregate(position) for event_id, position in positions.items()}

    async def _states(self, room_id: str, sender: str, event_ids: list[str]) -> dict[str, dict[str, str]]:
        """For each message, each other member's state (_Marks.state)."""
        (positions, receipts), peers = await concurrently(
            lambda: self._synapse_stream.status_marks(room_id, event_ids),
            lambda: self.room_peers(room_id, sender),
        )
        summary = _Marks(peers.members, receipts, peers.deliveries, peers.synced)
        return {
            event_id: {m: summary.state(m, position) for m in peers.members} for event_id, position in positions.items()
        }

    async def acknowledge(self, user_id: str, event_id: str, status: str) -> None:
        """The app says this device has the message (`delivered`) or the user saw it (`read`)."""
        if status not in ACKABLE:
            raise errors.invalid_param(f"Invalid field status: use one of {', '.join(ACKABLE)}")
        room_id, sender = await self._visible(user_id, event_id)
        if status == "read":
            await self._synapse_stream.send_read_receipt(user_id, room_id, event_id)
        else:
            await self.delivered(user_id, [(event_id, room_id, sender)])

    async def mark_all_read(self, user_id: str, room_id: str) -> str | None:
        """Moves the read receipt and the fully-read marker to the room's newest event."""
        if not await self._synapse_rooms.is_joined(room_id, user_id):
            raise errors.not_found("No such room, or you are not in it.")
        latest = await self._synapse_rooms.latest_event_id(room_id)
        if latest is not None:
            await self._synapse_stream.send_read_receipt(user_id, room_id, latest)
            await self._synapse_stream.set_fully_read(user_id, room_id, latest)
        return latest

    async def delivered(self, user_id: str, messages: list[tuple[str, str, str]]) -> None:
        """Records that a device of `user_id` has these (message_id, room_id, sender) messages."""
        await self.delivered_many([(user_id, messages)])

    async def delivered_many(self, deliveries: list[tuple[str, list[tuple[str, str, str]]]]) -> None:
        """`delivered` for many recipients in two queries (the WebSocket fan-out's batch)."""
        positions = await self._synapse_events.stream_orderings(list({m[0] for _, ms in deliveries for m in ms}))
        marks: dict[tuple[str, str], int] = {}
        for user_id, messages in deliveries:
            for message_id, _, _ in messages:
                if message_id in positions:
                    room_id, ordering, _ = positions[message_id]
                    marks[(user_id, room_id)] = max(ordering, marks.get((user_id, room_id), ordering))
        if marks:
            await self._deliveries.advance_many(marks, self._synapse_server.now_ms())
        for user_id, messages in deliveries:
            for listener in self._listeners:
                listener(user_id, messages)
