"""The notification list: Synapse's own push-rule results (so mute and mention rules set in
Element apply), read state from Matrix receipts, and only the dismissals kept by the module."""

from __future__ import annotations

from typing import Any

from synapse.module_api.errors import SynapseError

from medchat.bridge import SynapseBridge
from medchat.models import JsonDict, iso
from medchat.store.realtime import DismissedNotificationStore

_SCAN_ROUNDS = 5  # pages of push actions scanned to fill one filtered page


def notification_type(event_type: str, state_key: str | None, content: JsonDict, user_id: str) -> str:
    """The plan's notification types, from what the notified event is."""
    if event_type == "m.room.member" and state_key == user_id and content.get("membership") == "invite":
        return "group_invite"
    if ((content.get("m.relates_to") or {}).get("m.in_reply_to") or {}).get("event_id"):
        return "message_reply"
    return "new_message"


class Notifications:
    def __init__(self, bridge: SynapseBridge, dismissed: DismissedNotificationStore):
        self._bridge = bridge
        self._dismissed = dismissed

    async def page(self, user_id: str, before: int | None, limit: int, unread_only: bool) -> JsonDict:
        """Newest first; `next_cursor` continues the list."""
        read_by_room = await self._bridge.read_orderings_by_room(user_id)
        invited_to = await self._bridge.pending_invites(user_id)
        items: list[JsonDict] = []
        cursor = before
        for _ in range(_SCAN_ROUNDS):
            actions = await self._bridge.push_actions(user_id, before=cursor, limit=limit)
            if not actions:
                cursor = None
                break
            cursor = actions[-1].stream_ordering
            hidden = await self._dismissed.dismissed(user_id, [a.event_id for a in actions])
            events = await self._bridge.events([a.event_id for a in actions if a.event_id not in hidden])
            for action in actions:
                event = events.get(action.event_id)
                if event is None:
                    continue
                item = self._item(event, action, user_id, read_by_room.get(action.room_id, -1) >= action.stream_ordering)
                if item["type"] == "group_invite":
                    item["is_read"] = action.room_id not in invited_to  # answered invites are done with
                if unread_only and item["is_read"]:
                    continue
                items.append(item)
                if len(items) == limit:
                    return {"notifications": items, "next_cursor": str(action.stream_ordering)}
            if len(actions) < limit:
                cursor = None
                break
        return {"notifications": items, "next_cursor": str(cursor) if cursor else None}

    @staticmethod
    def _item(event: Any, action: Any, user_id: str, is_read: bool) -> JsonDict:
        kind = notification_type(event.type, event.state_key if event.is_state() else None, event.content, user_id)
        return {
            "id": event.event_id,
            "type": kind,
            "room_id": event.room_id,
            "message_id": None if kind == "group_invite" else event.event_id,
            "sender": event.sender,
            "content": event.content.get("body") if isinstance(event.content.get("body"), str) else None,
            "is_highlight": bool(action.highlight),
            "is_read": is_read,
            "created_at": iso(action.received_ts),
        }

    async def _own(self, user_id: str, notification_id: str) -> Any:
        event = await self._bridge.visible_event(user_id, notification_id)
        if event is None:
            raise SynapseError(404, "No such notification.", "M_NOT_FOUND")
        return event

    async def mark_read(self, user_id: str, notification_id: str) -> None:
        """A read receipt at the notified event: Matrix's notion of read, so Element agrees (it
        also reads the earlier notifications of that room)."""
        event = await self._own(user_id, notification_id)
        await self._bridge.send_read_receipt(user_id, event.room_id, event.event_id)

    async def mark_all_read(self, user_id: str) -> int:
        rooms = [room for room, count in (await self._bridge.unread_counts_by_room(user_id)).items() if count]
        for room_id in rooms:
            latest = await self._bridge.latest_event_id(room_id)
            if latest is not None:
                await self._bridge.send_read_receipt(user_id, room_id, latest)
        return len(rooms)

    async def dismiss(self, user_id: str, notification_id: str) -> None:
        await self._own(user_id, notification_id)
        await self._dismissed.dismiss(user_id, notification_id, self._bridge.now_ms())

    async def unread_count(self, user_id: str) -> JsonDict:
        by_room = {room: count for room, count in (await self._bridge.unread_counts_by_room(user_id)).items() if count}
        return {"count": sum(by_room.values()), "rooms": by_room}
