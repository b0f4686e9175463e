"""The Matrix event content of a message the app sends, for each kind `POST …/messages` takes.

The shapes are the ones Element sends and reads, so a message sent here shows there as its kind:
formatted text with `org.matrix.custom.html` (sanitised by htmlsafe.py, as incoming HTML is), a
location with `geo_uri` and its MSC3488 block, a voice message as `m.audio` with the
MSC3245/MSC1767 blocks Element draws its voice bubble from. MessageSendBody has checked the shape
of the request; what needs the server (the upload is this server's) is checked here, before
anything is sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from medchat import errors
from medchat.htmlsafe import sanitise_html
from medchat.messagekinds import AUDIO, HTML_FORMAT, LOCATION, MSGTYPE_FOR, VOICE
from medchat.models import JsonDict
from medchat.phi.text import html_text
from medchat.polls import TEXT_BLOCK

if TYPE_CHECKING:
    from medchat.api.schemas.requests import MessageSendBody

_VOICE_NAME = "Voice message"


def message_content(body: MessageSendBody, server_name: str) -> JsonDict:
    """The `m.room.message` content of the request (without reply, thread or expiry)."""
    kind = body.message_type
    if kind in ("text", "notice", "emote"):
        return _text(kind, body.content, body.formatted_content)
    if kind == "location":
        return _location(body.geo_uri or "", body.content)
    return _media(body, server_name)


def _text(kind: str, text: str | None, markup: str | None) -> JsonDict:
    content: JsonDict = {"msgtype": MSGTYPE_FOR[kind]}
    if markup is None:
        return {**content, "body": text}
    formatted = sanitise_html(markup, strip_reply=True)
    plain = text if text and text.strip() else html_text(formatted).strip()
    if not plain:
        raise errors.invalid_param("Invalid field formatted_content: no text is left once sanitised.")
    return {**content, "body": plain, "format": HTML_FORMAT, "formatted_body": formatted}


def _location(uri: str, description: str | None) -> JsonDict:
    """A pinned location (not the sender's own, not live), with the MSC3488 block and text fallback."""
    text = description if description and description.strip() else f"Location {uri}"
    block: JsonDict = {"uri": uri}
    if description and description.strip():
        block["description"] = description
    return {
        "msgtype": "m.location",
        "body": text,
        "geo_uri": uri,
        LOCATION: block,
        "org.matrix.msc3488.asset": {"type": "m.pin"},
        TEXT_BLOCK: text,
    }


def _media(body: MessageSendBody, server_name: str) -> JsonDict:
    media_url = body.media_url or ""
    if not media_url.startswith(f"mxc://{server_name}/"):
        raise errors.invalid_param(f"Invalid field media_url: must be an mxc:// URL of {server_name}.")
    info = {
        key: getattr(body, field)
        for field, key in (
            ("mime_type", "mimetype"),
            ("file_size", "size"),
            ("width", "w"),
            ("height", "h"),
            ("duration", "duration"),
        )
        if getattr(body, field) is not None
    }
    voice = bool(body.voice or body.waveform is not None)
    file_name = body.file_name or (_VOICE_NAME if voice else body.message_type)
    content: JsonDict = {
        "msgtype": MSGTYPE_FOR[body.message_type],
        "body": body.content or file_name,
        "url": media_url,
        "info": info,
    }
    content["filename"] = file_name  # with a differing body, the body is a caption (Matrix 1.10)
    if voice:
        audio: JsonDict = {"waveform": body.waveform or []}
        if body.duration is not None:
            audio["duration"] = body.duration
        content[AUDIO] = audio
        content[VOICE] = {}
        content[TEXT_BLOCK] = content["body"]
    return content
