"""Case rooms start with the server's retention policy: an `m.room.retention` state event
(`max_lifetime` from module config `case_rooms.retention`) in the initial state of every new case
room, whether the API or a Matrix client creates it (Synapse's `on_create_room` sees both).
Synapse itself enforces it: clients no longer get events older than `max_lifetime`, and its purge
jobs delete them. A room admin may change the policy afterwards like any state, within Synapse's
`retention.allowed_lifetime_min/max`.

The module refuses to start when that policy could not hold: Synapse's retention support disabled,
or the lifetime outside Synapse's allowed range (Synapse would silently clamp it).
"""

from __future__ import annotations

from typing import Any

from synapse.module_api import ModuleApi
from synapse.module_api.errors import ConfigError

from medchat.roomtypes import case_room_initial_state

RETENTION_STATE = "m.room.retention"
MODULE_KEY = "case_rooms.retention.max_lifetime"


def check_retention(max_lifetime_ms: int | None, limits: tuple[bool, int | None, int | None]) -> None:
    """Raises ConfigError naming the keys when Synapse would not apply the case-room policy."""
    if max_lifetime_ms is None:
        return
    enabled, lowest, highest = limits
    if not enabled:
        raise ConfigError(
            f"MedChat: `{MODULE_KEY}` is set, but Synapse's `retention.enabled` is not: case rooms would keep everything."
        )
    if (lowest is not None and max_lifetime_ms < lowest) or (highest is not None and max_lifetime_ms > highest):
        raise ConfigError(
            f"MedChat: `{MODULE_KEY}` ({max_lifetime_ms} ms) is outside Synapse's "
            f"`retention.allowed_lifetime_min/max` ({lowest} to {highest} ms)."
        )


class CaseRoomRetention:
    def __init__(self, max_lifetime_ms: int | None):
        self._max_lifetime_ms = max_lifetime_ms

    def register(self, api: ModuleApi) -> None:
        if self._max_lifetime_ms is not None:
            api.register_third_party_rules_callbacks(on_create_room=self.on_create_room)

    async def on_create_room(self, requester: Any, config: dict[str, Any], is_requester_admin: bool) -> None:
        """Adds the policy to a new case room's initial state, unless the creator set one."""
        initial_state = case_room_initial_state(config)
        if initial_state is None or any(
            isinstance(e, dict) and e.get("type") == RETENTION_STATE for e in initial_state
        ):
            return
        policy = {"type": RETENTION_STATE, "state_key": "", "content": {"max_lifetime": self._max_lifetime_ms}}
        config["initial_state"] = [*initial_state, policy]
