"""The JSON shapes of shared/seed/chat-api-plan.md, and the request bodies the API accepts.

Ids are Matrix ids (`@user:server`), so one id names the same thing in both APIs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

JsonDict = dict[str, Any]


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


@dataclass(frozen=True)
class MatrixIdentity:
    """What Synapse holds about a user that the ChatUser model shows."""

    display_name: str | None
    avatar_url: str | None
    email: str | None
    is_online: bool
    last_active_ts: int | None


def iso(ts_ms: int | None) -> str | None:
    """Milliseconds since the epoch as the plan's ISO-8601 UTC timestamp."""
    if ts_ms is None:
        return None
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def localpart(user_id: str) -> str:
    return user_id[1:].split(":", 1)[0]


def chat_user(profile: Profile, identity: MatrixIdentity, show_email: bool) -> JsonDict:
    """The plan's ChatUser model. `email` is only shown to the user themselves and admins."""
    return {
        "id": profile.user_id,
        "user": {
            "id": profile.user_id,
            "username": localpart(profile.user_id),
            "email": identity.email if show_email else None,
            "full_name": identity.display_name,
        },
        "is_online": identity.is_online,
        "last_seen": iso(identity.last_active_ts),
        "profile_image": identity.avatar_url,
        "bio": profile.bio,
        "specialization": profile.specialization,
        "institution": profile.institution,
        "role": profile.role,
        "is_verified": False,
        "created_at": iso(profile.created_ts),
        "updated_at": iso(profile.updated_ts),
    }


# --- request bodies (JSON Schema) ------------------------------------------------------------

_TEXT = {"type": "string", "maxLength": 200}
_OPTIONAL_TEXT = {"type": ["string", "null"], "maxLength": 200}
_BIO = {"type": ["string", "null"], "maxLength": 2000}
_FULL_NAME = {"type": "string", "minLength": 1, "maxLength": 256}
_PASSWORD = {"type": "string", "minLength": 1, "maxLength": 512}

REGISTER_BODY: JsonDict = {
    "type": "object",
    "additionalProperties": False,
    "required": ["username", "password", "email", "full_name", "role"],
    "properties": {
        "username": {"type": "string", "minLength": 1, "maxLength": 200},
        "password": _PASSWORD,
        "email": {"type": "string", "minLength": 3, "maxLength": 254},
        "full_name": _FULL_NAME,
        "role": _TEXT,
        "institution": _OPTIONAL_TEXT,
        "specialization": _OPTIONAL_TEXT,
        "bio": _BIO,
        "device_name": {"type": "string", "maxLength": 100},
    },
}

LOGIN_BODY: JsonDict = {
    "type": "object",
    "additionalProperties": False,
    "required": ["password"],
    "oneOf": [{"required": ["username"]}, {"required": ["email"]}],
    "properties": {
        "username": {"type": "string", "minLength": 1, "maxLength": 255},
        "email": {"type": "string", "minLength": 3, "maxLength": 254},
        "password": _PASSWORD,
        "device_name": {"type": "string", "maxLength": 100},
    },
}

REFRESH_BODY: JsonDict = {
    "type": "object",
    "additionalProperties": False,
    "required": ["refresh_token"],
    "properties": {"refresh_token": {"type": "string", "minLength": 1, "maxLength": 1024}},
}

PROFILE_UPDATE_BODY: JsonDict = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {
        "full_name": _FULL_NAME,
        "role": _TEXT,
        "institution": _OPTIONAL_TEXT,
        "specialization": _OPTIONAL_TEXT,
        "bio": _BIO,
        "profile_image": {"type": ["string", "null"], "pattern": "^mxc://[^/]+/[A-Za-z0-9_-]+$"},
    },
}

FORGOT_PASSWORD_BODY: JsonDict = {
    "type": "object",
    "additionalProperties": False,
    "required": ["email"],
    "properties": {"email": {"type": "string", "minLength": 3, "maxLength": 254}},
}

RESET_PASSWORD_BODY: JsonDict = {
    "type": "object",
    "additionalProperties": False,
    "required": ["sid", "client_secret", "token", "new_password"],
    "properties": {
        "sid": {"type": "string", "minLength": 1, "maxLength": 255},
        "client_secret": {"type": "string", "minLength": 1, "maxLength": 255},
        "token": {"type": "string", "minLength": 1, "maxLength": 255},
        "new_password": _PASSWORD,
    },
}

# --- contacts ----------------------------------------------------------------------------------


def contact_card(user_id: str, role: str | None, institution: str | None, specialization: str | None, identity: MatrixIdentity) -> JsonDict:
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


def contact_model(card: JsonDict, nickname: str | None, is_favorite: bool, is_blocked: bool, created_ts: int, updated_ts: int) -> JsonDict:
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


USER_ID_SCHEMA: JsonDict = {"type": "string", "pattern": r"^@[^:\s]+:[^\s]+$", "maxLength": 255}
_NICKNAME = {"type": ["string", "null"], "maxLength": 100}

CONTACT_ADD_BODY: JsonDict = {
    "type": "object",
    "additionalProperties": False,
    "oneOf": [{"required": ["user_id"]}, {"required": ["contact_id"]}],
    "properties": {
        "user_id": USER_ID_SCHEMA,
        "contact_id": USER_ID_SCHEMA,
        "nickname": _NICKNAME,
        "message": {"type": "string", "maxLength": 500},
    },
}

CONTACT_UPDATE_BODY: JsonDict = {
    "type": "object",
    "additionalProperties": False,
    "required": ["nickname"],
    "properties": {"nickname": _NICKNAME},
}

CONTACT_ACCEPT_BODY: JsonDict = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"nickname": _NICKNAME},
}
