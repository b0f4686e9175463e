"""medchat_delivery and medchat_dismissed_notifications."""

from __future__ import annotations

from synapse.storage.database import LoggingTransaction

from medchat.store._base import Store


class DeliveryStore(Store):
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


class DismissedNotificationStore(Store):
    async def dismiss(self, user_id: str, notification_id: str, now_ms: int) -> None:
        def txn(t: LoggingTransaction) -> None:
            t.execute(
                "INSERT INTO medchat_dismissed_notifications (user_id, notification_id, dismissed_ts) VALUES (?, ?, ?)"
                " ON CONFLICT (user_id, notification_id) DO NOTHING",
                (user_id, notification_id, now_ms),
            )

        await self.run("dismiss_notification", txn)
