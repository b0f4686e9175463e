"""medchat_expiring_messages: disappearing messages waiting for their redaction."""

from __future__ import annotations

from typing import NamedTuple

from synapse.module_api import ModuleApi
from synapse.storage.database import LoggingTransaction


class Expiring(NamedTuple):
    event_id: str
    room_id: str
    sender: str
    expires_ts: int


class ExpiryStore:
    def __init__(self, api: ModuleApi):
        self._api = api

    async def add(self, message: Expiring) -> None:
        def txn(t: LoggingTransaction) -> None:
            t.execute(
                "INSERT INTO medchat_expiring_messages (event_id, room_id, sender, expires_ts) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (event_id) DO NOTHING",
                tuple(message),
            )

        await self._api.run_db_interaction("medchat_add_expiring_message", txn)

    async def due(self, now_ms: int, limit: int) -> list[Expiring]:
        def txn(t: LoggingTransaction) -> list[Expiring]:
            t.execute(
                "SELECT event_id, room_id, sender, expires_ts FROM medchat_expiring_messages"
                " WHERE expires_ts <= ? ORDER BY expires_ts LIMIT ?",
                (now_ms, limit),
            )
            return [Expiring(*row) for row in t.fetchall()]

        return await self._api.run_db_interaction("medchat_due_expiring_messages", txn)

    async def of_sender(self, sender: str) -> list[Expiring]:
        def txn(t: LoggingTransaction) -> list[Expiring]:
            t.execute(
                "SELECT event_id, room_id, sender, expires_ts FROM medchat_expiring_messages WHERE sender = ?",
                (sender,),
            )
            return [Expiring(*row) for row in t.fetchall()]

        return await self._api.run_db_interaction("medchat_expiring_messages_of_sender", txn)

    async def remove(self, event_id: str) -> None:
        def txn(t: LoggingTransaction) -> None:
            t.execute("DELETE FROM medchat_expiring_messages WHERE event_id = ?", (event_id,))

        await self._api.run_db_interaction("medchat_remove_expiring_message", txn)
