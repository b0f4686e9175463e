"""Disappearing messages: `expires_in` on send, redacted at expiry by one background process.

The expiry is in the event itself (`org.medchat.expires_at`, ms), so every client can show it; the
module's table drives the redaction and survives restarts. The reaper runs only on the process
that runs Synapse's background tasks (`run_background_tasks_on`), so exactly once in a cluster.
"""

from __future__ import annotations

import logging

from synapse.api.errors import Codes
from synapse.module_api.errors import SynapseError

from medchat.metrics import EXPIRY_OVERDUE
from medchat.store.expiry import Expiring, ExpiryStore
from medchat.synapse import SynapseEvents, SynapseServer
from medchat.synapse._base import requester_for

logger = logging.getLogger(__name__)

REAP_EVERY_MS = 1000
_BATCH = 100
# A failed redaction is tried again after 2 s, 4 s, 8 s, ... at most every 5 minutes, until it lands.
_RETRY_FIRST_MS = 2000
_RETRY_MAX_MS = 5 * 60 * 1000
# Past this, a message still waiting counts as overdue (medchat_expiring_messages_overdue).
OVERDUE_AFTER_MS = 60 * 1000


class Expiry:
    def __init__(
        self, synapse_server: SynapseServer, synapse_events: SynapseEvents, store: ExpiryStore, max_seconds: int
    ):
        self._synapse_server = synapse_server
        self._synapse_events = synapse_events
        self._store = store
        self._max_seconds = max_seconds

    def expires_at(self, expires_in: int) -> int:
        """The expiry time for a message sent now; 400 outside 1..max_expires_in_seconds."""
        if not 1 <= expires_in <= self._max_seconds:
            raise SynapseError(
                400, f"Invalid field expires_in: give 1 to {self._max_seconds} seconds", Codes.INVALID_PARAM
            )
        return self._synapse_server.now_ms() + expires_in * 1000

    async def track(self, event_id: str, room_id: str, sender: str, expires_ts: int) -> None:
        await self._store.add(Expiring(event_id, room_id, sender, expires_ts))

    async def reap(self) -> None:
        """Redacts every message whose time has come, as its sender would."""
        now = self._synapse_server.now_ms()
        await self._redact(await self._store.due(now, _BATCH), "expired")
        EXPIRY_OVERDUE.labels(server_name=self._synapse_server.server_name).set(
            await self._store.count_overdue(now - OVERDUE_AFTER_MS)
        )

    async def expire_all_of(self, sender: str) -> None:
        """Redacts the sender's pending disappearing messages now: at account erasure, while the
        sender may still redact them (a deactivated account could not, and they were to go anyway)."""
        await self._redact(await self._store.of_sender(sender), "expired: account erased")

    async def _redact(self, messages: list[Expiring], reason: str) -> None:
        """Redacts each message as its sender, outside the sender's message rate limit (the server
        acts on its own schedule). The pending row goes only once the redaction has landed; a
        failure is tried again with back-off, however long it takes."""
        for message in messages:
            try:
                await self._synapse_events.redact(
                    requester_for(message.sender), message.room_id, message.event_id, reason, ratelimit=False
                )
            except SynapseError as e:
                delay = min(_RETRY_MAX_MS, _RETRY_FIRST_MS * 2 ** min(message.attempts, 20))
                logger.warning(
                    "MedChat: could not redact expired message %s (attempt %d), trying again in %d s: %s",
                    message.event_id,
                    message.attempts + 1,
                    delay // 1000,
                    e,
                )
                await self._store.retry_later(message.event_id, self._synapse_server.now_ms() + delay)
                continue
            await self._store.remove(message.event_id)
