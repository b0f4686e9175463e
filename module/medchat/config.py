"""The module's configuration: validated against config/medchat.schema.json when Synapse starts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema

# The schema is kept in the repository's config/ folder (the project is installed editable),
# so operators read the same file that start-up enforces.
SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config" / "medchat.schema.json"


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


def _defaults(schema: dict[str, Any]) -> dict[str, Any]:
    return {key: spec["default"] for key, spec in schema["properties"].items() if "default" in spec}


@dataclass(frozen=True)
class WebSocketConfig:
    heartbeat_seconds: int
    batch_limit: int
    slow_consumer_seconds: int
    token_recheck_seconds: int


@dataclass(frozen=True)
class MedChatConfig:
    roles: tuple[str, ...]
    registration_enabled: bool
    websocket: WebSocketConfig

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
        return cls(
            roles=tuple(values["roles"]),
            registration_enabled=values["registration_enabled"],
            websocket=WebSocketConfig(**websocket),
        )
