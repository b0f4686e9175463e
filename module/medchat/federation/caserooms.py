"""Case rooms are for licence-verified practitioners: only they may create one, be invited into
one, join one or knock on one, and a case room is never public. A local user's level is their
verification; a user of another server needs a valid licence attestation from their own server
(both answered by `Verification.level_of`).

The rule is part of the one membership decision (medchat.rules.membership, on every
`m.room.member` event whatever its route, and on join-rule changes), so it holds for the API, any
Matrix client and federation. This gate answers what the other case-room rules need to know:
whether a room is one.
"""

from __future__ import annotations

from medchat.roomtypes import CASE_ROOM
from medchat.synapse import SynapseRooms


class CaseRoomGate:
    def __init__(self, synapse_rooms: SynapseRooms):
        self._synapse_rooms = synapse_rooms

    async def is_case_room(self, room_id: str) -> bool:
        """On every message's path: Synapse caches room types (a room's type never changes)."""
        return (await self._synapse_rooms.room_types([room_id]))[room_id] == CASE_ROOM
