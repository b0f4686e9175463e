"""Messages: the plan's Message model as Matrix timeline events, read back from Synapse.

Every kind of event a Matrix client shows is a message (messagekinds.py): `m.room.message`
msgtypes, stickers, polls, encrypted and unknown events. Edits are `m.replace` relations, replies
`m.in_reply_to` (with the quoted fallback older clients show), threads `m.thread` relations,
deletions redactions, reactions `m.reaction` annotations, votes `m.reference` relations of a poll.
Nothing is stored by the module: history, search and aggregation all come from Synapse, so a
message sent from Element reads the same here as one sent through the API.
"""

from __future__ import annotations

import html
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

from synapse.events import EventBase
from synapse.module_api import ModuleApi
from synapse.module_api.errors import SynapseError

from medchat import errors, messagekinds as kinds
from medchat.encrypted import ENCRYPTED, encrypted_content
from medchat.handlers.compose import message_content
from medchat.handlers.expiry import Expiry
from medchat.handlers.rooms import Rooms
from medchat.handlers.timeline import shown_page
from medchat.models import EXPIRES_AT, JsonDict, chat_message, strip_reply_fallback
from medchat.polls import poll_start
from medchat.realtime.status import MessageStatus, RoomPeers
from medchat.synapse import PageReads, Span, SynapseEvents, SynapseRooms, SynapseSearch, SynapseServer
from medchat.synapse._base import requester_for
from medchat.util import concurrently

if TYPE_CHECKING:
    from medchat.api.schemas.requests import EncryptedPayload, MessageSendBody

MESSAGE = kinds.MESSAGE
TXN_PREFIX = "medchat."
_DEFAULT_REDACT_LEVEL = 50
_POLL_PAGE = 500  # votes and ends of one poll read per Synapse page
_MAX_POLL_RELATIONS = 5000  # ... and in all: a poll with more is tallied on its first 5000


async def _no_peers() -> RoomPeers:
    return RoomPeers("", "", [], [], {})


class _PageExtras(NamedTuple):
    """What a page's models add to its events (Messages._page_extras)."""

    senders: dict[str, JsonDict]
    reads: PageReads
    peers: RoomPeers
    votes: dict[str, list[JsonDict]]


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
        """Newest first, up to `limit` messages whatever is hidden between them (timeline.py);
        `next_cursor` is Synapse's own pagination token, None once the room's start is reached."""
        await self._rooms.require_member(room_id, requester.user.to_string())

        viewer = requester.user.to_string()
        spans: list[Span] = []

        async def extras(events: list[EventBase]) -> _PageExtras:
            return await self._page_extras(
                viewer, room_id, [(e.event_id, e.sender, e.type, e.is_state()) for e in events]
            )

        async def read(token: str | None, size: int, wanted: int) -> Span:
            span = await self._synapse_events.history_span(
                requester,
                room_id,
                token,
                size,
                wanted,
                kinds.is_shown,
                not_types=[*kinds.HIDDEN_TYPES, *kinds.NEVER_SERVED_TYPES],
                not_rel_types=list(kinds.ACTING_RELATIONS),
                side=extras,
            )
            spans.append(span)
            return span

        events, next_cursor = await shown_page(read, cursor, limit)
        # The usual page is one Synapse read, whose extras were read while it was serialised.
        found = spans[0].side if len(spans) == 1 else await self._page_extras(viewer, room_id, _keys(events))
        return {"results": self._build(viewer, events, found), "next_cursor": next_cursor}

    async def thread(self, requester: Any, room_id: str, root_id: str, limit: int, cursor: str | None) -> JsonDict:
        """A thread's root and its messages (Synapse's `m.thread` relations), newest first."""
        await self._rooms.require_member(room_id, requester.user.to_string())
        root = await self._event(requester, room_id, root_id, "No such thread root in this room.")
        page = await self._synapse_events.relations(requester, room_id, root_id, "m.thread", limit, cursor)
        events = [e for e in page["chunk"] if kinds.is_shown(e)]
        models = await self._models(requester, room_id, [root, *events])
        return {"root": models[0], "results": models[1:], "next_cursor": page.get("next_batch")}

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
        return {"results": models, "count": count, "next_cursor": next_cursor}

    async def require_member(self, requester: Any, room_id: str) -> None:
        await self._rooms.require_member(room_id, requester.user.to_string())

    async def event(self, requester: Any, room_id: str, event_id: str) -> JsonDict:
        """A visible message of this room (not an edit, reaction, vote or state); 404 otherwise."""
        return await self._event(requester, room_id, event_id)

    async def _event(
        self, requester: Any, room_id: str, event_id: str, missing: str = "No such message in this room."
    ) -> JsonDict:
        event = await self._synapse_events.event_json(requester, room_id, event_id)
        if event is None or event.get("room_id") != room_id or not kinds.is_shown(event):
            raise errors.not_found(missing)
        return event

    async def model(self, requester: Any, room_id: str, event: JsonDict) -> JsonDict:
        """The Message model of one event, read afresh (reactions, votes, status)."""
        return await self._model(requester, room_id, event)

    async def _model(self, requester: Any, room_id: str, event: JsonDict) -> JsonDict:
        return (await self._models(requester, room_id, [event]))[0]

    async def _models(self, requester: Any, room_id: str, events: list[JsonDict]) -> list[JsonDict]:
        viewer = requester.user.to_string()
        return self._build(viewer, events, await self._page_extras(viewer, room_id, _keys(events)))

    async def _page_extras(self, viewer: str, room_id: str, events: list[tuple[str, str, str, bool]]) -> _PageExtras:
        """What the models of a page's (event_id, sender, type, is state) add, read for the whole
        page: sender cards (one state read), reactions and, for the viewer's own messages (not
        their state events: their join), statuses (positions and receipts with the reactions,
        SynapseEvents.page_reads; the members' marks and syncs, MessageStatus.room_peers) and
        poll votes."""
        event_ids = [event_id for event_id, _, _, _ in events]
        own = [event_id for event_id, sender, _, state in events if sender == viewer and not state]
        polls = [event_id for event_id, _, kind, _ in events if kind in kinds.POLL_START]
        senders, reads, peers, votes = await concurrently(
            lambda: self._rooms.senders(room_id, {sender for _, sender, _, _ in events}),
            lambda: self._synapse_events.page_reads(room_id, event_ids, own),
            lambda: self._status.room_peers(room_id, viewer) if own else _no_peers(),
            lambda: self.poll_relations(viewer, room_id, polls),
        )
        return _PageExtras(senders, reads, peers, votes)

    def _build(self, viewer: str, events: list[JsonDict], extras: _PageExtras) -> list[JsonDict]:
        """The Message models of a page's events from what was read for them (edits and threads
        come bundled by Synapse)."""
        reads = extras.reads
        statuses = self._status.aggregates(extras.peers, reads.positions, reads.receipts)
        models = []
        for event in events:
            event_id = event["event_id"]
            model = chat_message(
                event,
                extras.senders[event["sender"]],
                reads.annotations.get(event_id, []),
                viewer,
                extras.votes.get(event_id),
            )
            txn_id = event.get("unsigned", {}).get("transaction_id", "")
            if txn_id.startswith(TXN_PREFIX):  # only the sending device sees its transaction id
                model["client_msg_id"] = txn_id[len(TXN_PREFIX) :]
            if not model["is_deleted"]:
                model["status"] = statuses.get(model["id"], model["status"])
            models.append(model)
        return models

    async def poll_relations(self, viewer: str, room_id: str, poll_ids: list[str]) -> dict[str, list[JsonDict]]:
        """Each poll's `m.reference` relations (votes and ends) that the viewer may see, oldest
        first, at most _MAX_POLL_RELATIONS of them."""
        requester = requester_for(viewer)

        async def one(poll_id: str) -> list[JsonDict]:
            related: list[JsonDict] = []
            token: str | None = None
            while len(related) < _MAX_POLL_RELATIONS:
                page = await self._synapse_events.relations(
                    requester, room_id, poll_id, "m.reference", _POLL_PAGE, token, forwards=True
                )
                related += page["chunk"]
                token = page.get("next_batch")
                if token is None:
                    break
            return related

        found = await concurrently(*[partial(one, poll_id) for poll_id in poll_ids])
        return dict(zip(poll_ids, found))

    # --- send ---------------------------------------------------------------------------------

    async def send(self, requester: Any, room_id: str, body: MessageSendBody, client_msg_id: str | None) -> JsonDict:
        """Text, or a media message pointing at an `mxc://` of this server; in an end-to-end
        encrypted room, the app's ciphertext (and only that). Idempotent per id."""
        await self._rooms.require_member(room_id, requester.user.to_string())
        expires_ts = self._expiry.expires_at(body.expires_in) if body.expires_in is not None else None
        if body.encrypted is not None:
            return await self._send_encrypted(requester, room_id, body.encrypted, body, expires_ts, client_msg_id)
        content = message_content(body, self._api.server_name)
        await self._require_plaintext_room(room_id)
        return await self._send_new(
            requester, room_id, content, body.reply_to, expires_ts, client_msg_id, body.thread_id
        )

    async def send_event(
        self,
        requester: Any,
        room_id: str,
        event_type: str,
        content: JsonDict,
        client_msg_id: str | None,
        thread_id: str | None,
    ) -> JsonDict:
        """A message of another event type (a poll), optionally into a thread; idempotent per id.
        Never into an end-to-end encrypted room, where the app encrypts what it sends."""
        await self._rooms.require_member(room_id, requester.user.to_string())
        await self._require_plaintext_room(room_id)
        if thread_id:
            content = await self._in_thread(requester, room_id, thread_id, None, content)
        return await self._send(requester, room_id, content, client_msg_id, event_type)

    async def _require_plaintext_room(self, room_id: str) -> None:
        """Plaintext has no place in an end-to-end encrypted room: the app must encrypt."""
        if await self._rooms.is_encrypted(room_id):
            raise SynapseError(
                400,
                "This room is end-to-end encrypted: encrypt the message on the device and send the ciphertext"
                " (field encrypted).",
                errors.ENCRYPTION_REQUIRED,
            )

    async def _send_encrypted(
        self,
        requester: Any,
        room_id: str,
        payload: EncryptedPayload,
        body: MessageSendBody,
        expires_ts: int | None,
        client_msg_id: str | None,
    ) -> JsonDict:
        """An `m.room.encrypted` event with the app's Megolm ciphertext, its relation in the clear.

        Checked before sending: the room is encrypted, and the related messages are this room's
        (an edit the caller's own encrypted message, as Synapse bundles only those)."""
        if not await self._rooms.is_encrypted(room_id):
            raise errors.invalid_param("Invalid field encrypted: this room is not end-to-end encrypted.")
        relates_to: JsonDict = {}
        if body.relates_to is not None:
            target = await self._related(requester, room_id, body.relates_to.event_id, "relates_to")
            if body.relates_to.rel_type == "m.replace" and (
                target["sender"] != requester.user.to_string() or target.get("type") != ENCRYPTED
            ):
                raise errors.forbidden("Only the sender may edit a message, with an encrypted edit.")
            relates_to = {"rel_type": body.relates_to.rel_type, "event_id": body.relates_to.event_id}
            if body.relates_to.rel_type == "m.thread":
                relates_to["is_falling_back"] = body.reply_to is None
        if body.reply_to is not None:
            await self._related(requester, room_id, body.reply_to, "reply_to")
            relates_to["m.in_reply_to"] = {"event_id": body.reply_to}
        content = encrypted_content(payload.model_dump(exclude_none=True), relates_to or None)
        if expires_ts is not None:
            content[EXPIRES_AT] = expires_ts  # in the clear: the server redacts it when it expires
        model = await self._send(requester, room_id, content, client_msg_id, ENCRYPTED)
        if expires_ts is not None:
            await self._expiry.track(model["id"], room_id, requester.user.to_string(), expires_ts)
        return model

    async def _related(self, requester: Any, room_id: str, event_id: str, field: str) -> JsonDict:
        try:
            return await self._event(requester, room_id, event_id)
        except SynapseError:
            raise errors.not_found(f"Invalid field {field}: no such message in this room.")

    async def reply(
        self, requester: Any, room_id: str, event_id: str, text: str, client_msg_id: str | None
    ) -> JsonDict:
        await self._rooms.require_member(room_id, requester.user.to_string())
        await self._require_plaintext_room(room_id)
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
        thread_id: str | None = None,
    ) -> JsonDict:
        if thread_id:
            content = await self._in_thread(requester, room_id, thread_id, reply_to, content)
        elif reply_to:
            content = await self._as_reply(requester, room_id, reply_to, content)
        if expires_ts is not None:
            content[EXPIRES_AT] = expires_ts
        model = await self._send(requester, room_id, content, client_msg_id)
        if expires_ts is not None:
            await self._expiry.track(model["id"], room_id, requester.user.to_string(), expires_ts)
        return model

    async def _in_thread(
        self, requester: Any, room_id: str, root_id: str, reply_to: str | None, content: JsonDict
    ) -> JsonDict:
        """Puts `content` into the thread of `root_id`: as Element does, a plain thread message
        carries `m.in_reply_to` of the thread's latest message as a fallback (`is_falling_back`)
        for clients without threads; a reply in the thread carries its real parent."""
        try:
            root = await self._event(requester, room_id, root_id)
        except SynapseError:
            raise errors.not_found("Invalid field thread_id: no such message in this room.")
        if kinds.thread_of(root.get("content", {}))[0] is not None:
            raise errors.invalid_param("Invalid field thread_id: that message is in a thread; give the thread's root.")
        if reply_to:
            content = await self._as_reply(requester, room_id, reply_to, content)
            parent, falling_back = reply_to, False
        else:
            latest = root.get("unsigned", {}).get("m.relations", {}).get("m.thread", {}).get("latest_event", {})
            parent, falling_back = latest.get("event_id") or root_id, True
        relation = {
            "rel_type": "m.thread",
            "event_id": root_id,
            "is_falling_back": falling_back,
            "m.in_reply_to": {"event_id": parent},
        }
        return {**content, "m.relates_to": relation}

    async def _as_reply(self, requester: Any, room_id: str, event_id: str, content: JsonDict) -> JsonDict:
        """Adds `m.in_reply_to` and the quoted fallback (plain and HTML) to `content`."""
        try:
            target = await self._event(requester, room_id, event_id)
        except SynapseError:
            raise errors.not_found("Invalid field reply_to: no such message in this room.")
        quoted_body = target["content"].get("body", "")
        if target["content"].get("msgtype") in ("m.image", "m.file", "m.audio", "m.video"):
            quoted_body = "sent a file."
        elif target.get("type") in kinds.POLL_START:
            start = poll_start(target["content"])
            quoted_body = start.question if start else ""
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
        own_html = (
            content["formatted_body"]
            if content.get("format") == kinds.HTML_FORMAT
            else html.escape(content["body"]).replace("\n", "<br>")
        )
        return {
            **content,
            "body": f"{fallback}\n{content['body']}",
            "format": "org.matrix.custom.html",
            "formatted_body": formatted + own_html,
            "m.relates_to": {"m.in_reply_to": {"event_id": event_id}},
        }

    async def _send(
        self, requester: Any, room_id: str, content: JsonDict, client_msg_id: str | None, event_type: str = MESSAGE
    ) -> JsonDict:
        event = {"type": event_type, "room_id": room_id, "content": content}
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
            "type": sent.type,
            "event_id": sent.event_id,
            "sender": sent.sender,
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
        await self._require_plaintext_room(room_id)
        if original.get("type") == ENCRYPTED:
            raise errors.invalid_param("An encrypted message is edited with an encrypted edit (POST with relates_to).")
        current = chat_message(original, {}, [], caller)
        if original.get("type") != MESSAGE:
            raise errors.invalid_param(f"A {current['message_type']} message cannot be edited here.")
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
        if await self._own_reaction(caller, room_id, event_id, key) is not None:
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
        reaction_id = await self._own_reaction(caller, room_id, event_id, key)
        if reaction_id is None:
            raise errors.not_found("You have not reacted with that key.")
        await self._synapse_events.redact(requester, room_id, reaction_id)
        return await self._model(requester, room_id, original)  # reactions are read afresh

    async def _own_reaction(self, user_id: str, room_id: str, event_id: str, key: str) -> str | None:
        found = (await self._synapse_events.annotations(room_id, [event_id])).get(event_id, [])
        return next((reaction_id for k, sender, reaction_id in found if k == key and sender == user_id), None)

    async def forward(self, requester: Any, room_id: str, event_id: str, room_ids: list[str]) -> JsonDict:
        """Copies the message (its current text or media reference) into rooms the caller is in."""
        caller = requester.user.to_string()
        await self._rooms.require_member(room_id, caller)
        original = await self._event(requester, room_id, event_id)
        if "redacted_because" in original.get("unsigned", {}):
            raise errors.invalid_param("A deleted message cannot be forwarded.")
        if original.get("type") == ENCRYPTED:
            raise errors.invalid_param("An encrypted message cannot be forwarded: decrypt it and send it anew.")
        if original.get("type") != MESSAGE:
            raise errors.invalid_param("Only text, media and location messages can be forwarded.")
        for target in room_ids:
            await self._rooms.require_member(target, caller)
            await self._require_plaintext_room(target)
        edit = original.get("unsigned", {}).get("m.relations", {}).get("m.replace")
        shown = edit["content"].get("m.new_content", original["content"]) if edit else original["content"]
        content = {
            k: v for k, v in shown.items() if k not in ("m.relates_to", "m.new_content", "format", "formatted_body")
        }
        if original["content"].get("m.relates_to", {}).get("m.in_reply_to"):
            content["body"] = strip_reply_fallback(content.get("body", ""))
        sent = [await self._send(requester, target, content, None) for target in room_ids]
        return {"messages": sent}


def _keys(events: list[JsonDict]) -> list[tuple[str, str, str, bool]]:
    """The (event_id, sender, type, is state) of client-format events, what
    Messages._page_extras reads by."""
    return [(e["event_id"], e["sender"], e.get("type", ""), "state_key" in e) for e in events]
