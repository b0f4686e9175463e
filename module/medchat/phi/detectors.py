"""Detectors for identifiers that must not be shared in case rooms.

Each detector answers whether a text contains its kind of identifier; the guard reports the kinds
found, never the values. They are deliberately conservative: ordinary clinical text (doses, lab
values, blood pressures, bed numbers, codes, dates without a birth label) must pass. The guard runs
them on the `text.views` of each text (Unicode tricks and digit separators undone), so a pattern
here sees `943 476 5919` or `9434765919` whichever way the number was written.

Only the detectors that need a label next to the number (record-number patterns, a birth label)
read the view with the spaces between digits removed (`MRN 1234 5678`). An NHS number is read as
ten digits in one run, grouped 3-3-4 or spread one by one: any ten digits in a row of numbers would
too often be a date and a time or two blood pressures (the check digit passes one in eleven).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import phonenumbers

from medchat.phi.text import Views, readings, views

NHS_NUMBER, MRN, PHONE, EMAIL, DATE_OF_BIRTH = (
    "nhs_number",
    "medical_record_number",
    "phone_number",
    "email_address",
    "date_of_birth",
)
KINDS = (NHS_NUMBER, MRN, PHONE, EMAIL, DATE_OF_BIRTH)
_LABELLED = frozenset({MRN, DATE_OF_BIRTH})  # the kinds that also read `Views.joined`

# Ten digits: in one run, grouped 3-3-4, or spread one by one (the views make every separator a space).
_NHS_CANDIDATE = re.compile(r"(?=(?<!\d)(\d{3} ?\d{3} ?\d{4}|(?:\d ){9}\d)(?!\d))")
# Internationalised addresses too (`\w` is any script's letters and digits).
_EMAIL = re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}\b")
# `jo [at] example [dot] org`, `jo(at)example(dot)org`, and `jo at example dot org`.
_BRACKETED = re.compile(r"\s*[\[({<]\s*(at|dot)\s*[\])}>]\s*", re.IGNORECASE)
_SPELLED = re.compile(r"\s+(at|dot)\s+", re.IGNORECASE)
_DOT_WORD = re.compile(r"\bdot\b", re.IGNORECASE)
_SPACED_AT = re.compile(r"\s*@\s*")
_AT_DOMAIN = re.compile(
    r"\s+at\s+(?=[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.(?:com|org|net|edu|gov|uk|nhs|ie|io|de|fr|nl|es|it|eu|au|ca|us|info|me)\b)",
    re.IGNORECASE,
)
_MONTHS = "january|february|march|april|may|june|july|august|september|october|november|december|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
_DAY = r"\d{1,2}(?:st|nd|rd|th)?"
_FULL_DATE = (
    rf"(?:\d{{1,2}}[ /.-]\d{{1,2}}[ /.-](?:\d{{4}}|\d{{2}})(?!\d)|\d{{4}}[ /.-]\d{{1,2}}[ /.-]\d{{1,2}}(?!\d)"
    rf"|\d{{8}}(?!\d)|\d{{6}}(?!\d)|{_DAY}(?:\s+of)?\s+(?:{_MONTHS})\.?,?\s+'?\d{{2,4}}"
    rf"|(?:{_MONTHS})\.?\s+(?:{_DAY},?\s+)?\d{{4}})"
)
_BIRTH_LABEL = r"(?:d\.?\s?o\.?\s?b\.?|date\s*of\s*birth|birth\s*date|birthday|born(?:\s+on)?)"
_DATE_OF_BIRTH = re.compile(rf"\b{_BIRTH_LABEL}[\s:=#-]*(?:(?:is|was|on|of)\s+)?[\s:=-]*{_FULL_DATE}", re.IGNORECASE)


def nhs_number_valid(digits: str) -> bool:
    """The NHS number's modulus-11 check digit."""
    if len(digits) != 10 or not digits.isdigit() or len(set(digits)) == 1:
        return False
    total = sum(int(d) * weight for d, weight in zip(digits[:9], range(10, 1, -1)))
    check = 11 - total % 11
    check = 0 if check == 11 else check
    return check != 10 and check == int(digits[9])


def has_nhs_number(text: str) -> bool:
    return any(nhs_number_valid(m.group(1).replace(" ", "")) for m in _NHS_CANDIDATE.finditer(text))


def has_email(text: str) -> bool:
    """An address, also one with `at` and `dot` written out: in brackets, or as words where `dot` is
    one too or `at` comes before a domain name (`jo at example.org`)."""
    spelled = _AT_DOMAIN.sub("@", _SPACED_AT.sub("@", _BRACKETED.sub(_symbol, text)))
    if _DOT_WORD.search(spelled):
        spelled = _SPELLED.sub(_symbol, spelled)
    return _EMAIL.search(text) is not None or _EMAIL.search(spelled) is not None


def _symbol(word: re.Match[str]) -> str:
    return "@" if word.group(1).lower() == "at" else "."


def has_date_of_birth(text: str) -> bool:
    return _DATE_OF_BIRTH.search(text) is not None


def phone_detector(region: str) -> Callable[[str], bool]:
    """Valid phone numbers for `region` (and international ones), by libphonenumber."""

    def has_phone(text: str) -> bool:
        return any(True for _ in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID))

    return has_phone


def mrn_detector(patterns: Iterable[str]) -> Callable[[str], bool]:
    compiled = [re.compile(p, re.IGNORECASE) for p in patterns]
    return lambda text: any(p.search(text) for p in compiled)


@dataclass(frozen=True)
class Guard:
    """The configured detectors, by kind."""

    detectors: dict[str, Callable[[str], bool]]

    @classmethod
    def from_config(cls, kinds: Iterable[str], mrn_patterns: Iterable[str], phone_region: str) -> Guard:
        available = {
            NHS_NUMBER: has_nhs_number,
            MRN: mrn_detector(mrn_patterns),
            PHONE: phone_detector(phone_region),
            EMAIL: has_email,
            DATE_OF_BIRTH: has_date_of_birth,
        }
        return cls({kind: available[kind] for kind in kinds})

    def kinds_in(self, texts: Iterable[str]) -> list[str]:
        """The identifier kinds found in any of the texts (read through their views), in a stable order."""
        read = [views(r) for t in dict.fromkeys(texts) if t for r in readings(t)]
        return [kind for kind, found in self.detectors.items() if any(found(v) for v in _read_by(kind, read))]


def _read_by(kind: str, read: list[Views]) -> dict[str, None]:
    """The distinct views a kind's detector reads."""
    return dict.fromkeys(v for r in read for v in (r if kind in _LABELLED else (r.plain, r.tokens)))
