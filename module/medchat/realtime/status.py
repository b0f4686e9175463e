"""Message status: sent (persisted) < delivered (a device of the recipient got it) < read (a Matrix
`m.read` receipt). Read is Matrix's own, so Element and the app agree; delivered is the module's
compact per-user-per-room mark."""

from __future__ import annotations

from collections.abc import Callable

from medchat import errors
from medchat.models import JsonDict
from medchat.store.realtime import DeliveryStore
from medchat.synapse import EventPosition, SynapseEvents, SynapseRooms, SynapseServer, SynapseStream
from medchat.util import concurrently

STATUSES = ("sent", "delivered", "read")
ACKABLE = ("delivered", "read")


def aggregate(states: list[str]) -> str:
    """The status of a message as its sender sees it: the least advanced recipient's state."""
    return min(states, key=STATUSES.index) if states else "sent"


DeliveryListener = Callable[[str, list[tuple[str, str, str]]], None]


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

    async def aggregates(self, sender: str, room_id: str, event_ids: list[str]) -> dict[str, str]:
        """The status of each of `sender`'s messages as the sender sees it (the Message model's
        `status`), in a few queries for a whole page."""
        if not event_ids:
            return {}
        states = await self._states(room_id, sender, event_ids)
        return {event_id: aggregate(list(by_member.values())) for event_id, by_member in states.items()}

    async def _states(self, room_id: str, sender: str, event_ids: list[str]) -> dict[str, dict[str, str]]:
        """For each message, each other member's state: read by receipt; delivered by the
        module's mark (WebSocket or acknowledgement) or by a /sync that ended after it arrived."""
        positions, joined, reads, deliveries = await concurrently(
            lambda: self._synapse_events.stream_orderings(event_ids),
            lambda: self._synapse_rooms.joined_members(room_id),
            lambda: self._synapse_stream.read_positions(room_id),
            lambda: self._deliveries.positions(room_id),
        )
        members = [m for m in joined if m != sender]
        synced = await self._synapse_stream.last_sync_ts(members)

        def state(member: str, position: EventPosition) -> str:
            if reads.get(member, -1) >= position.stream_ordering:
                return "read"
            if deliveries.get(member, -1) >= position.stream_ordering or synced.get(member, 0) > position.received_ts:
                return "delivered"
            return "sent"

        return {event_id: {m: state(m, position) for m in members} for event_id, position in positions.items()}

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
