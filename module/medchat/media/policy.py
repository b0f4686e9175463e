"""Which kinds of upload exist, which detected types each accepts, and how large they may be."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from medchat.config import load_schema

KINDS = ("image", "audio", "video", "file")


@dataclass(frozen=True)
class KindRules:
    kind: str
    allowed_types: frozenset[str]
    max_bytes: int


def upload_rules(configured: Mapping[str, Any]) -> dict[str, KindRules]:
    """Per kind, the configured keys over the schema's defaults (a kind may set only one key)."""
    defaults = load_schema()["properties"]["uploads"]["default"]
    rules = {}
    for kind in KINDS:
        values = {**defaults[kind], **configured.get(kind, {})}
        rules[kind] = KindRules(kind, frozenset(values["allowed_types"]), values["max_bytes"])
    return rules
