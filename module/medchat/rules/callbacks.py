"""The membership rules as Synapse callbacks: each gathers the facts of its route and asks the one
decision (`MembershipRules`), so an invite, join or knock gets the same answer on every route.

- `check_event_allowed` (event rules) sees every event this server makes: invites however they
  were asked for (`/invite`, createRoom's `invite` and `initial_state`, a state PUT), the joins and
  knocks of local users and those remote servers ask this one to make (make_join, make_knock,
  send_knock), and join-rule changes (a case room is never public). This is where the rules hold.
- `on_create_room` refuses a createRoom request before anything of the room exists, from the
  same decision on the changes it would make; it runs for server admins too.
- `user_may_invite`, `user_may_join_room` (spam checks) refuse early; the join check is the only
  one Synapse runs when a local user joins a room of another server.
- `federated_user_may_invite`: an invite from another server (the room's state is not here; the
  case-room flag comes from the invite's stripped state).

A refusal of a local user's request is a SynapseError with MedChat's errcode, a message naming the
rule and `org.medchat.rule` (Synapse passes an error raised by `check_event_allowed` or
`on_create_room` to the client as it is; spam checks return the same fields).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from synapse.module_api import NOT_SPAM, ModuleApi
from synapse.module_api.errors import Codes

from medchat.federation.caserooms import CaseRoomGate
from medchat.metrics import RULE_REFUSALS
from medchat.roomtypes import CASE_ROOM, is_case_room_create
from medchat.rules.decisions import (
    CHECKED_MEMBERSHIPS,
    INVITE,
    JOIN,
    KNOCK,
    MembershipChange,
    Refusal,
    case_room_join_rule_refusal,
    case_room_publication_refusal,
)
from medchat.rules.membership import MembershipRules
from medchat.synapse import SynapseRooms

Verdict = Literal["NOT_SPAM"] | tuple[Codes, dict[str, Any]]
MEMBER, CREATE, JOIN_RULES, POWER_LEVELS = "m.room.member", "m.room.create", "m.room.join_rules", "m.room.power_levels"


def _verdict(refusal: Refusal | None) -> Verdict:
    if refusal is None:
        return NOT_SPAM
    assert refusal is not None
    return Codes.FORBIDDEN, refusal.error_fields()


def _stripped_case_room(stripped: Iterable[Any]) -> bool:
    """Whether an invite's stripped room state names a case room."""
    for event in stripped:
        if isinstance(event, Mapping) and event.get("type") == CREATE:
            content = event.get("content")
            return isinstance(content, Mapping) and content.get("type") == CASE_ROOM
    return False


def _approvers(state_events: Any, power_level: Callable[[str, Any], int]) -> tuple[str, ...]:
    """The joined members who may invite (and so approve a knock), most powerful first."""
    power_levels = state_events.get((POWER_LEVELS, ""))
    needed = power_levels.content.get("invite", 0) if power_levels is not None else 0
    needed = needed if isinstance(needed, int) else 0
    levels = {
        user_id: power_level(user_id, state_events)
        for (kind, user_id), event in state_events.items()
        if kind == MEMBER and event.content.get("membership") == JOIN
    }
    return tuple(sorted((u for u, level in levels.items() if level >= needed), key=lambda u: (-levels[u], u)))


class MembershipCallbacks:
    def __init__(self, rules: MembershipRules, synapse_rooms: SynapseRooms, case_rooms: CaseRoomGate):
        self._rules = rules
        self._synapse_rooms = synapse_rooms
        self._case_rooms = case_rooms
        self._server_name = ""

    def _counted(self, refusal: Refusal | None) -> Refusal | None:
        if refusal is not None:
            RULE_REFUSALS.labels(rule=refusal.rule, server_name=self._server_name).inc()
        return refusal

    def register(self, api: ModuleApi) -> None:
        self._server_name = api.server_name
        api.register_spam_checker_callbacks(
            user_may_invite=self.user_may_invite,
            federated_user_may_invite=self.federated_user_may_invite,
            user_may_join_room=self.user_may_join_room,
        )
        api.register_third_party_rules_callbacks(
            check_event_allowed=self.check_event_allowed,
            on_create_room=self.on_create_room,
            check_visibility_can_be_modified=self.check_visibility_can_be_modified,
        )

    # --- event rules: the one place every membership event passes ------------------------------

    async def check_event_allowed(self, event: Any, state_events: Any) -> tuple[bool, dict | None]:
        if event.type == JOIN_RULES and event.get_state_key() == "":
            if is_case_room_create(state_events.get((CREATE, ""))):
                refusal = self._counted(case_room_join_rule_refusal(event.content.get("join_rule")))
                if refusal is not None:
                    raise refusal.as_error()
            return True, None
        if event.type != MEMBER:
            return True, None
        change = self.event_change(event, state_events, self._synapse_rooms.power_level)
        if change is not None:
            refusal = self._counted(await self._rules.decide(change))
            if refusal is not None:
                raise refusal.as_error()
        return True, None

    async def check_visibility_can_be_modified(self, room_id: str, state_events: Any, visibility: str) -> bool:
        """Publishing in the room directory (`PUT /directory/list/room/{id}`, from any client):
        never a case room. Synapse answers 403 "Not allowed to publish room"; createRoom's
        `visibility` is refused earlier, with the rule's name (`decide_creation`)."""
        if is_case_room_create(state_events.get((CREATE, ""))):
            return self._counted(case_room_publication_refusal(visibility)) is None
        return True

    @staticmethod
    def event_change(event: Any, state_events: Any, power_level: Callable[[str, Any], int]) -> MembershipChange | None:
        """The membership change an event makes in the room state before it (None: not one the
        rules check, such as a leave, or a join that only changes the member's profile)."""
        membership, target = event.content.get("membership"), event.get_state_key()
        if membership not in CHECKED_MEMBERSHIPS or not isinstance(target, str):
            return None
        previous = state_events.get((MEMBER, target))
        before = previous.content.get("membership") if previous is not None else None
        if membership == JOIN and before == JOIN:
            return None
        create = state_events.get((CREATE, ""))
        accepts = previous if membership == JOIN and before == INVITE else None
        flagged = accepts if accepts is not None else event  # a join is direct if the invite it accepts was
        return MembershipChange(
            membership,
            event.sender,
            target,
            is_direct=membership != KNOCK and bool(flagged.content.get("is_direct")),
            inviter=accepts.sender if accepts is not None else None,
            case_room=is_case_room_create(create),
            creator=membership == JOIN and before is None and create is not None and create.sender == target,
            approvers=_approvers(state_events, power_level) if membership == KNOCK else (),
        )

    async def on_create_room(self, requester: Any, config: dict[str, Any], is_requester_admin: bool) -> None:
        """Refuses a room whose invites, creator or join rule the rules refuse, before it exists."""
        creator = requester.user.to_string()
        refusal = self._counted(await self._rules.decide_creation(creator, config, is_requester_admin))
        if refusal is not None:
            raise refusal.as_error()

    # --- spam checks: earlier refusals from the same decision ----------------------------------

    async def user_may_invite(self, inviter: str, invitee: str, room_id: str) -> Verdict:
        """(Synapse skips it for admins. The invite's `is_direct` is not known here: the event
        rules decide a direct-chat invite.)"""
        case_room = await self._case_rooms.is_case_room(room_id)
        change = MembershipChange(INVITE, inviter, invitee, case_room=case_room)
        return _verdict(self._counted(await self._rules.decide(change, sender_is_admin=False)))

    async def user_may_join_room(self, user_id: str, room_id: str, is_invited: bool) -> Verdict:
        """A join of a local user, also into a room of another server (whose events this server
        does not make): the pending invite tells who invited them and, there, the room's type."""
        case_room = await self._case_rooms.is_case_room(room_id)
        inviter, is_direct = None, False
        if is_invited:
            invite = await self._synapse_rooms.invite_room_state(user_id, room_id)
            if invite is not None:
                event, stripped = invite
                inviter, is_direct = event.sender, bool(event.content.get("is_direct"))
                case_room = case_room or _stripped_case_room(stripped)
        change = MembershipChange(JOIN, user_id, user_id, is_direct, inviter, case_room)
        return _verdict(self._counted(await self._rules.decide(change, sender_is_admin=False)))

    async def federated_user_may_invite(self, event: Any) -> Verdict:
        stripped = event.unsigned.get("invite_room_state") if isinstance(event.unsigned, Mapping) else None
        change = MembershipChange(
            INVITE,
            event.sender,
            event.state_key,
            bool(event.content.get("is_direct")),
            case_room=_stripped_case_room(stripped if isinstance(stripped, list) else ()),
        )
        return _verdict(self._counted(await self._rules.decide(change, sender_is_admin=False)))
