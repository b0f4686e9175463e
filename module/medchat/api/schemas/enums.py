"""The names of the API's enums, by their values: api/openapi.py makes each enum of the document a
component of this name (`{"type": "string", "enum": [...]}`) and refers to it, so that client
generators name it once (an inline enum is named by each generator after where it sits, and
`Message.status` then collided with the `MessageStatus` component). An enum that lists `null` is
the named enum or null. An enum missing here fails `scripts/openapi`: name it here.
"""

from __future__ import annotations

from medchat.messagekinds import MESSAGE_TYPES, SENDABLE_TYPES

ENUM_NAMES: dict[tuple[str, ...], str] = {
    ("true", "false"): "QueryFlag",
    ("unverified", "identity_verified", "license_verified"): "VerificationLevel",
    ("pending", "approved", "rejected"): "VerificationDecision",
    ("incoming", "outgoing"): "ContactRequestDirection",
    ("allow_all", "block_all"): "ContactDefault",
    ("ok", "timeout", "error"): "PeerOutcome",
    ("local", "federation"): "DirectoryScope",
    ("m.replace", "m.thread"): "EncryptedRelationType",
    ("direct", "group", "case", "study_group"): "RoomType",
    ("group", "case", "study_group", "space"): "InstitutionRoomType",
    ("join", "invite", "knock"): "InstitutionRoomMembership",
    ("knock", "open"): "RoomJoinRule",
    ("refuse", "warn"): "PhiGuard",
    ("admin", "member"): "ParticipantRole",
    tuple(MESSAGE_TYPES): "MessageType",
    tuple(SENDABLE_TYPES): "SendableMessageType",
    ("html",): "MessageFormat",
    ("sent", "delivered", "read"): "DeliveryStatus",
    ("delivered", "read"): "ReceiptStatus",
    ("disclosed", "undisclosed"): "PollKind",
    ("online", "offline", "unavailable"): "PresenceStatus",
}
