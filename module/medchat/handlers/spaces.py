"""Institution spaces: each institution is a Matrix space (`m.room.create` type `m.space`) whose
children are the institution's rooms, so Element shows the same grouping as the API.

The spaces belong to the module's service account, not to whoever made the first study group, so
a space outlives its first user. Only that account may change a space (power levels), so only the
module adds children and invites members. A space is created once per institution: within a
process a per-institution lock, across processes the primary key of `medchat_institution_spaces`
(the loser of a race abandons its space and uses the recorded one).
"""

from __future__ import annotations

from synapse.module_api import ModuleApi
from synapse.module_api.errors import SynapseError

from medchat import errors
from medchat.models import JsonDict
from medchat.roomtypes import INSTITUTION_KEY, SPACE
from medchat.store.spaces import SpaceStore
from medchat.synapse import SynapseAccounts, SynapseEvents, SynapseRooms, SynapseServer
from medchat.synapse._base import requester_for

OWNER_DISPLAY_NAME = "MedChat"
# Everything in a space is the module's to change; members can read its hierarchy, nothing more.
SPACE_POWER_LEVELS = {
    "invite": 100,
    "kick": 100,
    "ban": 100,
    "redact": 100,
    "state_default": 100,
    "events_default": 100,
}


class InstitutionSpaces:
    def __init__(
        self,
        api: ModuleApi,
        synapse_server: SynapseServer,
        synapse_accounts: SynapseAccounts,
        synapse_rooms: SynapseRooms,
        synapse_events: SynapseEvents,
        store: SpaceStore,
        owner_localpart: str,
    ):
        self._api = api
        self._synapse_server = synapse_server
        self._synapse_accounts = synapse_accounts
        self._synapse_rooms = synapse_rooms
        self._synapse_events = synapse_events
        self._store = store
        self._owner_localpart = owner_localpart
        self._owner: str | None = None
        self._lock = synapse_server.linearizer("medchat_institution_spaces")

    async def owner(self) -> str:
        """The service account's user id, registered on first use."""
        if self._owner is None:
            async with self._lock.queue(("owner",)):
                if self._owner is None:
                    self._owner = await self._synapse_accounts.ensure_service_user(
                        self._owner_localpart, OWNER_DISPLAY_NAME
                    )
        return self._owner

    async def space_of(self, institution: str) -> str | None:
        return await self._store.space_of(institution)

    async def institution_known(self, institution: str) -> bool:
        return await self._store.institution_known(institution)

    async def space_for(self, institution: str) -> str:
        """The institution's space, created now if it has none."""
        found = await self._store.space_of(institution)
        if found is not None:
            return found
        async with self._lock.queue(("space", institution)):
            found = await self._store.space_of(institution)
            if found is not None:
                return found
            owner = await self.owner()
            space_id = await self._synapse_rooms.create_room(
                owner,
                {
                    "preset": "private_chat",
                    "name": institution,
                    "topic": f"Study groups and rooms of {institution}",
                    "creation_content": {"type": SPACE, INSTITUTION_KEY: institution},
                    "power_level_content_override": SPACE_POWER_LEVELS,
                    "initial_state": [
                        {"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": "forbidden"}}
                    ],
                },
            )
            recorded = await self._store.claim(institution, space_id, self._synapse_server.now_ms())
            if recorded != space_id:  # another process created one first: abandon ours
                await self._synapse_rooms.set_membership(owner, owner, space_id, "leave")
            return recorded

    async def add_child(self, space_id: str, room_id: str) -> None:
        """`m.space.child` in the space (the room carries the matching `m.space.parent`)."""
        owner = await self.owner()
        event = {
            "type": "m.space.child",
            "state_key": room_id,
            "room_id": space_id,
            "content": {"via": [self._api.server_name]},
        }
        await self._synapse_events.send_event(requester_for(owner), event)

    async def ensure_member(self, space_id: str, user_id: str) -> None:
        """Joins a user of the institution to its space (invited by the service account), so their
        Matrix client shows the space and rooms restricted to it let them in."""
        membership = await self._synapse_rooms.membership(space_id, user_id)
        if membership == "join":
            return
        if membership != "invite":
            await self._synapse_rooms.set_membership(await self.owner(), user_id, space_id, "invite")
        await self._synapse_rooms.set_membership(user_id, user_id, space_id, "join")

    async def children(self, space_id: str, limit: int, cursor: str | None) -> tuple[list[JsonDict], str | None]:
        """One page of the space's children as Synapse's `/hierarchy` describes them (name,
        topic, `num_joined_members`, `join_rule`, `room_type`, ...), seen by the service account."""
        try:
            # The first page starts with the space itself.
            page = await self._synapse_rooms.room_hierarchy(
                await self.owner(), space_id, limit + (0 if cursor else 1), cursor
            )
        except SynapseError as e:
            if e.code == 400 and cursor is not None:
                raise errors.invalid_param("Invalid field cursor: not a page token of this listing.")
            raise
        return [r for r in page["rooms"] if r["room_id"] != space_id], page.get("next_batch")
