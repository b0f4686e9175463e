"""Chat rooms: the plan's ChatRoom model on top of Matrix rooms, with nothing stored twice.

A `direct` room is a private room flagged `is_direct` and listed in both users' `m.direct`
account data (what Element reads); a `group` is a private, invite-only room; a `case` room and a
`study_group` (medchat.handlers.studygroups) carry MedChat's type in `m.room.create`. Spaces are not chats,
so the room list leaves them out. The plan's
participant roles map to power levels: `admin` is power level 100 (or a room-v12 creator),
`member` anything below. Synapse's own authorisation decides who may invite, kick or rename.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from synapse.api.errors import Codes
from synapse.module_api import ModuleApi
from synapse.module_api.errors import SynapseError

from medchat import errors, messagekinds as kinds
from medchat.encrypted import ENCRYPTION, ENCRYPTION_CONTENT, is_encryption_state
from medchat.handlers.studygroups import StudyGroups
from medchat.models import JsonDict, chat_member, chat_message, iso
from medchat.roomtypes import CASE_ROOM, KIND_OF_TYPE, PHI_GUARD_STATE, SPACE, STUDY_GROUP, phi_guard_mode
from medchat.synapse import SynapseEvents, SynapseProfiles, SynapseRooms, SynapseServer, SynapseStream
from medchat.synapse.rooms import Member
from medchat.util import concurrently

if TYPE_CHECKING:
    from medchat.api.schemas.requests import ParticipantAddBody, RoomCreateBody, RoomUpdateBody

T = TypeVar("T")

ADMIN_LEVEL = 100
# Members of a group may talk; only admins (and moderators) may invite, as in most chat apps.
GROUP_POWER_LEVELS = {"invite": 50}
M_DIRECT = "m.direct"
_ROOM_STATE = [
    ("m.room.create", ""),
    ("m.room.name", ""),
    ("m.room.topic", ""),
    ("m.room.avatar", ""),
    ("m.room.join_rules", ""),
    (PHI_GUARD_STATE, ""),
    (ENCRYPTION, ""),
    ("m.room.power_levels", ""),
    ("m.room.member", None),
]
# The state a role is read from (room v12 creators are admins by their create event).
_POWER_STATE: list[tuple[str, str | None]] = [("m.room.create", ""), ("m.room.power_levels", "")]
# The room's own state events (no members), for describing many rooms from Synapse's caches.
_NAMED_STATE = [(kind, key) for kind, key in _ROOM_STATE if key is not None]
# Participants a room carries in the room list: sliding sync's heroes.
_HEROES = 5
# Memberships that make someone a participant (a knock is a pending request to join).
_PARTICIPATING = ("join", "invite", "knock")
# The fields of a room update, in the order they are sent (the guard first: the likeliest refusal),
# each with its state event and content.
_ROOM_FIELDS: dict[str, tuple[str, Callable[[Any], JsonDict]]] = {
    "phi_guard": (PHI_GUARD_STATE, lambda v: {"mode": v}),
    "name": ("m.room.name", lambda v: {"name": v}),
    "topic": ("m.room.topic", lambda v: {"topic": v}),
    "avatar_url": ("m.room.avatar", lambda v: {"url": v} if v else {}),
}


def state_level(power_levels: JsonDict, event_type: str) -> int:
    """The power level a state event of `event_type` needs (Matrix: `events`, else `state_default`,
    50 when the room has no power levels content saying otherwise)."""
    needed = (power_levels.get("events") or {}).get(event_type, power_levels.get("state_default", 50))
    return needed if isinstance(needed, int) else 50


class Rooms:
    def __init__(
        self,
        api: ModuleApi,
        synapse_server: SynapseServer,
        synapse_profiles: SynapseProfiles,
        synapse_rooms: SynapseRooms,
        synapse_events: SynapseEvents,
        synapse_stream: SynapseStream,
        study_groups: StudyGroups,
        require_federated: Callable[[str], None],
    ):
        """`require_federated(user_id)` raises the allow-list's refusal for a user of a server
        this one does not federate with (medchat.rules.contact)."""
        self._api = api
        self._synapse_profiles = synapse_profiles
        self._synapse_rooms = synapse_rooms
        self._synapse_events = synapse_events
        self._synapse_stream = synapse_stream
        self._study_groups = study_groups
        self._require_federated = require_federated
        self._synapse_server = synapse_server
        self._direct_lock = synapse_server.linearizer("medchat_direct_rooms")
        self._account_data_lock = synapse_server.linearizer("medchat_m_direct")

    async def require_member(self, room_id: str, user_id: str, allow_invite: bool = False) -> str:
        """The caller's membership; 404 unless joined (or invited, where an invitee may look)."""
        if await self._synapse_rooms.is_joined(room_id, user_id):
            return "join"
        membership = await self._synapse_rooms.membership(room_id, user_id) if allow_invite else None
        if membership == "invite":
            return membership
        raise errors.not_found()

    async def is_encrypted(self, room_id: str) -> bool:
        """Whether the room is end-to-end encrypted (by the API or a Matrix client; it cannot be undone)."""
        return is_encryption_state(await self._synapse_rooms.room_state(room_id, [(ENCRYPTION, "")]))

    # --- create -------------------------------------------------------------------------------

    async def create(self, requester: Any, body: RoomCreateBody) -> tuple[bool, JsonDict]:
        """(created, room). A direct chat with someone reuses the DM the two already have."""
        caller = requester.user.to_string()
        participants = [p for p in body.participants or () if p != caller]
        for user_id in participants:
            await self._require_user(user_id)
        if body.type == "direct":
            if not participants:
                raise SynapseError(
                    400, "Invalid field participants: a direct chat needs another user.", Codes.INVALID_PARAM
                )
            created, room_id = await self._direct(requester, participants[0], body.encrypted)
        else:
            config: JsonDict = {
                "preset": "private_chat",
                "name": body.name,
                "invite": participants,
                "power_level_content_override": GROUP_POWER_LEVELS,
            }
            if body.topic:
                config["topic"] = body.topic
            if body.encrypted:
                config["initial_state"] = [_encryption_state()]
            if body.type == "case":
                # A case room is a Matrix room of MedChat's type, its history for members only.
                config["creation_content"] = {"type": CASE_ROOM}
                config["initial_state"] = [
                    {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "joined"}}
                ]
            if body.type == "study_group":
                space_id, study_group = await self._study_groups.room_config(caller, body.join_rule)
                config.update(study_group)
            room_id, created = await self._synapse_rooms.create_room(caller, config), True
            if body.type == "study_group":
                await self._study_groups.attach(space_id, room_id)
        return created, await self.view(requester, room_id)

    async def _require_user(self, user_id: str) -> None:
        self._require_federated(user_id)  # before the profile query Synapse would refuse generically
        if not await self._synapse_profiles.user_exists(user_id):
            raise errors.not_found(f"No such user: {user_id}")

    async def _direct(self, requester: Any, other: str, encrypted: bool) -> tuple[bool, str]:
        """The DM the two already have (encrypted now if asked: encryption is never turned off,
        so an encrypted DM stays so), else a new one."""
        caller = requester.user.to_string()
        async with self._direct_lock.queue(tuple(sorted((caller, other)))):
            existing = await self._find_direct(caller, other)
            if existing is not None:
                if await self._synapse_rooms.membership(existing, caller) == "invite":
                    await self._synapse_rooms.set_membership(caller, caller, existing, "join")
                await self._record_direct(caller, other, existing)
                if encrypted and not await self.is_encrypted(existing):
                    await self._synapse_events.send_event(requester, {**_encryption_state(), "room_id": existing})
                return False, existing
            config: JsonDict = {"preset": "trusted_private_chat", "is_direct": True, "invite": [other]}
            if encrypted:
                config["initial_state"] = [_encryption_state()]
            room_id = await self._synapse_rooms.create_room(caller, config)
            await self._record_direct(caller, other, room_id)
            if self._api.is_mine(other):
                await self._record_direct(other, caller, room_id)
            return True, room_id

    async def _find_direct(self, caller: str, other: str) -> str | None:
        """A room either user's `m.direct` lists for the other, holding just the two of them."""
        candidates = (await self._direct_map(caller)).get(other, [])
        if self._api.is_mine(other):
            candidates = [*candidates, *(await self._direct_map(other)).get(caller, [])]
        for room_id in dict.fromkeys(candidates):
            members = await self._members(room_id)
            active = {u for u, m in members.items() if m in ("join", "invite")}
            if active == {caller, other}:
                return room_id
        return None

    async def _direct_map(self, user_id: str) -> dict[str, list[str]]:
        content = await self._api.account_data_manager.get_global(user_id, M_DIRECT) or {}
        return {u: list(rooms) for u, rooms in content.items() if isinstance(rooms, (list, tuple))}

    async def _record_direct(self, user_id: str, other: str, room_id: str) -> None:
        async with self._account_data_lock.queue(user_id):
            direct = await self._direct_map(user_id)
            if room_id in direct.get(other, []):
                return
            direct[other] = [*direct.get(other, []), room_id]
            await self._api.account_data_manager.put_global(user_id, M_DIRECT, direct)

    async def join(self, caller: str, room_id: str, reason: str | None) -> str:
        """POST …/join (medchat.handlers.studygroups.join): the caller's membership now. An
        invitation offered as a DM (`is_direct`) stays a DM: the room goes into the caller's
        `m.direct` under the inviter before the answer, so the room it returns reads `direct`."""
        invite = await self._synapse_rooms.pending_invite(caller, room_id)
        membership = await self._study_groups.join(caller, room_id, reason)
        if membership == "join" and invite is not None and invite[1]:
            await self._record_direct(caller, invite[0], room_id)
        return membership

    async def on_new_event(self, event: Any, state_events: Any) -> None:
        """A local user's join of a room they were invited to as a DM, from any client, adds it
        to their `m.direct` under the inviter, as Element does itself (the merge is idempotent,
        so Element's own update changes nothing). One process acts: Synapse calls this on each."""
        if (
            event.type != "m.room.member"
            or event.content.get("membership") != "join"
            or event.sender != event.state_key
            or not self._api.is_mine(event.state_key)
            or not self._synapse_server.runs_background_tasks
        ):
            return
        replaced = event.unsigned.get("replaces_state")
        previous = (await self._synapse_events.events([replaced])).get(replaced) if isinstance(replaced, str) else None
        if previous is None or previous.content.get("membership") != "invite" or not previous.content.get("is_direct"):
            return
        await self._record_direct(event.state_key, previous.sender, event.room_id)

    # --- read ---------------------------------------------------------------------------------

    async def list_rooms(self, requester: Any, limit: int, cursor: str | None) -> JsonDict:
        """The caller's joined rooms and pending invites, newest activity first (sliding sync's
        order). The page's rooms are described together: their state from Synapse's caches, the
        participant summaries, last messages and unread counts each in one look-up for the page."""
        caller = requester.user.to_string()
        offset = _offset(cursor)
        ordered = await self._synapse_rooms.rooms_by_activity(caller, SPACE)
        page = dict(ordered[offset : offset + limit])
        room_ids = list(page)
        joined = [room_id for room_id in room_ids if page[room_id] == "join"]
        states, summaries, latest, unread, direct = await concurrently(
            lambda: self._synapse_rooms.rooms_state(room_ids, [*_NAMED_STATE, ("m.room.member", caller)]),
            lambda: self._synapse_rooms.member_summaries(room_ids, caller, _HEROES),
            lambda: self._latest(requester, room_ids, joined),
            lambda: self._synapse_stream.unread_counts_by_room(caller) if joined else _value({}),
            lambda: self._direct_map(caller),
        )
        heroes = await self._participant_objects(
            {room_id: members for room_id, (_, members) in summaries.items()}, states
        )
        rooms = []
        for room_id in room_ids:
            if ("m.room.create", "") not in states[room_id] and page[room_id] == "invite":
                rooms.append(await self._remote_invite_view(caller, room_id))
                continue
            last_ts, last_message = latest.get(room_id, (None, None))
            state = states[room_id]
            rooms.append(
                self._describe(
                    caller,
                    room_id,
                    page[room_id],
                    state,
                    participants=heroes[room_id],
                    participant_count=summaries[room_id][0],
                    is_direct=_is_direct_in(direct, caller, room_id, state),
                    last_ts=last_ts,
                    last_message=last_message,
                    unread=unread.get(room_id, 0),
                )
            )
        more = offset + limit < len(ordered)
        return {"results": rooms, "next_cursor": str(offset + limit) if more else None, "count": len(ordered)}

    async def view(self, requester: Any, room_id: str, membership: str | None = None) -> JsonDict:
        """One room with all its participants (presence looked up for all of them at once)."""
        caller = requester.user.to_string()
        membership = membership or await self.require_member(room_id, caller, allow_invite=True)
        state = await self._synapse_rooms.room_state(room_id, _ROOM_STATE)
        if ("m.room.create", "") not in state and membership == "invite":
            return await self._remote_invite_view(caller, room_id)
        joined = membership == "join"
        members = [
            (key, event.content["membership"], event.content.get("displayname"), event.content.get("avatar_url"))
            for (kind, key), event in sorted(state.items())
            if kind == "m.room.member" and event.content.get("membership") in _PARTICIPATING
        ]
        participants, direct, latest, unread = await concurrently(
            lambda: self._participant_objects({room_id: members}, {room_id: state}),
            lambda: self._direct_map(caller),
            lambda: self._latest(requester, [room_id], [room_id] if joined else []),
            lambda: self._synapse_stream.unread_count(room_id, caller) if joined else _value(0),
        )
        last_ts, last_message = latest.get(room_id, (None, None))
        return self._describe(
            caller,
            room_id,
            membership,
            state,
            participants=participants[room_id],
            participant_count=len(members),
            is_direct=_is_direct_in(direct, caller, room_id, state),
            last_ts=last_ts,
            last_message=last_message,
            unread=unread,
        )

    def _describe(
        self,
        caller: str,
        room_id: str,
        membership: str,
        state: dict,
        *,
        participants: list[JsonDict],
        participant_count: int,
        is_direct: bool,
        last_ts: int | None,
        last_message: JsonDict | None,
        unread: int,
    ) -> JsonDict:
        """The ChatRoom model of a room of this server from its state and what was looked up."""
        create = state[("m.room.create", "")]
        room_type = KIND_OF_TYPE.get(create.content.get("type") or "")
        name = state.get(("m.room.name", ""))
        topic = state.get(("m.room.topic", ""))
        avatar = state.get(("m.room.avatar", ""))
        is_case = room_type == "case"
        if room_type is None:
            room_type = "direct" if is_direct else "group"
        display_name = name.content.get("name") if name else None
        if not display_name:
            others = [p["user"]["full_name"] for p in participants if p["id"] != caller]
            display_name = ", ".join(others) or "Empty chat"
        room = {
            "id": room_id,
            "name": display_name,
            "type": room_type,
            "topic": topic.content.get("topic") if topic else None,
            "avatar_url": avatar.content.get("url") if avatar else None,
            "phi_guard": phi_guard_mode(state.get((PHI_GUARD_STATE, ""))) if is_case else None,
            "encrypted": is_encryption_state(state),
            "created_by": create.sender,
            "membership": membership,
            "participants": participants,
            "participant_count": participant_count,
            "last_message": last_message,
            "unread_count": unread,
            "created_at": iso(create.origin_server_ts),
            "updated_at": iso(last_ts or create.origin_server_ts),
        }
        if create.content.get("type") == STUDY_GROUP:
            join_rules = state.get(("m.room.join_rules", ""))
            room.update(self._study_groups.describe(create.content, join_rules.content if join_rules else None))
        return room

    async def _remote_invite_view(self, caller: str, room_id: str) -> JsonDict:
        """An invite to a room on another server: described from the invite's stripped state."""
        found = await self._synapse_rooms.invite_room_state(caller, room_id)
        if found is None:
            raise errors.not_found()
        invite, stripped = found
        state = {(e.get("type"), e.get("state_key")): e for e in stripped}
        create = state.get(("m.room.create", ""), {})
        name = state.get(("m.room.name", ""), {}).get("content", {}).get("name")
        members = {
            invite.sender: state.get(("m.room.member", invite.sender), {}).get("content", {}),
            caller: dict(invite.content),
        }
        participants = [
            {
                "id": user_id,
                "user": chat_member(user_id, content),
                "role": "admin" if user_id == create.get("sender", invite.sender) else "member",
                "membership": "invite" if user_id == caller else "join",
                "is_online": False,
                "last_seen": None,
            }
            for user_id, content in sorted(members.items())
        ]
        return {
            "id": room_id,
            "name": name or members[invite.sender].get("displayname") or invite.sender,
            "type": "direct" if invite.content.get("is_direct") else "group",
            "topic": state.get(("m.room.topic", ""), {}).get("content", {}).get("topic"),
            "avatar_url": state.get(("m.room.avatar", ""), {}).get("content", {}).get("url"),
            "encrypted": is_encryption_state(state),
            "created_by": create.get("sender", invite.sender),
            "membership": "invite",
            "participants": participants,
            "participant_count": len(participants),
            "last_message": None,
            "unread_count": 0,
            "created_at": iso(invite.origin_server_ts),
            "updated_at": iso(invite.origin_server_ts),
        }

    async def _is_direct(self, caller: str, room_id: str, state: dict) -> bool:
        return _is_direct_in(await self._direct_map(caller), caller, room_id, state)

    async def _members(self, room_id: str) -> dict[str, str | None]:
        state = await self._synapse_rooms.room_state(room_id, [("m.room.member", None)])
        return {key: event.content.get("membership") for (_, key), event in state.items()}

    async def _participant_objects(
        self, members_by_room: dict[str, list[Member]], states: dict[str, dict]
    ) -> dict[str, list[JsonDict]]:
        """The participant objects of each room's given members: roles from the room's power
        levels in `states` (its create and power-levels events), presence of everyone at once."""
        everyone = sorted({member[0] for members in members_by_room.values() for member in members})
        presence = await self._synapse_stream.presence_of(everyone) if everyone else {}
        return {
            room_id: [
                {
                    "id": user_id,
                    "user": chat_member(user_id, {"displayname": name, "avatar_url": avatar}),
                    "role": "admin"
                    if self._synapse_rooms.power_level(user_id, states[room_id]) >= ADMIN_LEVEL
                    else "member",
                    "membership": membership,
                    "is_online": presence.get(user_id, (False, None))[0],
                    "last_seen": iso(presence.get(user_id, (False, None))[1]),
                }
                for user_id, membership, name, avatar in members
            ]
            for room_id, members in members_by_room.items()
        }

    async def _latest(
        self, requester: Any, room_ids: list[str], joined: list[str]
    ) -> dict[str, tuple[int | None, JsonDict | None]]:
        """room_id -> (when its newest event was sent, its last message as the caller sees it;
        None outside the `joined` rooms). The newest message of each room is found in one
        transaction and read as Synapse serves it (visibility, bundled edit); where the caller may
        not see it, a short /messages read of that room finds the one they may."""
        latest = await self._synapse_rooms.latest_events(room_ids, list(kinds.SHOWN_TYPES))
        wanted = [room_id for room_id in joined if latest.get(room_id, (None, None))[1]]
        found = await self._synapse_events.joined_events_json(requester, [str(latest[r][1]) for r in wanted])
        messages: dict[str, JsonDict | None] = {}
        for room_id in wanted:
            event = found.get(str(latest[room_id][1]))
            if event is not None and kinds.is_shown(event):
                messages[room_id] = _last_message(event)
            else:
                messages[room_id] = await self._last_message(requester, room_id)
        return {room_id: (latest[room_id][0], messages.get(room_id)) for room_id in latest}

    async def _last_message(self, requester: Any, room_id: str) -> JsonDict | None:
        """The newest message the caller may see, by a short /messages read."""
        page = await self._synapse_events.messages_page(requester, room_id, None, 5, list(kinds.SHOWN_TYPES))
        return next((_last_message(event) for event in page["chunk"] if kinds.is_shown(event)), None)

    async def senders(self, room_id: str, user_ids: set[str]) -> dict[str, JsonDict]:
        """The plan's `sender` shape for each user, from their member event in the room."""
        state = await self._synapse_rooms.room_state(room_id, [("m.room.member", u) for u in user_ids])
        found = {key: chat_member(key, event.content) for (_, key), event in state.items()}
        return {u: found.get(u) or chat_member(u, {}) for u in user_ids}

    # --- change -------------------------------------------------------------------------------

    async def update(self, requester: Any, room_id: str, body: RoomUpdateBody) -> JsonDict:
        """Name, topic, avatar and a case room's guard mode are state events; the room's power
        levels (and for the guard, the case-room rules) say who may set them. The guard goes first
        (the change most likely to be refused), and the caller's power level is checked for every
        later event before the first is sent, so a refused update changes nothing."""
        caller = requester.user.to_string()
        await self.require_member(room_id, caller)
        if body.phi_guard is not None:
            create = (await self._synapse_rooms.room_state(room_id, [("m.room.create", "")]))[("m.room.create", "")]
            if create.content.get("type") != CASE_ROOM:
                raise SynapseError(
                    400,
                    "Invalid field phi_guard: only case rooms have a patient-identifier guard.",
                    Codes.INVALID_PARAM,
                )
        events = [
            (field, event_type, content(getattr(body, field)))
            for field, (event_type, content) in _ROOM_FIELDS.items()
            if body.given(field)
        ]
        levels, power_levels = await self._synapse_rooms.power_levels(room_id, [caller])
        for field, event_type, _ in events[1:]:  # the first one's refusal comes before any write
            needed = state_level(power_levels, event_type)
            if levels[caller] < needed:
                raise errors.forbidden(f"Changing {field} in this room needs power level {needed}.")
        for _, event_type, content in events:
            event = {"type": event_type, "state_key": "", "room_id": room_id, "content": content}
            await self._synapse_events.send_event(requester, event)
        return await self.view(requester, room_id)

    async def leave(self, requester: Any, room_id: str, close: bool) -> JsonDict:
        """Leaves (or declines an invite). `close` (group admins only) first removes everyone else,
        once it is known that the caller may remove each of them (another admin cannot be)."""
        caller = requester.user.to_string()
        await self.require_member(room_id, caller, allow_invite=not close)
        removed = []
        if close:
            state = await self._synapse_rooms.room_state(room_id, _ROOM_STATE)
            if await self._is_direct(caller, room_id, state):
                raise errors.invalid_param("A direct chat cannot be closed; leave it instead.")
            others = [
                user_id
                for user_id, membership in (await self._members(room_id)).items()
                if user_id != caller and membership in ("join", "invite")
            ]
            levels, power_levels = await self._synapse_rooms.power_levels(room_id, [caller, *others])
            own = levels[caller]
            if own < ADMIN_LEVEL:
                raise errors.forbidden("Only a group admin may close the group.")
            kick = power_levels.get("kick", 50)
            if (isinstance(kick, int) and own < kick) or any(levels[u] >= own for u in others):
                raise errors.forbidden("Another admin is in the group: they must leave or be made a member first.")
            for user_id in others:
                await self._synapse_rooms.set_membership(caller, user_id, room_id, "leave")
                removed.append(user_id)
        await self._synapse_rooms.set_membership(caller, caller, room_id, "leave")
        return {"room_id": room_id, "left": True, "closed": close, "removed": removed}

    async def participants(self, requester: Any, room_id: str, limit: int, cursor: str | None) -> JsonDict:
        """One page of the room's participants by user id, with presence for the page only."""
        await self.require_member(room_id, requester.user.to_string(), allow_invite=True)
        offset = _offset(cursor)
        (count, members), state = await concurrently(
            lambda: self._synapse_rooms.members_page(room_id, offset, limit),
            lambda: self._synapse_rooms.room_state(room_id, _POWER_STATE),
        )
        listed = await self._participant_objects({room_id: members}, {room_id: state})
        more = offset + limit < count
        return {"results": listed[room_id], "next_cursor": str(offset + limit) if more else None, "count": count}

    async def add_participant(self, requester: Any, room_id: str, body: ParticipantAddBody) -> tuple[int, JsonDict]:
        """Invites a user (201), or sets an existing participant's role (200).

        Adding yourself accepts your pending invitation (a Matrix join).
        """
        caller = requester.user.to_string()
        target = body.user_id
        if target == caller:
            membership = await self.require_member(room_id, caller, allow_invite=True)
            if body.role is not None:
                await self._check_may_set_role(room_id, caller, target, body.role)
            if membership == "invite":
                invite = await self._synapse_rooms.pending_invite(caller, room_id)
                await self._synapse_rooms.set_membership(caller, caller, room_id, "join")
                if invite is not None and invite[1]:
                    await self._record_direct(caller, invite[0], room_id)  # the inviter's server could not
            if body.role is not None:
                await self._set_role(requester, room_id, target, body.role)
            return 200, await self._participant(requester, room_id, caller)
        await self.require_member(room_id, caller)
        await self._require_user(target)
        if body.role is not None:  # checked before the invitation, so a refused role leaves no invite behind
            await self._check_may_set_role(room_id, caller, target, body.role)
        state = await self._synapse_rooms.room_state(room_id, _ROOM_STATE)
        current = state.get(("m.room.member", target))
        is_participant = current is not None and current.content.get("membership") in ("join", "invite")
        status = 200
        if not is_participant:
            if await self._is_direct(caller, room_id, state):
                raise SynapseError(
                    400, "A direct chat has exactly two participants; create a group.", Codes.INVALID_PARAM
                )
            await self._synapse_rooms.set_membership(caller, target, room_id, "invite")
            status = 201
        if body.role is not None:
            await self._set_role(requester, room_id, target, body.role)
        return status, await self._participant(requester, room_id, target)

    async def _check_may_set_role(self, room_id: str, caller: str, target: str, role: str) -> None:
        """403 unless `caller` may give `target` this role, by Matrix's power-level rules: the
        power to change power levels, no higher a level than their own, and (for someone else)
        a level above the target's current one; 400 for demoting a room creator, who is always an
        admin. Asking for the role someone already has is fine. Checked before any write."""
        levels, content = await self._synapse_rooms.power_levels(room_id, [caller, target])
        if (levels[target] >= ADMIN_LEVEL) == (role == "admin"):
            return
        needed = state_level(content, "m.room.power_levels")
        new_level = ADMIN_LEVEL if role == "admin" else (content.get("users_default") or 0)
        own = levels[caller]
        if own < needed or own < new_level or (target != caller and own <= levels[target]):
            raise errors.forbidden("Only a room admin may change roles, and no one may raise their own.")
        if levels[target] > ADMIN_LEVEL:
            raise errors.invalid_param("A room creator is always an admin.")

    async def _set_role(self, requester: Any, room_id: str, target: str, role: str) -> None:
        levels, content = await self._synapse_rooms.power_levels(room_id, [target])
        if (levels[target] >= ADMIN_LEVEL) == (role == "admin"):
            return
        users = dict(content.get("users", {}))
        if role == "admin":
            users[target] = ADMIN_LEVEL
        else:
            users.pop(target, None)
        event = {
            "type": "m.room.power_levels",
            "state_key": "",
            "room_id": room_id,
            "content": {**content, "users": users},
        }
        await self._synapse_events.send_event(requester, event)

    async def _participant(self, requester: Any, room_id: str, user_id: str) -> JsonDict:
        state = await self._synapse_rooms.room_state(room_id, [*_POWER_STATE, ("m.room.member", user_id)])
        member = state.get(("m.room.member", user_id))
        if member is None or member.content.get("membership") not in _PARTICIPATING:
            return {"id": user_id, "membership": "leave"}
        content = member.content
        found = (user_id, content["membership"], content.get("displayname"), content.get("avatar_url"))
        return (await self._participant_objects({room_id: [found]}, {room_id: state}))[room_id][0]

    async def remove_participant(self, requester: Any, room_id: str, target: str) -> JsonDict:
        """Kicks a participant (or withdraws their invitation); removing yourself leaves."""
        caller = requester.user.to_string()
        if target == caller:
            return await self.leave(requester, room_id, close=False)
        await self.require_member(room_id, caller)
        if (await self._members(room_id)).get(target) not in _PARTICIPATING:
            raise errors.not_found(f"{target} is not a participant of this room.")
        await self._synapse_rooms.set_membership(caller, target, room_id, "leave")
        return {"room_id": room_id, "user_id": target, "removed": True}


def _offset(cursor: str | None) -> int:
    """A list's position from its `next_cursor` (the number of items before the page)."""
    if cursor is None:
        return 0
    if not cursor.isdigit():
        raise errors.invalid_param("Invalid field cursor.")
    return int(cursor)


def _is_direct_in(direct: dict[str, list[str]], caller: str, room_id: str, state: dict) -> bool:
    """Whether the caller's `m.direct` lists the room, or their own member event says it is a DM."""
    if any(room_id in rooms for rooms in direct.values()):
        return True
    own = state.get(("m.room.member", caller))
    return bool(own and own.content.get("is_direct"))


def _last_message(event: JsonDict) -> JsonDict:
    """A room's `last_message` from a client-serialised message event."""
    message = chat_message(event, {"id": event["sender"]}, [], "")
    return {
        "id": message["id"],
        "content": message["content"],
        "message_type": message["message_type"],
        "sender": event["sender"],
        "is_deleted": message["is_deleted"],
        "created_at": message["created_at"],
    }


def _encryption_state() -> JsonDict:
    """The `m.room.encryption` state event that makes a room end-to-end encrypted (Megolm)."""
    return {"type": ENCRYPTION, "state_key": "", "content": dict(ENCRYPTION_CONTENT)}


async def _value(value: T) -> T:
    """An already-known answer where `concurrently` expects a lookup."""
    return value
