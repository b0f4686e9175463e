"""What happens after: the event stream, receipts and read markers, presence, push actions, unread counts."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from synapse.api.constants import ReceiptTypes
from synapse.module_api import ModuleApi
from synapse.types import Requester, UserID

from medchat.synapse import sql
from medchat.synapse._base import Family
from medchat.synapse.events import EventPosition
from medchat.synapse.eventstream import EventStream

if TYPE_CHECKING:
    from synapse.server import HomeServer

_LAST_SYNC = attrgetter("last_user_sync_ts")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PushAction:
    """A notification Synapse's push rules decided on (the fields of its UserPushAction the list uses)."""

    event_id: str
    room_id: str
    stream_ordering: int
    highlight: bool
    received_ts: int


class SynapseStream(Family):
    """Synapse's event stream, receipts, presence and push-rule results."""

    def __init__(self, api: ModuleApi, hs: HomeServer):
        super().__init__(api, hs)
        self._events = EventStream(hs)

    async def stream_position(self) -> str:
        """The current position of the user-visible event stream, as a resumable string."""
        return await self._hs.get_event_sources().get_current_token().to_string(self._store)

    async def prepare_stream(self, user_id: str) -> None:
        """Before a user's stream first waits: what each wake would otherwise read of them alone."""
        await self._events.prepare(user_id)

    async def events_after(
        self, requester: Requester, position: str, timeout_ms: int, limit: int
    ) -> tuple[list[dict[str, Any]], str]:
        """Everything the user may see after `position` (room events, receipts, typing, presence),
        waiting up to `timeout_ms` for something to happen: Synapse's own `/events` stream, with
        a room's new events read once for all the sockets it wakes (eventstream.py).

        Returns the client-format events and the position after them. Raises 400 for a malformed
        position. Keeps the user's presence online while called, as a syncing client does.
        """
        return await self._events.events_after(requester, position, timeout_ms, limit)

    async def status_marks(self, room_id: str, event_ids: list[str]) -> tuple[dict[str, EventPosition], dict[str, int]]:
        """Where these events of the room sit and each member's public read receipt in the room
        (sql.statuses_txn), in one statement."""
        rows, reads = await self.api.run_db_interaction("medchat_status_marks", sql.statuses_txn, room_id, event_ids)
        return {event_id: EventPosition(*row) for event_id, row in rows.items()}, reads

    async def send_read_receipt(self, user_id: str, room_id: str, event_id: str) -> None:
        """A real `m.read` receipt, exactly as a Matrix client sends it (Element shows it)."""
        await self._hs.get_receipts_handler().received_client_receipt(
            room_id, ReceiptTypes.READ, UserID.from_string(user_id), event_id, None
        )

    async def set_fully_read(self, user_id: str, room_id: str, event_id: str) -> None:
        await self._hs.get_read_marker_handler().received_client_read_marker(room_id, user_id, event_id)

    async def unread_count(self, room_id: str, user_id: str) -> int:
        """Notifying events after the user's read receipt, as /sync's `unread_notifications`."""
        counts = await self._store.get_unread_event_push_actions_by_room_for_user(room_id, user_id)
        return counts.main_timeline.notify_count + sum(c.notify_count for c in counts.threads.values())

    async def unread_counts_by_room(self, user_id: str) -> dict[str, int]:
        """`unread_count` of every room the user has joined (rooms with none left out), in one
        transaction: Synapse's own count for push badges, threads counted with their room."""
        counts = await self._store.get_unread_counts_by_room_for_user(user_id)
        joined = await self._store.get_rooms_for_user(user_id)  # summaries outlive a leave
        return {room_id: count for room_id, count in counts.items() if room_id in joined and count}

    async def push_actions(self, user_id: str, before: int | None, limit: int) -> list[PushAction]:
        """What Synapse's push rules decided to notify the user about, newest first, less what the
        user dismissed (one query: sql.undismissed_push_actions_txn)."""
        rows = await self.api.run_db_interaction(
            "medchat_push_actions", sql.undismissed_push_actions_txn, user_id, before, limit
        )
        return [PushAction(*row) for row in rows]

    async def read_orderings_by_room(self, user_id: str) -> dict[str, int]:
        receipts = await self._store.get_receipts_for_user_with_orderings(
            user_id, [ReceiptTypes.READ, ReceiptTypes.READ_PRIVATE]
        )
        return {room_id: receipt["stream_ordering"] for room_id, receipt in receipts.items()}

    async def notified_events(self, user_id: str, event_ids: list[str]) -> set[str]:
        """Which of these events Synapse's push rules notified the user about."""
        if not event_ids:
            return set()
        return await self.api.run_db_interaction("medchat_notified_events", sql.notified_events_txn, user_id, event_ids)

    async def notified_users(self, room_id: str, event_id: str) -> set[str]:
        """Whom Synapse's push rules notified about this event: one read for all its recipients."""
        return await self.api.run_db_interaction("medchat_notified_users", sql.notified_users_txn, room_id, event_id)

    async def presence(self, user_id: str) -> tuple[bool, int | None]:
        """(is_online, last_active_ts_ms) from Synapse's presence."""
        state = await self._hs.get_presence_handler().get_state(UserID.from_string(user_id))
        return state.state == "online", (state.last_active_ts or None)

    async def presence_of(self, user_ids: list[str]) -> dict[str, tuple[bool, int | None]]:
        """`presence` for many users in one look-up (listing pages)."""
        states = await self._hs.get_presence_handler().get_states(user_ids)
        return {s.user_id: (s.state == "online", s.last_active_ts or None) for s in states}

    async def presence_state(self, user_id: str) -> dict[str, Any]:
        state = await self._hs.get_presence_handler().get_state(UserID.from_string(user_id))
        return {"state": state.state, "status_msg": state.status_msg, "last_active_ts": state.last_active_ts or None}

    async def set_presence(self, requester: Requester, state: str, status_msg: str | None) -> None:
        body: dict[str, Any] = {"presence": state}
        if status_msg is not None:
            body["status_msg"] = status_msg
        await self._hs.get_presence_handler().set_state(requester.user, requester.device_id, body)

    async def last_sync_times(self, user_ids: Sequence[str]) -> list[int]:
        """When each user's last /sync (or event stream) ended, in the order given, from Synapse's
        presence: a sync that ended after an event was received has returned it. Only local users
        sync here; a remote user's state says 0 (never)."""
        handler = self._hs.get_presence_handler()
        # The handler's in-memory states (it keeps one for every user it was asked about), read
        # with C-level maps: a room of hundreds costs microseconds. Its look-up for the rest.
        states = list(map(handler.user_to_current_state.get, user_ids))
        if all(states):  # a state object is always true: none missing
            return list(map(_LAST_SYNC, states))
        missing = [user for user, state in zip(user_ids, states) if state is None]
        found = {state.user_id: state for state in await handler.get_states(missing)}
        return [(state or found[user]).last_user_sync_ts for user, state in zip(user_ids, states)]

    def online_user_ids(self) -> set[str]:
        """Local users whose presence is `online` now, from the presence handler's live state.

        That state lives on the process that owns presence (the main process unless a presence
        writer is configured); elsewhere it is empty, so the `online` filter belongs there.
        """
        states = getattr(self._hs.get_presence_handler(), "user_to_current_state", {})
        return {user_id for user_id, state in states.items() if state.state == "online" and self.api.is_mine(user_id)}
