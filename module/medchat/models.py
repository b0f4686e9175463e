"""The JSON shapes of shared/seed/chat-api-plan.md, and the request bodies the API accepts.

Ids are Matrix ids (`@user:server`), so one id names the same thing in both APIs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from medchat.levels import is_verified

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


def iso(ts_ms: int | None) -> str | None:
    """Milliseconds since the epoch as the plan's ISO-8601 UTC timestamp."""
    if ts_ms is None:
        return None
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def localpart(user_id: str) -> str:
    return user_id[1:].split(":", 1)[0]


def chat_user(profile: Profile, identity: MatrixIdentity, show_email: bool) -> JsonDict:
    """The plan's ChatUser model. `email` (and `hidden`) only go to the user themselves and admins.

    Beyond the plan: `verification_level` (the ladder step behind `is_verified`).
    """
    model = {
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
        "is_verified": is_verified(profile.verification_level),
        "verification_level": profile.verification_level,
        "created_at": iso(profile.created_ts),
        "updated_at": iso(profile.updated_ts),
    }
    if show_email:
        model["hidden"] = profile.hidden
    return model


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

# --- directory and verification (JSON Schema) -------------------------------------------------

CHAT_USER_UPDATE_BODY: JsonDict = {
    **PROFILE_UPDATE_BODY,
    "properties": {**PROFILE_UPDATE_BODY["properties"], "hidden": {"type": "boolean"}},
}

_MXC = {"type": "string", "pattern": "^mxc://[^/]+/[A-Za-z0-9_-]+$"}

VERIFICATION_REQUEST_BODY: JsonDict = {
    "type": "object",
    "additionalProperties": False,
    "required": ["registration_body", "license_number"],
    "properties": {
        "level": {"type": "string", "maxLength": 50},
        "registration_body": {"type": "string", "minLength": 1, "maxLength": 200},
        "license_number": {"type": "string", "minLength": 1, "maxLength": 100},
        "document": _MXC,
    },
}

VERIFICATION_DECISION_BODY: JsonDict = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 1000}},
}
