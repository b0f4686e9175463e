"""Rooms and memberships: create, invite/join/leave, state, power levels, tags, invites, spaces."""

from __future__ import annotations

import logging

from synapse import event_auth
from synapse.api.constants import EventTypes
from synapse.events import EventBase
from synapse.types import JsonDict

from medchat.synapse._base import Family, requester_for

logger = logging.getLogger(__name__)


class SynapseRooms(Family):
    """Rooms, memberships and room state through Synapse's handlers, so power levels, history
    visibility, rate limits, spam-checker callbacks and push rules apply as for a Matrix client."""

    async def create_room(self, user_id: str, config: JsonDict) -> str:
        room_id, _ = await self.api.create_room(user_id, config)
        return room_id

    async def set_membership(
        self, sender: str, target: str, room_id: str, membership: str, reason: str | None = None
    ) -> None:
        """Invite, join, knock, leave or kick (`leave` with sender != target), as /rooms/{id}/{action}."""
        await self.api.update_room_membership(
            sender, target, room_id, membership, content={"reason": reason} if reason else None
        )

    async def membership(self, room_id: str, user_id: str) -> str | None:
        """The local user's current membership in the room (None if they never had one)."""
        membership, _ = await self._store.get_local_current_membership_for_user_in_room(user_id, room_id)
        return membership

    async def room_types(self, room_ids: list[str]) -> dict[str, str | None]:
        """Each room's `m.room.create` type (None: a plain room, or one this server does not know)."""
        found = await self._store.bulk_get_room_type(set(room_ids))
        return {room_id: kind if isinstance(kind, str) else None for room_id, kind in found.items()}

    async def is_joined(self, room_id: str, user_id: str) -> bool:
        """Cached: the hot path of every message request."""
        return room_id in await self._store.get_rooms_for_user(user_id)

    async def rooms_for_user(self, user_id: str, memberships: tuple[str, ...]) -> dict[str, str]:
        """room_id -> membership for the local user's rooms in the given memberships."""
        rooms = await self._store.get_rooms_for_local_user_where_membership_is(user_id, memberships)
        return {r.room_id: r.membership for r in rooms}

    async def last_activity(self, room_ids: list[str]) -> dict[str, int]:
        """room_id -> stream position of its newest event, for ordering a room list."""
        return await self._store.bulk_get_last_event_pos_in_room_before_stream_ordering(
            room_ids, self._store.get_room_max_token()
        )

    async def last_event_ts(self, room_id: str) -> int | None:
        found = await self._store.get_last_event_pos_in_room(room_id)
        if found is None:
            return None
        event = await self._store.get_event(found[0], allow_none=True)
        return event.origin_server_ts if event else None

    async def room_state(self, room_id: str, keys: list[tuple[str, str | None]]) -> dict[tuple[str, str], EventBase]:
        """Current state events of the given (type, state_key) pairs; state_key None = all."""
        return dict(await self.api.get_room_state(room_id, keys))

    async def power_levels(self, room_id: str, user_ids: list[str]) -> tuple[dict[str, int], JsonDict]:
        """Each user's power level (room v12 creators included) and the m.room.power_levels content."""
        state = await self.room_state(room_id, [(EventTypes.Create, ""), (EventTypes.PowerLevels, "")])
        levels = {u: self.power_level(u, state) for u in user_ids}
        power_event = state.get((EventTypes.PowerLevels, ""))
        return levels, dict(power_event.content) if power_event else {}

    @staticmethod
    def power_level(user_id: str, state: dict[tuple[str, str], EventBase]) -> int:
        """A user's power level in the given room state (as an event-rules callback receives it)."""
        return event_auth.get_user_power_level(user_id, state)

    async def room_hierarchy(self, user_id: str, space_id: str, limit: int, from_token: str | None) -> JsonDict:
        """One page of `/_matrix/client/v1/rooms/{space}/hierarchy` as `user_id` sees it (the
        space first, then its children; depth 1). Synapse decides which children the user may
        see and keeps the pagination session; a bad token is its 400."""
        return await self._hs.get_room_summary_handler().get_room_hierarchy(
            requester_for(user_id), space_id, max_depth=1, limit=limit, from_token=from_token
        )

    async def joined_members(self, room_id: str) -> list[str]:
        return list(await self._store.get_users_in_room(room_id))

    async def share_a_room(self, user_id: str, other_user_id: str) -> bool:
        return other_user_id in await self._store.do_users_share_a_room(user_id, [other_user_id])

    async def pending_invites(self, user_id: str) -> set[str]:
        """Rooms the user is invited to and has not answered."""
        rooms = await self._store.get_invited_rooms_for_local_user(user_id)
        return {room.room_id for room in rooms}

    async def pending_invite(self, user_id: str, room_id: str) -> tuple[str, bool] | None:
        """(inviter, is_direct) of a local user's pending invite to a room, if any."""
        invite = await self._store.get_invite_for_local_user_in_room(user_id, room_id)
        if invite is None:
            return None
        event = await self._store.get_event(invite.event_id, allow_none=True)
        return invite.sender, bool(event is not None and event.content.get("is_direct"))

    async def invite_room_state(self, user_id: str, room_id: str) -> tuple[EventBase, list[JsonDict]] | None:
        """A local user's pending invite and the stripped state it carries (`invite_room_state`):
        all that is known of a room on another server until the user joins it."""
        invite = await self._store.get_invite_for_local_user_in_room(user_id, room_id)
        event = await self._store.get_event(invite.event_id, allow_none=True) if invite else None
        if event is None:
            return None
        stripped = event.unsigned.get("invite_room_state") or []
        return event, [dict(e) for e in stripped if isinstance(e, dict) or hasattr(e, "get")]

    async def room_tags(self, user_id: str, room_id: str) -> set[str]:
        return set(await self._store.get_tags_for_room(user_id, room_id))

    async def set_room_tag(self, user_id: str, room_id: str, tag: str, present: bool) -> None:
        """Adds or removes a room tag as `PUT/DELETE .../rooms/{roomId}/tags/{tag}` does (synced)."""
        handler = self._hs.get_account_data_handler()
        if present:
            await handler.add_tag_to_room(user_id, room_id, tag, {})
        else:
            await handler.remove_tag_from_room(user_id, room_id, tag)

    async def latest_event_id(self, room_id: str) -> str | None:
        return await self._store.get_last_event_id_in_room_before_stream_ordering(
            room_id, self._store.get_room_max_token()
        )
