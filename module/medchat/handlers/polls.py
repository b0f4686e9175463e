"""Polls through the REST API: create, vote, end (the events of polls.py, sent as the caller).

A poll is a message like any other (its Message model has the `poll` tally); this adds the three
acts on it. Each checks everything it can before sending: the caller is in the room, the event is
a readable poll of it, the answers exist and fit `max_selections`, the poll has not ended, and only
its creator ends it (the one end the tally accepts, polls.py).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from medchat import errors
from medchat.messagekinds import POLL_START
from medchat.models import JsonDict
from medchat.polls import PollStart, end_event, ended_at, poll_start, response_event, start_content
from medchat.synapse import SynapseEvents

if TYPE_CHECKING:
    from medchat.api.schemas.requests import PollCreateBody
    from medchat.handlers.messages import Messages


class Polls:
    def __init__(self, messages: Messages, synapse_events: SynapseEvents):
        self._messages = messages
        self._synapse_events = synapse_events

    async def create(self, requester: Any, room_id: str, body: PollCreateBody) -> JsonDict:
        """Sends the poll in the unstable form Element reads; answer ids are random, as Element's."""
        answers = [(secrets.token_urlsafe(9), text) for text in body.answers]
        content = start_content(body.question, answers, body.kind, body.max_selections)
        return await self._messages.send_event(
            requester, room_id, POLL_START[0], content, body.client_msg_id, body.thread_id
        )

    async def vote(self, requester: Any, room_id: str, poll_id: str, answers: list[str]) -> JsonDict:
        """A response in the poll's form; it replaces the caller's earlier vote."""
        event, poll = await self._open_poll(requester, room_id, poll_id)
        valid = {answer_id for answer_id, _ in poll.answers}
        unknown = [answer for answer in answers if answer not in valid]
        if unknown:
            raise errors.invalid_param(f"Invalid field answers: no such answer in this poll: {unknown[0]}")
        if len(answers) > poll.max_selections:
            raise errors.invalid_param(f"Invalid field answers: at most {poll.max_selections} may be chosen.")
        await self._send(requester, room_id, *response_event(poll, poll_id, answers))
        return await self._messages.model(requester, room_id, event)

    async def end(self, requester: Any, room_id: str, poll_id: str) -> JsonDict:
        """Ends the poll (its creator only); ending an ended poll changes nothing."""
        event, poll = await self._poll(requester, room_id, poll_id)
        if event["sender"] != requester.user.to_string():
            raise errors.forbidden("Only the poll's creator may end it.")
        if not await self._has_ended(requester, room_id, event):
            await self._send(requester, room_id, *end_event(poll, poll_id))
        return await self._messages.model(requester, room_id, event)

    async def _poll(self, requester: Any, room_id: str, poll_id: str) -> tuple[JsonDict, PollStart]:
        await self._messages.require_member(requester, room_id)
        try:
            event = await self._messages.event(requester, room_id, poll_id)
        except errors.SynapseError:
            raise errors.not_found("No such poll in this room.")
        if event.get("type") not in POLL_START:
            raise errors.not_found("No such poll in this room.")
        if "redacted_because" in event.get("unsigned", {}):
            raise errors.invalid_param("The poll has been deleted.")
        poll = poll_start(event.get("content") or {})
        if poll is None:
            raise errors.invalid_param("The event is not a poll this server can read.")
        return event, poll

    async def _open_poll(self, requester: Any, room_id: str, poll_id: str) -> tuple[JsonDict, PollStart]:
        event, poll = await self._poll(requester, room_id, poll_id)
        if await self._has_ended(requester, room_id, event):
            raise errors.invalid_param("The poll has ended.")
        return event, poll

    async def _has_ended(self, requester: Any, room_id: str, event: JsonDict) -> bool:
        viewer = requester.user.to_string()
        related = await self._messages.poll_relations(viewer, room_id, [event["event_id"]])
        return ended_at(event["sender"], related[event["event_id"]]) is not None

    async def _send(self, requester: Any, room_id: str, event_type: str, content: JsonDict) -> None:
        await self._synapse_events.send_event(requester, {"type": event_type, "room_id": room_id, "content": content})
