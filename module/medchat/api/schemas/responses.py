"""The JSON Schemas of what the API answers: the plan's models (models.py builds them) and the
smaller replies. Routes name these in `route(..., responses=...)`; the OpenAPI document is made
from the routes, and the schemathesis test checks every live answer against them.

Kept as JSON Schema dicts rather than models: the answers are built by models.py's builders
(chat_user, chat_message, ...) and only checked, never parsed. Request bodies and queries are the
pydantic models of requests.py and queries.py beside this file; all end up in the same document.
"""

from __future__ import annotations

from typing import Any

from medchat.messagekinds import MESSAGE_TYPES
from medchat.models import JsonDict

_STRING = {"type": "string"}
_NULLABLE_STRING = {"type": ["string", "null"]}
_TIMESTAMP = {"type": "string", "format": "date-time"}
_NULLABLE_TIMESTAMP = {"type": ["string", "null"], "format": "date-time"}
_INTEGER = {"type": "integer"}
_BOOLEAN = {"type": "boolean"}
_LEVEL = {"enum": ["unverified", "identity_verified", "license_verified"]}


def obj(properties: JsonDict, required: tuple[str, ...] | None = None, title: str | None = None) -> JsonDict:
    """An object schema; every named property is required unless `required` says otherwise.
    Unknown properties are allowed, so adding a field to an answer is not a breaking change."""
    schema: JsonDict = {
        "type": "object",
        "required": list(properties if required is None else required),
        "properties": properties,
    }
    if title:
        schema["title"] = title
    return schema


def array(items: JsonDict) -> JsonDict:
    return {"type": "array", "items": items}


def page(items: JsonDict, title: str | None = None, **more: Any) -> JsonDict:
    """The one list envelope: `results`, the opaque cursor of the next page (null at the end) that
    the list's `cursor` parameter takes, and `count` (every match, not just this page) where it is
    known cheaply; `more` adds a list's own fields. A `title` names it (a component) where several
    operations answer it."""
    return obj(
        {"results": array(items), "next_cursor": _NULLABLE_STRING, **more},
        required=("results", "next_cursor"),
        title=title,
    )


EMPTY = obj({}, title="Empty")

ERROR = obj(
    {"errcode": {"type": "string", "pattern": "^(M_|ORG_MEDCHAT_)"}, "error": _STRING, "retry_after_ms": _INTEGER},
    required=("errcode", "error"),
    title="Error",
)

MESSAGE_TEXT = obj({"message": _STRING}, title="Notice")

HEALTH = obj(
    {
        "status": {"const": "ok"},
        "version": _STRING,
        "server_name": _STRING,
        "database": _STRING,
        "synapse_version": _STRING,
        "worker": _NULLABLE_STRING,
        "background_tasks": _BOOLEAN,
    },
    title="Health",
)

# --- accounts and the directory ----------------------------------------------------------------

CHAT_USER = obj(
    {
        "id": _STRING,
        "user": obj({"id": _STRING, "username": _STRING, "email": _NULLABLE_STRING, "full_name": _NULLABLE_STRING}),
        "is_online": _BOOLEAN,
        "last_seen": _NULLABLE_TIMESTAMP,
        "profile_image": _NULLABLE_STRING,
        "bio": _NULLABLE_STRING,
        "specialization": _NULLABLE_STRING,
        "institution": _NULLABLE_STRING,
        "role": _NULLABLE_STRING,
        "is_verified": _BOOLEAN,
        "verification_level": _LEVEL,
        "created_at": _NULLABLE_TIMESTAMP,
        "updated_at": _NULLABLE_TIMESTAMP,
        "hidden": _BOOLEAN,
        "home_server": _STRING,
    },
    required=(
        "id",
        "user",
        "is_online",
        "last_seen",
        "profile_image",
        "bio",
        "specialization",
        "institution",
        "role",
        "is_verified",
        "verification_level",
        "created_at",
        "updated_at",
    ),
    title="ChatUser",
)

_TOKENS = {"access_token": _STRING, "refresh_token": _STRING, "expires_in_ms": _INTEGER}

SESSION = obj(
    {"user_id": _STRING, "device_id": _STRING, **_TOKENS, "user": CHAT_USER},
    required=("user_id", "device_id", "access_token", "user"),
    title="Session",
)

REFRESHED = obj(_TOKENS, required=("access_token",), title="RefreshedTokens")

USER_PAGE = page(
    CHAT_USER,
    title="UserPage",
    peers=array(obj({"server": _STRING, "status": {"enum": ["ok", "timeout", "error"]}}, title="PeerResult")),
)

INSTITUTIONS = page(
    obj({"name": _STRING, "member_count": _INTEGER}, title="Institution"), title="InstitutionPage", count=_INTEGER
)

# --- verification ------------------------------------------------------------------------------

VERIFICATION_REQUEST = obj(
    {
        "id": _STRING,
        "user_id": _STRING,
        "level": _LEVEL,
        "registration_body": _STRING,
        "license_number": _STRING,
        "document": _NULLABLE_STRING,
        "institution": _NULLABLE_STRING,
        "status": {"enum": ["pending", "approved", "rejected"]},
        "reason": _NULLABLE_STRING,
        "decided_by": _NULLABLE_STRING,
        "created_at": _TIMESTAMP,
        "decided_at": _NULLABLE_TIMESTAMP,
    },
    title="VerificationRequest",
)

VERIFICATION_REQUESTS = page(VERIFICATION_REQUEST, title="VerificationRequestPage")

VERIFICATION_STATUS = obj(
    {
        "user_id": _STRING,
        "verification_level": _LEVEL,
        "is_verified": _BOOLEAN,
        "requests": array(VERIFICATION_REQUEST),
        "history": array(
            obj(
                {
                    "action": _STRING,
                    "actor": _NULLABLE_STRING,
                    "request_id": _NULLABLE_STRING,
                    "level_before": _NULLABLE_STRING,
                    "level_after": _NULLABLE_STRING,
                    "reason": _NULLABLE_STRING,
                    "at": _TIMESTAMP,
                }
            )
        ),
    },
    title="VerificationStatus",
)

ATTESTATION_RESULT = obj(
    {"user_id": _STRING, "verification_level": _LEVEL, "is_verified": _BOOLEAN}, title="AttestationResult"
)

# --- contacts ----------------------------------------------------------------------------------

CONTACT_CARD = obj(
    {
        "id": _STRING,
        "username": _STRING,
        "full_name": _NULLABLE_STRING,
        "profile_image": _NULLABLE_STRING,
        "specialization": _NULLABLE_STRING,
        "institution": _NULLABLE_STRING,
        "role": _NULLABLE_STRING,
        "is_online": _BOOLEAN,
        "last_seen": _NULLABLE_TIMESTAMP,
    },
    title="ContactCard",
)

CONTACT = obj(
    {
        "id": _STRING,
        "contact": CONTACT_CARD,
        "nickname": _NULLABLE_STRING,
        "is_favorite": _BOOLEAN,
        "is_blocked": _BOOLEAN,
        "created_at": _TIMESTAMP,
        "updated_at": _TIMESTAMP,
    },
    title="Contact",
)

CONTACT_REQUEST = obj(
    {
        "id": _STRING,
        "direction": {"enum": ["incoming", "outgoing"]},
        "user": CONTACT_CARD,
        "message": _NULLABLE_STRING,
        "status": _STRING,
        "created_at": _TIMESTAMP,
    },
    title="ContactRequest",
)

CONTACT_PAGE = page(CONTACT)
CONTACT_REQUEST_PAGE = page(CONTACT_REQUEST)
CONTACT_PENDING = obj({"status": {"const": "pending"}, "request": CONTACT_REQUEST}, title="ContactRequestSent")

_EXCEPTIONS = obj(
    {"users": array(_STRING), "servers": array(_STRING), "roles": array(_STRING), "levels": array(_STRING)},
    title="ContactPermissionLists",
)
CONTACT_PERMISSIONS = obj(
    {
        "permissions": obj(
            {
                "default": {"enum": ["allow_all", "block_all"]},
                "allow_contacts": _BOOLEAN,
                "allow": _EXCEPTIONS,
                "block": _EXCEPTIONS,
            }
        ),
        "source": _STRING,
    },
    title="ContactPermissions",
)

# --- rooms and messages ------------------------------------------------------------------------

MEMBER = obj(
    {"id": _STRING, "username": _STRING, "full_name": _STRING, "profile_image": _NULLABLE_STRING}, title="ChatMember"
)

PARTICIPANT = obj(
    {
        "id": _STRING,
        "user": MEMBER,
        "role": {"enum": ["admin", "member"]},
        "membership": _STRING,
        "is_online": _BOOLEAN,
        "last_seen": _NULLABLE_TIMESTAMP,
    },
    required=("id", "membership"),
    title="Participant",
)

_MESSAGE_TYPE = {"enum": list(MESSAGE_TYPES)}

ROOM = obj(
    {
        "id": _STRING,
        "name": _STRING,
        "type": {"enum": ["direct", "group", "case", "study_group"]},
        "topic": _NULLABLE_STRING,
        "avatar_url": _NULLABLE_STRING,
        "phi_guard": {"enum": ["refuse", "warn", None]},
        "encrypted": _BOOLEAN,
        "institution": _NULLABLE_STRING,
        "join_rule": _STRING,
        "created_by": _STRING,
        "membership": _STRING,
        "participants": array(PARTICIPANT),
        "participant_count": _INTEGER,
        "last_message": {
            "oneOf": [
                {"type": "null"},
                obj(
                    {
                        "id": _STRING,
                        "content": _NULLABLE_STRING,
                        "message_type": _MESSAGE_TYPE,
                        "sender": _STRING,
                        "is_deleted": _BOOLEAN,
                        "created_at": _TIMESTAMP,
                    }
                ),
            ]
        },
        "unread_count": _INTEGER,
        "created_at": _TIMESTAMP,
        "updated_at": _TIMESTAMP,
    },
    required=(
        "id",
        "name",
        "type",
        "topic",
        "avatar_url",
        "phi_guard",
        "encrypted",
        "created_by",
        "membership",
        "participants",
        "participant_count",
        "last_message",
        "unread_count",
        "created_at",
        "updated_at",
    ),
    title="Room",
)

ROOM_PAGE = page(ROOM, count=_INTEGER)
PARTICIPANTS = page(PARTICIPANT, count=_INTEGER)
ROOM_LEFT = obj({"room_id": _STRING, "left": _BOOLEAN, "closed": _BOOLEAN, "removed": array(_STRING)})
PARTICIPANT_REMOVED = obj({"room_id": _STRING, "user_id": _STRING, "removed": _BOOLEAN})
ROOM_JOINED = obj({"room_id": _STRING, "membership": {"const": "join"}, "room": ROOM})
JOIN_REQUESTED = obj({"room_id": _STRING, "membership": {"const": "knock"}, "room": {"type": "null"}})
INSTITUTION_ROOM = obj(
    {
        "id": _STRING,
        "name": _NULLABLE_STRING,
        "topic": _NULLABLE_STRING,
        "avatar_url": _NULLABLE_STRING,
        "type": {"enum": ["group", "case", "study_group", "space"]},
        "join_rule": _NULLABLE_STRING,
        "member_count": _INTEGER,
        "membership": {"enum": ["join", "invite", "knock", None]},
    },
    title="InstitutionRoom",
)
INSTITUTION_ROOMS = page(INSTITUTION_ROOM, institution=_STRING, space_id=_NULLABLE_STRING)

_NULLABLE_INTEGER = {"type": ["integer", "null"]}
POLL = obj(
    {
        "question": _STRING,
        "kind": {"enum": ["disclosed", "undisclosed"]},
        "max_selections": _INTEGER,
        "answers": array(obj({"id": _STRING, "text": _STRING, "votes": _NULLABLE_INTEGER})),
        "total_votes": _NULLABLE_INTEGER,
        "my_selections": array(_STRING),
        "ended": _BOOLEAN,
        "ended_at": _NULLABLE_TIMESTAMP,
    },
    title="Poll",
)
# The ciphertext of an `m.room.encrypted` event (medchat.encrypted), as the app's crypto library
# decrypts it; `edit` is the latest edit's, which decrypts to the replacement (`m.new_content`).
_CIPHERTEXT = {
    "algorithm": _STRING,
    "ciphertext": _STRING,
    "sender_key": _NULLABLE_STRING,
    "session_id": _NULLABLE_STRING,
    "device_id": _NULLABLE_STRING,
}
_CIPHERTEXT_REQUIRED = ("algorithm", "ciphertext", "sender_key", "session_id", "device_id")
ENCRYPTED_PAYLOAD = obj(
    {
        **_CIPHERTEXT,
        "edit": {
            "oneOf": [
                {"type": "null"},
                obj({"id": _STRING, **_CIPHERTEXT}, required=("id", *_CIPHERTEXT_REQUIRED)),
            ]
        },
    },
    required=(*_CIPHERTEXT_REQUIRED, "edit"),
    title="EncryptedMessagePayload",
)

MESSAGE = obj(
    {
        "id": _STRING,
        "room_id": _STRING,
        "sender": MEMBER,
        "content": _NULLABLE_STRING,
        "message_type": _MESSAGE_TYPE,
        "event_type": _STRING,
        "format": {"enum": ["html", None]},
        "formatted_content": _NULLABLE_STRING,
        "media_url": _NULLABLE_STRING,
        "file_name": _NULLABLE_STRING,
        "file_size": _NULLABLE_INTEGER,
        "mime_type": _NULLABLE_STRING,
        "reply_to": _NULLABLE_STRING,
        "thread_id": _NULLABLE_STRING,
        "duration": _NULLABLE_INTEGER,
        "waveform": {"oneOf": [{"type": "null"}, array(_INTEGER)]},
        "is_voice": _BOOLEAN,
        "geo_uri": _NULLABLE_STRING,
        "poll": {"oneOf": [{"type": "null"}, POLL]},
        "is_edited": _BOOLEAN,
        "edited_at": _NULLABLE_TIMESTAMP,
        "is_deleted": _BOOLEAN,
        "expires_at": _NULLABLE_TIMESTAMP,
        "reactions": array(obj({"key": _STRING, "count": _INTEGER, "reacted_by_me": _BOOLEAN})),
        "phi_warning": {"oneOf": [{"type": "null"}, obj({"kinds": array(_STRING)})]},
        "encrypted": {"oneOf": [{"type": "null"}, ENCRYPTED_PAYLOAD]},
        "status": {"enum": ["sent", "delivered", "read"]},
        "created_at": _TIMESTAMP,
        "updated_at": _TIMESTAMP,
        "client_msg_id": _STRING,
    },
    required=(
        "id",
        "room_id",
        "sender",
        "content",
        "message_type",
        "event_type",
        "format",
        "formatted_content",
        "media_url",
        "file_name",
        "file_size",
        "mime_type",
        "reply_to",
        "thread_id",
        "duration",
        "waveform",
        "is_voice",
        "geo_uri",
        "poll",
        "is_edited",
        "edited_at",
        "is_deleted",
        "expires_at",
        "reactions",
        "phi_warning",
        "encrypted",
        "status",
        "created_at",
        "updated_at",
    ),
    title="Message",
)

MESSAGE_PAGE = page(MESSAGE)
MESSAGE_SEARCH = page(MESSAGE, count={"type": ["integer", "null"]})
MESSAGES = obj({"messages": array(MESSAGE)})
THREAD_PAGE = page(MESSAGE, root=MESSAGE)

# --- real time ---------------------------------------------------------------------------------

_DELIVERY = {"enum": ["sent", "delivered", "read"]}
MESSAGE_STATUS = obj(
    {
        "message_id": _STRING,
        "room_id": _STRING,
        "sender": _STRING,
        "status": _DELIVERY,
        "participants": array(obj({"user_id": _STRING, "status": _DELIVERY})),
    },
    title="MessageStatus",
)

MARKED_ALL_READ = obj({"room_id": _STRING, "read_up_to": _NULLABLE_STRING})

PRESENCE = obj(
    {
        "user_id": _STRING,
        "status": {"enum": ["online", "offline", "unavailable"]},
        "is_online": _BOOLEAN,
        "last_seen": _NULLABLE_TIMESTAMP,
        "status_msg": _NULLABLE_STRING,
    },
    title="Presence",
)

NOTIFICATION = obj(
    {
        "id": _STRING,
        "type": _STRING,
        "room_id": _NULLABLE_STRING,
        "message_id": _NULLABLE_STRING,
        "sender": _NULLABLE_STRING,
        "content": _NULLABLE_STRING,
        "data": {"type": "object"},
        "is_highlight": _BOOLEAN,
        "is_read": _BOOLEAN,
        "created_at": _TIMESTAMP,
    },
    required=("id", "type", "room_id", "message_id", "sender", "content", "is_highlight", "is_read", "created_at"),
    title="Notification",
)

NOTIFICATION_PAGE = page(NOTIFICATION)
UNREAD_COUNT = obj(
    {
        "count": _INTEGER,
        "rooms": {"type": "object", "additionalProperties": _INTEGER},
        "invites": _INTEGER,
        "other": _INTEGER,
    }
)
READ_ALL = obj({"rooms_marked_read": _INTEGER})

# --- uploads and the audit trail ---------------------------------------------------------------

UPLOADED = obj(
    {
        "file_id": _STRING,
        "media_url": {"type": "string", "pattern": "^mxc://"},
        "file_name": _STRING,
        "file_size": _INTEGER,
        "mime_type": _STRING,
        "width": _INTEGER,
        "height": _INTEGER,
        "thumbnail_url": _STRING,
    },
    required=("file_id", "media_url", "file_name", "file_size", "mime_type"),
    title="Upload",
)

AUDIT_PAGE = page(
    obj(
        {
            "seq": _INTEGER,
            "at": _TIMESTAMP,
            "actor": _STRING,
            "action": _STRING,
            "target": _NULLABLE_STRING,
            "details": {"type": "object"},
            "origin": _NULLABLE_STRING,
            "hash": _STRING,
        },
        title="AuditEntry",
    ),
)

AUDIT_VERIFIED = obj({"ok": _BOOLEAN, "entries_checked": _INTEGER, "first_broken_seq": {"type": ["integer", "null"]}})
