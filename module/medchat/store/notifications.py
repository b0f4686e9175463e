"""medchat_notifications: the app's notification list, one row per thing a user is told.

Generic on purpose (type + JSON payload) so every feature can add its own kinds; the
notifications feature lists, marks and deletes them.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from synapse.storage.database import LoggingTransaction

from medchat.models import JsonDict
from medchat.store._base import Store, first_value


def add_notification_txn(t: LoggingTransaction, user_id: str, kind: str, payload: JsonDict, now_ms: int) -> str:
    """Stores a notification inside the caller's transaction, so it exists iff the action does."""
    notification_id = secrets.token_urlsafe(12)
    t.execute(
        "INSERT INTO medchat_notifications (notification_id, user_id, type, payload, is_read, created_ts)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (notification_id, user_id, kind, json.dumps(payload), False, now_ms),
    )
    return notification_id


@dataclass(frozen=True)
class ModuleNotification:
    notification_id: str
    type: str
    payload: JsonDict
    is_read: bool
    created_ts: int


HINT_TYPE = "org.medchat.notifications"


class NotificationStore(Store):
    """Reads and updates a user's module notifications (never another user's)."""

    async def announce(self, user_id: str) -> None:
        """Tells the user's clients that module notifications changed: global account data
        `org.medchat.notifications` ({unread}), which Synapse replicates to every worker and which
        wakes the user's /sync and WebSocket streams (Matrix has no other per-user push for it)."""
        await self._api.account_data_manager.put_global(
            user_id, HINT_TYPE, {"unread": await self.unread_count(user_id)}
        )

    async def since(self, user_id: str, after_ts: int) -> list[ModuleNotification]:
        """The user's notifications created after `after_ts`, oldest first (the WebSocket's catch-up)."""

        def txn(t: LoggingTransaction) -> list[ModuleNotification]:
            t.execute(
                "SELECT notification_id, type, payload, is_read, created_ts FROM medchat_notifications"
                " WHERE user_id = ? AND created_ts > ? ORDER BY created_ts LIMIT 100",
                (user_id, after_ts),
            )
            return [ModuleNotification(n, kind, json.loads(p), bool(r), ts) for n, kind, p, r, ts in t.fetchall()]

        return await self.run("notifications_since", txn)

    async def page(
        self, user_id: str, before_ts: int | None, limit: int, unread_only: bool
    ) -> list[ModuleNotification]:
        """Newest first, strictly older than `before_ts` when given."""
        sql = "SELECT notification_id, type, payload, is_read, created_ts FROM medchat_notifications WHERE user_id = ?"
        args: list[Any] = [user_id]
        if before_ts is not None:
            sql += " AND created_ts < ?"
            args.append(before_ts)
        if unread_only:
            sql += " AND is_read = ?"
            args.append(False)
        sql += " ORDER BY created_ts DESC LIMIT ?"

        def txn(t: LoggingTransaction) -> list[ModuleNotification]:
            t.execute(sql, (*args, limit))
            return [ModuleNotification(n, kind, json.loads(p), bool(r), ts) for n, kind, p, r, ts in t.fetchall()]

        return await self.run("notifications_page", txn)

    async def mark_read(self, user_id: str, notification_id: str | None = None) -> int:
        """Marks one (or, with no id, every) notification of the user read; the count changed."""
        sql, args = "UPDATE medchat_notifications SET is_read = ? WHERE user_id = ?", [True, user_id]
        if notification_id is not None:
            sql += " AND notification_id = ?"
            args.append(notification_id)

        def txn(t: LoggingTransaction) -> int:
            t.execute(sql, args)
            return t.rowcount

        return await self.run("notifications_mark_read", txn)

    async def delete(self, user_id: str, notification_id: str) -> bool:
        def txn(t: LoggingTransaction) -> bool:
            t.execute(
                "DELETE FROM medchat_notifications WHERE user_id = ? AND notification_id = ?",
                (user_id, notification_id),
            )
            return t.rowcount == 1

        return await self.run("notifications_delete", txn)

    async def unread_count(self, user_id: str) -> int:
        def txn(t: LoggingTransaction) -> int:
            t.execute("SELECT COUNT(*) FROM medchat_notifications WHERE user_id = ? AND is_read = ?", (user_id, False))
            return first_value(t)

        return await self.run("notifications_unread_count", txn)
