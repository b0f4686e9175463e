"""The MedChat room kinds that Matrix carries in `m.room.create`'s `type`, so every server and
client can tell them apart (plain chats have no type; Matrix spaces are `m.space`), and the room
state MedChat defines for them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CASE_ROOM = "org.medchat.case"
STUDY_GROUP = "org.medchat.study_group"
SPACE = "m.space"

# `m.room.create` content key naming the institution a space or study group belongs to: fixed at
# creation, readable by every server and client.
INSTITUTION_KEY = "org.medchat.institution"

# The API's `type` of a room whose `m.room.create` has a type (plain rooms are direct or group).
KIND_OF_TYPE = {CASE_ROOM: "case", STUDY_GROUP: "study_group", SPACE: "space"}

# A case room's patient-identifier guard: state `{"mode": "refuse" | "warn"}`; absent = refuse.
PHI_GUARD_STATE = "org.medchat.phi_guard"
REFUSE, WARN = "refuse", "warn"
PHI_GUARD_MODES = (REFUSE, WARN)


def is_case_room_create(create: Any | None) -> bool:
    """Whether an `m.room.create` event (or None, when the state has none) makes a case room."""
    content = getattr(create, "content", None) if create is not None else None
    return isinstance(content, Mapping) and content.get("type") == CASE_ROOM


def case_room_initial_state(create_config: Any) -> list[Any] | None:
    """For a createRoom request that makes a case room, its `initial_state` list (perhaps
    empty); None for any other room."""
    creation = create_config.get("creation_content")
    if not isinstance(creation, dict) or creation.get("type") != CASE_ROOM:
        return None
    initial_state = create_config.get("initial_state")
    return initial_state if isinstance(initial_state, list) else []


def phi_guard_mode(state_event: Any | None) -> str:
    """The guard mode a room's `org.medchat.phi_guard` state sets (refuse unless it says warn)."""
    mode = state_event.content.get("mode") if state_event is not None else None
    return WARN if mode == WARN else REFUSE
