"""Turns Synapse's client-format stream events into the app's WebSocket frames.

One Matrix event becomes at most a few small frames named for what the app shows: a new message,
an edit, a deletion, a reaction, a read receipt, typing, presence or a membership change.
"""

from __future__ import annotations

from typing import Any

from medchat.models import JsonDict, is_edit, iso
from medchat.realtime.notifications import notification_type


def is_new_message(event: JsonDict) -> bool:
    return event.get("type") == "m.room.message" and not is_edit(event)


def frames_for(event: JsonDict, messages: dict[str, JsonDict]) -> list[JsonDict]:
    """`messages`: the Message models of the batch's new messages, by event id."""
    kind = event.get("type")
    content: dict[str, Any] = event.get("content") or {}
    room_id = event.get("room_id")
    if kind == "m.room.message":
        relation = content.get("m.relates_to") or {}
        if relation.get("rel_type") == "m.replace":
            new = content.get("m.new_content") or {}
            return [
                {
                    "type": "message.edited",
                    "room_id": room_id,
                    "message_id": relation.get("event_id"),
                    "edit_id": event["event_id"],
                    "content": new.get("body"),
                    "edited_at": iso(event.get("origin_server_ts")),
                }
            ]
        return [{"type": "message.new", "room_id": room_id, "message": messages[event["event_id"]]}]
    if kind == "m.room.redaction":
        return [
            {
                "type": "message.deleted",
                "room_id": room_id,
                "message_id": event.get("redacts") or content.get("redacts"),
                "deleted_by": event.get("sender"),
            }
        ]
    if kind == "m.reaction":
        relation = content.get("m.relates_to") or {}
        return [
            {
                "type": "reaction.added",
                "room_id": room_id,
                "message_id": relation.get("event_id"),
                "reaction_id": event["event_id"],
                "key": relation.get("key"),
                "user_id": event.get("sender"),
            }
        ]
    if kind == "m.receipt":
        return [
            {
                "type": "message.status",
                "room_id": room_id,
                "message_id": event_id,
                "user_id": user_id,
                "status": "read",
                "at": iso(receipt.get("ts")),
            }
            for event_id, by_type in content.items()
            for user_id, receipt in (by_type.get("m.read") or {}).items()
        ]
    if kind == "m.typing":
        return [{"type": "typing", "room_id": room_id, "user_ids": content.get("user_ids", [])}]
    if kind == "m.presence":
        last_active_ago = content.get("last_active_ago")
        return [
            {
                "type": "presence",
                "user_id": event.get("sender") or content.get("user_id"),
                "status": content.get("presence"),
                "is_online": content.get("presence") == "online",
                "last_active_ago_ms": last_active_ago,
            }
        ]
    if kind == "m.room.member":
        return [
            {
                "type": "membership",
                "room_id": room_id,
                "user_id": event.get("state_key"),
                "membership": content.get("membership"),
                "by": event.get("sender"),
            }
        ]
    return []


def notification_frame(event: JsonDict, user_id: str) -> JsonDict | None:
    """A notification Synapse's push rules raised for the user (the list's item, live), or None
    for an event the list leaves out (notification_type)."""
    content = event.get("content") or {}
    kind = notification_type(event.get("type", ""), event.get("state_key"), content, user_id)
    if kind is None:
        return None
    return {
        "type": "notification.new",
        "notification": {
            "id": event["event_id"],
            "type": kind,
            "room_id": event.get("room_id"),
            "message_id": None if kind == "group_invite" else event["event_id"],
            "sender": event.get("sender"),
            "content": content.get("body") if isinstance(content.get("body"), str) else None,
            "is_read": False,
            "created_at": iso(event.get("origin_server_ts")),
        },
    }
