"""The verification ladder (Siilo and Celo use the same three steps).

A pure vocabulary: which levels exist and how they compare. Whose level is what is answered by
`Verification.level_of`, the one function every rule keys on.
"""

from __future__ import annotations

from medchat import errors

LEVELS: tuple[str, ...] = ("unverified", "identity_verified", "license_verified")
UNVERIFIED, LICENSE_VERIFIED = LEVELS[0], LEVELS[-1]


def rank(level: str) -> int:
    return LEVELS.index(level)


def at_least(level: str, minimum: str) -> bool:
    return rank(level) >= rank(minimum)


def levels_from(minimum: str) -> tuple[str, ...]:
    """Every level at or above `minimum`, for SQL `IN` lists."""
    return LEVELS[rank(minimum) :]


def is_verified(level: str) -> bool:
    """The plan's `is_verified`: a checked professional licence."""
    return level == LICENSE_VERIFIED


def check_level(level: str, field: str = "level") -> str:
    if level not in LEVELS:
        raise errors.invalid_param(f"Unknown {field} {level!r}; allowed: {', '.join(LEVELS)}")
    return level
