"""Study groups: rooms of one institution, discoverable by its members through its space.

A study group is a Matrix room of MedChat's type (`org.medchat.study_group` in `m.room.create`,
with the institution under `org.medchat.institution`), a child of the institution's space
(`m.space.child` there, `m.space.parent` in the room). Its join rule is one of:

- `knock` (Matrix `knock`): a member of the institution asks to join; a room admin approves by
  inviting them (POST .../participants) or refuses by removing the request;
- `open` (Matrix `restricted` to the institution space): members of the space join at once.

Only users whose profile names the institution may knock, checked in `check_event_allowed` so
the rule holds for Matrix clients too; an open group admits only space members by Matrix's own
auth rules, and only the module puts members into a space.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from synapse.module_api import ModuleApi
from synapse.module_api.errors import SynapseError

from medchat import errors
from medchat.config import StudyGroupConfig
from medchat.handlers.spaces import InstitutionSpaces
from medchat.models import JsonDict
from medchat.roomtypes import INSTITUTION_KEY, KIND_OF_TYPE, STUDY_GROUP
from medchat.store.profiles import ProfileStore
from medchat.synapse import SynapseRooms

# The API's join rules and the Matrix join rule each one is.
MATRIX_JOIN_RULES = {"knock": "knock", "open": "restricted"}
API_JOIN_RULES = {matrix: api for api, matrix in MATRIX_JOIN_RULES.items()}


class StudyGroups:
    def __init__(
        self,
        config: StudyGroupConfig,
        api: ModuleApi,
        synapse_rooms: SynapseRooms,
        spaces: InstitutionSpaces,
        profiles: ProfileStore,
    ):
        self._config = config
        self._api = api
        self._synapse_rooms = synapse_rooms
        self._spaces = spaces
        self._profiles = profiles

    def register(self, api: ModuleApi) -> None:
        api.register_third_party_rules_callbacks(check_event_allowed=self.check_event_allowed)

    async def _institution_of(self, user_id: str) -> str | None:
        profile = await self._profiles.get(user_id) if self._api.is_mine(user_id) else None
        return profile.institution if profile else None

    # --- create -------------------------------------------------------------------------------

    async def room_config(self, caller: str, join_rule: str | None) -> tuple[str, JsonDict]:
        """(space id, `createRoom` fields) of a new study group of the caller's institution.

        Creates the institution's space on first use and joins the caller to it.
        """
        join_rule = join_rule or self._config.default_join_rule
        if join_rule not in self._config.allowed_join_rules:
            allowed = ", ".join(self._config.allowed_join_rules)
            raise errors.invalid_param(f"Invalid field join_rule: this server allows {allowed}.")
        institution = await self._institution_of(caller)
        if not institution:
            raise SynapseError(
                400,
                "A study group belongs to its creator's institution: set one in your profile first.",
                errors.NO_INSTITUTION,
            )
        space_id = await self._spaces.space_for(institution)
        await self._spaces.ensure_member(space_id, caller)
        rule: JsonDict = {"join_rule": MATRIX_JOIN_RULES[join_rule]}
        if join_rule == "open":
            rule["allow"] = [{"type": "m.room_membership", "room_id": space_id}]
        parent = {"via": [self._api.server_name], "canonical": True}
        return space_id, {
            "creation_content": {"type": STUDY_GROUP, INSTITUTION_KEY: institution},
            "initial_state": [
                {"type": "m.room.join_rules", "state_key": "", "content": rule},
                {"type": "m.space.parent", "state_key": space_id, "content": parent},
            ],
        }

    async def attach(self, space_id: str, room_id: str) -> None:
        await self._spaces.add_child(space_id, room_id)

    @staticmethod
    def describe(create_content: Mapping[str, Any], join_rules: Mapping[str, Any] | None) -> JsonDict:
        """The study-group fields of a ChatRoom: its institution and join rule."""
        matrix_rule = (join_rules or {}).get("join_rule", "invite")
        return {
            "institution": create_content.get(INSTITUTION_KEY),
            "join_rule": API_JOIN_RULES.get(matrix_rule, matrix_rule),
        }

    # --- join ---------------------------------------------------------------------------------

    async def join(self, caller: str, room_id: str, reason: str | None) -> str:
        """Accepts an invitation, joins an open study group of the caller's institution, or asks
        to join (knocks on) one that takes requests. Returns the caller's membership now.

        Joining a group of one's own institution also joins its space, as creating one does."""
        membership = await self._synapse_rooms.membership(room_id, caller)
        if membership in ("join", "knock"):
            return membership
        state = await self._synapse_rooms.room_state(room_id, [("m.room.create", ""), ("m.room.join_rules", "")])
        create = state.get(("m.room.create", ""))
        is_group = create is not None and create.content.get("type") == STUDY_GROUP
        institution = create.content.get(INSTITUTION_KEY) if create is not None and is_group else None
        own = institution is not None and await self._institution_of(caller) == institution
        if membership != "invite":
            if not own:
                raise errors.not_found()  # other institutions' groups are not discoverable
            rules = state.get(("m.room.join_rules", ""))
            if rules is not None and rules.content.get("join_rule") == "knock":
                await self._synapse_rooms.set_membership(caller, caller, room_id, "knock", reason)
                return "knock"
        space_id = await self._spaces.space_of(institution) if own and institution is not None else None
        if space_id is not None:
            await self._spaces.ensure_member(space_id, caller)
        await self._synapse_rooms.set_membership(caller, caller, room_id, "join", reason)
        return "join"

    async def check_event_allowed(self, event: Any, state_events: Any) -> tuple[bool, dict | None]:
        """Only users of the group's institution may knock, from any client."""
        if event.type != "m.room.member" or event.membership != "knock":
            return True, None
        create = state_events.get(("m.room.create", ""))
        if create is None or create.content.get("type") != STUDY_GROUP:
            return True, None
        return await self._institution_of(event.state_key) == create.content.get(INSTITUTION_KEY), None

    # --- the institution's rooms --------------------------------------------------------------

    async def institution_rooms(self, caller: str, institution: str, limit: int, cursor: str | None) -> JsonDict:
        """The rooms of the institution's space (Synapse's hierarchy), for its members and admins."""
        if not await self._spaces.institution_known(institution):
            raise errors.not_found(f"No such institution: {institution}")
        if await self._institution_of(caller) != institution and not await self._api.is_user_admin(caller):
            raise SynapseError(403, f"Only members of {institution} may list its rooms.", errors.INSTITUTION_ONLY)
        space_id = await self._spaces.space_of(institution)
        if space_id is None:
            return {"institution": institution, "space_id": None, "results": [], "next_cursor": None}
        children, next_cursor = await self._spaces.children(space_id, limit, cursor)
        memberships = await self._synapse_rooms.rooms_for_user(caller, ("join", "invite", "knock"))
        rooms = [
            {
                "id": child["room_id"],
                "name": child.get("name"),
                "topic": child.get("topic"),
                "avatar_url": child.get("avatar_url"),
                "type": KIND_OF_TYPE.get(child.get("room_type") or "", "group"),
                "join_rule": API_JOIN_RULES.get(child.get("join_rule") or "", child.get("join_rule")),
                "member_count": child.get("num_joined_members", 0),
                "membership": memberships.get(child["room_id"]),
            }
            for child in children
        ]
        return {"institution": institution, "space_id": space_id, "results": rooms, "next_cursor": next_cursor}
