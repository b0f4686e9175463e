"""GET /api/chat/ws: one WebSocket per app session, fed by Synapse's event stream.

Protocol (all frames are JSON text):
- connect with the access token (`Authorization: Bearer …` or `?access_token=`) and optionally
  `?since=<pos>` to resume; a bad token closes with 4001, a bad position with 4400;
- the server sends `{"type": "hello", "user_id", "pos"}`, then `{"type": "events", "pos", "events": [...]}`
  for each batch (one WebSocket message, so a batch arrives whole or not at all), and
  `{"type": "heartbeat", "pos"}` after `heartbeat_seconds` of quiet;
- reconnecting with the last `pos` received delivers everything after it, in order, once (the
  position is Synapse's stream token plus the time of the last module notification sent);
- delivery marks for the user's own messages arrive as `events` frames without `pos` (live only);
- a consumer that stops reading is not buffered for: the server stops fetching while the socket's
  send buffer is full and, after `slow_consumer_seconds`, closes with 4008 and its last `pos`;
- the client may send `{"type": "ping"}` (→ `pong`); anything malformed gets an error frame and
  the connection stays open. An inbound message over `MAX_INBOUND_BYTES` (64 KiB) closes the
  socket with 1009 as soon as that many bytes are in, so a huge message is never buffered whole.

Each session ends with one access-log line on the `medchat.access.websocket` logger (user,
duration, close code, frames in and out), as Synapse's `synapse.access.http` logs a request; a
plain GET without the WebSocket upgrade is answered 400 and logged at INFO (a client's mistake,
not the server's).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from synapse.api.errors import Codes
from synapse.module_api import ModuleApi
from synapse.module_api.errors import SynapseError
from wsproto import ConnectionType
from wsproto.events import CloseConnection, Event
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError
from zope.interface import implementer

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Request
from twisted.web.websocket import WebSocketResource, WebSocketTransport

from medchat.config import WebSocketConfig
from medchat.metrics import WEBSOCKET_CLOSES, WEBSOCKET_CONNECTIONS
from medchat.realtime.fanout import DeliveryBatch, FanOut
from medchat.realtime.frames import frames_for, is_new_message, notification_frame
from medchat.realtime.notifications import module_item
from medchat.realtime.status import MessageStatus
from medchat.store.notifications import HINT_TYPE, NotificationStore
from medchat.synapse import SynapseHttp, SynapseServer, SynapseStream
from medchat.wellformed import NotJson, load_json

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("medchat.access.websocket")

CLOSE_UNAUTHORIZED = 4001
CLOSE_BAD_POSITION = 4400
CLOSE_SLOW_CONSUMER = 4008
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TOO_BIG = 1009
# The client only ever sends pings: a message is a few dozen bytes, 64 KiB is plenty.
MAX_INBOUND_BYTES = 64 * 1024
_DRAIN_POLL_SECONDS = 0.2
# A frame header is at most 14 bytes; a message may come as several frames: some slack per message.
_FRAME_HEADER_BYTES = 1024
ABORT_AFTER_SECONDS = 10


@dataclass(frozen=True)
class Position:
    """A socket's resume position: Synapse's stream token, and the time of the newest module
    notification (contact request, verification decision) already sent."""

    stream: str
    notices: int

    @classmethod
    def parse(cls, raw: str) -> Position:
        stream, _, notices = raw.rpartition("|")
        if not stream:
            raise ValueError("no stream token")
        return cls(stream, int(notices))

    def __str__(self) -> str:
        return f"{self.stream}|{self.notices}"


class SocketHub:
    """Builds a ChatSocket per connection and knows the open ones by user."""

    def __init__(
        self,
        api: ModuleApi,
        synapse_server: SynapseServer,
        synapse_http: SynapseHttp,
        synapse_stream: SynapseStream,
        config: WebSocketConfig,
        status: MessageStatus,
        fanout: FanOut,
        notices: NotificationStore,
    ):
        self.api = api
        self.synapse_server = synapse_server
        self.synapse_http = synapse_http
        self.synapse_stream = synapse_stream
        self.config = config
        self.fanout = fanout
        self.deliveries = DeliveryBatch(api, status)
        self.notices = notices
        self.open: set[ChatSocket] = set()
        self._by_user: dict[str, set[ChatSocket]] = {}
        # Delivery marks for senders, sent as one frame per sender socket per batch of deliveries.
        self._marks: dict[ChatSocket, list[dict[str, Any]]] = {}
        status.on_delivered(self._tell_senders)
        WEBSOCKET_CONNECTIONS.labels(server_name=api.server_name).set_function(lambda: len(self.open))

    def joined(self, sock: ChatSocket) -> None:
        self._by_user.setdefault(sock.user_id, set()).add(sock)

    def left(self, sock: ChatSocket) -> None:
        self.open.discard(sock)
        sockets = self._by_user.get(sock.user_id, set())
        sockets.discard(sock)
        if not sockets:
            self._by_user.pop(sock.user_id, None)

    def _tell_senders(self, recipient: str, messages: list[tuple[str, str, str]]) -> None:
        """Delivery marks for the senders' sockets on this process (behind nginx every socket
        terminates on the sync worker, where socket deliveries are recorded). The marks of one
        batch of deliveries (a message reaching a room) go out as one frame per sender socket."""
        if not self._marks:
            self.api.delayed_background_call(0, self._send_marks, desc="medchat_ws_delivery_marks")
        for message_id, room_id, sender in messages:
            frame = {
                "type": "message.status",
                "room_id": room_id,
                "message_id": message_id,
                "user_id": recipient,
                "status": "delivered",
            }
            for sock in self._by_user.get(sender, ()):
                self._marks.setdefault(sock, []).append(frame)

    def _send_marks(self) -> None:
        marks, self._marks = self._marks, {}
        for sock, frames in marks.items():
            sock.push_live(frames)

    def buildProtocol(self, request: Any) -> ChatSocket:
        return ChatSocket(self, request)

    def resource(self) -> Resource:
        return _ChatSocketResource(self)


class _ChatSocketResource(WebSocketResource):
    """Twisted's WebSocket resource, but a request that is no WebSocket handshake (a plain GET,
    a missing key) gets a Matrix-style 400 logged at INFO; Twisted logs those at ERROR."""

    def render_GET(self, request: Request) -> bytes | int:
        headers = [(name, value) for name, values in request.requestHeaders.getAllRawHeaders() for value in values]
        try:
            H11Handshake(ConnectionType.SERVER).initiate_upgrade_connection(headers, request.path)
        except RemoteProtocolError as e:
            logger.info("MedChat WebSocket: not a WebSocket handshake, answered 400: %s", e)
            request.setResponseCode(400)
            request.setHeader(b"Content-Type", b"application/json")
            error = "This is a WebSocket endpoint: connect with an Upgrade: websocket handshake."
            return json.dumps({"errcode": Codes.UNRECOGNIZED, "error": error}).encode()
        return super().render_GET(request)


@implementer(IPushProducer)
class ChatSocket:
    # Thousands are open at once: no per-instance dict.
    __slots__ = (
        "_close_code",
        "_closed",
        "_frames_in",
        "_frames_out",
        "_hub",
        "_inbound",
        "_loop",
        "_paused",
        "_request",
        "_started",
        "_tcp",
        "_transport",
        "position",
        "user_id",
    )

    def __init__(self, hub: SocketHub, request: Any):
        self._hub = hub
        # The upgrade request, until the socket has authenticated (then released: _release_request).
        self._request: Any = request
        self._tcp: Any = None
        self._transport: WebSocketTransport | None = None
        self._closed = False
        self._paused = False
        self._loop: Deferred[None] | None = None
        self.position: str | None = None
        self.user_id = ""
        # Bytes received since the last whole message was delivered (frame headers included).
        self._inbound = 0
        # For the session's access-log line.
        self._started = time.monotonic()
        self._frames_in = 0
        self._frames_out = 0
        self._close_code: int | None = None  # ours, or the client's from its close frame

    # --- WebSocketProtocol --------------------------------------------------------------------

    def negotiationStarted(self, transport: WebSocketTransport) -> None:
        self._transport = transport
        # Twisted (wsproto) assembles a message whole before delivering it, with no size limit;
        # counting the bytes as they arrive lets an oversized message be refused part-way.
        # `transport` is the connection's IProtocol, so this wraps its dataReceived.
        receive = transport.dataReceived  # type: ignore[attr-defined]  # the wire protocol is the transport

        def counted(data: bytes) -> None:
            if self._closed:
                return  # nothing more is read once the socket is closing
            self._inbound += len(data)
            if self._inbound > MAX_INBOUND_BYTES + _FRAME_HEADER_BYTES:
                self._close(CLOSE_TOO_BIG, f"inbound message over {MAX_INBOUND_BYTES} bytes")
                return
            receive(data)

        transport.dataReceived = counted  # type: ignore[attr-defined]
        # The client's close code, for the access log: Twisted answers the close frame itself.
        connection = getattr(transport, "_wsconn", None)
        if connection is not None:
            events = connection.events

            def observed() -> Iterator[Event]:
                for event in events():
                    if isinstance(event, CloseConnection) and self._close_code is None:
                        self._close_code = event.code
                    yield event

            connection.events = observed

    def negotiationFinished(self) -> None:
        # The upgraded connection no longer carries HTTP: the HTTP channel stops being the TCP
        # transport's producer, and this socket takes its place to learn when the buffer is full.
        self._tcp = self._request.channel.transport
        self._tcp.unregisterProducer()
        assert self._transport is not None
        self._transport.attachProducer(self)
        self._hub.open.add(self)
        self._loop = self._hub.api.run_as_background_process("medchat_websocket", self._run)

    def _message_in(self, size: int) -> bool:
        """A whole message arrived: False (and the socket closing) if it is over the limit."""
        self._inbound = 0
        self._frames_in += 1
        if size > MAX_INBOUND_BYTES:
            self._close(CLOSE_TOO_BIG, f"inbound message over {MAX_INBOUND_BYTES} bytes")
            return False
        return True

    def textMessageReceived(self, message: str) -> None:
        if not self._message_in(len(message.encode("utf-8", "surrogatepass"))):
            return
        try:
            frame = load_json(message.encode("utf-8", "surrogatepass"))
        except NotJson:
            self._send({"type": "error", "errcode": Codes.NOT_JSON, "error": "Frames must be JSON objects."})
            return
        if not isinstance(frame, dict) or frame.get("type") != "ping":
            self._send(
                {
                    "type": "error",
                    "errcode": Codes.UNRECOGNIZED,
                    "error": 'Unknown frame; the client may send {"type": "ping"}.',
                }
            )
            return
        self._send({"type": "pong", "pos": self.position})

    def bytesMessageReceived(self, data: bytes | bytearray) -> None:
        if not self._message_in(len(data)):
            return
        self._send({"type": "error", "errcode": Codes.NOT_JSON, "error": "Binary frames are not accepted."})

    def pongReceived(self, payload: bytes) -> None:
        self._inbound = 0

    def connectionLost(self, reason: Failure) -> None:
        self._closed = True
        self._hub.left(self)
        self._release_request()
        if self._loop is not None:
            self._loop.cancel()
        # 1006: closed without a close frame (RFC 6455 7.1.5), e.g. the network went away.
        access_logger.info(
            "MedChat WebSocket session: user=%s duration=%.3fs close_code=%s frames_in=%d frames_out=%d",
            self.user_id or "-",
            time.monotonic() - self._started,
            self._close_code if self._close_code is not None else 1006,
            self._frames_in,
            self._frames_out,
            extra={
                "user_id": self.user_id or None,
                "duration_seconds": round(time.monotonic() - self._started, 3),
                "close_code": self._close_code if self._close_code is not None else 1006,
                "frames_in": self._frames_in,
                "frames_out": self._frames_out,
            },
        )

    # --- IPushProducer: the socket's send buffer tells us when to stop fetching -----------------

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False

    def stopProducing(self) -> None:
        self._closed = True

    # --- the stream -----------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._stream()
        except CancelledError:
            if self._closed:  # connectionLost cancels the loop: the session ended, nothing failed
                return
            raise
        except Exception:
            if not self._closed:
                logger.exception("MedChat WebSocket stream failed")
                self._close(CLOSE_INTERNAL_ERROR, "internal error; reconnect with your last pos")
            raise

    async def _stream(self) -> None:
        hub, config = self._hub, self._hub.config
        request = self._request
        since = request.args.get(b"since", [b""])[0].decode("utf-8", "replace")
        try:
            requester, access_token = await hub.synapse_http.authenticate(request)
        except SynapseError as e:  # missing, unknown or expired token
            self._close(CLOSE_UNAUTHORIZED, f"unauthorized: {e.msg}")
            return
        finally:
            self._release_request()
        try:
            position = (
                Position.parse(since)
                if since
                else Position(await hub.synapse_stream.stream_position(), hub.synapse_server.now_ms())
            )
            if since:
                await hub.synapse_stream.events_after(requester, position.stream, timeout_ms=0, limit=1)
        except (SynapseError, ValueError):
            self._close(CLOSE_BAD_POSITION, "invalid resume position")
            return
        self.user_id = user_id = requester.user.to_string()
        await hub.synapse_stream.prepare_stream(user_id)
        self._hub.joined(self)
        self.position = str(position)
        self._send({"type": "hello", "user_id": user_id, "pos": self.position})

        last_auth_check = hub.synapse_server.now_ms()
        while not self._closed:
            if self._paused and not await self._wait_for_drain(config.slow_consumer_seconds):
                self._close(CLOSE_SLOW_CONSUMER, f"slow consumer; resume from {self.position}")
                return
            if hub.synapse_server.now_ms() - last_auth_check > config.token_recheck_seconds * 1000:
                if not await hub.synapse_http.token_still_valid(access_token):
                    self._close(CLOSE_UNAUTHORIZED, "access token no longer valid")
                    return
                last_auth_check = hub.synapse_server.now_ms()
            events, end = await hub.synapse_stream.events_after(
                requester, position.stream, timeout_ms=config.heartbeat_seconds * 1000, limit=config.batch_limit
            )
            if not self._still_open():  # closed by the peer or the hub while this waited
                return
            frames = await self._frames(user_id, events)
            notices = position.notices
            if any(e.get("type") == HINT_TYPE for e in events):
                fresh = await self._hub.notices.since(user_id, notices)
                frames += [{"type": "notification.new", "notification": module_item(n)} for n in fresh]
                notices = max([notices, *(n.created_ts for n in fresh)])
            position = Position(end, notices)
            self.position = str(position)
            if frames:
                self._send({"type": "events", "pos": self.position, "events": frames})
                self._record_delivery(user_id, frames)
            else:
                self._send({"type": "heartbeat", "pos": self.position})

    async def _frames(self, user_id: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The app's frames for one batch of Synapse stream events, notifications included."""
        # One after the other: only the room's first socket reads anything (FanOut shares it), and
        # for the other hundreds a gather would cost more than both look-ups.
        fanout = self._hub.fanout
        messages = await fanout.message_models(user_id, [e for e in events if is_new_message(e)])
        notified = await fanout.notified(user_id, events)
        frames = [frame for event in events for frame in frames_for(event, messages)]
        notices = [notification_frame(e, user_id) for e in events if e.get("event_id") in notified]
        return frames + [notice for notice in notices if notice is not None]

    def _record_delivery(self, user_id: str, frames: list[dict[str, Any]]) -> None:
        """Records the delivery of the messages from others (with the other sockets' deliveries)."""
        received = [
            f["message"] for f in frames if f["type"] == "message.new" and f["message"]["sender"]["id"] != user_id
        ]
        if received:
            self._hub.deliveries.add(user_id, [(m["id"], m["room_id"], m["sender"]["id"]) for m in received])

    def push_live(self, frames: list[dict[str, Any]]) -> None:
        """Frames that are not in Synapse's stream (delivery marks): sent at once, with no `pos`,
        so they do not move the resume position; after a reconnect the app reads the status."""
        self._send({"type": "events", "events": frames})

    async def _wait_for_drain(self, seconds: float) -> bool:
        """True once the client has read enough for the send buffer to drain; False on time-out.

        Only sockets whose buffer is full poll here, so the cost is theirs alone.
        """
        waited = 0.0
        while self._paused and not self._closed:
            if waited >= seconds:
                return False
            await self._hub.api.sleep(_DRAIN_POLL_SECONDS)
            waited += _DRAIN_POLL_SECONDS
        return True

    def _release_request(self) -> None:
        """The socket needs nothing more of its upgrade request: Synapse finishes it."""
        if self._request is not None:
            request, self._request = self._request, None
            self._hub.synapse_http.release_upgraded(request)

    def _still_open(self) -> bool:
        """Read after an await: a method call, as the attribute's value may change while it waits."""
        return not self._closed

    def _send(self, frame: dict[str, Any]) -> None:
        if self._transport is not None and not self._closed:
            self._transport.sendTextMessage(json.dumps(frame, separators=(",", ":")))
            self._frames_out += 1

    def _close(self, code: int, reason: str) -> None:
        """Sends the close frame after whatever is buffered; a client that never reads again is
        cut off after ABORT_AFTER_SECONDS so it cannot hold the connection."""
        if self._transport is not None and not self._closed:
            self._closed = True
            self._close_code = code
            WEBSOCKET_CLOSES.labels(code=str(code), server_name=self._hub.api.server_name).inc()
            self._transport.loseConnection(code)
            tcp = self._tcp
            self._hub.api.delayed_background_call(
                ABORT_AFTER_SECONDS * 1000, lambda: tcp.connected and tcp.abortConnection(), desc="medchat_ws_abort"
            )
        logger.info("MedChat WebSocket closed (%s): %s", code, reason)
