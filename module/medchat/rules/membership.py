"""The one membership decision: may this `m.room.member` change happen?

Every invite, join and knock is a `MembershipChange` (medchat.rules.decisions), whatever route
made it, and `MembershipRules.decide` is the only place that says yes or no to one. Synapse's
callbacks (medchat.rules.callbacks) only gather the facts of their route: the event rules
(`check_event_allowed`) see every event this server makes, including `initial_state` and the
joins and knocks that other servers ask it to make; the spam checks refuse earlier, before a room
is half made, with the same decision.

What is checked:
- an invite: the case room's level (the invitee must be licence-verified), then the contact rules
  between inviter and invitee (server policy, allow-list, the invitee's setting and ignore list;
  `dm` for a direct-chat invite, else `invite`);
- a join: the case room's level (the creator's first join: `create`), then, when it accepts an
  invite, the server's rules for the pair (direct-chat invites: the policy and the allow-list;
  others: the allow-list). The joiner's own setting is theirs to waive. As the policy is about
  the pair, the join gets the answer the invite got: no room is left that one side cannot join;
- a knock: the case room's level, the allow-list, and whether one of the members who may invite
  (`approvers`) could let the knocker in: the server's rules for that pair allow the invite and
  the member does not ignore the knocker. A knock no one could answer is refused up front.

Server admins are exempt from the contact rules, as Synapse's spam checks exempt them (the
service account that owns institution spaces is one), and an invite an admin sent may be
accepted; the case-room level binds everyone, as it is about who is in the room.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from synapse.module_api import ModuleApi

from medchat.rules.contact import ContactRules
from medchat.rules.decisions import (
    INVITE,
    JOIN,
    KNOCK,
    MembershipChange,
    Refusal,
    case_room_join_rule_refusal,
    case_room_publication_refusal,
    case_room_refusal,
    creation_changes,
    creation_join_rule,
    federation_refusal,
    initial_state_refusal,
    knock_refusal,
)

LevelLookup = Callable[[str], Awaitable[str]]


class MembershipRules:
    def __init__(self, api: ModuleApi, contact_rules: ContactRules, level_of: LevelLookup):
        self._api = api
        self._contact_rules = contact_rules
        self._level_of = level_of

    async def is_admin(self, user_id: str) -> bool:
        return self._api.is_mine(user_id) and await self._api.is_user_admin(user_id)

    async def decide(self, change: MembershipChange, sender_is_admin: bool | None = None) -> Refusal | None:
        """Why the change may not happen, or None. `sender_is_admin` if the caller knows it."""
        if change.membership not in (INVITE, JOIN, KNOCK):
            return None
        if change.case_room:
            refusal = case_room_refusal(change.target, await self._level_of(change.target), change.case_room_action)
            if refusal is not None:
                return refusal
        refusal = await self._contact_refusal(change)
        if refusal is None:
            return None
        if sender_is_admin is None:
            sender_is_admin = await self.is_admin(change.sender)
        return None if sender_is_admin else refusal

    async def _contact_refusal(self, change: MembershipChange) -> Refusal | None:
        rules = self._contact_rules
        if change.membership == INVITE:
            return await rules.check(change.sender, change.target, change.contact_action)
        if change.membership == KNOCK:
            return federation_refusal(rules.allow_list, self._api.server_name, change.target) or (
                await self._unanswerable_knock(change)
            )
        if change.inviter is None or change.creator:
            return federation_refusal(rules.allow_list, self._api.server_name, change.target)
        if await self.is_admin(change.inviter):
            return None  # the invite was an admin's, whom the contact rules let invite anyone
        return await rules.check_server_rules(
            change.target, change.inviter, change.contact_action, federation_only=not change.is_direct
        )

    async def _unanswerable_knock(self, change: MembershipChange) -> Refusal | None:
        """None if one of the approvers may invite the knocker (an admin always may); else the
        first approver's reason."""
        knocker, first = change.target, None
        for approver in change.approvers:
            if approver == knocker:
                continue
            if await self.is_admin(approver):
                return None
            refusal = await self._contact_rules.check_server_rules(approver, knocker, INVITE)
            if refusal is None and self._api.is_mine(approver):
                if knocker in await self._contact_rules.ignored_users(approver):
                    refusal = knock_refusal()
            if refusal is None:
                return None
            first = first or refusal
        return first

    async def decide_creation(self, creator: str, config: Mapping[str, Any], creator_is_admin: bool) -> Refusal | None:
        """A createRoom request, before anything of the room exists: its invites (`invite` and
        `initial_state`), the creator's own join and, for a case room, its join rule."""
        refusal = initial_state_refusal(creator, config, self._api.server_name)
        if refusal is not None:
            return refusal
        changes = creation_changes(creator, config)
        if changes[0].case_room:
            refusal = case_room_join_rule_refusal(creation_join_rule(config)) or case_room_publication_refusal(
                config.get("visibility")
            )
            if refusal is not None:
                return refusal
        for change in changes:
            refusal = await self.decide(change, sender_is_admin=creator_is_admin)
            if refusal is not None:
                return refusal
        return None
