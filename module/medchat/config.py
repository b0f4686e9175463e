"""The module's configuration: validated against the JSON Schema shipped beside this file
(`medchat/config.schema.json`, package data) when Synapse starts, with an error naming the bad key."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import jsonschema

from medchat.federation.allowlist import load_signed_allow_list

# Package data, read through importlib.resources so that a wheel (non-editable) install finds it.
SCHEMA_RESOURCE = "config.schema.json"


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(resources.files("medchat").joinpath(SCHEMA_RESOURCE).read_text())
    return schema


def _defaults(schema: dict[str, Any]) -> dict[str, Any]:
    return {key: spec["default"] for key, spec in schema["properties"].items() if "default" in spec}


@dataclass(frozen=True)
class WebSocketConfig:
    heartbeat_seconds: int
    batch_limit: int
    slow_consumer_seconds: int
    token_recheck_seconds: int


@dataclass(frozen=True)
class FederationDirectoryConfig:
    timeout_seconds: float
    cache_seconds: int
    per_second: float
    burst_count: int


_DURATION_UNITS_MS = {
    "ms": 1,
    "s": 1000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 604_800_000,
    "y": 31_536_000_000,
}


def duration_ms(value: int | str) -> int:
    """A schema-checked duration (milliseconds, or "30d" as Synapse's config writes it) in ms."""
    if isinstance(value, int):
        return value
    number = value.rstrip("smhdwy")
    return int(number) * _DURATION_UNITS_MS[value[len(number) :]]


@dataclass(frozen=True)
class CaseRoomConfig:
    phi_detectors: tuple[str, ...]
    mrn_patterns: tuple[str, ...]
    phone_region: str
    allow_warn_mode: bool
    retention_max_lifetime_ms: int | None  # the m.room.retention a new case room starts with


@dataclass(frozen=True)
class StudyGroupConfig:
    allowed_join_rules: tuple[str, ...]
    default_join_rule: str
    space_owner: str


@dataclass(frozen=True)
class MedChatConfig:
    roles: tuple[str, ...]
    registration_enabled: bool
    uploads: dict[str, Any]  # per kind, merged over the schema default by medchat.media.policy
    websocket: WebSocketConfig
    case_rooms: CaseRoomConfig
    study_groups: StudyGroupConfig
    max_expires_in_seconds: int
    contact_requests: bool
    contact_permissions_default: str
    contact_policy: tuple[dict[str, Any], ...]
    federation_allow_list: tuple[str, ...] | None  # with the signed file's servers
    signed_allow_list: tuple[str, ...]  # the servers of `federation_allow_list_file`, signature checked
    directory_listing_level: str
    directory_search_level: str
    directory_page_size_max: int
    verifiers: Mapping[str, tuple[str, ...]]
    federation_directory: FederationDirectoryConfig

    @classmethod
    def parse(cls, raw: dict[str, Any] | None) -> MedChatConfig:
        """Validates `raw` and fills in defaults.

        Raises jsonschema.ValidationError, which Synapse turns into a start-up error naming the
        offending key (`modules.<i>.config.<key>`).
        """
        raw = dict(raw or {})
        schema = load_schema()
        error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(raw))
        if error is not None:
            raise error
        values = {**_defaults(schema), **raw}
        websocket = {**_defaults(schema["properties"]["websocket"]), **values["websocket"]}
        case_rooms = {**_defaults(schema["properties"]["case_rooms"]), **values["case_rooms"]}
        federation_directory = {
            **_defaults(schema["properties"]["federation_directory"]),
            **values["federation_directory"],
        }
        study_groups = {**_defaults(schema["properties"]["study_groups"]), **values["study_groups"]}
        study_groups.setdefault("default_join_rule", study_groups["allowed_join_rules"][0])
        if study_groups["default_join_rule"] not in study_groups["allowed_join_rules"]:
            raise jsonschema.ValidationError(
                f"{study_groups['default_join_rule']!r} is not one of allowed_join_rules {study_groups['allowed_join_rules']}",
                path=["study_groups", "default_join_rule"],
            )
        allow_file = values["federation_allow_list_file"]
        signed = load_signed_allow_list(allow_file["path"], allow_file["public_key"]) if allow_file else ()
        allow_list = values["federation_allow_list"]
        if signed:  # the inline list, then the file's servers it does not name
            allow_list = list(dict.fromkeys([*(allow_list or ()), *signed]))
        return cls(
            roles=tuple(values["roles"]),
            registration_enabled=values["registration_enabled"],
            contact_requests=values["contact_requests"],
            contact_permissions_default=values["contact_permissions_default"],
            contact_policy=tuple(values["contact_policy"]),
            federation_allow_list=None if allow_list is None else tuple(allow_list),
            signed_allow_list=signed,
            directory_listing_level=values["directory_listing_level"],
            directory_search_level=values["directory_search_level"],
            directory_page_size_max=values["directory_page_size_max"],
            verifiers={institution: tuple(users) for institution, users in values["verifiers"].items()},
            uploads=values["uploads"],
            websocket=WebSocketConfig(**websocket),
            max_expires_in_seconds=values["max_expires_in_seconds"],
            case_rooms=CaseRoomConfig(
                phi_detectors=tuple(case_rooms["phi_detectors"]),
                mrn_patterns=tuple(case_rooms["mrn_patterns"]),
                phone_region=case_rooms["phone_region"],
                allow_warn_mode=case_rooms["allow_warn_mode"],
                retention_max_lifetime_ms=duration_ms(case_rooms["retention"]["max_lifetime"])
                if case_rooms["retention"]
                else None,
            ),
            federation_directory=FederationDirectoryConfig(**federation_directory),
            study_groups=StudyGroupConfig(
                allowed_join_rules=tuple(study_groups["allowed_join_rules"]),
                default_join_rule=study_groups["default_join_rule"],
                space_owner=study_groups["space_owner"],
            ),
        )
