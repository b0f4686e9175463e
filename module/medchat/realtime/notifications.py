"""The notification list: Synapse's own push-rule results (so mute and mention rules set in
Element apply), read state from Matrix receipts, and only the dismissals kept by the module."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from medchat import errors, messagekinds as kinds
from medchat.encrypted import ENCRYPTED
from medchat.models import JsonDict, iso
from medchat.store.notifications import ModuleNotification, NotificationStore
from medchat.store.realtime import DismissedNotificationStore
from medchat.synapse import SynapseEvents, SynapseRooms, SynapseServer, SynapseStream
from medchat.util import concurrently

_SCAN_ROUNDS = 5  # pages of push actions scanned to fill one filtered page


# Unread Matrix notifications unread-count counts at most (the list would take 5 pages of 500 to show them).
_COUNT_MAX = 500


def notification_type(event_type: str, state_key: str | None, content: JsonDict, user_id: str) -> str | None:
    """The plan's notification type of a notified event, or None for an event the API cannot
    open (a call, a tombstone, a reaction or custom event a push rule matched, an edit): those
    are not notifications of the app, so the list, the count and the WebSocket leave them out,
    and a `new_message` or `message_reply` always opens with GET …/messages/{id}."""
    if event_type == "m.room.member":
        return "group_invite" if state_key == user_id and content.get("membership") == "invite" else None
    # Messages of the app's kinds only (a call or a custom event a push rule matched shows in the
    # history as `unsupported`, but is no new message to tell the user about).
    if event_type not in kinds.SHOWN_TYPES or not kinds.is_shown_kind(event_type, content):
        return None
    if ((content.get("m.relates_to") or {}).get("m.in_reply_to") or {}).get("event_id"):
        return "message_reply"
    return "new_message"


def _kind_of(event: Any, user_id: str) -> str | None:
    return notification_type(event.type, event.state_key if event.is_state() else None, event.content, user_id)


def notification_preview(event_type: str, content: JsonDict) -> str | None:
    """The text a notification shows: the event's body. An encrypted event's clear content is
    never shown (the server cannot read the message; anything readable there is no preview)."""
    body = content.get("body")
    return body if event_type != ENCRYPTED and isinstance(body, str) else None


@dataclass(frozen=True)
class Cursor:
    """Where each source's next page starts: a push-action stream ordering and a module
    notification timestamp; 0 means that source is exhausted, None that it has not started."""

    matrix: int | None = None
    module: int | None = None

    @classmethod
    def parse(cls, raw: str | None) -> Cursor:
        if raw is None:
            return cls()
        try:
            matrix, module = (int(part) if part else None for part in raw.split("_"))
        except ValueError:
            raise errors.invalid_param("Invalid field cursor: not a cursor from this API")
        return cls(matrix, module)

    def __str__(self) -> str:
        return "_".join("" if part is None else str(part) for part in (self.matrix, self.module))


def module_item(notification: ModuleNotification) -> JsonDict:
    """A module notification (contact request, verification decision) as a list item."""
    payload = notification.payload
    return {
        "id": notification.notification_id,
        "type": notification.type,
        "room_id": None,
        "message_id": None,
        "sender": payload.get("requester_id") or payload.get("decided_by"),
        "content": payload.get("message") or payload.get("reason"),
        "data": payload,
        "is_highlight": False,
        "is_read": notification.is_read,
        "created_at": iso(notification.created_ts),
    }


def _read(action: Any, read_by_room: dict[str, int]) -> bool:
    """Whether the user's read receipt in the action's room is at or past it."""
    return read_by_room.get(action.room_id, -1) >= action.stream_ordering


def _is_matrix_id(notification_id: str) -> bool:
    return notification_id.startswith("$")


class Notifications:
    """Two sources, merged newest first: Synapse's push actions (ids are event ids) and the
    module's own kinds (contact requests, verification decisions) in medchat_notifications."""

    def __init__(
        self,
        synapse_server: SynapseServer,
        synapse_rooms: SynapseRooms,
        synapse_events: SynapseEvents,
        synapse_stream: SynapseStream,
        dismissed: DismissedNotificationStore,
        own: NotificationStore,
    ):
        self._synapse_server = synapse_server
        self._synapse_rooms = synapse_rooms
        self._synapse_events = synapse_events
        self._synapse_stream = synapse_stream
        self._dismissed = dismissed
        self._own = own

    async def page(self, user_id: str, cursor: Cursor, limit: int, unread_only: bool) -> JsonDict:
        """Newest first; `next_cursor` continues the list (None at its end). The two sources are
        read at once, so a page waits for the slower one, not for both in turn."""

        async def matrix_items() -> list[JsonDict]:
            return [] if cursor.matrix == 0 else await self._matrix_items(user_id, cursor.matrix, limit, unread_only)

        async def own_items() -> list[JsonDict]:
            if cursor.module == 0:
                return []
            return [
                {**module_item(n), "_ts": n.created_ts, "_key": n.created_ts}
                for n in await self._own.page(user_id, cursor.module, limit, unread_only)
            ]

        matrix, own = await concurrently(matrix_items, own_items)
        merged = sorted(matrix + own, key=lambda item: item["_ts"], reverse=True)[:limit]
        taken_matrix = [i["_key"] for i in merged if _is_matrix_id(i["id"])]
        taken_own = [i["_ts"] for i in merged if not _is_matrix_id(i["id"])]
        next_cursor = Cursor(
            matrix=0
            if len(matrix) < limit and len(taken_matrix) == len(matrix)
            else (min(taken_matrix) if taken_matrix else cursor.matrix),
            module=0
            if len(own) < limit and len(taken_own) == len(own)
            else (min(taken_own) if taken_own else cursor.module),
        )
        for item in merged:
            del item["_ts"], item["_key"]
        return {
            "results": merged,
            "next_cursor": None if (next_cursor.matrix, next_cursor.module) == (0, 0) else str(next_cursor),
        }

    async def _matrix_items(self, user_id: str, before: int | None, limit: int, unread_only: bool) -> list[JsonDict]:
        """Up to `limit` push-action notifications older than `before`, dismissed ones skipped (by
        the query that reads them).
        The first page of push actions is read with the read receipts and invites, at once (as
        Synapse's /notifications reads the first two, one after the other)."""
        read_by_room, invited_to, actions = await concurrently(
            partial(self._synapse_stream.read_orderings_by_room, user_id),
            partial(self._synapse_rooms.pending_invites, user_id),
            partial(self._synapse_stream.push_actions, user_id, before=before, limit=limit),
        )
        items: list[JsonDict] = []
        for round_ in range(_SCAN_ROUNDS):
            if round_:
                actions = await self._synapse_stream.push_actions(user_id, before=before, limit=limit)
            if not actions:
                break
            before = actions[-1].stream_ordering
            wanted = [
                a.event_id
                for a in actions
                if not (unread_only and _read(a, read_by_room) and a.room_id not in invited_to)
            ]
            events = await self._synapse_events.events(wanted)
            for action in actions:
                event = events.get(action.event_id)
                if event is None or _kind_of(event, user_id) is None:
                    continue
                item = self._matrix_item(event, action, user_id, _read(action, read_by_room))
                if item["type"] == "group_invite":
                    item["is_read"] = action.room_id not in invited_to  # answered invites are done with
                if unread_only and item["is_read"]:
                    continue
                items.append(item)
                if len(items) == limit:
                    return items
            if len(actions) < limit:
                break
        return items

    @staticmethod
    def _matrix_item(event: Any, action: Any, user_id: str, is_read: bool) -> JsonDict:
        kind = _kind_of(event, user_id)
        return {
            "id": event.event_id,
            "type": kind,
            "room_id": event.room_id,
            "message_id": None if kind == "group_invite" else event.event_id,
            "sender": event.sender,
            "content": notification_preview(event.type, event.content),
            "is_highlight": bool(action.highlight),
            "is_read": is_read,
            "created_at": iso(action.received_ts),
            "_ts": action.received_ts,
            "_key": action.stream_ordering,
        }

    async def _matrix_event(self, user_id: str, notification_id: str) -> Any:
        """The notified event, if it is one of the caller's notifications: an event Synapse's
        push rules notified them about, that they may see and the list shows; 404 otherwise
        (any other event of their rooms included)."""
        event = await self._synapse_events.visible_event(user_id, notification_id)
        if (
            event is None
            or _kind_of(event, user_id) is None
            or notification_id not in await self._synapse_stream.notified_events(user_id, [notification_id])
        ):
            raise errors.not_found("No such notification.")
        return event

    async def mark_read(self, user_id: str, notification_id: str) -> None:
        """Matrix notifications: a read receipt at the notified event (Matrix's notion of read, so
        Element agrees; it also reads that room's earlier ones). Module ones: a flag."""
        if _is_matrix_id(notification_id):
            event = await self._matrix_event(user_id, notification_id)
            await self._synapse_stream.send_read_receipt(user_id, event.room_id, event.event_id)
        elif not await self._own.mark_read(user_id, notification_id):
            raise errors.not_found("No such notification.")

    async def mark_all_read(self, user_id: str) -> int:
        rooms = [room for room, count in (await self._synapse_stream.unread_counts_by_room(user_id)).items() if count]
        for room_id in rooms:
            latest = await self._synapse_rooms.latest_event_id(room_id)
            if latest is not None:
                await self._synapse_stream.send_read_receipt(user_id, room_id, latest)
        return len(rooms) + await self._own.mark_read(user_id)

    async def dismiss(self, user_id: str, notification_id: str) -> None:
        if _is_matrix_id(notification_id):
            await self._matrix_event(user_id, notification_id)
            await self._dismissed.dismiss(user_id, notification_id, self._synapse_server.now_ms())
        elif not await self._own.delete(user_id, notification_id):
            raise errors.not_found("No such notification.")

    async def unread_count(self, user_id: str) -> JsonDict:
        """The unread items of the list (`?unread=true`), counted by the list's own rules: `rooms`
        per room of the Matrix ones (read through receipts, as Matrix's `unread_notifications`),
        `invites` the pending invitations, `other` the module's kinds; `count` all of them."""
        by_room: dict[str, int] = {}
        invites = 0
        for item in await self._matrix_items(user_id, None, _COUNT_MAX, unread_only=True):
            if item["type"] == "group_invite":
                invites += 1
            else:
                by_room[item["room_id"]] = by_room.get(item["room_id"], 0) + 1
        other = await self._own.unread_count(user_id)
        return {"count": sum(by_room.values()) + invites + other, "rooms": by_room, "invites": invites, "other": other}
