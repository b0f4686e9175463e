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


def chat_user(user_id: str, profile: Profile | None, identity: MatrixIdentity, show_email: bool) -> JsonDict:
    """The plan's ChatUser model. `email` is only shown to the user themselves and admins.

    `profile` is None for a Matrix user without a medical profile (e.g. one made with Synapse's
    admin API or on another server): the Matrix facts are shown, the medical fields are null.
    """
    return {
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
        "is_verified": False,
        "created_at": iso(profile.created_ts) if profile else None,
        "updated_at": iso(profile.updated_ts) if profile else None,
    }


# --- request bodies (JSON Schema) ------------------------------------------------------------

_TEXT = {"type": "string", "maxLength": 200}
_OPTIONAL_TEXT = {"type": ["string", "null"], "maxLength": 200}
_BIO = {"type": ["string", "null"], "maxLength": 2000}
_FULL_NAME = {"type": "string", "minLength": 1, "maxLength": 256}
_PASSWORD = {"type": "string", "minLength": 1, "maxLength": 512}
_EMAIL = {"type": "string", "minLength": 3, "maxLength": 254}
_TOKEN = {"type": "string", "minLength": 1, "maxLength": 1024}
_DEVICE_NAME = {"type": "string", "maxLength": 100}

def _body(properties: JsonDict, required: tuple[str, ...] = (), **extra: Any) -> JsonDict:
    """A JSON object schema that names its fields and refuses unknown ones."""
    return {"type": "object", "additionalProperties": False, "required": list(required), "properties": properties, **extra}


REGISTER_BODY = _body(
    {
        "username": {"type": "string", "minLength": 1, "maxLength": 200},
        "password": _PASSWORD,
        "email": _EMAIL,
        "full_name": _FULL_NAME,
        "role": _TEXT,
        "institution": _OPTIONAL_TEXT,
        "specialization": _OPTIONAL_TEXT,
        "bio": _BIO,
        "device_name": _DEVICE_NAME,
    },
    required=("username", "password", "email", "full_name", "role"),
)

LOGIN_BODY = _body(
    {
        "username": {"type": "string", "minLength": 1, "maxLength": 255},
        "email": _EMAIL,
        "password": _PASSWORD,
        "device_name": _DEVICE_NAME,
    },
    required=("password",),
    oneOf=[{"required": ["username"]}, {"required": ["email"]}],
)

REFRESH_BODY = _body({"refresh_token": _TOKEN}, required=("refresh_token",))

PROFILE_UPDATE_BODY = _body(
    {
        "full_name": _FULL_NAME,
        "role": _TEXT,
        "institution": _OPTIONAL_TEXT,
        "specialization": _OPTIONAL_TEXT,
        "bio": _BIO,
        "profile_image": {"type": ["string", "null"], "pattern": "^mxc://[^/]+/[A-Za-z0-9_-]+$"},
    },
    minProperties=1,
)

FORGOT_PASSWORD_BODY = _body({"email": _EMAIL}, required=("email",))

RESET_PASSWORD_BODY = _body(
    {"sid": _TOKEN, "client_secret": _TOKEN, "token": _TOKEN, "new_password": _PASSWORD},
    required=("sid", "client_secret", "token", "new_password"),
)

STATUS_BODY = _body({"status": {"type": "string", "enum": ["delivered", "read"]}}, required=("status",))

PRESENCE_BODY = _body(
    {
        "status": {"type": "string", "enum": ["online", "offline", "unavailable"]},
        "status_msg": {"type": ["string", "null"], "maxLength": 200},
    },
    required=("status",),
)
