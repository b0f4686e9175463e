"""End-to-end encrypted messages: the ciphertext the REST API carries both ways, never plaintext.

In an encrypted room the app encrypts on the device with a Matrix crypto library (vodozemac,
matrix-sdk-crypto, libolm) and the server only relays Megolm ciphertext, as it does for Element.
Matrix keeps relations (`m.relates_to`: replies, edits, threads) in the clear, so the server can
still link, aggregate and redact; everything inside the ciphertext (text, media, captions) it
cannot read, search or guard. Kept in one small module so the Message model, the send path and
the WebSocket share one definition of the payload.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from synapse.types import JsonDict

ENCRYPTED = "m.room.encrypted"
ENCRYPTION = "m.room.encryption"
MEGOLM = "m.megolm.v1.aes-sha2"
# The room state `encrypted: true` sets at creation (Element's default algorithm).
ENCRYPTION_CONTENT: JsonDict = {"algorithm": MEGOLM}
# The fields of a Megolm `m.room.encrypted` content, in the order the API shows them.
# `sender_key` and `device_id` are deprecated by Matrix 1.3 but still sent by most clients.
PAYLOAD_FIELDS = ("algorithm", "ciphertext", "sender_key", "session_id", "device_id")


def is_encrypted_event(event: Mapping[str, Any]) -> bool:
    return event.get("type") == ENCRYPTED


def _fields(content: Mapping[str, Any]) -> JsonDict | None:
    """The payload fields of an `m.room.encrypted` content; None if it holds no Megolm ciphertext
    (redacted, or another algorithm's per-device map)."""
    if not isinstance(content.get("ciphertext"), str):
        return None
    return {field: content.get(field) if isinstance(content.get(field), str) else None for field in PAYLOAD_FIELDS}


def encrypted_payload(event: Mapping[str, Any]) -> JsonDict | None:
    """The Message model's `encrypted` object: the event's ciphertext and, when it was edited, the
    latest edit's (Synapse bundles an edit of the same type and sender), which decrypts to the
    replacement (`m.new_content`). None for an event that is not encrypted or holds no ciphertext."""
    if not is_encrypted_event(event):
        return None
    payload = _fields(event.get("content") or {})
    if payload is None:
        return None
    edit = (event.get("unsigned") or {}).get("m.relations", {}).get("m.replace")
    edit_payload = _fields(edit.get("content") or {}) if isinstance(edit, Mapping) else None
    payload["edit"] = {"id": edit["event_id"], **edit_payload} if edit_payload is not None and edit else None
    return payload


def encrypted_content(payload: Mapping[str, Any], relates_to: JsonDict | None) -> JsonDict:
    """The `m.room.encrypted` content for a payload the app encrypted, with the relation in the
    clear (as Matrix clients send it); fields left out are not sent."""
    content: JsonDict = {field: payload[field] for field in PAYLOAD_FIELDS if payload.get(field) is not None}
    if relates_to:
        content["m.relates_to"] = relates_to
    return content


def is_encryption_state(state: Mapping[Any, Any]) -> bool:
    """Whether the room's state (keyed by (type, state_key)) turns encryption on: any
    `m.room.encryption` with an algorithm, whoever set it (the API or a Matrix client)."""
    event = state.get((ENCRYPTION, ""))
    content = getattr(event, "content", None)
    if content is None and isinstance(event, Mapping):
        content = event.get("content")
    return isinstance(content, Mapping) and isinstance(content.get("algorithm"), str)
