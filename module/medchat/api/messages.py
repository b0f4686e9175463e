"""/api/chat/rooms/{room_id}/messages/*: history, send, edit, delete, reply, search, reactions."""

from __future__ import annotations

from typing import Any

from synapse.http.server import JsonResource
from synapse.module_api import ModuleApi
from synapse.module_api.errors import SynapseError

from medchat.api.http import CURSOR_MAX, MAX_PAGE, query_bool, query_limit, query_string, read_json, route
from medchat.messages import Messages
from medchat.models import FORWARD_BODY, MESSAGE_EDIT_BODY, MESSAGE_REPLY_BODY, MESSAGE_SEND_BODY, REACTION_BODY

_BASE = "/api/chat/rooms/{room_id}/messages"


def _client_msg_id(request: Any, body: dict[str, Any]) -> str | None:
    """`client_msg_id` in the body, else the `Idempotency-Key` header: the Matrix txn id."""
    if "client_msg_id" in body:
        return body["client_msg_id"]
    header = request.requestHeaders.getRawHeaders(b"Idempotency-Key")
    if not header:
        return None
    key = header[0].decode("utf-8", "replace").strip()
    if not 1 <= len(key) <= 200:
        raise SynapseError(400, "Invalid header Idempotency-Key: 1 to 200 characters.", "M_INVALID_PARAM")
    return key


class MessageServlets:
    def __init__(self, api: ModuleApi, messages: Messages):
        self._api = api
        self._messages = messages

    def register_routes(self, resource: JsonResource) -> None:
        # `search` first: the router takes the first pattern that matches.
        route(resource, "GET", _BASE + "/search", self.search)
        route(resource, "GET", _BASE, self.history)
        route(resource, "POST", _BASE, self.send)
        route(resource, "GET", _BASE + "/{event_id}", self.get)
        route(resource, "PUT", _BASE + "/{event_id}", self.edit)
        route(resource, "DELETE", _BASE + "/{event_id}", self.delete)
        route(resource, "POST", _BASE + "/{event_id}/reply", self.reply)
        route(resource, "POST", _BASE + "/{event_id}/forward", self.forward)
        route(resource, "POST", _BASE + "/{event_id}/reactions", self.react)
        route(resource, "DELETE", _BASE + "/{event_id}/reactions/{key}", self.unreact)

    async def history(self, request: Any, room_id: str) -> tuple[int, Any]:
        requester = await self._api.get_user_by_req(request)
        limit = query_limit(request, default=50, maximum=MAX_PAGE)
        return 200, await self._messages.history(requester, room_id, limit, query_string(request, "cursor", max_length=CURSOR_MAX))

    async def search(self, request: Any, room_id: str) -> tuple[int, Any]:
        requester = await self._api.get_user_by_req(request)
        term = query_string(request, "q")
        if term is None:
            raise SynapseError(400, "Missing field: q", "M_MISSING_PARAM")
        limit = query_limit(request, default=20, maximum=MAX_PAGE)
        return 200, await self._messages.search(requester, room_id, term, limit, query_string(request, "cursor", max_length=CURSOR_MAX))

    async def send(self, request: Any, room_id: str) -> tuple[int, Any]:
        requester = await self._api.get_user_by_req(request)
        body = read_json(request, MESSAGE_SEND_BODY)
        return 201, await self._messages.send(requester, room_id, body, _client_msg_id(request, body))

    async def get(self, request: Any, room_id: str, event_id: str) -> tuple[int, Any]:
        requester = await self._api.get_user_by_req(request)
        return 200, await self._messages.get(requester, room_id, event_id)

    async def edit(self, request: Any, room_id: str, event_id: str) -> tuple[int, Any]:
        requester = await self._api.get_user_by_req(request)
        body = read_json(request, MESSAGE_EDIT_BODY)
        return 200, await self._messages.edit(requester, room_id, event_id, body["content"])

    async def delete(self, request: Any, room_id: str, event_id: str) -> tuple[int, Any]:
        requester = await self._api.get_user_by_req(request)
        return 200, await self._messages.delete(requester, room_id, event_id)

    async def reply(self, request: Any, room_id: str, event_id: str) -> tuple[int, Any]:
        requester = await self._api.get_user_by_req(request)
        body = read_json(request, MESSAGE_REPLY_BODY)
        return 201, await self._messages.reply(requester, room_id, event_id, body, _client_msg_id(request, body))

    async def forward(self, request: Any, room_id: str, event_id: str) -> tuple[int, Any]:
        requester = await self._api.get_user_by_req(request)
        body = read_json(request, FORWARD_BODY)
        return 201, await self._messages.forward(requester, room_id, event_id, body["room_ids"])

    async def react(self, request: Any, room_id: str, event_id: str) -> tuple[int, Any]:
        requester = await self._api.get_user_by_req(request)
        body = read_json(request, REACTION_BODY)
        return await self._messages.react(requester, room_id, event_id, body["key"])

    async def unreact(self, request: Any, room_id: str, event_id: str, key: str) -> tuple[int, Any]:
        requester = await self._api.get_user_by_req(request)
        return 200, await self._messages.unreact(requester, room_id, event_id, key)
