"""medchat_verification_requests and medchat_verification_log.

Every change of a user's level goes through `record_txn`, which writes the level and the log entry
in one transaction, so the history cannot disagree with the level.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from synapse.storage.database import LoggingTransaction

from medchat.store._base import Store, first_value
from medchat.store.profiles import set_level_txn
from medchat.synapse.sql import in_list

PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"
STATUSES = (PENDING, APPROVED, REJECTED)

_REQUEST_COLUMNS = (
    "request_id",
    "user_id",
    "level",
    "registration_body",
    "license_number",
    "document_url",
    "institution",
    "status",
    "reason",
    "decided_by",
    "created_ts",
    "decided_ts",
)
_REQUEST_SQL = ", ".join(_REQUEST_COLUMNS)
_LOG_COLUMNS = ("user_id", "request_id", "action", "actor", "level_before", "level_after", "reason", "ts")


@dataclass(frozen=True)
class VerificationRequest:
    request_id: str
    user_id: str
    level: str
    registration_body: str
    license_number: str
    document_url: str | None
    institution: str | None
    status: str
    reason: str | None
    decided_by: str | None
    created_ts: int
    decided_ts: int | None


@dataclass(frozen=True)
class LogEntry:
    user_id: str
    request_id: str | None
    action: str
    actor: str
    level_before: str
    level_after: str
    reason: str | None
    ts: int


def record_txn(t: LoggingTransaction, entry: LogEntry) -> None:
    """Logs a step and, if it changes the level, applies it to the profile."""
    t.execute(
        f"INSERT INTO medchat_verification_log ({', '.join(_LOG_COLUMNS)}) VALUES ({', '.join('?' for _ in _LOG_COLUMNS)})",
        tuple(getattr(entry, c) for c in _LOG_COLUMNS),
    )
    if entry.level_after != entry.level_before:
        set_level_txn(t, entry.user_id, entry.level_after, entry.ts)


def get_request_txn(t: LoggingTransaction, request_id: str) -> VerificationRequest | None:
    t.execute(f"SELECT {_REQUEST_SQL} FROM medchat_verification_requests WHERE request_id = ?", (request_id,))
    row = t.fetchone()
    return VerificationRequest(*row) if row else None


def decide_txn(
    t: LoggingTransaction, request_id: str, status: str, actor: str, reason: str | None, now_ms: int
) -> bool:
    """Moves a pending request to `status`; False if it was no longer pending (someone decided first)."""
    t.execute(
        "UPDATE medchat_verification_requests SET status = ?, decided_by = ?, reason = ?, decided_ts = ?"
        " WHERE request_id = ? AND status = ?",
        (status, actor, reason, now_ms, request_id, PENDING),
    )
    return t.rowcount == 1


class VerificationStore(Store):
    async def count_pending(self) -> int:
        def txn(t: LoggingTransaction) -> int:
            t.execute("SELECT COUNT(*) FROM medchat_verification_requests WHERE status = ?", (PENDING,))
            return first_value(t)

        return await self.run("count_pending_verifications", txn)

    async def oldest_pending_ts(self) -> int | None:
        """When the longest-waiting pending request was made (ms), None when none waits."""

        def txn(t: LoggingTransaction) -> int | None:
            t.execute("SELECT MIN(created_ts) FROM medchat_verification_requests WHERE status = ?", (PENDING,))
            return first_value(t)

        return await self.run("oldest_pending_verification", txn)

    async def create(self, request: VerificationRequest, level_before: str) -> bool:
        """Stores a new pending request and logs it; False if the user already has one pending."""

        def txn(t: LoggingTransaction) -> bool:
            t.execute(
                "SELECT 1 FROM medchat_verification_requests WHERE user_id = ? AND status = ?",
                (request.user_id, PENDING),
            )
            if t.fetchone():
                return False
            t.execute(
                f"INSERT INTO medchat_verification_requests ({_REQUEST_SQL}) VALUES ({', '.join('?' for _ in _REQUEST_COLUMNS)})",
                tuple(getattr(request, c) for c in _REQUEST_COLUMNS),
            )
            record_txn(
                t,
                LogEntry(
                    request.user_id,
                    request.request_id,
                    "submitted",
                    request.user_id,
                    level_before,
                    level_before,
                    None,
                    request.created_ts,
                ),
            )
            return True

        return await self.run("verification_create", txn)

    async def get(self, request_id: str) -> VerificationRequest | None:
        return await self.run("verification_get", get_request_txn, request_id)

    async def requests(
        self, status: str | None, user_id: str | None, institutions: list[str] | None, limit: int, offset: int = 0
    ) -> list[VerificationRequest]:
        """Requests, oldest first, from the `offset`-th; `institutions` None means every institution."""

        def txn(t: LoggingTransaction) -> list[VerificationRequest]:
            clauses: list[str] = []
            args: list[object] = []
            if status is not None:
                clauses.append("status = ?")
                args.append(status)
            if user_id is not None:
                clauses.append("user_id = ?")
                args.append(user_id)
            if institutions is not None:
                clause, institution_args = in_list(t.database_engine, "institution", institutions)
                clauses.append(clause)
                args.extend(institution_args)
            where = " WHERE " + " AND ".join(clauses) if clauses else ""
            t.execute(
                f"SELECT {_REQUEST_SQL} FROM medchat_verification_requests{where} ORDER BY created_ts, request_id LIMIT ? OFFSET ?",
                (*args, limit, offset),
            )
            return [VerificationRequest(*row) for row in t.fetchall()]

        return await self.run("verification_requests", txn)

    async def history(self, user_id: str) -> list[LogEntry]:
        def txn(t: LoggingTransaction) -> list[LogEntry]:
            t.execute(
                f"SELECT {', '.join(_LOG_COLUMNS)} FROM medchat_verification_log WHERE user_id = ? ORDER BY ts",
                (user_id,),
            )
            return [LogEntry(*row) for row in t.fetchall()]

        return await self.run("verification_history", txn)


def new_request_id() -> str:
    return "vr_" + secrets.token_urlsafe(12)
