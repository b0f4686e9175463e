"""Every text an event carries, for the patient-identifier guard.

A guard that reads `body` alone is passed by a caption, a file name, an edit, a reaction, a poll,
a sticker, an extensible-event text block, a room name or topic, a display name, or any custom
event or state type a client cares to show. Clients keep inventing carriers, so this does not list
them: it reads every string of the content, at any depth (keys too), and the state key, and skips
only what is machine data and never shown as text:

- values that are Matrix identifiers or media: `mxc://` URIs, user ids, room ids, event ids;
- fields that are identifiers by name: `msgtype`, `rel_type`, `mimetype`, `membership`, `format`,
  `algorithm`, and what encryption, signing and calls carry (`hashes`, `signatures`, JWK fields,
  `ciphertext`, `sender_key`, `session_id`, `device_id`, `sdp`, `candidate`), and location and
  preview codes (`geo_uri`, `blurhash`), whose digits would read as numbers;
- the markers this server writes itself (`org.medchat.phi_warning`, `org.medchat.expires_at`).

HTML is read as rendered (`text.html_text`) as well as raw. Event content is at most 64 KiB, so
reading all of it is bounded; the walk is iterative, so no nesting is too deep for it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from medchat.models import EXPIRES_AT, PHI_WARNING
from medchat.phi.text import html_text

_MACHINE_FIELDS = frozenset(
    {
        "msgtype",
        "rel_type",
        "mimetype",
        "membership",
        "format",
        "algorithm",
        "hashes",
        "signatures",
        "kty",
        "key_ops",
        "alg",
        "k",
        "iv",
        "ciphertext",
        "sender_key",
        "session_id",
        "device_id",
        "sdp",
        "candidate",
        "geo_uri",
        "blurhash",
        "xyz.amorgan.blurhash",
        PHI_WARNING,
        EXPIRES_AT,
    }
)
# The shapes of ids as servers make them; a short digit string dressed as one (`$9434765919`) is read.
_SERVER = r"(?:[A-Za-z0-9-]+\.[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]|localhost)(?::\d{1,5})?"
_MACHINE_VALUE = re.compile(
    rf"mxc://{_SERVER}/[A-Za-z0-9_-]{{16,}}"  # media
    rf"|[@!][^\s:]+:{_SERVER}"  # a user or room id
    rf"|\$[A-Za-z0-9+/_-]{{40,}}|\$[A-Za-z0-9+/_=-]+:{_SERVER}"  # an event id (rooms v1-2: with a server)
)
_MARKUP = re.compile(r"<[^>]*>|&#?\w+;")


def _texts_of(value: str) -> list[str]:
    """A shown string, and its rendered text if it holds markup."""
    if _MACHINE_VALUE.fullmatch(value):
        return []
    return [value, html_text(value)] if _MARKUP.search(value) else [value]


def event_texts(state_key: str | None, content: Mapping[str, Any]) -> list[str]:
    """Every human-readable string of an event: its state key (unless a user id) and content.

    Event content is Synapse's immutabledict and frozen lists, hence Mapping and any sequence.
    """
    texts = _texts_of(state_key) if state_key else []
    pending: list[Any] = [content]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            texts += _texts_of(value)
        elif isinstance(value, Mapping):
            for key, item in value.items():
                if key not in _MACHINE_FIELDS:
                    texts += _texts_of(key) if isinstance(key, str) else []
                    pending.append(item)
        elif isinstance(value, (list, tuple)):
            pending.extend(value)
    return texts
