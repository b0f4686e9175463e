"""/api/chat/rooms/*: chat rooms and their participants (Matrix rooms and memberships)."""

from __future__ import annotations

from typing import Any

from synapse.http.server import JsonResource
from synapse.module_api import ModuleApi

from medchat.api.http import CURSOR_MAX, MAX_PAGE, query_bool, query_limit, query_string, read_json, route
from medchat.models import PARTICIPANT_ADD_BODY, ROOM_CREATE_BODY, ROOM_JOIN_BODY, ROOM_UPDATE_BODY
from medchat.rooms import Rooms
from medchat.studygroups import StudyGroups


class RoomServlets:
    def __init__(self, api: ModuleApi, rooms: Rooms, study_groups: StudyGroups):
        self._api = api
        self._rooms = rooms
        self._study_groups = study_groups

    def register_routes(self, resource: JsonResource) -> None:
        route(resource, "GET", "/api/chat/rooms", self.list_rooms)
        route(resource, "POST", "/api/chat/rooms", self.create)
        route(resource, "GET", "/api/chat/rooms/{room_id}", self.get)
        route(resource, "PUT", "/api/chat/rooms/{room_id}", self.update)
        route(resource, "DELETE", "/api/chat/rooms/{room_id}", self.leave)
        route(resource, "POST", "/api/chat/rooms/{room_id}/join", self.join)
        route(resource, "GET", "/api/chat/institutions/{name}/rooms", self.institution_rooms)
        route(resource, "GET", "/api/chat/rooms/{room_id}/participants", self.participants)
        route(resource, "POST", "/api/chat/rooms/{room_id}/participants", self.add_participant)
        route(resource, "DELETE", "/api/chat/rooms/{room_id}/participants/{user_id}", self.remove_participant)

    async def list_rooms(self, request: Any) -> tuple[int, Any]:
        requester = await self._api.get_user_by_req(request)
        return 200, await self._rooms.list_rooms(requester, query_limit(request, default=20, maximum=MAX_PAGE), query_string(request, "cursor", max_length=CURSOR_MAX))

    async def create(self, request: Any) -> tuple[int, Any]:
        requester = await self._api.get_user_by_req(request)
        created, room = await self._rooms.create(requester, read_json(request, ROOM_CREATE_BODY))
        return (201 if created else 200), room

    async def get(self, request: Any, room_id: str) -> tuple[int, Any]:
        requester = await self._api.get_user_by_req(request)
        return 200, await self._rooms.view(requester, room_id)

    async def update(self, request: Any, room_id: str) -> tuple[int, Any]:
        requester = await self._api.get_user_by_req(request)
        return 200, await self._rooms.update(requester, room_id, read_json(request, ROOM_UPDATE_BODY))

    async def leave(self, request: Any, room_id: str) -> tuple[int, Any]:
        requester = await self._api.get_user_by_req(request)
        close = bool(query_bool(request, "close"))
        return 200, await self._rooms.leave(requester, room_id, close)

    async def join(self, request: Any, room_id: str) -> tuple[int, Any]:
        """200 with the room once joined; 202 while a request to join (a knock) waits for an admin."""
        requester = await self._api.get_user_by_req(request)
        body = read_json(request, ROOM_JOIN_BODY)
        membership = await self._study_groups.join(requester.user.to_string(), room_id, body.get("reason"))
        if membership == "knock":
            return 202, {"room_id": room_id, "membership": "knock", "room": None}
        return 200, {"room_id": room_id, "membership": "join", "room": await self._rooms.view(requester, room_id)}

    async def institution_rooms(self, request: Any, name: str) -> tuple[int, Any]:
        requester = await self._api.get_user_by_req(request)
        limit = query_limit(request, default=20, maximum=MAX_PAGE)
        cursor = query_string(request, "cursor", max_length=CURSOR_MAX)
        return 200, await self._study_groups.institution_rooms(requester.user.to_string(), name, limit, cursor)

    async def participants(self, request: Any, room_id: str) -> tuple[int, Any]:
        requester = await self._api.get_user_by_req(request)
        return 200, await self._rooms.participants(requester, room_id)

    async def add_participant(self, request: Any, room_id: str) -> tuple[int, Any]:
        requester = await self._api.get_user_by_req(request)
        return await self._rooms.add_participant(requester, room_id, read_json(request, PARTICIPANT_ADD_BODY))

    async def remove_participant(self, request: Any, room_id: str, user_id: str) -> tuple[int, Any]:
        requester = await self._api.get_user_by_req(request)
        return 200, await self._rooms.remove_participant(requester, room_id, user_id)
