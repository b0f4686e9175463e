"""The patient-identifier guard: a message in a case room that carries an identifier (NHS number,
record number, phone, e-mail, date of birth) is refused, from the API and from any Matrix client
alike (Synapse's `check_event_for_spam`). The refusal names the kinds found, never the values.

Where the module config allows it (`case_rooms.allow_warn_mode`), a room admin may set the room's
`org.medchat.phi_guard` state to `{"mode": "warn"}`: such messages are then accepted, and the event
rules (`check_event_allowed`, which runs before the spam check and may replace a local event)
write the kinds found into the content as `org.medchat.phi_warning`, so every client can flag them.
The spam check lets a message through only if the room is in warn mode *and* the marker is there,
so a client cannot get past refuse mode by writing the marker itself.

A guard that cannot read messages guards nothing, so case rooms are not end-to-end encrypted: a
case room cannot be created with, or later given, `m.room.encryption`, and `m.room.encrypted`
events are refused in them (the connection to the server is TLS-protected as for every room).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from synapse.module_api import NOT_SPAM, ModuleApi
from synapse.module_api.errors import Codes, SynapseError

from medchat import errors
from medchat.federation.caserooms import CaseRoomGate
from medchat.handlers.rooms import ADMIN_LEVEL
from medchat.metrics import RULE_REFUSALS
from medchat.models import PHI_WARNING
from medchat.phi.detectors import Guard
from medchat.roomtypes import (
    CASE_ROOM,
    PHI_GUARD_MODES,
    PHI_GUARD_STATE,
    REFUSE,
    WARN,
    case_room_initial_state,
    phi_guard_mode,
)
from medchat.synapse import SynapseRooms

ENCRYPTION_STATE, ENCRYPTED = "m.room.encryption", "m.room.encrypted"
_UNREADABLE = (
    "Case rooms are not end-to-end encrypted: the patient-identifier guard must be able to read their messages."
)
RULE = "case_room_phi_guard"
MESSAGE = "m.room.message"


def message_texts(content: Mapping[str, Any]) -> list[str]:
    """What a reader sees of a message: its text or caption, file name and formatted body, and
    the new text of an edit (event content is Synapse's immutabledict, hence Mapping)."""
    new = content.get("m.new_content")
    parts = [content, new] if isinstance(new, Mapping) else [content]
    fields = [part.get(k) for part in parts for k in ("body", "filename", "formatted_body")]
    return [f for f in fields if isinstance(f, str)]


def _marked(content: Mapping[str, Any], kinds: list[str]) -> dict[str, Any]:
    """The content with the server's warning (kinds found, or none), in an edit's new content too."""
    marked = {k: v for k, v in content.items() if k != PHI_WARNING}
    if kinds:
        marked[PHI_WARNING] = {"kinds": kinds}
    new = content.get("m.new_content")
    if isinstance(new, Mapping):
        marked["m.new_content"] = {k: v for k, v in new.items() if k != PHI_WARNING} | (
            {PHI_WARNING: {"kinds": kinds}} if kinds else {}
        )
    return marked


class PhiGuard:
    def __init__(
        self, guard: Guard, case_rooms: CaseRoomGate, api: ModuleApi, synapse_rooms: SynapseRooms, allow_warn: bool
    ):
        self._guard = guard
        self._case_rooms = case_rooms
        self._api = api
        self._synapse_rooms = synapse_rooms
        self._allow_warn = allow_warn

    def register(self, api: ModuleApi) -> None:
        api.register_spam_checker_callbacks(check_event_for_spam=self.check_event_for_spam)
        api.register_third_party_rules_callbacks(
            check_event_allowed=self.check_event_allowed, on_create_room=self.on_create_room
        )

    async def on_create_room(self, requester: Any, config: dict[str, Any], is_requester_admin: bool) -> None:
        """Refuses an encrypted case room up front, before anything of it is created."""
        initial_state = case_room_initial_state(config)
        if initial_state is not None and any(
            isinstance(e, dict) and e.get("type") == ENCRYPTION_STATE for e in initial_state
        ):
            raise SynapseError(400, _UNREADABLE, errors.CASE_ROOM_ENCRYPTION_REFUSED)

    def _mode(self, state_event: Any | None) -> str:
        """The room's effective mode: warn only while the config allows it."""
        mode = phi_guard_mode(state_event)
        return mode if self._allow_warn else REFUSE

    async def check_event_for_spam(self, event: Any) -> Literal["NOT_SPAM"] | tuple[Codes, dict[str, Any]]:
        if event.type not in (MESSAGE, ENCRYPTED) or not await self._case_rooms.is_case_room(event.room_id):
            return NOT_SPAM
        if event.type == ENCRYPTED:
            RULE_REFUSALS.labels(rule=RULE, server_name=self._api.server_name).inc()
            return Codes.FORBIDDEN, {"errcode": errors.CASE_ROOM_ENCRYPTION_REFUSED, "error": _UNREADABLE}
        kinds = self._guard.kinds_in(message_texts(event.content))
        if not kinds:
            return NOT_SPAM
        if PHI_WARNING in event.content:
            state = await self._synapse_rooms.room_state(event.room_id, [(PHI_GUARD_STATE, "")])
            if self._mode(state.get((PHI_GUARD_STATE, ""))) == WARN:
                return NOT_SPAM
        RULE_REFUSALS.labels(rule=RULE, server_name=self._api.server_name).inc()
        message = f"This case room does not accept patient identifiers; found: {', '.join(kinds)}. Remove them and send again."
        return Codes.FORBIDDEN, {"errcode": errors.PHI_DETECTED, "error": message, "org.medchat.phi_kinds": kinds}

    async def check_event_allowed(self, event: Any, state_events: Any) -> tuple[bool, dict | None]:
        """Case rooms only: who may set the guard's mode, and the warning on messages."""
        create = state_events.get(("m.room.create", ""))
        if create is None or create.content.get("type") != CASE_ROOM:
            return True, None
        if event.type == PHI_GUARD_STATE and event.get_state_key() == "":
            return self._refuse(event, self._mode_change_problem(event, state_events)), None
        if event.type == ENCRYPTION_STATE:
            return self._refuse(event, SynapseError(403, _UNREADABLE, errors.CASE_ROOM_ENCRYPTION_REFUSED)), None
        if event.type != MESSAGE or not self._api.is_mine(event.sender):
            return True, None  # a remote server marks its own users' messages
        kinds = self._guard.kinds_in(message_texts(event.content))
        warn = self._mode(state_events.get((PHI_GUARD_STATE, ""))) == WARN
        content = _marked(event.content, kinds if warn else [])
        if content == event.content:
            return True, None
        return True, {**event.get_dict(), "content": content}

    def _mode_change_problem(self, event: Any, state_events: Any) -> SynapseError | None:
        """Only a room admin may set the mode, and `warn` only where the config allows it."""
        mode = event.content.get("mode")
        if mode not in PHI_GUARD_MODES:
            return SynapseError(
                400, f"The guard mode must be one of: {', '.join(PHI_GUARD_MODES)}.", Codes.INVALID_PARAM
            )
        if self._synapse_rooms.power_level(event.sender, state_events) < ADMIN_LEVEL:
            return SynapseError(
                403, "Only a room admin may change the patient-identifier guard.", errors.PHI_GUARD_MODE_REFUSED
            )
        if mode == WARN and not self._allow_warn:
            return SynapseError(
                403,
                "This server does not let case rooms switch the patient-identifier guard to warn (case_rooms.allow_warn_mode).",
                errors.PHI_GUARD_MODE_REFUSED,
            )
        return None

    def _refuse(self, event: Any, problem: SynapseError | None) -> bool:
        """Allowed if there is no problem. A local sender gets the reason (Synapse passes a
        SynapseError raised by this callback to the client); a remote event is just rejected."""
        if problem is None:
            return True
        if self._api.is_mine(event.sender):
            RULE_REFUSALS.labels(rule=RULE, server_name=self._api.server_name).inc()
            raise problem
        return False
