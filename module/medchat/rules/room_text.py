"""Room names and topics from Matrix clients follow the API's rule (medchat.wellformed.name_problem):
no control characters, line breaks or bidi overrides in a name, none but tabs and line breaks in
a topic. Without this, Element could set the "Dr. A\\u202egnik" the API refuses.

- `check_event_allowed` refuses an `m.room.name` / `m.room.topic` a local user sends (400
  M_INVALID_PARAM naming the field, passed to the client as it is). Events of other servers are
  left alone: refusing them would split the room's state between the servers.
- `on_create_room` refuses createRoom's `name`, `topic` and `initial_state` ones before anything of
  the room exists, so a refused name leaves no half-made room behind.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from synapse.module_api import ModuleApi
from synapse.module_api.errors import SynapseError

from medchat import errors
from medchat.wellformed import name_problem

# The state event, the content field holding its text, and whether that text is prose.
_TEXT_FIELDS = {"m.room.name": ("name", False), "m.room.topic": ("topic", True)}


def room_text_refusal(event_type: Any, content: Any) -> SynapseError | None:
    """The 400 for a room name or topic event whose text `name_problem` refuses, or None."""
    spec = _TEXT_FIELDS.get(event_type) if isinstance(event_type, str) else None
    if spec is None or not isinstance(content, Mapping):
        return None
    field, prose = spec
    value = content.get(field)
    problem = name_problem(value, prose=prose) if isinstance(value, str) else None
    return errors.invalid_param(f"Invalid field {field}: {problem}") if problem else None


def _creation_events(config: Mapping[str, Any]) -> Iterable[tuple[Any, Any]]:
    """(type, content) of the name and topic a createRoom request would set."""
    yield "m.room.name", {"name": config.get("name")}
    yield "m.room.topic", {"topic": config.get("topic")}
    for event in config.get("initial_state") or ():
        if isinstance(event, Mapping):
            yield event.get("type"), event.get("content")


class RoomTextRules:
    def __init__(self, api: ModuleApi):
        self._api = api

    def register(self, api: ModuleApi) -> None:
        api.register_third_party_rules_callbacks(
            check_event_allowed=self.check_event_allowed, on_create_room=self.on_create_room
        )

    async def check_event_allowed(self, event: Any, state_events: Any) -> tuple[bool, dict | None]:
        if event.is_state() and self._api.is_mine(event.sender):
            refusal = room_text_refusal(event.type, event.content)
            if refusal is not None:
                raise refusal
        return True, None

    async def on_create_room(self, requester: Any, config: dict[str, Any], is_requester_admin: bool) -> None:
        for event_type, content in _creation_events(config):
            refusal = room_text_refusal(event_type, content)
            if refusal is not None:
                raise refusal
