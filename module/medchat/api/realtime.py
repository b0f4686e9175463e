"""Message status, presence and notifications: /api/chat/messages/{id}/status, mark-read,
/api/chat/rooms/{id}/mark-all-read, /api/chat/users/{id}/status, /api/chat/notifications…"""

from __future__ import annotations

from typing import Any

from synapse.http.server import JsonResource
from synapse.module_api import ModuleApi

from medchat.api.http import MAX_PAGE, query_bool, query_limit, query_string, read_json, route
from medchat.models import PRESENCE_BODY, STATUS_BODY
from medchat.realtime.notifications import Cursor, Notifications
from medchat.realtime.presence import Presence
from medchat.realtime.status import MessageStatus


class RealtimeServlets:
    def __init__(self, api: ModuleApi, status: MessageStatus, presence: Presence, notifications: Notifications):
        self._api = api
        self._status = status
        self._presence = presence
        self._notifications = notifications

    def register_routes(self, resource: JsonResource) -> None:
        route(resource, "GET", "/api/chat/messages/{message_id}/status", self.get_status)
        route(resource, "PUT", "/api/chat/messages/{message_id}/status", self.put_status)
        route(resource, "POST", "/api/chat/messages/{message_id}/mark-read", self.mark_read)
        route(resource, "POST", "/api/chat/rooms/{room_id}/mark-all-read", self.mark_all_read)
        route(resource, "GET", "/api/chat/users/{user_id}/status", self.get_presence)
        route(resource, "PUT", "/api/chat/users/{user_id}/status", self.put_presence)
        # Literal paths before /{id}: the router takes the first path that matches.
        route(resource, "GET", "/api/chat/notifications", self.list_notifications)
        route(resource, "GET", "/api/chat/notifications/unread-count", self.unread_count)
        route(resource, "PUT", "/api/chat/notifications/read-all", self.read_all)
        route(resource, "PUT", "/api/chat/notifications/{notification_id}/read", self.read_one)
        route(resource, "DELETE", "/api/chat/notifications/{notification_id}", self.dismiss)

    async def _me(self, request: Any) -> str:
        return (await self._api.get_user_by_req(request)).user.to_string()

    async def get_status(self, request: Any, message_id: str) -> tuple[int, Any]:
        return 200, await self._status.of(await self._me(request), message_id)

    async def put_status(self, request: Any, message_id: str) -> tuple[int, Any]:
        me = await self._me(request)
        await self._status.acknowledge(me, message_id, read_json(request, STATUS_BODY)["status"])
        return 200, await self._status.of(me, message_id)

    async def mark_read(self, request: Any, message_id: str) -> tuple[int, Any]:
        me = await self._me(request)
        await self._status.acknowledge(me, message_id, "read")
        return 200, await self._status.of(me, message_id)

    async def mark_all_read(self, request: Any, room_id: str) -> tuple[int, Any]:
        latest = await self._status.mark_all_read(await self._me(request), room_id)
        return 200, {"room_id": room_id, "read_up_to": latest}

    async def get_presence(self, request: Any, user_id: str) -> tuple[int, Any]:
        return 200, await self._presence.get(await self._me(request), user_id)

    async def put_presence(self, request: Any, user_id: str) -> tuple[int, Any]:
        requester = await self._api.get_user_by_req(request)
        return 200, await self._presence.set(requester, user_id, read_json(request, PRESENCE_BODY))

    async def list_notifications(self, request: Any) -> tuple[int, Any]:
        me = await self._me(request)
        limit = query_limit(request, default=20, maximum=MAX_PAGE)
        cursor = Cursor.parse(query_string(request, "from", max_length=64))
        return 200, await self._notifications.page(me, cursor, limit, bool(query_bool(request, "unread")))

    async def unread_count(self, request: Any) -> tuple[int, Any]:
        return 200, await self._notifications.unread_count(await self._me(request))

    async def read_all(self, request: Any) -> tuple[int, Any]:
        return 200, {"rooms_marked_read": await self._notifications.mark_all_read(await self._me(request))}

    async def read_one(self, request: Any, notification_id: str) -> tuple[int, Any]:
        await self._notifications.mark_read(await self._me(request), notification_id)
        return 200, {}

    async def dismiss(self, request: Any, notification_id: str) -> tuple[int, Any]:
        await self._notifications.dismiss(await self._me(request), notification_id)
        return 200, {}
