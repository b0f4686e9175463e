"""Message status: sent (persisted) < delivered (a device of the recipient got it) < read (a Matrix
`m.read` receipt). Read is Matrix's own, so Element and the app agree; delivered is the module's
compact per-user-per-room mark."""

from __future__ import annotations

import operator
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from itertools import accumulate
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
_MAX_STANDINGS = 2000  # (room, sender) pairs whose _Standing is kept


class RoomPeers(NamedTuple):
    """A room's joined members (Synapse's shared sequence, the sender among them), when each last
    synced (in the same order) and the room's delivery marks: with the room's read receipts, all
    the statuses of `sender`'s messages need."""

    room_id: str
    sender: str
    members: Sequence[str]
    synced: Sequence[int]
    deliveries: Mapping[str, int]


class _Standing:
    """Where the members other than a sender stand with the sender's messages, apart from their
    syncs: read by receipt; delivered by the module's mark (WebSocket or acknowledgement) or by a
    /sync that ended after the message arrived.

    `aggregates` answers `aggregate(state of every member)` without visiting the members: a
    message is read when the least advanced receipt reaches it, and delivered when every member
    whose receipt and mark fall short of it (a prefix of the members sorted by the further of the
    two) has synced since it arrived, which the earliest last sync of that prefix says.

    It depends on the members, the receipts and the marks only, each a shared read that stays the
    same object while it holds (Synapse's caches, kept.py): MessageStatus keeps one per room and
    sender while they are, so a sender's page in a room of hundreds costs two passes over the
    members' syncs (C-level maps), not a sort of the members."""

    def __init__(self, peers: RoomPeers, reads: Mapping[str, int]):
        self.inputs = (peers.members, reads, peers.deliveries)
        members, deliveries = peers.members, peers.deliveries
        others = [i for i, member in enumerate(members) if member != peers.sender]
        self._least_read = min((reads.get(members[i], -1) for i in others), default=None)
        by_mark = sorted(
            (max(reads.get(members[i], -1), deliveries.get(members[i], -1)), i)
            for i in others
            if members[i] in reads or members[i] in deliveries
        )
        self._marks = tuple(mark for mark, _ in by_mark)
        self._marked = [i for _, i in by_mark]  # indexes into the members, lowest mark first
        marked = set(self._marked)
        self._unmarked = [i for i in others if i not in marked]  # below every message: one group

    def holds(self, peers: RoomPeers, reads: Mapping[str, int]) -> bool:
        return all(map(operator.is_, self.inputs, (peers.members, reads, peers.deliveries)))

    def aggregates(self, synced: Sequence[int], positions: Mapping[str, EventPosition]) -> dict[str, str]:
        if self._least_read is None:  # nobody else in the room
            return dict.fromkeys(positions, "sent")
        # earliest[k]: the earliest last sync among the unmarked members and the k marked members
        # with the lowest marks.
        unmarked_sync = min(map(synced.__getitem__, self._unmarked), default=_NEVER)
        earliest = list(accumulate(map(synced.__getitem__, self._marked), min, initial=unmarked_sync))
        statuses = {}
        for event_id, position in positions.items():
            if self._least_read >= position.stream_ordering:
                statuses[event_id] = "read"
            else:
                short = bisect_left(self._marks, position.stream_ordering)  # members marked below it
                statuses[event_id] = "delivered" if earliest[short] > position.received_ts else "sent"
        return statuses


def _state(read: int, delivered: int, synced: int, position: EventPosition) -> str:
    """One member's state of a message at `position` (_Standing's rules for one member)."""
    if read >= position.stream_ordering:
        return "read"
    if delivered >= position.stream_ordering or synced > position.received_ts:
        return "delivered"
    return "sent"


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
        self._standings: OrderedDict[tuple[str, str], _Standing] = OrderedDict()

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
        """The members, their last syncs and the room's delivery marks: with the room's read
        receipts (sql.statuses_txn), all the statuses of `sender`'s messages need
        (`aggregates`); nothing more is read when nobody else is in the room."""
        members = await self._synapse_rooms.joined_members(room_id)
        if all(member == sender for member in members):
            return RoomPeers(room_id, sender, members, [0] * len(members), {})
        synced, deliveries = await concurrently(
            lambda: self._synapse_stream.last_sync_times(members), lambda: self._deliveries.room_marks(room_id)
        )
        return RoomPeers(room_id, sender, members, synced, deliveries)

    def aggregates(
        self, peers: RoomPeers, positions: Mapping[str, EventPosition], receipts: Mapping[str, int]
    ) -> dict[str, str]:
        """The status of each of the sender's messages (at `positions`) as the sender sees it (the
        Message model's `status`), in time proportional to the page and two C-level passes over
        the members, not to page × members (_Standing)."""
        if not positions:
            return {}
        return self._standing(peers, receipts).aggregates(peers.synced, positions)

    def _standing(self, peers: RoomPeers, receipts: Mapping[str, int]) -> _Standing:
        key = (peers.room_id, peers.sender)
        standing = self._standings.get(key)
        if standing is None or not standing.holds(peers, receipts):
            standing = self._standings[key] = _Standing(peers, receipts)
            if len(self._standings) > _MAX_STANDINGS:
                self._standings.popitem(last=False)
        self._standings.move_to_end(key)
        return standing

    async def _states(self, room_id: str, sender: str, event_ids: list[str]) -> dict[str, dict[str, str]]:
        """For each message, each other member's state (_state)."""
        (positions, receipts), peers = await concurrently(
            lambda: self._synapse_stream.status_marks(room_id, event_ids),
            lambda: self.room_peers(room_id, sender),
        )
        synced = dict(zip(peers.members, peers.synced))
        others = [member for member in peers.members if member != sender]
        return {
            event_id: {
                m: _state(receipts.get(m, -1), peers.deliveries.get(m, -1), synced.get(m, 0), position) for m in others
            }
            for event_id, position in positions.items()
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
