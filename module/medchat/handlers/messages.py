"""Messages: the plan's Message model as `m.room.message` events, read back from Synapse.

Edits are `m.replace` relations, replies `m.in_reply_to` (with the quoted fallback older
clients show), deletions redactions, reactions `m.reaction` annotations. Nothing is stored by the
module: history, search and aggregation all come from Synapse, so a message sent from Element
reads the same here as one sent through the API.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from synapse.api.errors import Codes
from synapse.module_api import ModuleApi
from synapse.module_api.errors import SynapseError

from medchat import errors
from medchat.handlers.expiry import Expiry
from medchat.handlers.rooms import Rooms
from medchat.models import (
    EXPIRES_AT,
    MSGTYPE_FOR,
    JsonDict,
    chat_message,
    is_edit,
    is_shown_message,
    strip_reply_fallback,
)
from medchat.realtime.status import MessageStatus
from medchat.synapse import SynapseEvents, SynapseRooms, SynapseSearch, SynapseServer
from medchat.util import concurrently

if TYPE_CHECKING:
    from medchat.api.schemas.requests import MessageSendBody

MESSAGE = "m.room.message"
TXN_PREFIX = "medchat."
_DEFAULT_REDACT_LEVEL = 50


class Messages:
    def __init__(
        self,
        api: ModuleApi,
        synapse_server: SynapseServer,
        synapse_rooms: SynapseRooms,
        synapse_events: SynapseEvents,
        synapse_search: SynapseSearch,
        rooms: Rooms,
        status: MessageStatus,
        expiry: Expiry,
    ):
        self._api = api
        self._synapse_rooms = synapse_rooms
        self._synapse_events = synapse_events
        self._synapse_search = synapse_search
        self._rooms = rooms
        self._status = status
        self._expiry = expiry
        # Synapse dedupes a transaction id only once the first event is persisted; this makes a
        # concurrent retry wait for the first attempt instead of racing it.
        self._txn_lock = synapse_server.linearizer("medchat_send_txn")

    # --- read ---------------------------------------------------------------------------------

    async def history(self, requester: Any, room_id: str, limit: int, cursor: str | None) -> JsonDict:
        """Newest first; `next_cursor` is Synapse's own pagination token (None at the start)."""
        await self._rooms.require_member(room_id, requester.user.to_string())
        page = await self._synapse_events.messages_page(requester, room_id, cursor, limit, [MESSAGE])
        events = [e for e in page["chunk"] if not is_edit(e)]
        return {"messages": await self._models(requester, room_id, events), "next_cursor": page.get("end")}

    async def get(self, requester: Any, room_id: str, event_id: str) -> JsonDict:
        await self._rooms.require_member(room_id, requester.user.to_string())
        return await self._model(requester, room_id, await self._event(requester, room_id, event_id))

    async def search(self, requester: Any, room_id: str, term: str, limit: int, cursor: str | None) -> JsonDict:
        """Ranked full-text search over this room only, on Synapse's search index."""
        await self._rooms.require_member(room_id, requester.user.to_string())
        hits, count, next_cursor = await self._synapse_search.search_room(requester, room_id, term, cursor, limit)
        models = await self._models(requester, room_id, [event for _, event in hits])
        for model, (rank, _) in zip(models, hits):
            model["rank"] = rank
        return {"messages": models, "count": count, "next_cursor": next_cursor}

    async def _event(self, requester: Any, room_id: str, event_id: str) -> JsonDict:
        """A visible `m.room.message` of this room that is not itself an edit; 404 otherwise."""
        event = await self._synapse_events.event_json(requester, room_id, event_id)
        if (
            event is None
            or event.get("room_id") != room_id
            or not is_shown_message(event.get("type", ""), event.get("content", {}))
        ):
            raise errors.not_found("No such message in this room.")
        return event

    async def stream_models(self, viewer: str, events: list[JsonDict]) -> dict[str, JsonDict]:
        """Message models (by event id) for new messages arriving on the WebSocket: the same
        model the REST API returns."""
        by_room: dict[str, list[JsonDict]] = {}
        for event in events:
            by_room.setdefault(event["room_id"], []).append(event)
        return {
            m["id"]: m for room_id, group in by_room.items() for m in await self._models_for(viewer, room_id, group)
        }

    async def _model(self, requester: Any, room_id: str, event: JsonDict) -> JsonDict:
        return (await self._models(requester, room_id, [event]))[0]

    async def _models(self, requester: Any, room_id: str, events: list[JsonDict]) -> list[JsonDict]:
        return await self._models_for(requester.user.to_string(), room_id, events)

    async def _models_for(self, viewer: str, room_id: str, events: list[JsonDict]) -> list[JsonDict]:
        own = [e["event_id"] for e in events if e["sender"] == viewer]
        senders, reactions, statuses = await concurrently(
            lambda: self._rooms.senders(room_id, {e["sender"] for e in events}),
            lambda: self._synapse_events.annotations([e["event_id"] for e in events]),
            lambda: self._status.aggregates(viewer, room_id, own),
        )
        models = []
        for event in events:
            model = chat_message(event, senders[event["sender"]], reactions.get(event["event_id"], []), viewer)
            txn_id = event.get("unsigned", {}).get("transaction_id", "")
            if txn_id.startswith(TXN_PREFIX):  # only the sending device sees its transaction id
                model["client_msg_id"] = txn_id[len(TXN_PREFIX) :]
            if not model["is_deleted"]:
                model["status"] = statuses.get(model["id"], model["status"])
            models.append(model)
        return models

    # --- send ---------------------------------------------------------------------------------

    async def send(self, requester: Any, room_id: str, body: MessageSendBody, client_msg_id: str | None) -> JsonDict:
        """Text, or a media message pointing at an `mxc://` of this server. Idempotent per id."""
        await self._rooms.require_member(room_id, requester.user.to_string())
        content = self._content(body)
        expires_ts = self._expiry.expires_at(body.expires_in) if body.expires_in is not None else None
        return await self._send_new(requester, room_id, content, body.reply_to, expires_ts, client_msg_id)

    async def reply(
        self, requester: Any, room_id: str, event_id: str, text: str, client_msg_id: str | None
    ) -> JsonDict:
        await self._rooms.require_member(room_id, requester.user.to_string())
        content = {"msgtype": "m.text", "body": text}
        return await self._send_new(requester, room_id, content, event_id, None, client_msg_id)

    async def _send_new(
        self,
        requester: Any,
        room_id: str,
        content: JsonDict,
        reply_to: str | None,
        expires_ts: int | None,
        client_msg_id: str | None,
    ) -> JsonDict:
        if reply_to:
            content = await self._as_reply(requester, room_id, reply_to, content)
        if expires_ts is not None:
            content[EXPIRES_AT] = expires_ts
        model = await self._send(requester, room_id, content, client_msg_id)
        if expires_ts is not None:
            await self._expiry.track(model["id"], room_id, requester.user.to_string(), expires_ts)
        return model

    def _content(self, body: MessageSendBody) -> JsonDict:
        """The event content; MessageSendBody has checked the shape (text has text, media a
        well-formed mxc:// URL), this adds what needs the server: the upload is this server's."""
        message_type, text = body.message_type, body.content
        if message_type == "text":
            return {"msgtype": "m.text", "body": text}
        media_url = body.media_url or ""
        if not media_url.startswith(f"mxc://{self._api.server_name}/"):
            raise SynapseError(
                400,
                f"Invalid field media_url: must be an mxc:// URL of {self._api.server_name}.",
                Codes.INVALID_PARAM,
            )
        info = {
            key: getattr(body, field)
            for field, key in (
                ("mime_type", "mimetype"),
                ("file_size", "size"),
                ("width", "w"),
                ("height", "h"),
                ("duration", "duration"),
            )
            if getattr(body, field) is not None
        }
        file_name = body.file_name or message_type
        content: JsonDict = {
            "msgtype": MSGTYPE_FOR[message_type],
            "body": text or file_name,
            "url": media_url,
            "info": info,
        }
        content["filename"] = file_name  # with a differing body, the body is a caption (Matrix 1.10)
        return content

    async def _as_reply(self, requester: Any, room_id: str, event_id: str, content: JsonDict) -> JsonDict:
        """Adds `m.in_reply_to` and the quoted fallback (plain and HTML) to `content`."""
        try:
            target = await self._event(requester, room_id, event_id)
        except SynapseError:
            raise errors.not_found("Invalid field reply_to: no such message in this room.")
        quoted_body = target["content"].get("body", "")
        if target["content"].get("msgtype") != "m.text":
            quoted_body = "sent a file."
        quoted = strip_reply_fallback(quoted_body) if isinstance(quoted_body, str) else ""
        sender = target["sender"]
        lines = quoted.split("\n")
        fallback = f"> <{sender}> {lines[0]}\n" + "".join(f"> {line}\n" for line in lines[1:])
        link = f"https://matrix.to/#/{room_id}/{event_id}"
        formatted = (
            f'<mx-reply><blockquote><a href="{link}">In reply to</a> '
            f'<a href="https://matrix.to/#/{sender}">{html.escape(sender)}</a><br>'
            f"{html.escape(quoted).replace(chr(10), '<br>')}</blockquote></mx-reply>"
        )
        own_html = html.escape(content["body"]).replace("\n", "<br>")
        return {
            **content,
            "body": f"{fallback}\n{content['body']}",
            "format": "org.matrix.custom.html",
            "formatted_body": formatted + own_html,
            "m.relates_to": {"m.in_reply_to": {"event_id": event_id}},
        }

    async def _send(self, requester: Any, room_id: str, content: JsonDict, client_msg_id: str | None) -> JsonDict:
        event = {"type": MESSAGE, "room_id": room_id, "content": content}
        if client_msg_id is None:
            sent = await self._synapse_events.send_event(requester, event)
        else:
            txn_id = TXN_PREFIX + client_msg_id
            key = (requester.user.to_string(), requester.device_id, txn_id)
            async with self._txn_lock.queue(key):
                sent = await self._synapse_events.send_event(requester, event, txn_id=txn_id)
        # Built from the event just sent (no edits or reactions yet) rather than read back.
        sender = (await self._rooms.senders(room_id, {sent.sender}))[sent.sender]
        wire = {
            "event_id": sent.event_id,
            "room_id": room_id,
            "content": sent.content,
            "origin_server_ts": sent.origin_server_ts,
        }
        model = chat_message(wire, sender, [], sent.sender)
        if client_msg_id is not None:
            model["client_msg_id"] = client_msg_id
        return model

    # --- change -------------------------------------------------------------------------------

    async def edit(self, requester: Any, room_id: str, event_id: str, text: str) -> JsonDict:
        """An `m.replace` edit; only the sender may edit, and not after deletion."""
        caller = requester.user.to_string()
        await self._rooms.require_member(room_id, caller)
        original = await self._event(requester, room_id, event_id)
        if original["sender"] != caller:
            raise errors.forbidden("Only the sender may edit a message.")
        if "redacted_because" in original.get("unsigned", {}):
            raise errors.invalid_param("A deleted message cannot be edited.")
        current = chat_message(original, {}, [], caller)
        if current["message_type"] == "text":
            new_content: JsonDict = {"msgtype": "m.text", "body": text}
        else:  # the caption of a media message
            kept = {
                k: v for k, v in original["content"].items() if k not in ("m.relates_to", "format", "formatted_body")
            }
            new_content = {**kept, "body": text}
        content = {
            "msgtype": new_content["msgtype"],
            "body": f"* {text}",
            "m.new_content": new_content,
            "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
        }
        edit = await self._synapse_events.send_event(
            requester, {"type": MESSAGE, "room_id": room_id, "content": content}
        )
        # The model of the original with this edit bundled, as Synapse would now bundle it.
        unsigned = original.get("unsigned", {})
        bundled = {
            "event_id": edit.event_id,
            "sender": caller,
            "origin_server_ts": edit.origin_server_ts,
            "content": edit.content,
        }
        relations = {**unsigned.get("m.relations", {}), "m.replace": bundled}
        return await self._model(requester, room_id, {**original, "unsigned": {**unsigned, "m.relations": relations}})

    async def delete(self, requester: Any, room_id: str, event_id: str) -> JsonDict:
        """Redacts the message: its sender, or anyone the room's power levels let redact others."""
        caller = requester.user.to_string()
        await self._rooms.require_member(room_id, caller)
        original = await self._event(requester, room_id, event_id)
        if original["sender"] != caller:
            levels, content = await self._synapse_rooms.power_levels(room_id, [caller])
            if levels[caller] < int(content.get("redact", _DEFAULT_REDACT_LEVEL)):
                raise errors.forbidden("Only the sender or a room admin may delete a message.")
        if "redacted_because" not in original.get("unsigned", {}):
            await self._synapse_events.redact(requester, room_id, event_id)
        return await self.get(requester, room_id, event_id)

    async def react(self, requester: Any, room_id: str, event_id: str, key: str) -> tuple[int, JsonDict]:
        """Adds an `m.reaction` annotation (201); reacting twice with one key changes nothing (200)."""
        caller = requester.user.to_string()
        await self._rooms.require_member(room_id, caller)
        original = await self._event(requester, room_id, event_id)
        if "redacted_because" in original.get("unsigned", {}):
            raise errors.invalid_param("A deleted message cannot be reacted to.")
        if await self._own_reaction(caller, event_id, key) is not None:
            return 200, await self._model(requester, room_id, original)
        relation = {"rel_type": "m.annotation", "event_id": event_id, "key": key}
        await self._synapse_events.send_event(
            requester, {"type": "m.reaction", "room_id": room_id, "content": {"m.relates_to": relation}}
        )
        return 201, await self._model(requester, room_id, original)  # reactions are read afresh

    async def unreact(self, requester: Any, room_id: str, event_id: str, key: str) -> JsonDict:
        caller = requester.user.to_string()
        await self._rooms.require_member(room_id, caller)
        original = await self._event(requester, room_id, event_id)
        reaction_id = await self._own_reaction(caller, event_id, key)
        if reaction_id is None:
            raise errors.not_found("You have not reacted with that key.")
        await self._synapse_events.redact(requester, room_id, reaction_id)
        return await self._model(requester, room_id, original)  # reactions are read afresh

    async def _own_reaction(self, user_id: str, event_id: str, key: str) -> str | None:
        found = (await self._synapse_events.annotations([event_id])).get(event_id, [])
        return next((reaction_id for k, sender, reaction_id in found if k == key and sender == user_id), None)

    async def forward(self, requester: Any, room_id: str, event_id: str, room_ids: list[str]) -> JsonDict:
        """Copies the message (its current text or media reference) into rooms the caller is in."""
        caller = requester.user.to_string()
        await self._rooms.require_member(room_id, caller)
        original = await self._event(requester, room_id, event_id)
        if "redacted_because" in original.get("unsigned", {}):
            raise errors.invalid_param("A deleted message cannot be forwarded.")
        for target in room_ids:
            await self._rooms.require_member(target, caller)
        edit = original.get("unsigned", {}).get("m.relations", {}).get("m.replace")
        shown = edit["content"].get("m.new_content", original["content"]) if edit else original["content"]
        content = {
            k: v for k, v in shown.items() if k not in ("m.relates_to", "m.new_content", "format", "formatted_body")
        }
        if original["content"].get("m.relates_to", {}).get("m.in_reply_to"):
            content["body"] = strip_reply_fallback(content.get("body", ""))
        sent = [await self._send(requester, target, content, None) for target in room_ids]
        return {"messages": sent}
