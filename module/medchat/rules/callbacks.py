"""The contact rules as Synapse spam-checker callbacks: invites and DMs from any client or server.

Synapse turns a refusal into a 403; the extra fields returned here replace its generic errcode and
message with MedChat's (`ORG_MEDCHAT_CONTACT_REFUSED`, a message naming the rule) and add
`org.medchat.rule`. Server admins bypass these callbacks, as Synapse does for every spam check.
"""

from __future__ import annotations

from typing import Any, Literal

from synapse.module_api import NOT_SPAM, ModuleApi
from synapse.module_api.errors import Codes

from medchat.metrics import RULE_REFUSALS
from medchat.rules.contact import ContactRules
from medchat.rules.decisions import Refusal
from medchat.synapse import SynapseRooms

Verdict = Literal["NOT_SPAM"] | tuple[Codes, dict[str, Any]]


def _verdict(refusal: Refusal | None) -> Verdict:
    if refusal is None:
        return NOT_SPAM
    RULE_REFUSALS.labels(refusal.rule).inc()
    return Codes.FORBIDDEN, refusal.error_fields()


class ContactSpamChecker:
    def __init__(self, rules: ContactRules, synapse_rooms: SynapseRooms):
        self._rules = rules
        self._synapse_rooms = synapse_rooms

    def register(self, api: ModuleApi) -> None:
        api.register_spam_checker_callbacks(
            user_may_invite=self.user_may_invite,
            user_may_create_room=self.user_may_create_room,
            federated_user_may_invite=self.federated_user_may_invite,
            user_may_join_room=self.user_may_join_room,
        )

    async def user_may_invite(self, inviter: str, invitee: str, room_id: str) -> Verdict:
        return _verdict(await self._rules.check(inviter, invitee, "invite"))

    async def user_may_create_room(self, user_id: str, room_config: dict[str, Any]) -> Verdict:
        """Checks the invites of `createRoom` up front, so a refused DM leaves no half-made room."""
        action = "dm" if room_config.get("is_direct") else "invite"
        invitees = room_config.get("invite")
        for invitee in invitees if isinstance(invitees, list) else ():
            if isinstance(invitee, str):
                refusal = await self._rules.check(user_id, invitee, action)
                if refusal is not None:
                    return _verdict(refusal)
        return NOT_SPAM

    async def federated_user_may_invite(self, event: Any) -> Verdict:
        action = "dm" if event.content.get("is_direct") else "invite"
        return _verdict(await self._rules.check(event.sender, event.state_key, action))

    async def user_may_join_room(self, user_id: str, room_id: str, is_invited: bool) -> Verdict:
        """Accepting a direct-chat invite starts a DM: server policy and the allow-list apply.

        (Only the server's rules: the joiner's own permission setting is theirs to waive.)
        """
        if not is_invited or not self._rules.has_join_rules:
            return NOT_SPAM
        invite = await self._synapse_rooms.pending_invite(user_id, room_id)
        if invite is None:
            return NOT_SPAM
        inviter, is_direct = invite
        if not is_direct:
            return _verdict(await self._rules.check_server_rules(user_id, inviter, "invite", federation_only=True))
        return _verdict(await self._rules.check_server_rules(user_id, inviter, "dm"))
