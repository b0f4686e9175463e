"""The JSON shapes of shared/seed/chat-api-plan.md: the builders of the answers (chat_user,
chat_message, contact_card, ...) and the facts they are built from.

Ids are Matrix ids (`@user:server`), so one id names the same thing in both APIs. What requests
may send is in medchat.api.schemas (requests.py, queries.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

from medchat import messagekinds as kinds
from medchat.encrypted import encrypted_payload, is_encrypted_event
from medchat.levels import UNVERIFIED, is_verified
from medchat.polls import poll_start, tally

JsonDict = dict[str, Any]


def positional_page(items: list[Any], offset: int, limit: int) -> JsonDict:
    """The list envelope (api/schemas/responses.page) of a list paged by position: the page, the
    offset of the next one as its cursor, and the count of the whole list."""
    end = offset + limit
    return {"results": items[offset:end], "next_cursor": str(end) if end < len(items) else None, "count": len(items)}


# Disappearing messages carry their expiry (ms) in the event content, for every client to see.
EXPIRES_AT = "org.medchat.expires_at"
# A message a case room's guard let through in warn mode: `{"kinds": [...]}` (never the values).
PHI_WARNING = "org.medchat.phi_warning"


@dataclass(frozen=True)
class Profile:
    """A row of medchat_profiles."""

    user_id: str
    role: str
    institution: str | None
    specialization: str | None
    bio: str | None
    created_ts: int
    updated_ts: int
    display_name: str | None = None
    avatar_url: str | None = None
    hidden: bool = False
    verification_level: str = "unverified"


@dataclass(frozen=True)
class MatrixIdentity:
    """What Synapse holds about a user that the ChatUser model shows."""

    display_name: str | None
    avatar_url: str | None
    email: str | None
    is_online: bool
    last_active_ts: int | None


@lru_cache(maxsize=8192)
def iso(ts_ms: int | None) -> str | None:
    """Milliseconds since the epoch as the plan's ISO-8601 UTC timestamp. Kept for the values
    last asked for: a history page formats each message's times again on every read, and a
    sender's card the same `last_seen` for each of their messages."""
    if ts_ms is None:
        return None
    return (
        datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def localpart(user_id: str) -> str:
    return user_id[1:].split(":", 1)[0]


def chat_user(user_id: str, profile: Profile | None, identity: MatrixIdentity, show_email: bool) -> JsonDict:
    """The plan's ChatUser model. `email` (and `hidden`) only go to the user themselves and admins.

    `profile` is None for a Matrix user without a medical profile (e.g. one made with Synapse's
    admin API or on another server): the Matrix facts are shown, the medical fields are null.
    Beyond the plan: `verification_level` (the ladder step behind `is_verified`).
    """
    level = profile.verification_level if profile else UNVERIFIED
    model = {
        "id": user_id,
        "user": {
            "id": user_id,
            "username": localpart(user_id),
            "email": identity.email if show_email else None,
            "full_name": identity.display_name,
        },
        "is_online": identity.is_online,
        "last_seen": iso(identity.last_active_ts),
        "profile_image": identity.avatar_url,
        "bio": profile.bio if profile else None,
        "specialization": profile.specialization if profile else None,
        "institution": profile.institution if profile else None,
        "role": profile.role if profile else None,
        "is_verified": is_verified(level),
        "verification_level": level,
        "created_at": iso(profile.created_ts) if profile else None,
        "updated_at": iso(profile.updated_ts) if profile else None,
    }
    if show_email:
        model["hidden"] = profile.hidden if profile else False
    return model


# --- contacts ----------------------------------------------------------------------------------


def contact_card(
    user_id: str, role: str | None, institution: str | None, specialization: str | None, identity: MatrixIdentity
) -> JsonDict:
    """The `contact` object of the plan's Contact model (and of contact requests)."""
    return {
        "id": user_id,
        "username": localpart(user_id),
        "full_name": identity.display_name,
        "profile_image": identity.avatar_url,
        "specialization": specialization,
        "institution": institution,
        "role": role,
        "is_online": identity.is_online,
        "last_seen": iso(identity.last_active_ts),
    }


def contact_model(
    card: JsonDict, nickname: str | None, is_favorite: bool, is_blocked: bool, created_ts: int, updated_ts: int
) -> JsonDict:
    """The plan's Contact model; `id` is the contact's Matrix user id."""
    return {
        "id": card["id"],
        "contact": card,
        "nickname": nickname,
        "is_favorite": is_favorite,
        "is_blocked": is_blocked,
        "created_at": iso(created_ts),
        "updated_at": iso(updated_ts),
    }


# Matrix ids: `@localpart:server` (no whitespace); the request models (api/schemas/) use the same pattern.
USER_ID_PATTERN = r"^@[^:\s]+:[^\s]+$"
USER_ID_SCHEMA: JsonDict = {"type": "string", "pattern": USER_ID_PATTERN, "maxLength": 255}

# --- rooms and messages ------------------------------------------------------------------------


def chat_member(user_id: str, member: Mapping[str, Any]) -> JsonDict:
    """The plan's short user shape (`sender`, participant `user`) from an m.room.member content."""
    return {
        "id": user_id,
        "username": localpart(user_id),
        "full_name": member.get("displayname") or localpart(user_id),
        "profile_image": member.get("avatar_url"),
    }


def strip_reply_fallback(body: str) -> str:
    """Drops the `> <@sender> quoted` lines older clients prepend to a reply's body."""
    lines = body.split("\n")
    if not lines or not lines[0].startswith("> "):
        return body
    while lines and lines[0].startswith(">"):
        lines.pop(0)
    if lines and lines[0] == "":
        lines.pop(0)
    return "\n".join(lines)


def is_edit(event: JsonDict) -> bool:
    return event.get("content", {}).get("m.relates_to", {}).get("rel_type") == "m.replace"


def _phi_warning(content: JsonDict) -> JsonDict | None:
    """The guard's warning on a message shown in a warn-mode case room: `{kinds}`, or None."""
    warning = content.get(PHI_WARNING)
    kinds = warning.get("kinds") if isinstance(warning, dict) else None
    return {"kinds": [k for k in kinds if isinstance(k, str)]} if isinstance(kinds, list) else None


def chat_message(
    event: JsonDict,
    sender: JsonDict,
    reactions: list[tuple[str, str, str]],
    viewer: str,
    poll_related: list[JsonDict] | None = None,
) -> JsonDict:
    """The plan's Message model from a client-serialised event of any kind (messagekinds.py).

    The latest edit (bundled by Synapse) supplies the shown content; a redacted event is shown as
    deleted with no content. `reactions` are (key, sender, reaction event id) annotations;
    `poll_related` the `m.reference` relations of a poll (its responses and ends). An encrypted
    event has no content the server can read: `encrypted` carries its ciphertext.
    """
    event_type = event.get("type", kinds.MESSAGE)
    unsigned = event.get("unsigned", {})
    deleted = "redacted_because" in unsigned
    original = event.get("content", {})
    edit = unsigned.get("m.relations", {}).get("m.replace")
    shown = edit["content"].get("m.new_content", original) if edit and not deleted else original
    if is_encrypted_event(event):
        shown = {}  # all it says is in the ciphertext (`encrypted`); nothing in the clear is shown
    thread_id, falling_back = kinds.thread_of(original)
    reply_to = None if falling_back else original.get("m.relates_to", {}).get("m.in_reply_to", {}).get("event_id")
    body = shown.get("body") if isinstance(shown.get("body"), str) else None
    if body is not None and reply_to:
        body = strip_reply_fallback(body)
    message_type = kinds.message_type(event_type, shown)
    is_media = message_type in kinds.MEDIA_TYPES
    info = shown.get("info") if isinstance(shown.get("info"), dict) else {}
    file_name = shown.get("filename") or body if is_media and message_type != "sticker" else None
    if is_media and body == file_name:
        body = None  # no caption: the body only repeats the file name
    counts: dict[str, JsonDict] = {}
    for key, reactor, _ in reactions:
        entry = counts.setdefault(key, {"key": key, "count": 0, "reacted_by_me": False})
        entry["count"] += 1
        entry["reacted_by_me"] |= reactor == viewer
    edited_at = iso(edit["origin_server_ts"]) if edit and not deleted else None
    text_format, formatted = (None, None) if deleted else kinds.formatting(shown, reply_to is not None)
    return {
        "id": event["event_id"],
        "room_id": event["room_id"],
        "sender": sender,
        "content": None if deleted else kinds.shown_text(message_type, shown, body),
        "message_type": message_type,
        "event_type": event_type,
        "format": text_format,
        "formatted_content": formatted,
        "media_url": shown.get("url") if is_media and isinstance(shown.get("url"), str) else None,
        "file_name": file_name,
        "file_size": info.get("size"),
        "mime_type": info.get("mimetype"),
        "reply_to": reply_to,
        "thread_id": thread_id,
        **kinds.kind_fields(event_type, message_type, shown, info, deleted),
        "poll": _poll(event, shown, poll_related or [], viewer) if message_type == "poll" and not deleted else None,
        "is_edited": edited_at is not None,
        "edited_at": edited_at,
        "is_deleted": deleted,
        "expires_at": iso(original[EXPIRES_AT]) if isinstance(original.get(EXPIRES_AT), int) else None,
        "phi_warning": _phi_warning(shown),
        "reactions": list(counts.values()),
        "encrypted": None if deleted else encrypted_payload(event),
        "status": "sent",
        "created_at": iso(event["origin_server_ts"]),
        "updated_at": edited_at or iso(event["origin_server_ts"]),
    }


def _poll(event: JsonDict, shown: JsonDict, related: list[JsonDict], viewer: str) -> JsonDict | None:
    start = poll_start(shown)
    if start is None:
        return None
    poll = tally(start, event.get("sender", ""), related, viewer)
    poll["ended_at"] = iso(poll.pop("ended_at_ms"))
    return poll
