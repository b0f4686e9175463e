"""Case rooms are for licence-verified practitioners: only they may create one, be invited into
one or join one. A local user's level is their verification; a user of another server needs a
valid licence attestation from their own server (both answered by `Verification.level_of`).

Checked in Synapse's callbacks, so it holds for the API, any Matrix client and federation: room
creation and invites up front (spam checker), and every membership event the room accepts (event
rules), which also catches a remote join. Synapse skips spam checks for server admins.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

from synapse.module_api import NOT_SPAM, ModuleApi
from synapse.module_api.errors import Codes

from medchat import errors
from medchat.levels import LICENSE_VERIFIED
from medchat.roomtypes import CASE_ROOM
from medchat.synapse import SynapseRooms

RULE = "case_room_verified_only"
Verdict = Literal["NOT_SPAM"] | tuple[Codes, dict[str, Any]]


def _refusal(user_id: str, action: str) -> Verdict:
    message = (
        f"Refused by rule '{RULE}': {user_id} is not a licence-verified practitioner, so may not {action} a case room."
    )
    return Codes.FORBIDDEN, {"errcode": errors.CASE_ROOM_REFUSED, "error": message, "org.medchat.rule": RULE}


class CaseRoomGate:
    def __init__(self, synapse_rooms: SynapseRooms, level_of: Callable[[str], Awaitable[str]]):
        self._synapse_rooms = synapse_rooms
        self._level_of = level_of

    def register(self, api: ModuleApi) -> None:
        api.register_spam_checker_callbacks(
            user_may_create_room=self.user_may_create_room,
            user_may_invite=self.user_may_invite,
            user_may_join_room=self.user_may_join_room,
        )
        api.register_third_party_rules_callbacks(check_event_allowed=self.check_event_allowed)

    async def _verified(self, user_id: str) -> bool:
        return await self._level_of(user_id) == LICENSE_VERIFIED

    async def is_case_room(self, room_id: str) -> bool:
        """On every message's path: Synapse caches room types (a room's type never changes)."""
        return (await self._synapse_rooms.room_types([room_id]))[room_id] == CASE_ROOM

    async def user_may_create_room(self, user_id: str, room_config: dict[str, Any]) -> Verdict:
        if (room_config.get("creation_content") or {}).get("type") != CASE_ROOM:
            return NOT_SPAM
        if not await self._verified(user_id):
            return _refusal(user_id, "create")
        for invitee in room_config.get("invite") or []:
            if not await self._verified(invitee):
                return _refusal(invitee, "be invited to")
        return NOT_SPAM

    async def user_may_invite(self, inviter: str, invitee: str, room_id: str) -> Verdict:
        if not await self.is_case_room(room_id) or await self._verified(invitee):
            return NOT_SPAM
        return _refusal(invitee, "be invited to")

    async def user_may_join_room(self, user_id: str, room_id: str, is_invited: bool) -> Verdict:
        if not await self.is_case_room(room_id) or await self._verified(user_id):
            return NOT_SPAM
        return _refusal(user_id, "join")

    async def check_event_allowed(self, event: Any, state_events: Any) -> tuple[bool, dict | None]:
        """The last line: no membership join into a case room by an unverified user, whoever sent it."""
        if event.type != "m.room.member" or event.membership != "join":
            return True, None
        create = state_events.get(("m.room.create", ""))
        if create is None or create.content.get("type") != CASE_ROOM or create.sender == event.state_key:
            return True, None  # the creator was checked when the room was created
        return await self._verified(event.state_key), None
