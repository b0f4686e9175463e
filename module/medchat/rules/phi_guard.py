"""The patient-identifier guard: a message in a case room that carries an identifier (NHS number,
record number, phone, e-mail, date of birth) is refused, from the API and from any Matrix client
alike (Synapse's `check_event_for_spam`). The refusal names the kinds found, never the values."""

from __future__ import annotations

from typing import Any, Literal

from synapse.module_api import NOT_SPAM, ModuleApi
from synapse.module_api.errors import Codes

from medchat.federation.caserooms import CaseRoomGate
from medchat.metrics import RULE_REFUSALS
from medchat.phi.detectors import Guard

ERRCODE = "ORG_MEDCHAT_PHI_DETECTED"
RULE = "case_room_phi_guard"


def message_texts(content: dict[str, Any]) -> list[str]:
    """What a reader sees of a message: its text or caption, file name and formatted body, and
    the new text of an edit."""
    new = content.get("m.new_content") if isinstance(content.get("m.new_content"), dict) else {}
    fields = [content.get(k) for k in ("body", "filename", "formatted_body")] + [new.get(k) for k in ("body", "filename", "formatted_body")]
    return [f for f in fields if isinstance(f, str)]


class PhiGuard:
    def __init__(self, guard: Guard, case_rooms: CaseRoomGate):
        self._guard = guard
        self._case_rooms = case_rooms

    def register(self, api: ModuleApi) -> None:
        api.register_spam_checker_callbacks(check_event_for_spam=self.check_event_for_spam)

    async def check_event_for_spam(self, event: Any) -> Literal["NOT_SPAM"] | tuple[Codes, dict[str, Any]]:
        if event.type != "m.room.message" or not await self._case_rooms.is_case_room(event.room_id):
            return NOT_SPAM
        kinds = self._guard.kinds_in(message_texts(event.content))
        if not kinds:
            return NOT_SPAM
        RULE_REFUSALS.labels(RULE).inc()
        message = f"This case room does not accept patient identifiers; found: {', '.join(kinds)}. Remove them and send again."
        return Codes.FORBIDDEN, {"errcode": ERRCODE, "error": message, "org.medchat.phi_kinds": kinds}
