"""/api/chat/rooms/{room_id}/messages/*: history, send, edit, delete, reply, search, reactions;
/api/chat/rooms/{room_id}/threads/{root_id}/messages: a thread."""

from __future__ import annotations

from typing import Any

from synapse.http.server import JsonResource
from synapse.module_api import ModuleApi

from medchat import errors
from medchat.api.http import read_json, read_query, route
from medchat.api.schemas.queries import MessageHistoryQuery, MessageSearchQuery
from medchat.api.schemas.requests import (
    ForwardBody,
    MessageEditBody,
    MessageReplyBody,
    MessageSendBody,
    ReactionBody,
)
from medchat.api.schemas.responses import MESSAGE, MESSAGE_PAGE, MESSAGE_SEARCH, MESSAGES, THREAD_PAGE
from medchat.handlers.messages import Messages

_BASE = "/api/chat/rooms/{room_id}/messages"


def _client_msg_id(request: Any, body: MessageSendBody | MessageReplyBody) -> str | None:
    """`client_msg_id` in the body, else the `Idempotency-Key` header: the Matrix txn id."""
    if body.client_msg_id is not None:
        return body.client_msg_id
    header = request.requestHeaders.getRawHeaders(b"Idempotency-Key")
    if not header:
        return None
    key = header[0].decode("utf-8", "replace").strip()
    if not 1 <= len(key) <= 200:
        raise errors.invalid_param("Invalid header Idempotency-Key: 1 to 200 characters.")
    return key


class MessageServlets:
    def __init__(self, api: ModuleApi, messages: Messages):
        self._api = api
        self._messages = messages

    def register_routes(self, resource: JsonResource) -> None:
        # `search` first: the router takes the first pattern that matches.
        one, message = _BASE + "/{event_id}", {200: MESSAGE}
        route(
            resource, "GET", _BASE + "/search", self.search, query=MessageSearchQuery, responses={200: MESSAGE_SEARCH}
        )
        route(resource, "GET", _BASE, self.history, query=MessageHistoryQuery, responses={200: MESSAGE_PAGE})
        route(resource, "POST", _BASE, self.send, body=MessageSendBody, responses={201: MESSAGE})
        route(resource, "GET", one, self.get, responses=message)
        route(resource, "PUT", one, self.edit, body=MessageEditBody, responses=message)
        route(resource, "DELETE", one, self.delete, responses=message)
        route(resource, "POST", one + "/reply", self.reply, body=MessageReplyBody, responses={201: MESSAGE})
        route(resource, "POST", one + "/forward", self.forward, body=ForwardBody, responses={201: MESSAGES})
        route(
            resource, "POST", one + "/reactions", self.react, body=ReactionBody, responses={200: MESSAGE, 201: MESSAGE}
        )
        route(resource, "DELETE", one + "/reactions/{key}", self.unreact, responses=message)
        thread = "/api/chat/rooms/{room_id}/threads/{root_id}/messages"
        route(resource, "GET", thread, self.thread, query=MessageHistoryQuery, responses={200: THREAD_PAGE})

    async def history(self, request: Any, room_id: str) -> tuple[int, Any]:
        """The room's messages, newest first (`next_cursor` is Matrix's pagination token); edits folded in."""
        requester = await self._api.get_user_by_req(request)
        query = read_query(request, MessageHistoryQuery)
        return 200, await self._messages.history(requester, room_id, query.limit, query.cursor)

    async def thread(self, request: Any, room_id: str, root_id: str) -> tuple[int, Any]:
        """A thread: its `root` and its messages (`m.thread` relations), newest first.

        Send into it with `thread_id` on `POST …/messages` (or on a poll).
        """
        requester = await self._api.get_user_by_req(request)
        query = read_query(request, MessageHistoryQuery)
        return 200, await self._messages.thread(requester, room_id, root_id, query.limit, query.cursor)

    async def search(self, request: Any, room_id: str) -> tuple[int, Any]:
        """Synapse's ranked server-side search, in this room only."""
        requester = await self._api.get_user_by_req(request)
        query = read_query(request, MessageSearchQuery)
        return 200, await self._messages.search(requester, room_id, query.q, query.limit, query.cursor)

    async def send(self, request: Any, room_id: str) -> tuple[int, Any]:
        """Sends a message of any kind but polls: text, notice, emote (`format: html` with
        `formatted_content` formats it), media, voice (`voice`, `duration`, `waveform`), location
        (`geo_uri`); `client_msg_id` (or `Idempotency-Key`) makes a retry return the same message.

        `expires_in` (seconds) makes it a disappearing message. In case rooms, patient identifiers are
        refused (403 `ORG_MEDCHAT_PHI_DETECTED`).
        """
        requester = await self._api.get_user_by_req(request)
        body = read_json(request, MessageSendBody)
        return 201, await self._messages.send(requester, room_id, body, _client_msg_id(request, body))

    async def get(self, request: Any, room_id: str, event_id: str) -> tuple[int, Any]:
        """One message."""
        requester = await self._api.get_user_by_req(request)
        return 200, await self._messages.get(requester, room_id, event_id)

    async def edit(self, request: Any, room_id: str, event_id: str) -> tuple[int, Any]:
        """Edits the caller's own message (`m.replace`)."""
        requester = await self._api.get_user_by_req(request)
        return 200, await self._messages.edit(requester, room_id, event_id, read_json(request, MessageEditBody).content)

    async def delete(self, request: Any, room_id: str, event_id: str) -> tuple[int, Any]:
        """Deletes (redacts) a message: the sender, or whoever the power levels allow."""
        requester = await self._api.get_user_by_req(request)
        return 200, await self._messages.delete(requester, room_id, event_id)

    async def reply(self, request: Any, room_id: str, event_id: str) -> tuple[int, Any]:
        """Replies to a message (`m.in_reply_to`, with the quoted fallback)."""
        requester = await self._api.get_user_by_req(request)
        body = read_json(request, MessageReplyBody)
        client_msg_id = _client_msg_id(request, body)
        return 201, await self._messages.reply(requester, room_id, event_id, body.content, client_msg_id)

    async def forward(self, request: Any, room_id: str, event_id: str) -> tuple[int, Any]:
        """Copies the message's text or media reference into rooms the caller has joined."""
        requester = await self._api.get_user_by_req(request)
        room_ids = read_json(request, ForwardBody).room_ids
        return 201, await self._messages.forward(requester, room_id, event_id, room_ids)

    async def react(self, request: Any, room_id: str, event_id: str) -> tuple[int, Any]:
        """Adds a reaction (`m.reaction`); 200 if the caller had already reacted with that key."""
        requester = await self._api.get_user_by_req(request)
        return await self._messages.react(requester, room_id, event_id, read_json(request, ReactionBody).key)

    async def unreact(self, request: Any, room_id: str, event_id: str, key: str) -> tuple[int, Any]:
        """Removes the caller's reaction with that key."""
        requester = await self._api.get_user_by_req(request)
        return 200, await self._messages.unreact(requester, room_id, event_id, key)
