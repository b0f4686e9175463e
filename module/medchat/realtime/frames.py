"""Turns Synapse's client-format stream events into the app's WebSocket frames.

One Matrix event becomes at most a few small frames named for what the app shows: a new message
(of any kind, messagekinds.py), an edit, a deletion, a reaction, a vote or end of a poll, a read
receipt, typing, presence or a membership change.
"""

from __future__ import annotations

from typing import Any

from medchat.encrypted import ENCRYPTED, encrypted_payload
from medchat.messagekinds import POLL_END, POLL_RESPONSE, is_shown, relation
from medchat.models import JsonDict, is_edit, iso
from medchat.realtime.notifications import notification_preview, notification_type


def is_new_message(event: JsonDict) -> bool:
    """A timeline event the app shows as a message (not state, not an act on another event)."""
    return "room_id" in event and is_shown(event)


def frames_for(event: JsonDict, messages: dict[str, JsonDict]) -> list[JsonDict]:
    """`messages`: the Message models of the batch's new messages, by event id."""
    kind = event.get("type")
    content: dict[str, Any] = event.get("content") or {}
    room_id = event.get("room_id")
    if kind in ("m.room.message", ENCRYPTED) and is_edit(event):
        new = content.get("m.new_content") or {}
        edited = {
            "type": "message.edited",
            "room_id": room_id,
            "message_id": relation(content).get("event_id"),
            "edit_id": event["event_id"],
            "content": new.get("body") if kind != ENCRYPTED else None,
            "edited_at": iso(event.get("origin_server_ts")),
        }
        if kind == ENCRYPTED:  # the replacement is in the edit's ciphertext
            edited["encrypted"] = encrypted_payload({**event, "unsigned": {}})
        return [edited]
    if event.get("event_id") in messages:
        return [{"type": "message.new", "room_id": room_id, "message": messages[event["event_id"]]}]
    if kind in (*POLL_RESPONSE, *POLL_END):
        # The poll's model (GET …/messages/{id}) holds the new tally; votes themselves are not shown.
        return [
            {
                "type": "poll.ended" if kind in POLL_END else "poll.voted",
                "room_id": room_id,
                "message_id": relation(content).get("event_id"),
                "event_id": event["event_id"],
                "user_id": event.get("sender"),
            }
        ]
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
        annotation = relation(content)
        return [
            {
                "type": "reaction.added",
                "room_id": room_id,
                "message_id": annotation.get("event_id"),
                "reaction_id": event["event_id"],
                "key": annotation.get("key"),
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
            "content": notification_preview(event.get("type", ""), content),
            "is_read": False,
            "created_at": iso(event.get("origin_server_ts")),
        },
    }
