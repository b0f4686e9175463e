"""medchat_delivery and medchat_dismissed_notifications."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from synapse.module_api import ModuleApi, cached
from synapse.storage.database import LoggingTransaction

from medchat.store._base import Store

if TYPE_CHECKING:
    from synapse.util.clock import Clock


class DeliveryStore(Store):
    def __init__(self, api: ModuleApi, clock: Clock):
        super().__init__(api)
        self.server_name, self.clock = api.server_name, clock  # what `@cached` needs of its object
        # Marks are written where sockets and acknowledgements land and read where history is
        # served: the cache is registered on every worker and invalidated through replication.
        api.register_cached_function(self.room_marks)

    @cached()
    async def room_marks(self, room_id: str) -> Mapping[str, int]:
        """user_id -> the stream ordering of the user's delivery mark in the room (callers share
        the mapping: read only), kept until a mark of the room moves."""

        def txn(t: LoggingTransaction) -> dict[str, int]:
            t.execute("SELECT user_id, stream_ordering FROM medchat_delivery WHERE room_id = ?", (room_id,))
            return dict(t.fetchall())

        return await self.run("room_delivery_marks", txn)

    async def advance(self, user_id: str, marks: dict[str, int], now_ms: int) -> None:
        """Moves the user's delivery mark in each room forward (never back)."""
        await self.advance_many({(user_id, room_id): ordering for room_id, ordering in marks.items()}, now_ms)

    async def advance_many(self, marks: dict[tuple[str, str], int], now_ms: int) -> None:
        """`advance` for many users at once ((user, room) -> stream ordering): one transaction for
        all the recipients of a fan-out, its rows in key order so concurrent ones cannot deadlock."""

        def txn(t: LoggingTransaction) -> None:
            t.execute_batch(
                "INSERT INTO medchat_delivery (user_id, room_id, stream_ordering, updated_ts) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (user_id, room_id) DO UPDATE SET stream_ordering = excluded.stream_ordering,"
                " updated_ts = excluded.updated_ts WHERE medchat_delivery.stream_ordering < excluded.stream_ordering",
                [(user_id, room_id, ordering, now_ms) for (user_id, room_id), ordering in sorted(marks.items())],
            )

        await self.run("advance_delivery", txn)
        for room_id in sorted({room_id for _, room_id in marks}):
            await self._api.invalidate_cache(self.room_marks, (room_id,))


class DismissedNotificationStore(Store):
    async def dismiss(self, user_id: str, notification_id: str, now_ms: int) -> None:
        def txn(t: LoggingTransaction) -> None:
            t.execute(
                "INSERT INTO medchat_dismissed_notifications (user_id, notification_id, dismissed_ts) VALUES (?, ?, ?)"
                " ON CONFLICT (user_id, notification_id) DO NOTHING",
                (user_id, notification_id, now_ms),
            )

        await self.run("dismiss_notification", txn)
