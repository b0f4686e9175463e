"""medchat_expiring_messages: disappearing messages waiting for their redaction."""

from __future__ import annotations

from typing import NamedTuple

from synapse.storage.database import LoggingTransaction

from medchat.store._base import Store


class Expiring(NamedTuple):
    event_id: str
    room_id: str
    sender: str
    expires_ts: int
    attempts: int = 0


_COLUMNS = "event_id, room_id, sender, expires_ts, attempts"


class ExpiryStore(Store):
    async def add(self, message: Expiring) -> None:
        def txn(t: LoggingTransaction) -> None:
            t.execute(
                "INSERT INTO medchat_expiring_messages (event_id, room_id, sender, expires_ts) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (event_id) DO NOTHING",
                (message.event_id, message.room_id, message.sender, message.expires_ts),
            )

        await self.run("add_expiring_message", txn)

    async def due(self, now_ms: int, limit: int) -> list[Expiring]:
        """Messages whose time has come and that are not waiting for a retry, oldest first."""

        def txn(t: LoggingTransaction) -> list[Expiring]:
            t.execute(
                f"SELECT {_COLUMNS} FROM medchat_expiring_messages"
                " WHERE expires_ts <= ? AND (retry_ts IS NULL OR retry_ts <= ?) ORDER BY expires_ts LIMIT ?",
                (now_ms, now_ms, limit),
            )
            return [Expiring(*row) for row in t.fetchall()]

        return await self.run("due_expiring_messages", txn)

    async def of_sender(self, sender: str) -> list[Expiring]:
        def txn(t: LoggingTransaction) -> list[Expiring]:
            t.execute(
                f"SELECT {_COLUMNS} FROM medchat_expiring_messages WHERE sender = ?",
                (sender,),
            )
            return [Expiring(*row) for row in t.fetchall()]

        return await self.run("expiring_messages_of_sender", txn)

    async def remove(self, event_id: str) -> None:
        def txn(t: LoggingTransaction) -> None:
            t.execute("DELETE FROM medchat_expiring_messages WHERE event_id = ?", (event_id,))

        await self.run("remove_expiring_message", txn)

    async def retry_later(self, event_id: str, retry_ts: int) -> None:
        """A failed redaction: counted, and due again at `retry_ts`."""

        def txn(t: LoggingTransaction) -> None:
            t.execute(
                "UPDATE medchat_expiring_messages SET attempts = attempts + 1, retry_ts = ? WHERE event_id = ?",
                (retry_ts, event_id),
            )

        await self.run("retry_expiring_message", txn)

    async def count_overdue(self, before_ms: int) -> int:
        """How many messages should have gone before `before_ms` and are still waiting."""

        def txn(t: LoggingTransaction) -> int:
            t.execute("SELECT count(*) FROM medchat_expiring_messages WHERE expires_ts < ?", (before_ms,))
            (count,) = t.fetchone() or (0,)
            return int(count)

        return await self.run("overdue_expiring_messages", txn)
