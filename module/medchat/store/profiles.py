"""medchat_profiles: the medical profile row of each user."""

from __future__ import annotations

from typing import Any

from synapse.storage.database import LoggingTransaction

from medchat.models import Profile
from medchat.store._base import Store

_COLUMNS = (
    "user_id",
    "role",
    "institution",
    "specialization",
    "bio",
    "created_ts",
    "updated_ts",
    "display_name",
    "avatar_url",
    "hidden",
    "verification_level",
)
COLUMNS_SQL = ", ".join(_COLUMNS)
EDITABLE_FIELDS = ("role", "institution", "specialization", "bio", "hidden")


def row_to_profile(row: tuple[Any, ...]) -> Profile:
    """A `SELECT {COLUMNS_SQL}` row as a Profile (SQLite hands booleans back as integers)."""
    profile = dict(zip(_COLUMNS, row))
    profile["hidden"] = bool(profile["hidden"])
    return Profile(**profile)


class ProfileStore(Store):
    async def reserve(self, profile: Profile) -> bool:
        """Inserts the row unless one exists for the user; True if this call created it.

        Registration writes the row before creating the Matrix account, so two concurrent
        registrations of one username cannot both proceed.
        """

        def txn(t: LoggingTransaction) -> bool:
            t.execute(
                f"INSERT INTO medchat_profiles ({COLUMNS_SQL}) VALUES ({', '.join('?' for _ in _COLUMNS)})"
                " ON CONFLICT (user_id) DO NOTHING",
                tuple(getattr(profile, c) for c in _COLUMNS),
            )
            return t.rowcount == 1

        return await self.run("reserve_profile", txn)

    async def delete(self, user_id: str) -> None:
        def txn(t: LoggingTransaction) -> None:
            t.execute("DELETE FROM medchat_profiles WHERE user_id = ?", (user_id,))

        await self.run("delete_profile", txn)

    async def get(self, user_id: str) -> Profile | None:
        def txn(t: LoggingTransaction) -> Profile | None:
            return get_profile_txn(t, user_id)

        return await self.run("get_profile", txn)

    async def update(self, user_id: str, changes: dict[str, Any], now_ms: int) -> None:
        """Writes the given editable fields and bumps updated_ts."""
        fields = [f for f in EDITABLE_FIELDS if f in changes]
        assignments = ", ".join(f"{f} = ?" for f in [*fields, "updated_ts"])

        def txn(t: LoggingTransaction) -> None:
            t.execute(
                f"UPDATE medchat_profiles SET {assignments} WHERE user_id = ?",
                (*(changes[f] for f in fields), now_ms, user_id),
            )

        await self.run("update_profile", txn)

    async def set_identity(self, user_id: str, display_name: str | None, avatar_url: str | None) -> bool:
        """Copies the Matrix display name and avatar into the row; True if the row exists."""

        def txn(t: LoggingTransaction) -> bool:
            t.execute(
                "UPDATE medchat_profiles SET display_name = ?, avatar_url = ? WHERE user_id = ?",
                (display_name, avatar_url, user_id),
            )
            return t.rowcount == 1

        return await self.run("set_profile_identity", txn)


def get_profile_txn(t: LoggingTransaction, user_id: str) -> Profile | None:
    t.execute(f"SELECT {COLUMNS_SQL} FROM medchat_profiles WHERE user_id = ?", (user_id,))
    row = t.fetchone()
    return row_to_profile(row) if row else None


def set_level_txn(t: LoggingTransaction, user_id: str, level: str, now_ms: int) -> None:
    """Only medchat.handlers.verification calls this: the level is the ladder's, never a profile edit."""
    t.execute(
        "UPDATE medchat_profiles SET verification_level = ?, updated_ts = ? WHERE user_id = ?",
        (level, now_ms, user_id),
    )
