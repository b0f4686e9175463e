"""Which Matrix events the app shows as messages, and what each kind adds to the Message model.

Matrix clients send many kinds: msgtypes of `m.room.message` (text, notice, emote, media, location,
voice), `m.sticker`, polls (`m.poll.start` and the MSC3381 unstable form Element sends),
`m.room.encrypted`, and custom types nobody here has heard of. Every event of the timeline that is
neither state nor a relation acting on another event (an edit, a reaction, a poll response or end,
a redaction) is a message of the app: a kind the model cannot represent is shown as `unsupported`
with its Matrix type, so nothing a Matrix client shows vanishes from the REST API.

Polls are read in both forms (stable `m.poll.*` with `m.text` blocks, unstable
`org.matrix.msc3381.*` with `org.matrix.msc1767.text`) and sent in the unstable form, the one
Element reads and sends (handlers/polls.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medchat.htmlsafe import sanitise_html
from medchat.polls import poll_start, text_of

JsonDict = dict[str, Any]

MESSAGE = "m.room.message"
STICKER = "m.sticker"
ENCRYPTED = "m.room.encrypted"
POLL_START = ("org.matrix.msc3381.poll.start", "m.poll.start")
POLL_RESPONSE = ("org.matrix.msc3381.poll.response", "m.poll.response")
POLL_END = ("org.matrix.msc3381.poll.end", "m.poll.end")
# Types that only act on another event (aggregated into it or applied to it): never a message.
HIDDEN_TYPES = ("m.reaction", "m.room.redaction", *POLL_RESPONSE, *POLL_END)
# Events Synapse never serves to clients (its dummy events, sent to merge forward extremities):
# left out of a history read by type, so that they cost its page nothing.
NEVER_SERVED_TYPES = ("org.matrix.dummy_event",)
# Relations that make any event an act on another one; `m.thread` messages are messages.
ACTING_RELATIONS = ("m.replace", "m.annotation", "m.reference")
# The types a room's `last_message` is looked for in (a short, type-filtered read).
SHOWN_TYPES = (MESSAGE, STICKER, ENCRYPTED, *POLL_START)

MESSAGE_TYPES = (
    "text",
    "notice",
    "emote",
    "image",
    "file",
    "audio",
    "video",
    "location",
    "sticker",
    "poll",
    "encrypted",
    "unsupported",
)
# What `POST …/messages` sends (polls have their own endpoints; stickers come from sticker packs;
# `encrypted` is the ciphertext the app's own crypto library made, medchat.encrypted).
SENDABLE_TYPES = (*MESSAGE_TYPES[:8], "encrypted")
MEDIA_TYPES = ("image", "file", "audio", "video", "sticker")
_MSGTYPES = {
    "m.text": "text",
    "m.notice": "notice",
    "m.emote": "emote",
    "m.image": "image",
    "m.file": "file",
    "m.audio": "audio",
    "m.video": "video",
    "m.location": "location",
}
MSGTYPE_FOR = {v: k for k, v in _MSGTYPES.items()}

HTML_FORMAT = "org.matrix.custom.html"
VOICE = "org.matrix.msc3245.voice"
AUDIO = "org.matrix.msc1767.audio"
LOCATION = "org.matrix.msc3488.location"


def relation(content: JsonDict) -> JsonDict:
    return _block(content, "m.relates_to")


def is_shown(event: JsonDict) -> bool:
    """Whether a timeline event is a message of the app (see the module docstring)."""
    if "state_key" in event or not event.get("event_id"):
        return False
    return is_shown_kind(event.get("type", ""), event.get("content") or {})


def is_shown_kind(event_type: str, content: Mapping[str, Any]) -> bool:
    """`is_shown` for a timeline (non-state) event given by its type and content, as Synapse's
    events (whose content is an immutabledict) give them: the one rule of what the message
    endpoints show, which notifications follow so that every notification opens with GET."""
    if event_type in HIDDEN_TYPES:
        return False
    relates_to = content.get("m.relates_to")
    return not (isinstance(relates_to, Mapping) and relates_to.get("rel_type") in ACTING_RELATIONS)


def message_type(event_type: str, shown: JsonDict) -> str:
    if event_type == MESSAGE:
        # An unknown msgtype is shown by its `body`, as the spec tells clients to.
        return _MSGTYPES.get(shown.get("msgtype", ""), "text")
    if event_type == STICKER:
        return "sticker"
    if event_type in POLL_START:
        return "poll"
    if event_type == ENCRYPTED:
        return "encrypted"
    return "unsupported"


def thread_of(original: JsonDict) -> tuple[str | None, bool]:
    """(thread root, whether `m.in_reply_to` is only the thread's fallback) of a message."""
    rel = relation(original)
    if rel.get("rel_type") != "m.thread" or not isinstance(rel.get("event_id"), str):
        return None, False
    return rel["event_id"], rel.get("is_falling_back") is True


def formatting(shown: JsonDict, is_reply: bool) -> tuple[str | None, str | None]:
    """(`format`, `formatted_content`): `html` and the sanitised HTML, else (None, None)."""
    formatted = shown.get("formatted_body")
    if shown.get("format") != HTML_FORMAT or not isinstance(formatted, str):
        return None, None
    return "html", sanitise_html(formatted, strip_reply=is_reply)


def _block(content: JsonDict, key: str) -> JsonDict:
    found = content.get(key)
    return found if isinstance(found, dict) else {}


def _duration(shown: JsonDict, info: JsonDict) -> int | None:
    audio = _block(shown, AUDIO)
    for value in (audio.get("duration"), info.get("duration")):
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def _waveform(shown: JsonDict) -> list[int] | None:
    waveform = _block(shown, AUDIO).get("waveform")
    if not isinstance(waveform, list):
        return None
    return [v for v in waveform if isinstance(v, int) and not isinstance(v, bool)]


def geo_uri(shown: JsonDict) -> str | None:
    location = shown.get(LOCATION) or shown.get("m.location")
    uri = shown.get("geo_uri") or (location.get("uri") if isinstance(location, dict) else None)
    return uri if isinstance(uri, str) else None


def location_description(shown: JsonDict, body: str | None) -> str | None:
    location = shown.get(LOCATION) or shown.get("m.location")
    description = location.get("description") if isinstance(location, dict) else None
    return description if isinstance(description, str) else body


def kind_fields(event_type: str, kind: str, shown: JsonDict, info: JsonDict, deleted: bool) -> JsonDict:
    """The model's fields beyond the plan's, null where the kind has none (and all of them for a
    deleted message, whose content Synapse has already pruned)."""
    fields: JsonDict = {"duration": None, "waveform": None, "is_voice": False, "geo_uri": None}
    if deleted:
        return fields
    if kind in ("audio", "video"):
        fields["duration"] = _duration(shown, info)
    if kind == "audio":
        fields["is_voice"] = isinstance(shown.get(VOICE), dict)
        fields["waveform"] = _waveform(shown)
    if kind == "location":
        fields["geo_uri"] = geo_uri(shown)
    return fields


def shown_text(kind: str, shown: JsonDict, body: str | None) -> str | None:
    """The model's `content` for the kinds whose text is not simply `body`."""
    if kind == "poll":
        start = poll_start(shown)
        return start.question if start else body
    if kind == "location":
        return location_description(shown, body)
    if kind == "encrypted":
        return None
    if kind == "unsupported" and body is None:
        return text_of(shown)
    return body
