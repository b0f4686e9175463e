"""medchat_notifications: the app's notification list, one row per thing a user is told.

Generic on purpose (type + JSON payload) so every feature can add its own kinds; the
notifications feature lists, marks and deletes them.
"""

from __future__ import annotations

import json
import secrets

from synapse.storage.database import LoggingTransaction

from medchat.models import JsonDict


def add_notification_txn(t: LoggingTransaction, user_id: str, kind: str, payload: JsonDict, now_ms: int) -> str:
    """Stores a notification inside the caller's transaction, so it exists iff the action does."""
    notification_id = secrets.token_urlsafe(12)
    t.execute(
        "INSERT INTO medchat_notifications (notification_id, user_id, type, payload, is_read, created_ts)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (notification_id, user_id, kind, json.dumps(payload), False, now_ms),
    )
    return notification_id
