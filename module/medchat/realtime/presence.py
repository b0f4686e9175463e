"""Online status through Synapse's presence, shown only to people who share a room with the user
or whom the user has as a contact."""

from __future__ import annotations

from typing import Any

from synapse.api.errors import Codes
from synapse.module_api import ModuleApi
from synapse.module_api.errors import SynapseError

from medchat import errors
from medchat.models import JsonDict, iso
from medchat.store import ContactStore
from medchat.synapse import SynapseRooms, SynapseStream


class Presence:
    def __init__(
        self, api: ModuleApi, synapse_rooms: SynapseRooms, synapse_stream: SynapseStream, contacts: ContactStore
    ):
        self._api = api
        self._synapse_rooms = synapse_rooms
        self._synapse_stream = synapse_stream
        self._contacts = contacts

    async def get(self, viewer: str, user_id: str) -> JsonDict:
        if await self._api.check_user_exists(user_id) is None:
            raise errors.not_found("No such user.")
        if viewer != user_id and not await self._visible_to(viewer, user_id):
            raise SynapseError(
                403, "You can see the status of your contacts and of people you share a room with.", Codes.FORBIDDEN
            )
        state = await self._synapse_stream.presence_state(user_id)
        return {
            "user_id": user_id,
            "status": state["state"],
            "is_online": state["state"] == "online",
            "last_seen": iso(state["last_active_ts"]),
            "status_msg": state["status_msg"],
        }

    async def _visible_to(self, viewer: str, user_id: str) -> bool:
        """The user's own contact list decides (their consent), besides sharing a room."""
        return await self._contacts.get(user_id, viewer) is not None or await self._synapse_rooms.share_a_room(
            viewer, user_id
        )

    async def set(self, requester: Any, user_id: str, body: JsonDict) -> JsonDict:
        me = requester.user.to_string()
        if user_id != me:
            raise errors.forbidden("You can only set your own status.")
        await self._synapse_stream.set_presence(requester, body["status"], body.get("status_msg"))
        return await self.get(me, me)
