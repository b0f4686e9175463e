"""Text as a reader sees it, for the patient-identifier detectors.

An identifier is what a person reads, not the code points a client sent: `943.476.5919`,
`９４３ ４７６ ５９１９`, `943\\u200b476\\u200b5919` and `9 4 3 4 7 6 5 9 1 9` are one NHS number, and
`jo＠example.org` is an e-mail address. So the detectors never read raw text; they read `views`
of it, in which every such trick has been undone:

- Unicode NFKC (full-width and mathematical forms, ligatures, superscripts, circled digits);
  invisible characters removed (format characters, category Cf: zero-width space, joiner and
  non-joiner, word joiner, soft hyphen, BOM, bidi marks; combining marks; Hangul fillers); every
  decimal digit of any script made ASCII, and the CJK numerals; Cyrillic and Greek letters that
  look Latin made Latin; every kind of space one space, every dash a hyphen, every full stop (`。`)
  a dot.
- Between two digits, any run of up to three spaces, punctuation marks or symbols (dot, slash,
  hyphen, underscore, apostrophe, ...) is one space, as is a lone comma: `943 476 5919`. A comma or
  semicolon next to a space is a list and stays, and a colon is a time (`08:30 14:45` read as digits
  would make phone numbers). A letter O or I/l between digits is the digit, as is an O at either end
  of a number that no other letter touches (`O7911`).
- Three views: that text; the same tokenised as a file name is (`_ . - / \\`, brackets, quotes, `=`,
  `|`, `~`, `*` are spaces, spaced single letters joined: `M R N`, `D O B`, and digits written as
  words made digits: `oh seven nine`); and the tokenised text with the spaces between digits
  removed, so a spread number is one run (`MRN 1234 5678` is `MRN 12345678`).
- A text with a right-to-left override (U+202E) is shown with the overridden run reversed, so it is
  also read reversed, and one with percent-escapes (`nhs%209434765919.pdf`) also decoded
  (`readings`).

HTML (`formatted_body`) is read as its rendered text by `html_text`.

Only the detectors read these views: the event is never changed, and no view is stored or logged.
"""

from __future__ import annotations

import html
import re
import unicodedata
from typing import NamedTuple
from urllib.parse import unquote

# Cyrillic and Greek letters drawn like Latin ones (the letters identifier labels are made of).
_HOMOGLYPHS = str.maketrans(
    "АВЕЅІЈКМНОРСТХУаеіјорсѕхуԁԛԝѵΑΒΕΖΗΙΚΜΝΟΡΤΥΧοιν",
    "ABESIJKMHOPCTXYaeijopcsxydqwvABEZHIKMNOPTYXoiv",
)
_CJK_DIGITS = {c: str(d) for d, c in enumerate("〇一二三四五六七八九")} | {"零": "0"}
_DIGIT_WORDS = re.compile(r"\b(zero|oh|nought|one|two|three|four|five|six|seven|eight|nine)\b", re.IGNORECASE)
_DIGIT_OF_WORD = {"oh": "0", "nought": "0"} | {
    w: str(d) for d, w in enumerate("zero one two three four five six seven eight nine".split())
}
_RIGHT_TO_LEFT_OVERRIDE = "\u202e"
_FULL_STOPS = {"\u3002", "\uff61", "\ufe12"}
_PERCENT_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_INVISIBLE_CATEGORIES = {"Cf", "Mn", "Me"}
_INVISIBLE_LETTERS = {"\u115f", "\u1160", "\u3164", "\uffa0"}  # Hangul fillers: letters drawn as nothing
_SPACES = re.compile(r"\s+")
_DIGIT_GAP = re.compile(r"(?<=\d)(?:(?:[^\w,;:]|_){1,3}|[,;])(?=\d)")
_DIGIT_LOOKALIKES = (
    (re.compile(r"(?<=\d)[Oo](?=\d)|(?<![A-Za-z])[Oo](?=\d)|(?<=\d)[Oo](?![A-Za-z])"), "0"),
    (re.compile(r"(?<=\d)[Il|](?=\d)"), "1"),
)
_NAME_SEPARATORS = re.compile(r"[_./\\\-=()\[\]{}|~*'\"<>]+")
_LETTER_GAP = re.compile(r"(?<=\b[A-Za-z]) (?=[A-Za-z]\b)")
_DIGITS_SPACE = re.compile(r"(?<=\d) (?=\d)")
_BLOCK_TAG = re.compile(
    r"<\s*/?\s*(?:br|p|div|li|ul|ol|tr|td|th|table|h[1-6]|blockquote|pre|hr|dt|dd)\b[^>]*>", re.IGNORECASE
)
_TAG_OR_COMMENT = re.compile(r"<!--.*?-->|<[^>]*>", re.DOTALL)


def _visible(char: str) -> str:
    """One character as the detectors read it: nothing if it is drawn as nothing, ASCII if a digit."""
    category = unicodedata.category(char)
    if category in _INVISIBLE_CATEGORIES or char in _INVISIBLE_LETTERS:
        return ""
    if category == "Nd":
        return str(unicodedata.decimal(char))
    if char in _CJK_DIGITS:
        return _CJK_DIGITS[char]
    if char in _FULL_STOPS:
        return "."
    if category == "Pd" or char == "\u2212":  # every dash, and the minus sign
        return "-"
    return char


def normalise(text: str) -> str:
    """The text with invisible characters, look-alikes and digit separators undone."""
    text = "".join(_visible(c) for c in unicodedata.normalize("NFKC", text)).translate(_HOMOGLYPHS)
    text = _SPACES.sub(" ", text)
    text = _DIGIT_GAP.sub(" ", text)
    for pattern, digit in _DIGIT_LOOKALIKES:
        text = pattern.sub(digit, text)
    return _DIGIT_GAP.sub(" ", text)


class Views(NamedTuple):
    """The forms of one text the detectors read (see the module docstring)."""

    plain: str
    tokens: str
    joined: str


def views(text: str) -> Views:
    """The three views of one reading of a text."""
    plain = normalise(text)
    tokens = _LETTER_GAP.sub("", _SPACES.sub(" ", _NAME_SEPARATORS.sub(" ", plain)))
    tokens = _DIGIT_GAP.sub(" ", _DIGIT_WORDS.sub(lambda w: _DIGIT_OF_WORD[w.group(1).lower()], tokens))
    return Views(plain, tokens, _DIGITS_SPACE.sub("", tokens))


def readings(text: str) -> list[str]:
    """The text as stored; reversed if a right-to-left override makes readers see it so; decoded if
    it holds percent-escapes, as a link or file name shows them."""
    found = [text]
    if _RIGHT_TO_LEFT_OVERRIDE in text:
        found.append(text[::-1])
    if _PERCENT_ESCAPE.search(text):
        found.append(unquote(text))
    return found


def html_text(markup: str) -> str:
    """HTML as it is rendered: block tags are breaks, other tags nothing, entities their characters."""
    return html.unescape(_TAG_OR_COMMENT.sub("", _BLOCK_TAG.sub(" ", markup)))
