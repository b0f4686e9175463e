"""Case rooms are for licence-verified practitioners: a user of another server is invited into
(or joins) one only with a valid attestation of `license_verified` from their own server.

Checked on invites (any client, API or Matrix) and on every membership event the room accepts,
so a remote join over federation is refused too. Local users' levels are not gated here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

from synapse.module_api import NOT_SPAM, ModuleApi
from synapse.module_api.errors import Codes

from medchat.bridge import SynapseBridge
from medchat.levels import LICENSE_VERIFIED
from medchat.roomtypes import CASE_ROOM

RULE = "case_room_verified_only"


class CaseRoomGate:
    def __init__(self, bridge: SynapseBridge, level_of: Callable[[str], Awaitable[str]]):
        self._bridge = bridge
        self._level_of = level_of

    def register(self, api: ModuleApi) -> None:
        api.register_spam_checker_callbacks(user_may_invite=self.user_may_invite)
        api.register_third_party_rules_callbacks(check_event_allowed=self.check_event_allowed)

    async def _admits(self, user_id: str) -> bool:
        return self._bridge.api.is_mine(user_id) or await self._level_of(user_id) == LICENSE_VERIFIED

    async def user_may_invite(self, inviter: str, invitee: str, room_id: str) -> Literal["NOT_SPAM"] | tuple[Codes, dict[str, Any]]:
        state = await self._bridge.room_state(room_id, [("m.room.create", "")])
        create = state.get(("m.room.create", ""))
        if create is None or create.content.get("type") != CASE_ROOM or await self._admits(invitee):
            return NOT_SPAM
        message = f"Refused by rule '{RULE}': {invitee} has no valid licence attestation from their server."
        return Codes.FORBIDDEN, {"errcode": Codes.FORBIDDEN, "error": message, "org.medchat.rule": RULE}

    async def check_event_allowed(self, event: Any, state_events: Any) -> tuple[bool, dict | None]:
        if event.type != "m.room.member" or event.membership != "join":
            return True, None
        create = state_events.get(("m.room.create", ""))
        if create is None or create.content.get("type") != CASE_ROOM:
            return True, None
        return await self._admits(event.state_key), None
