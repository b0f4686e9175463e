"""Message status, presence and notifications: /api/chat/messages/{id}/status, mark-read,
/api/chat/rooms/{id}/mark-all-read, /api/chat/users/{id}/status, /api/chat/notifications…"""

from __future__ import annotations

from typing import Any

from synapse.http.server import JsonResource
from synapse.module_api import ModuleApi

from medchat.api.http import read_json, read_query, route
from medchat.api.schemas.queries import NotificationsQuery
from medchat.api.schemas.requests import MessageStatusBody, PresenceBody
from medchat.api.schemas.responses import (
    EMPTY,
    MARKED_ALL_READ,
    MESSAGE_STATUS,
    NOTIFICATION_PAGE,
    PRESENCE,
    READ_ALL,
    UNREAD_COUNT,
)
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
        status, presence = {200: MESSAGE_STATUS}, {200: PRESENCE}
        route(resource, "GET", "/api/chat/messages/{message_id}/status", self.get_status, responses=status)
        route(
            resource,
            "PUT",
            "/api/chat/messages/{message_id}/status",
            self.put_status,
            body=MessageStatusBody,
            responses=status,
        )
        route(resource, "POST", "/api/chat/messages/{message_id}/mark-read", self.mark_read, responses=status)
        route(
            resource,
            "POST",
            "/api/chat/rooms/{room_id}/mark-all-read",
            self.mark_all_read,
            responses={200: MARKED_ALL_READ},
        )
        route(resource, "GET", "/api/chat/users/{user_id}/status", self.get_presence, responses=presence)
        route(
            resource,
            "PUT",
            "/api/chat/users/{user_id}/status",
            self.put_presence,
            body=PresenceBody,
            responses=presence,
        )
        # Literal paths before /{id}: the router takes the first path that matches.
        route(
            resource,
            "GET",
            "/api/chat/notifications",
            self.list_notifications,
            query=NotificationsQuery,
            responses={200: NOTIFICATION_PAGE},
        )
        route(resource, "GET", "/api/chat/notifications/unread-count", self.unread_count, responses={200: UNREAD_COUNT})
        route(resource, "PUT", "/api/chat/notifications/read-all", self.read_all, responses={200: READ_ALL})
        route(resource, "PUT", "/api/chat/notifications/{notification_id}/read", self.read_one, responses={200: EMPTY})
        route(resource, "DELETE", "/api/chat/notifications/{notification_id}", self.dismiss, responses={200: EMPTY})

    async def _me(self, request: Any) -> str:
        return (await self._api.get_user_by_req(request)).user.to_string()

    async def get_status(self, request: Any, message_id: str) -> tuple[int, Any]:
        """Delivery state of a message: sent < delivered < read (Matrix read receipts), per participant."""
        return 200, await self._status.of(await self._me(request), message_id)

    async def put_status(self, request: Any, message_id: str) -> tuple[int, Any]:
        """The app acknowledges a message as delivered or read (`read` sends a real receipt)."""
        me = await self._me(request)
        await self._status.acknowledge(me, message_id, read_json(request, MessageStatusBody).status)
        return 200, await self._status.of(me, message_id)

    async def mark_read(self, request: Any, message_id: str) -> tuple[int, Any]:
        """Sends an `m.read` receipt for the message, as Element does."""
        me = await self._me(request)
        await self._status.acknowledge(me, message_id, "read")
        return 200, await self._status.of(me, message_id)

    async def mark_all_read(self, request: Any, room_id: str) -> tuple[int, Any]:
        """Moves the read receipt and the `m.fully_read` marker to the room's newest event."""
        latest = await self._status.mark_all_read(await self._me(request), room_id)
        return 200, {"room_id": room_id, "read_up_to": latest}

    async def get_presence(self, request: Any, user_id: str) -> tuple[int, Any]:
        """A user's presence (their contacts and people sharing a room with them only)."""
        return 200, await self._presence.get(await self._me(request), user_id)

    async def put_presence(self, request: Any, user_id: str) -> tuple[int, Any]:
        """Sets the caller's presence through Synapse."""
        requester = await self._api.get_user_by_req(request)
        body = read_json(request, PresenceBody)
        return 200, await self._presence.set(requester, user_id, body.model_dump())

    async def list_notifications(self, request: Any) -> tuple[int, Any]:
        """Notifications newest first: Synapse's push-rule results and the module's own kinds."""
        me = await self._me(request)
        query = read_query(request, NotificationsQuery)
        cursor = Cursor.parse(query.cursor)
        return 200, await self._notifications.page(me, cursor, query.limit, query.unread)

    async def unread_count(self, request: Any) -> tuple[int, Any]:
        """Unread notifications, in total and per room."""
        return 200, await self._notifications.unread_count(await self._me(request))

    async def read_all(self, request: Any) -> tuple[int, Any]:
        """Marks every notification read."""
        return 200, {"rooms_marked_read": await self._notifications.mark_all_read(await self._me(request))}

    async def read_one(self, request: Any, notification_id: str) -> tuple[int, Any]:
        """Marks one notification read."""
        await self._notifications.mark_read(await self._me(request), notification_id)
        return 200, {}

    async def dismiss(self, request: Any, notification_id: str) -> tuple[int, Any]:
        """Dismisses one notification."""
        await self._notifications.dismiss(await self._me(request), notification_id)
        return 200, {}
