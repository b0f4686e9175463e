"""medchat_audit: the tamper-evident, append-only audit trail."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from synapse.module_api import ModuleApi
from synapse.storage.database import LoggingTransaction

GENESIS = "0" * 64
# Serialises appends on PostgreSQL (SQLite has one writer anyway), so each entry sees its parent.
_APPEND_LOCK_KEY = 0x6D656461  # "meda"
_COLUMNS = ("seq", "ts", "actor", "action", "target", "details", "origin", "prev_hash", "hash")


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    ts: int
    actor: str
    action: str
    target: str | None
    details: dict[str, Any]
    origin: str | None
    prev_hash: str
    hash: str


def entry_hash(seq: int, ts: int, actor: str, action: str, target: str | None, details: dict[str, Any], origin: str | None, prev_hash: str) -> str:
    """SHA-256 over a canonical JSON of the entry and its parent's hash."""
    canonical = json.dumps(
        {"seq": seq, "ts": ts, "actor": actor, "action": action, "target": target, "details": details, "origin": origin, "prev": prev_hash},
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def append_txn(t: LoggingTransaction, engine: str, ts: int, actor: str, action: str, target: str | None, details: dict[str, Any], origin: str | None) -> int:
    """Appends one entry inside the caller's transaction (so it exists iff the action does)."""
    if engine == "postgresql":
        t.execute(f"SELECT pg_advisory_xact_lock({_APPEND_LOCK_KEY})")
    t.execute("SELECT seq, hash FROM medchat_audit ORDER BY seq DESC LIMIT 1")
    last = t.fetchone()
    seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS)
    digest = entry_hash(seq, ts, actor, action, target, details, origin, prev_hash)
    t.execute(
        f"INSERT INTO medchat_audit ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)})",
        (seq, ts, actor, action, target, json.dumps(details, sort_keys=True), origin, prev_hash, digest),
    )
    return seq


def _entry(row: tuple[Any, ...]) -> AuditEntry:
    values = dict(zip(_COLUMNS, row))
    values["details"] = json.loads(values["details"])
    return AuditEntry(**values)


class AuditStore:
    def __init__(self, api: ModuleApi, engine: str):
        self._api = api
        self.engine = engine

    async def append(self, ts: int, actor: str, action: str, target: str | None, details: dict[str, Any], origin: str | None) -> int:
        return await self._api.run_db_interaction(
            "medchat_audit_append", append_txn, self.engine, ts, actor, action, target, details, origin
        )

    async def page(self, filters: dict[str, Any], before: int | None, limit: int) -> list[AuditEntry]:
        """Newest first; `filters` may hold actor, action, target, since and until (ms)."""
        clauses, args = [], []
        for column in ("actor", "action", "target"):
            if filters.get(column):
                clauses.append(f"{column} = ?")
                args.append(filters[column])
        if filters.get("since") is not None:
            clauses.append("ts >= ?")
            args.append(filters["since"])
        if filters.get("until") is not None:
            clauses.append("ts <= ?")
            args.append(filters["until"])
        if before is not None:
            clauses.append("seq < ?")
            args.append(before)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""

        def txn(t: LoggingTransaction) -> list[AuditEntry]:
            t.execute(f"SELECT {', '.join(_COLUMNS)} FROM medchat_audit {where} ORDER BY seq DESC LIMIT ?", (*args, limit))
            return [_entry(row) for row in t.fetchall()]

        return await self._api.run_db_interaction("medchat_audit_page", txn)

    async def chain(self, after: int, limit: int) -> list[AuditEntry]:
        """Entries in chain order, for verification in batches."""

        def txn(t: LoggingTransaction) -> list[AuditEntry]:
            t.execute(f"SELECT {', '.join(_COLUMNS)} FROM medchat_audit WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit))
            return [_entry(row) for row in t.fetchall()]

        return await self._api.run_db_interaction("medchat_audit_chain", txn)


def broken_link(entries: Iterator[AuditEntry] | list[AuditEntry], expected_prev: str, expected_seq: int) -> tuple[int | None, str, int]:
    """Checks a run of entries against the chain so far: (first broken seq or None, last hash, next seq)."""
    for entry in entries:
        recomputed = entry_hash(entry.seq, entry.ts, entry.actor, entry.action, entry.target, entry.details, entry.origin, entry.prev_hash)
        if entry.seq != expected_seq or entry.prev_hash != expected_prev or entry.hash != recomputed:
            return entry.seq, expected_prev, expected_seq
        expected_prev, expected_seq = entry.hash, entry.seq + 1
    return None, expected_prev, expected_seq
