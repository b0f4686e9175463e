"""Detectors for identifiers that must not be shared in case rooms.

Each detector answers whether a text contains its kind of identifier; the guard reports the kinds
found, never the values. They are deliberately conservative: ordinary clinical text (doses, lab
values, blood pressures, bed numbers, codes, dates without a birth label) must pass.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import phonenumbers

NHS_NUMBER, MRN, PHONE, EMAIL, DATE_OF_BIRTH = (
    "nhs_number",
    "medical_record_number",
    "phone_number",
    "email_address",
    "date_of_birth",
)
KINDS = (NHS_NUMBER, MRN, PHONE, EMAIL, DATE_OF_BIRTH)

_NHS_CANDIDATE = re.compile(r"(?<![\d.])(\d{3})[ -]?(\d{3})[ -]?(\d{4})(?![\d.])")
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
_MONTHS = "january|february|march|april|may|june|july|august|september|october|november|december|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
_FULL_DATE = rf"(?:\d{{1,2}}[/.-]\d{{1,2}}[/.-](?:\d{{4}}|\d{{2}})|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:{_MONTHS})\.?\s+\d{{4}}|(?:{_MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}})"
_DATE_OF_BIRTH = re.compile(
    rf"\b(?:d\.?o\.?b\.?|date\s+of\s+birth|born(?:\s+on)?)\s*[:\-]?\s*{_FULL_DATE}", re.IGNORECASE
)


def nhs_number_valid(digits: str) -> bool:
    """The NHS number's modulus-11 check digit."""
    if len(digits) != 10 or not digits.isdigit() or len(set(digits)) == 1:
        return False
    total = sum(int(d) * weight for d, weight in zip(digits[:9], range(10, 1, -1)))
    check = 11 - total % 11
    check = 0 if check == 11 else check
    return check != 10 and check == int(digits[9])


def has_nhs_number(text: str) -> bool:
    return any(nhs_number_valid("".join(m.groups())) for m in _NHS_CANDIDATE.finditer(text))


def has_email(text: str) -> bool:
    return _EMAIL.search(text) is not None


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
        """The identifier kinds found in any of the texts, in a stable order."""
        texts = [t for t in texts if t]
        return [kind for kind, found in self.detectors.items() if any(found(t) for t in texts)]
