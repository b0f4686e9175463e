"""/api/chat/rooms/*: chat rooms and their participants (Matrix rooms and memberships)."""

from __future__ import annotations

from typing import Any

from synapse.http.server import JsonResource
from synapse.module_api import ModuleApi

from medchat.api.http import read_json, read_query, route
from medchat.api.schemas.queries import LeaveQuery, ParticipantsQuery, RoomPageQuery
from medchat.api.schemas.requests import ParticipantAddBody, RoomCreateBody, RoomJoinBody, RoomUpdateBody
from medchat.api.schemas.responses import (
    INSTITUTION_ROOMS,
    JOIN_REQUESTED,
    PARTICIPANT,
    PARTICIPANT_REMOVED,
    PARTICIPANTS,
    ROOM,
    ROOM_JOINED,
    ROOM_LEFT,
    ROOM_PAGE,
)
from medchat.handlers.rooms import Rooms
from medchat.handlers.studygroups import StudyGroups


class RoomServlets:
    def __init__(self, api: ModuleApi, rooms: Rooms, study_groups: StudyGroups):
        self._api = api
        self._rooms = rooms
        self._study_groups = study_groups

    def register_routes(self, resource: JsonResource) -> None:
        room = "/api/chat/rooms/{room_id}"
        route(resource, "GET", "/api/chat/rooms", self.list_rooms, query=RoomPageQuery, responses={200: ROOM_PAGE})
        route(resource, "POST", "/api/chat/rooms", self.create, body=RoomCreateBody, responses={200: ROOM, 201: ROOM})
        route(resource, "GET", room, self.get, responses={200: ROOM})
        route(resource, "PUT", room, self.update, body=RoomUpdateBody, responses={200: ROOM})
        route(resource, "DELETE", room, self.leave, query=LeaveQuery, responses={200: ROOM_LEFT})
        route(
            resource,
            "POST",
            f"{room}/join",
            self.join,
            body=RoomJoinBody,
            responses={200: ROOM_JOINED, 202: JOIN_REQUESTED},
        )
        route(
            resource,
            "GET",
            "/api/chat/institutions/{name}/rooms",
            self.institution_rooms,
            query=RoomPageQuery,
            responses={200: INSTITUTION_ROOMS},
        )
        route(
            resource,
            "GET",
            f"{room}/participants",
            self.participants,
            query=ParticipantsQuery,
            responses={200: PARTICIPANTS},
        )
        route(
            resource,
            "POST",
            f"{room}/participants",
            self.add_participant,
            body=ParticipantAddBody,
            responses={200: PARTICIPANT, 201: PARTICIPANT},
        )
        route(
            resource,
            "DELETE",
            f"{room}/participants/{{user_id}}",
            self.remove_participant,
            responses={200: PARTICIPANT_REMOVED},
        )

    async def list_rooms(self, request: Any) -> tuple[int, Any]:
        """The caller's joined rooms and pending invitations, newest activity first; each room's
        `participants` is a summary (up to 5, the caller last), `participant_count` all of them."""
        requester = await self._api.get_user_by_req(request)
        query = read_query(request, RoomPageQuery)
        return 200, await self._rooms.list_rooms(requester, query.limit, query.cursor)

    async def create(self, request: Any) -> tuple[int, Any]:
        """Creates a direct, group or case room; a direct chat the two already have is reused (200).

        Case rooms (`org.medchat.case`) are for `license_verified` practitioners only (403
        `ORG_MEDCHAT_CASE_ROOM_REFUSED`).
        """
        requester = await self._api.get_user_by_req(request)
        created, room = await self._rooms.create(requester, read_json(request, RoomCreateBody))
        return (201 if created else 200), room

    async def get(self, request: Any, room_id: str) -> tuple[int, Any]:
        """One room the caller is in or invited to."""
        requester = await self._api.get_user_by_req(request)
        return 200, await self._rooms.view(requester, room_id)

    async def update(self, request: Any, room_id: str) -> tuple[int, Any]:
        """Sets name, topic or avatar (state events; the power levels decide who may)."""
        requester = await self._api.get_user_by_req(request)
        return 200, await self._rooms.update(requester, room_id, read_json(request, RoomUpdateBody))

    async def leave(self, request: Any, room_id: str) -> tuple[int, Any]:
        """Leaves the room or declines the invitation; `close=true` (group admins) first removes everyone else."""
        requester = await self._api.get_user_by_req(request)
        return 200, await self._rooms.leave(requester, room_id, read_query(request, LeaveQuery).close)

    async def join(self, request: Any, room_id: str) -> tuple[int, Any]:
        """Join a study group of the caller's institution, or ask to (knock).

        200 with the room once joined; 202 while a request to join (a knock) waits for an admin."""
        requester = await self._api.get_user_by_req(request)
        reason = read_json(request, RoomJoinBody).reason
        membership = await self._rooms.join(requester.user.to_string(), room_id, reason)
        if membership == "knock":
            return 202, {"room_id": room_id, "membership": "knock", "room": None}
        return 200, {"room_id": room_id, "membership": "join", "room": await self._rooms.view(requester, room_id)}

    async def institution_rooms(self, request: Any, name: str) -> tuple[int, Any]:
        """The rooms of an institution's space (its study groups), for its members and server admins."""
        requester = await self._api.get_user_by_req(request)
        query = read_query(request, RoomPageQuery)
        caller = requester.user.to_string()
        return 200, await self._study_groups.institution_rooms(caller, name, query.limit, query.cursor)

    async def participants(self, request: Any, room_id: str) -> tuple[int, Any]:
        """One page of the room's joined, invited and knocking members by user id, with their role
        and presence; `count` is all of them."""
        requester = await self._api.get_user_by_req(request)
        query = read_query(request, ParticipantsQuery)
        return 200, await self._rooms.participants(requester, room_id, query.limit, query.cursor)

    async def add_participant(self, request: Any, room_id: str) -> tuple[int, Any]:
        """Invites a user (201) or changes a participant's role (200)."""
        requester = await self._api.get_user_by_req(request)
        return await self._rooms.add_participant(requester, room_id, read_json(request, ParticipantAddBody))

    async def remove_participant(self, request: Any, room_id: str, user_id: str) -> tuple[int, Any]:
        """Removes (kicks) a participant."""
        requester = await self._api.get_user_by_req(request)
        return 200, await self._rooms.remove_participant(requester, room_id, user_id)
