"""GET /api/chat/ws: one WebSocket per app session, fed by Synapse's event stream.

Protocol (all frames are JSON text):
- connect with the access token (`Authorization: Bearer …` or `?access_token=`) and optionally
  `?since=<pos>` to resume; a bad token closes with 4001, a bad position with 4400;
- the server sends `{"type": "hello", "user_id", "pos"}`, then `{"type": "events", "pos", "events": [...]}`
  for each batch (one WebSocket message, so a batch arrives whole or not at all), and
  `{"type": "heartbeat", "pos"}` after `heartbeat_seconds` of quiet;
- reconnecting with the last `pos` received delivers everything after it, in order, once;
- a consumer that stops reading is not buffered for: the server stops fetching while the socket's
  send buffer is full and, after `slow_consumer_seconds`, closes with 4008 and its last `pos`;
- the client may send `{"type": "ping"}` (→ `pong`); anything malformed gets an error frame and
  the connection stays open.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from synapse.module_api.errors import SynapseError
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.websocket import WebSocketResource, WebSocketTransport
from zope.interface import implementer

from medchat.bridge import SynapseBridge
from medchat.config import WebSocketConfig
from medchat.messages import Messages
from medchat.realtime.frames import frames_for, is_new_message, notification_frame
from medchat.realtime.status import MessageStatus

logger = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED = 4001
CLOSE_BAD_POSITION = 4400
CLOSE_SLOW_CONSUMER = 4008
CLOSE_INTERNAL_ERROR = 1011
_DRAIN_POLL_SECONDS = 0.2
ABORT_AFTER_SECONDS = 10


class SocketHub:
    """Builds a ChatSocket per connection and keeps count of the open ones."""

    def __init__(self, bridge: SynapseBridge, config: WebSocketConfig, status: MessageStatus, messages: Messages):
        self.bridge = bridge
        self.config = config
        self.status = status
        self.messages = messages
        self.open: set[ChatSocket] = set()

    def buildProtocol(self, request: Any) -> ChatSocket:
        return ChatSocket(self, request)

    def resource(self) -> Resource:
        return WebSocketResource(self)


@implementer(IPushProducer)
class ChatSocket:
    def __init__(self, hub: SocketHub, request: Any):
        self._hub = hub
        self._request = request
        self._transport: WebSocketTransport | None = None
        self._closed = False
        self._paused = False
        self._loop: Deferred[None] | None = None
        self.position: str | None = None

    # --- WebSocketProtocol --------------------------------------------------------------------

    def negotiationStarted(self, transport: WebSocketTransport) -> None:
        self._transport = transport

    def negotiationFinished(self) -> None:
        # The upgraded connection no longer carries HTTP: the HTTP channel stops being the TCP
        # transport's producer, and this socket takes its place to learn when the buffer is full.
        self._request.channel.transport.unregisterProducer()
        assert self._transport is not None
        self._transport.attachProducer(self)
        self._hub.open.add(self)
        self._loop = self._hub.bridge.api.run_as_background_process("medchat_websocket", self._run)

    def textMessageReceived(self, message: str) -> None:
        try:
            frame = json.loads(message)
        except ValueError:
            self._send({"type": "error", "errcode": "M_NOT_JSON", "error": "Frames must be JSON objects."})
            return
        if not isinstance(frame, dict) or frame.get("type") != "ping":
            self._send({"type": "error", "errcode": "M_UNRECOGNIZED", "error": "Unknown frame; the client may send {\"type\": \"ping\"}."})
            return
        self._send({"type": "pong", "pos": self.position})

    def bytesMessageReceived(self, data: bytes) -> None:
        self._send({"type": "error", "errcode": "M_NOT_JSON", "error": "Binary frames are not accepted."})

    def pongReceived(self, payload: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        self._closed = True
        self._hub.open.discard(self)
        if self._loop is not None:
            self._loop.cancel()

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
        except Exception:
            if not self._closed:
                logger.exception("MedChat WebSocket stream failed")
                self._close(CLOSE_INTERNAL_ERROR, "internal error; reconnect with your last pos")
            raise

    async def _stream(self) -> None:
        bridge, config = self._hub.bridge, self._hub.config
        try:
            requester, access_token = await bridge.authenticate(self._request)
        except SynapseError as e:  # missing, unknown or expired token
            self._close(CLOSE_UNAUTHORIZED, f"unauthorized: {e.msg}")
            return
        since = self._request.args.get(b"since", [b""])[0].decode("utf-8", "replace")
        if since:
            try:
                await bridge.events_after(requester, since, timeout_ms=0, limit=1)
            except SynapseError:
                self._close(CLOSE_BAD_POSITION, "invalid resume position")
                return
        self.position = since or await bridge.stream_position()
        user_id = requester.user.to_string()
        self._send({"type": "hello", "user_id": user_id, "pos": self.position})

        last_auth_check = bridge.now_ms()
        while not self._closed:
            if self._paused and not await self._wait_for_drain(config.slow_consumer_seconds):
                self._close(CLOSE_SLOW_CONSUMER, f"slow consumer; resume from {self.position}")
                return
            if bridge.now_ms() - last_auth_check > config.token_recheck_seconds * 1000:
                if not await bridge.token_still_valid(access_token):
                    self._close(CLOSE_UNAUTHORIZED, "access token no longer valid")
                    return
                last_auth_check = bridge.now_ms()
            events, end = await bridge.events_after(
                requester, self.position, timeout_ms=config.heartbeat_seconds * 1000, limit=config.batch_limit
            )
            if self._closed:
                return
            messages = await self._hub.messages.stream_models(user_id, [e for e in events if is_new_message(e)])
            frames = [frame for event in events for frame in frames_for(event, messages)]
            from_others = [e["event_id"] for e in events if "event_id" in e and e.get("sender") != user_id]
            notified = await bridge.notified_events(user_id, from_others)
            frames += [notification_frame(e, user_id) for e in events if e.get("event_id") in notified]
            self.position = end
            if frames:
                self._send({"type": "events", "pos": end, "events": frames})
                received = [f["message"]["id"] for f in frames if f["type"] == "message.new" and f["message"]["sender"]["id"] != user_id]
                if received:
                    await self._hub.status.delivered_over_socket(user_id, received)
            else:
                self._send({"type": "heartbeat", "pos": end})

    async def _wait_for_drain(self, seconds: float) -> bool:
        """True once the client has read enough for the send buffer to drain; False on time-out.

        Only sockets whose buffer is full poll here, so the cost is theirs alone.
        """
        waited = 0.0
        while self._paused and not self._closed:
            if waited >= seconds:
                return False
            await self._hub.bridge.api.sleep(_DRAIN_POLL_SECONDS)
            waited += _DRAIN_POLL_SECONDS
        return True

    def _send(self, frame: dict[str, Any]) -> None:
        if self._transport is not None and not self._closed:
            self._transport.sendTextMessage(json.dumps(frame, separators=(",", ":")))

    def _close(self, code: int, reason: str) -> None:
        """Sends the close frame after whatever is buffered; a client that never reads again is
        cut off after ABORT_AFTER_SECONDS so it cannot hold the connection."""
        if self._transport is not None and not self._closed:
            self._closed = True
            self._transport.loseConnection(code)
            tcp = self._request.channel.transport
            self._hub.bridge.api.delayed_background_call(
                ABORT_AFTER_SECONDS * 1000, lambda: tcp.connected and tcp.abortConnection(), desc="medchat_ws_abort"
            )
        logger.info("MedChat WebSocket closed (%s): %s", code, reason)
