"""What every piece of text a client sends must be before the module looks at it, and the rule for
names, as pure functions.

Bodies, query strings and paths all come down to strings, and some strings cannot go anywhere:
a lone UTF-16 surrogate (the JSON escape `"\\ud800"`, or the bytes of one in CESU-8) cannot be
encoded as UTF-8, so the database and the JSON encoder fail on it half-way through a write; U+0000
cannot be stored in a PostgreSQL text column. Refusing them when the request is read (api/http.py;
synapse/http.py for paths) means no handler ever sees one, so no write is left half done. JSON
nested deeper than any body needs is refused the same way, before recursion limits turn it into a
500.

Names (display names, room names, institutions, ...) are shown to other people, so they must not
hide text or change its direction: `name_problem` is the one rule, used by the request models
(api/schemas/base.py) and by the event rules on Matrix clients' room names and topics
(rules/room_text.py).
"""

from __future__ import annotations

import json
import re
import unicodedata
import urllib.parse
from typing import Any, NoReturn

# No request body of the API comes close; deep enough for any `extra` a client may attach.
MAX_JSON_DEPTH = 64

# What a name may not contain, as a regular-expression class (Python's and JSON Schema's): the
# control characters (category Cc), the line and paragraph separators, and Unicode's explicit
# embeddings, overrides and isolates (LRE..RLO, LRI..PDI), which reorder the text after them so
# "Dr. A\u202egnik" shows as another name. The bidi marks (LRM, RLM, ALM) only nudge neutral
# characters and are needed in mixed-script names; joiners (ZWJ in emoji) stay allowed too.
NAME_REFUSED = r"\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069"
# Prose (a topic, a bio) may also have tabs and line breaks.
PROSE_REFUSED = r"\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069"
_REFUSED = {False: re.compile(f"[{NAME_REFUSED}]"), True: re.compile(f"[{PROSE_REFUSED}]")}
_KINDS = {"Cc": "the control character", "Zl": "the line separator", "Zp": "the paragraph separator"}


class NotJson(ValueError):
    """The bytes are not a JSON document the API accepts (the message says why)."""


def _refuse_constant(name: str) -> NoReturn:
    raise NotJson(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise NotJson(f"{text[:20]} is out of range")
    return value


def load_json(raw: bytes) -> Any:
    """`raw` parsed as JSON, refusing NaN and infinities and anything nested deeper than
    MAX_JSON_DEPTH; NotJson otherwise (also for bytes in no Unicode encoding and numbers too long
    to convert)."""
    try:
        value = json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite)
    except RecursionError:
        raise NotJson(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError, an integer of too many digits
        raise NotJson(str(e) if isinstance(e, NotJson) else "not valid JSON") from None
    if _deeper_than(value, MAX_JSON_DEPTH):
        raise NotJson(f"nested deeper than {MAX_JSON_DEPTH} levels")
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    if not isinstance(value, (dict, list)):
        return False
    if limit == 0:
        return True
    children = value.values() if isinstance(value, dict) else value
    return any(_deeper_than(child, limit - 1) for child in children)


def string_problem(text: str) -> str | None:
    """Why a string cannot be taken (a lone surrogate, U+0000), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid Unicode (a lone UTF-16 surrogate)"
    if "\x00" in text:
        return "contains a NUL character (U+0000)"
    return None


def json_path(parts: tuple[int | str, ...]) -> str:
    """`members[0].name` for ("members", 0, "name"); "" for the document itself."""
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def bad_string(value: Any, parts: tuple[int | str, ...] = ()) -> tuple[str, str] | None:
    """(what, problem) for the first string of a parsed document that `string_problem` refuses,
    keys included, or None. `what` names it: `field members[0]`, or `field name in members[0]`
    for a key (which cannot be shown)."""
    if isinstance(value, str):
        problem = string_problem(value)
        return (f"field {json_path(parts)}", problem) if problem else None
    if isinstance(value, dict):
        for key, child in value.items():
            problem = string_problem(key)
            if problem:
                return f"field name in {json_path(parts) or 'the request body'}", problem
            found = bad_string(child, (*parts, key))
            if found:
                return found
    if isinstance(value, list):
        for index, child in enumerate(value):
            found = bad_string(child, (*parts, index))
            if found:
                return found
    return None


def name_problem(text: str, *, prose: bool = False) -> str | None:
    """Why `text` cannot be a name (NAME_REFUSED), or None; `prose` (PROSE_REFUSED) also allows
    tabs and line breaks."""
    found = _REFUSED[prose].search(text)
    if found is None:
        return None
    char = found.group()
    kind = _KINDS.get(unicodedata.category(char), "the bidirectional override")
    return f"contains {kind} U+{ord(char):04X}"


def path_problem(raw: bytes) -> str | None:
    """Why a request path (as sent, percent-encoded: Twisted itself refuses a request line with raw
    non-ASCII bytes) cannot be routed, or None: escapes of no UTF-8 text, or of U+0000."""
    try:
        text = urllib.parse.unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return "is not UTF-8 once percent-decoded"
    return string_problem(text)


REMOTE_TEXT_LIMIT = 500


def remote_text(value: Any) -> str | None:
    """A text field another server sent (a directory answer, a profile), cut to
    REMOTE_TEXT_LIMIT characters; anything but a string is None."""
    return value[:REMOTE_TEXT_LIMIT] if isinstance(value, str) else None
