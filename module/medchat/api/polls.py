"""/api/chat/rooms/{room_id}/polls/*: create a poll, vote, end it (handlers/polls.py)."""

from __future__ import annotations

from typing import Any

from synapse.http.server import JsonResource
from synapse.module_api import ModuleApi

from medchat.api.http import read_json, route
from medchat.api.schemas.requests import PollCreateBody, PollVoteBody
from medchat.api.schemas.responses import MESSAGE
from medchat.handlers.polls import Polls

_BASE = "/api/chat/rooms/{room_id}/polls"


class PollServlets:
    def __init__(self, api: ModuleApi, polls: Polls):
        self._api = api
        self._polls = polls

    def register_routes(self, resource: JsonResource) -> None:
        one = _BASE + "/{event_id}"
        route(resource, "POST", _BASE, self.create, body=PollCreateBody, responses={201: MESSAGE})
        route(resource, "POST", one + "/votes", self.vote, body=PollVoteBody, responses={200: MESSAGE})
        route(resource, "POST", one + "/end", self.end, responses={200: MESSAGE})

    async def create(self, request: Any, room_id: str) -> tuple[int, Any]:
        """Starts a poll (MSC3381, in the unstable form Element shows); the answer is its Message.

        `kind: undisclosed` hides the votes until the poll ends; `max_selections` answers may be
        chosen (default 1).
        """
        requester = await self._api.get_user_by_req(request)
        return 201, await self._polls.create(requester, room_id, read_json(request, PollCreateBody))

    async def vote(self, request: Any, room_id: str, event_id: str) -> tuple[int, Any]:
        """Votes (the `id`s of the chosen answers); a later vote replaces the caller's earlier one."""
        requester = await self._api.get_user_by_req(request)
        answers = read_json(request, PollVoteBody).answers
        return 200, await self._polls.vote(requester, room_id, event_id, answers)

    async def end(self, request: Any, room_id: str, event_id: str) -> tuple[int, Any]:
        """Ends the poll (its creator only): the tally is final, votes after it do not count."""
        requester = await self._api.get_user_by_req(request)
        return 200, await self._polls.end(requester, room_id, event_id)
