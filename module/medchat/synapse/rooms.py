"""Rooms and memberships: create, invite/join/leave, state, power levels, tags, invites, spaces."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial

from synapse import event_auth
from synapse.api.constants import EventTypes
from synapse.events import EventBase
from synapse.types import JsonDict
from synapse.types.state import StateFilter

from medchat.synapse import sql
from medchat.synapse._base import Family, requester_for
from medchat.util import concurrently

# A member as the member summaries give it: (user_id, membership, display name, avatar).
Member = tuple[str, str, str | None, str | None]

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

    async def rooms_by_activity(self, user_id: str, space_type: str) -> list[tuple[str, str]]:
        """(room_id, membership) of the local user's joined rooms and pending invites, newest
        activity first, rooms of `space_type` left out: sliding sync's ordering (its `sort_rooms`).

        The memberships, with each room's type, come from Synapse's cached sliding-sync membership
        snapshots; a joined room's position is its newest event (mostly from the event stream's
        change cache), an invite's is the invite itself (the invitee sees nothing after it). Until
        Synapse has filled those tables (its background updates after an upgrade), the rooms and
        their types are read without them, and every room's position is its newest event.
        """
        if await self._store.have_finished_sliding_sync_background_jobs():
            snapshots = await self._store.get_sliding_sync_rooms_for_user_from_membership_snapshots(user_id)
            rooms = {
                room_id: (s.membership, s.event_pos.stream)
                for room_id, s in snapshots.items()
                if s.membership in ("join", "invite") and s.room_type != space_type
            }
            joined = [room_id for room_id, (membership, _) in rooms.items() if membership == "join"]
        else:
            memberships = await self.rooms_for_user(user_id, ("join", "invite"))
            types = await self.room_types(list(memberships))
            rooms = {room_id: (m, 0) for room_id, m in memberships.items() if types.get(room_id) != space_type}
            joined = list(rooms)
        activity = await self.last_activity(joined)
        position = {room_id: activity.get(room_id, at) for room_id, (_, at) in rooms.items()}
        ordered = sorted(rooms, key=lambda room_id: (position[room_id], room_id), reverse=True)
        return [(room_id, rooms[room_id][0]) for room_id in ordered]

    async def rooms_state(
        self, room_ids: list[str], keys: list[tuple[str, str]]
    ) -> dict[str, dict[tuple[str, str], EventBase]]:
        """`room_state` of many rooms for concrete (type, state_key) pairs only: Synapse caches
        each pair's event id, and the events are fetched in one look-up."""
        state_filter = StateFilter.from_types(keys)
        controller = self._hs.get_storage_controllers().state
        found = await concurrently(*[partial(controller.get_current_state_ids, r, state_filter) for r in room_ids])
        ids = dict(zip(room_ids, found))
        events = await self._store.get_events({e for state in ids.values() for e in state.values()})
        return {room_id: {key: events[e] for key, e in state.items() if e in events} for room_id, state in ids.items()}

    async def member_summaries(
        self, room_ids: list[str], user_id: str, limit: int
    ) -> dict[str, tuple[int, list[Member]]]:
        """room_id -> (participants counted, the first `limit`: the others by user id, `user_id`
        last), from the rooms' current member events, in one transaction."""
        if not room_ids:
            return {}
        return await self.api.run_db_interaction(
            "medchat_member_summaries", sql.member_summaries_txn, room_ids, user_id, limit
        )

    async def members_page(self, room_id: str, offset: int, limit: int) -> tuple[int, list[Member]]:
        """(participants counted, one page of them by user id)."""
        return await self.api.run_db_interaction("medchat_members_page", sql.members_page_txn, room_id, offset, limit)

    async def latest_events(self, room_ids: list[str], types: list[str]) -> dict[str, tuple[int | None, str | None]]:
        """room_id -> (when its newest event was sent, its newest timeline event of `types` that is
        no edit, reaction or poll answer, not yet checked for the reader's visibility), in one
        transaction."""
        if not room_ids:
            return {}
        return await self.api.run_db_interaction("medchat_latest_events", sql.latest_events_txn, room_ids, types)

    async def last_activity(self, room_ids: list[str]) -> dict[str, int]:
        """room_id -> stream position of its newest event, for ordering a room list."""
        return await self._store.bulk_get_last_event_pos_in_room_before_stream_ordering(
            room_ids, self._store.get_room_max_token()
        )

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

    async def joined_members(self, room_id: str) -> Sequence[str]:
        """The room's joined members: Synapse's cached sequence itself (read only), the same
        object for as long as the membership holds."""
        return await self._store.get_users_in_room(room_id)

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
