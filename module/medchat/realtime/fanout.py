"""What one event costs once, however many sockets receive it.

Every socket reads Synapse's event stream for its own user (so Synapse decides, per user, what
they may see), and so N sockets in a room each wake for a new message. What the app then adds to
the event is the same for all of them but for a few per-viewer fields, so it is read once and
shared by every socket that asks within `_KEEP_MS`:

- a message's REST model (sender card, reactions), with `reacted_by_me` made for the viewer;
  the sender's own sockets (delivery `status`, `client_msg_id`) and polls (the viewer's own
  votes) get the model read for that viewer, as `GET …/messages/{id}` would;
- whom Synapse's push rules notified about an event (one read for all its recipients);
- the delivery marks of the recipients, written together (DeliveryBatch).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from synapse.module_api import ModuleApi

from medchat import messagekinds as kinds
from medchat.handlers.messages import Messages
from medchat.handlers.rooms import Rooms
from medchat.models import JsonDict, chat_message
from medchat.realtime.status import MessageStatus
from medchat.synapse import SynapseEvents, SynapseServer, SynapseStream
from medchat.synapse._base import requester_for
from medchat.util import Shared, concurrently

# Sockets of one room wake within a second or so of each other (each reads its own stream); what
# was read for the first serves the rest. Kept briefly, so a later reaction is not missed for long
# (and a reaction after the message is its own `reaction.added` frame anyway).
_KEEP_MS = 5_000
# Delivery marks collected this long are written in one transaction.
_DELIVERY_BATCH_MS = 50


@dataclass(frozen=True)
class _SharedModel:
    sender: JsonDict
    reactions: list[tuple[str, str, str]]
    model: JsonDict  # as a viewer who reacted to nothing sees it


class FanOut:
    def __init__(
        self,
        synapse_server: SynapseServer,
        synapse_events: SynapseEvents,
        synapse_stream: SynapseStream,
        rooms: Rooms,
        messages: Messages,
    ):
        self._synapse_events = synapse_events
        self._synapse_stream = synapse_stream
        self._rooms = rooms
        self._messages = messages
        self._models: Shared[str, _SharedModel] = Shared(synapse_server.now_ms, _KEEP_MS)
        self._notified: Shared[str, set[str]] = Shared(synapse_server.now_ms, _KEEP_MS)

    async def message_models(self, viewer: str, events: list[JsonDict]) -> dict[str, JsonDict]:
        """The viewer's Message model (by event id) of each new message in a stream batch."""
        models = await concurrently(*[partial(self._model_for, viewer, event) for event in events])
        return {model["id"]: model for model in models}

    async def _model_for(self, viewer: str, event: JsonDict) -> JsonDict:
        if event["sender"] == viewer or event.get("type") in kinds.POLL_START:
            return await self._messages.model(requester_for(viewer), event["room_id"], event)
        shared = await self._models.get(event["event_id"], partial(self._shared_model, event))
        if any(reactor == viewer for _, reactor, _ in shared.reactions):
            return chat_message(event, shared.sender, shared.reactions, viewer)
        return shared.model

    async def _shared_model(self, event: JsonDict) -> _SharedModel:
        sender, reactions = await concurrently(
            lambda: self._rooms.senders(event["room_id"], {event["sender"]}),
            lambda: self._synapse_events.annotations(event["room_id"], [event["event_id"]]),
        )
        found = reactions.get(event["event_id"], [])
        card = sender[event["sender"]]
        # No viewer: nobody's reaction is "mine", and `status` stays the non-sender's "sent".
        return _SharedModel(card, found, chat_message(event, card, found, ""))

    async def notified(self, viewer: str, events: list[JsonDict]) -> set[str]:
        """Which of these events (from others) Synapse's push rules notified the viewer about."""
        from_others = [e for e in events if "event_id" in e and "room_id" in e and e.get("sender") != viewer]
        users = await concurrently(
            *[
                partial(
                    self._notified.get,
                    e["event_id"],
                    partial(self._synapse_stream.notified_users, e["room_id"], e["event_id"]),
                )
                for e in from_others
            ]
        )
        return {e["event_id"] for e, notified in zip(from_others, users) if viewer in notified}


class DeliveryBatch:
    """Delivery marks of the sockets that received a message, collected for `_DELIVERY_BATCH_MS`
    and recorded in one go (MessageStatus.delivered_many) instead of a write per recipient. Runs in
    a background process of its own: a client that disconnects right after its frame must not
    undo its delivery."""

    def __init__(self, api: ModuleApi, status: MessageStatus):
        self._api = api
        self._status = status
        self._pending: list[tuple[str, list[tuple[str, str, str]]]] = []

    def add(self, user_id: str, messages: list[tuple[str, str, str]]) -> None:
        if not self._pending:
            self._api.delayed_background_call(_DELIVERY_BATCH_MS, self._flush, desc="medchat_record_delivery")
        self._pending.append((user_id, messages))

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if batch:
            await self._status.delivered_many(batch)
