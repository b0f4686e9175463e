"""The patient-identifier guard: an event in a case room that carries an identifier (NHS number,
record number, phone, e-mail, date of birth) is refused, from the API and from any Matrix client
alike. The refusal names the kinds found, never the values.

Every text an event carries is read (`phi.carriers.event_texts`: every string of its content and
its state key, so captions, file names, edits, reactions, polls, stickers, extensible-event text,
room names and topics, display names and custom types alike), and the file names its local media
were uploaded with, which every download shows.

- Timeline events (messages, reactions, stickers, polls, custom types) are refused by Synapse's
  `check_event_for_spam`, whoever sent them. Where the module config allows it
  (`case_rooms.allow_warn_mode`), a room admin may set the room's `org.medchat.phi_guard` state to
  `{"mode": "warn"}`: such events are then accepted, and the event rules (`check_event_allowed`,
  which runs before the spam check and may replace a local event) write the kinds found into the
  content as `org.medchat.phi_warning`, so every client can flag them. The spam check lets an event
  through only if the room is in warn mode *and* the marker is there, so a client cannot get past
  refuse mode by writing the marker itself.
- State events (names, topics, member display names, custom state) are refused by the event rules,
  the one callback every state event passes (createRoom's, membership changes and profile updates
  included), in either mode: they are shown outside the timeline (room lists, member lists,
  invites), where no warning can be.

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
from medchat.phi.carriers import event_texts
from medchat.phi.detectors import Guard
from medchat.roomtypes import (
    PHI_GUARD_MODES,
    PHI_GUARD_STATE,
    REFUSE,
    WARN,
    case_room_initial_state,
    is_case_room_create,
    phi_guard_mode,
)
from medchat.rules.case_media import media_urls
from medchat.synapse import SynapseMedia, SynapseRooms

ENCRYPTION_STATE, ENCRYPTED, CREATE = "m.room.encryption", "m.room.encrypted", "m.room.create"
_UNREADABLE = (
    "Case rooms are not end-to-end encrypted: the patient-identifier guard must be able to read their messages."
)
RULE = "case_room_phi_guard"
# What of a createRoom request ends up shown in the room (`invite` and `invite_3pid` are
# membership, which the event rules read as the member events are made).
_SHOWN_AT_CREATION = ("name", "topic", "room_alias_name", "creation_content", "initial_state")


def _refusal(kinds: list[str]) -> SynapseError:
    """The refusal of an event with identifiers: the kinds found, never the values."""
    message = (
        f"This case room does not accept patient identifiers; found: {', '.join(kinds)}. Remove them and send again."
    )
    return SynapseError(403, message, errors.PHI_DETECTED, {"org.medchat.phi_kinds": kinds})


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
        self,
        guard: Guard,
        case_rooms: CaseRoomGate,
        api: ModuleApi,
        synapse_rooms: SynapseRooms,
        synapse_media: SynapseMedia,
        allow_warn: bool,
    ) -> None:
        self._guard = guard
        self._case_rooms = case_rooms
        self._api = api
        self._synapse_rooms = synapse_rooms
        self._synapse_media = synapse_media
        self._allow_warn = allow_warn

    def register(self, api: ModuleApi) -> None:
        api.register_spam_checker_callbacks(check_event_for_spam=self.check_event_for_spam)
        api.register_third_party_rules_callbacks(
            check_event_allowed=self.check_event_allowed, on_create_room=self.on_create_room
        )

    async def on_create_room(self, requester: Any, config: dict[str, Any], is_requester_admin: bool) -> None:
        """Refuses an encrypted case room, or one whose name, topic, alias or initial state
        carries identifiers, up front, before anything of it is created (the event rules would
        refuse its state events one by one, after the create event)."""
        initial_state = case_room_initial_state(config)
        if initial_state is None:
            return
        if any(isinstance(e, dict) and e.get("type") == ENCRYPTION_STATE for e in initial_state):
            raise SynapseError(400, _UNREADABLE, errors.CASE_ROOM_ENCRYPTION_REFUSED)
        shown = {key: config[key] for key in _SHOWN_AT_CREATION if key in config}
        kinds = await self._api.defer_to_thread(self._guard.kinds_in, event_texts(None, shown))
        if kinds:
            RULE_REFUSALS.labels(rule=RULE, server_name=self._api.server_name).inc()
            raise _refusal(kinds)

    def _mode(self, state_event: Any | None) -> str:
        """The room's effective mode: warn only while the config allows it."""
        mode = phi_guard_mode(state_event)
        return mode if self._allow_warn else REFUSE

    async def _kinds(self, event: Any) -> list[str]:
        """The identifier kinds in every text of the event (its type too) and in its local media's
        file names (in a thread: a large event full of digits takes libphonenumber most of a second)."""
        texts = [event.type, *event_texts(event.get_state_key(), event.content)]
        prefix = f"mxc://{self._api.server_name}/"
        for url in media_urls(event.content):
            if url.startswith(prefix):
                texts.append(await self._synapse_media.local_upload_name(url.removeprefix(prefix)) or "")
        return await self._api.defer_to_thread(self._guard.kinds_in, texts)

    async def check_event_for_spam(self, event: Any) -> Literal["NOT_SPAM"] | tuple[Codes, dict[str, Any]]:
        """Timeline events (state events are the event rules' below)."""
        if event.is_state() or not await self._case_rooms.is_case_room(event.room_id):
            return NOT_SPAM
        if event.type == ENCRYPTED:
            RULE_REFUSALS.labels(rule=RULE, server_name=self._api.server_name).inc()
            return Codes.FORBIDDEN, {"errcode": errors.CASE_ROOM_ENCRYPTION_REFUSED, "error": _UNREADABLE}
        kinds = await self._kinds(event)
        if not kinds:
            return NOT_SPAM
        if PHI_WARNING in event.content:
            state = await self._synapse_rooms.room_state(event.room_id, [(PHI_GUARD_STATE, "")])
            if self._mode(state.get((PHI_GUARD_STATE, ""))) == WARN:
                return NOT_SPAM
        RULE_REFUSALS.labels(rule=RULE, server_name=self._api.server_name).inc()
        refusal = _refusal(kinds)
        return Codes.FORBIDDEN, refusal.error_dict(None)

    async def check_event_allowed(self, event: Any, state_events: Any) -> tuple[bool, dict | None]:
        """Case rooms only: who may set the guard's mode, identifiers in state, and the warning
        on timeline events."""
        if not is_case_room_create(event if event.type == CREATE else state_events.get((CREATE, ""))):
            return True, None
        if event.type == PHI_GUARD_STATE and event.get_state_key() == "":
            return self._refuse(event, self._mode_change_problem(event, state_events)), None
        if event.type == ENCRYPTION_STATE:
            return self._refuse(event, SynapseError(403, _UNREADABLE, errors.CASE_ROOM_ENCRYPTION_REFUSED)), None
        if event.is_state():
            kinds = await self._kinds(event)
            return self._refuse(event, _refusal(kinds) if kinds else None), None
        if event.type == ENCRYPTED or not self._api.is_mine(event.sender):
            return True, None  # a remote server marks its own users' events
        kinds = await self._kinds(event)
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
