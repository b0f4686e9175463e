"""medchat_audit: the tamper-evident, append-only audit trail, pseudonymisable without breaking it.

Each entry's hash covers its non-personal fields in clear (seq, ts, action, the previous hash) and
its personal fields (actor, target, origin and every string inside details) only as keyed
pseudonyms: HMAC-SHA256 under a server secret. The clear values live in their columns outside the
hash. Verification recomputes the pseudonyms from the clear values, so editing any of them (or
seq, ts, action, a hash) breaks the chain at that entry; erasing a user replaces their clear values
with the very pseudonyms the hash already covers, so the chain still verifies afterwards.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from synapse.module_api import ModuleApi
from synapse.storage.database import LoggingTransaction

from medchat.store._base import Store

GENESIS = "0" * 64
SCHEME = 2  # hashes over pseudonyms; 1 (migration 070) hashed the clear values
PSEUDONYM_PREFIX = "pseudonym:"
ERASURE_ACTION = "gdpr.erasure"
# Free text in details that describes the person the entry is about (a verifier's reason).
FREE_TEXT_KEYS = frozenset({"reason"})
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


class Pseudonyms:
    """Keyed pseudonyms: the same value always maps to the same `pseudonym:<hex>` string, and
    only the holder of the key can tell which value a pseudonym stands for."""

    def __init__(self, key: bytes):
        self._key = key

    def of(self, value: str) -> str:
        """The pseudonym of `value`; a pseudonym is its own pseudonym (erasure is idempotent)."""
        if value.startswith(PSEUDONYM_PREFIX):
            return value
        return PSEUDONYM_PREFIX + hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()[:32]

    def optional(self, value: str | None) -> str | None:
        return None if value is None else self.of(value)

    def deep(self, value: Any) -> Any:
        """`value` with every string inside it (keys excepted) replaced by its pseudonym."""
        if isinstance(value, str):
            return self.of(value)
        if isinstance(value, dict):
            return {k: self.deep(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.deep(v) for v in value]
        return value


def entry_hash(
    pseudonyms: Pseudonyms,
    seq: int,
    ts: int,
    actor: str,
    action: str,
    target: str | None,
    details: dict[str, Any],
    origin: str | None,
    prev_hash: str,
) -> str:
    """SHA-256 over a canonical JSON of the entry (personal fields as pseudonyms) and its parent's hash."""
    canonical = json.dumps(
        {
            "v": SCHEME,
            "seq": seq,
            "ts": ts,
            "action": action,
            "prev": prev_hash,
            "actor": pseudonyms.of(actor),
            "target": pseudonyms.optional(target),
            "origin": pseudonyms.optional(origin),
            "details": pseudonyms.deep(details),
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _entry(row: tuple[Any, ...]) -> AuditEntry:
    values = dict(zip(_COLUMNS, row))
    values["details"] = json.loads(values["details"])
    return AuditEntry(**values)


def _contains(engine: str, column: str) -> str:
    """SQL true when `column` contains the parameter as a substring (no LIKE wildcards)."""
    return f"strpos({column}, ?) > 0" if engine == "postgresql" else f"instr({column}, ?) > 0"


class AuditStore(Store):
    def __init__(self, api: ModuleApi, engine: str, pseudonyms: Pseudonyms):
        super().__init__(api)
        self.engine = engine
        self.pseudonyms = pseudonyms

    def open_txn(self, t: LoggingTransaction) -> None:
        """The first statement of every transaction that appends. On PostgreSQL it runs READ
        COMMITTED: under Synapse's REPEATABLE READ the snapshot is taken before the append lock is
        granted, so two concurrent appends would read the same parent and collide on `seq`."""
        if self.engine == "postgresql":
            t.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")

    def append_txn(
        self,
        t: LoggingTransaction,
        ts: int,
        actor: str,
        action: str,
        target: str | None,
        details: dict[str, Any],
        origin: str | None,
    ) -> int:
        """Appends one entry inside the caller's transaction (so it exists iff the action does);
        the transaction must have begun with `open_txn`."""
        if self.engine == "postgresql":
            t.execute(f"SELECT pg_advisory_xact_lock({_APPEND_LOCK_KEY})")
        t.execute("SELECT seq, hash FROM medchat_audit ORDER BY seq DESC LIMIT 1")
        last = t.fetchone()
        seq, prev_hash = (last[0] + 1, last[1]) if last else (1, GENESIS)
        digest = entry_hash(self.pseudonyms, seq, ts, actor, action, target, details, origin, prev_hash)
        t.execute(
            f"INSERT INTO medchat_audit ({', '.join(_COLUMNS)}, scheme) VALUES ({', '.join('?' for _ in _COLUMNS)}, ?)",
            (seq, ts, actor, action, target, json.dumps(details, sort_keys=True), origin, prev_hash, digest, SCHEME),
        )
        return seq

    async def append(
        self, ts: int, actor: str, action: str, target: str | None, details: dict[str, Any], origin: str | None
    ) -> int:
        def txn(t: LoggingTransaction) -> int:
            self.open_txn(t)
            return self.append_txn(t, ts, actor, action, target, details, origin)

        return await self.run("audit_append", txn)

    def pseudonymise_user_txn(self, t: LoggingTransaction, user_id: str) -> int:
        """Replaces `user_id` in every entry that mentions it by its pseudonym, in clear columns only.

        In such an entry the user's id (wherever it appears), the origin of their own actions and
        free text about them become pseudonyms; other people's ids stay, so the trail still says
        which admin decided what. The hashes are untouched and still verify. Returns the count.
        """
        t.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM medchat_audit WHERE actor = ? OR target = ? OR {_contains(self.engine, 'details')}",
            (user_id, user_id, user_id),
        )
        entries = [_entry(row) for row in t.fetchall()]
        pseudonym = self.pseudonyms.of(user_id)

        def scrub(value: Any, key: str | None = None) -> Any:
            if isinstance(value, str):
                return self.pseudonyms.of(value) if user_id in value or key in FREE_TEXT_KEYS else value
            if isinstance(value, dict):
                return {k: scrub(v, k) for k, v in value.items()}
            if isinstance(value, list):
                return [scrub(v, key) for v in value]
            return value

        for e in entries:
            own = e.actor == user_id
            t.execute(
                "UPDATE medchat_audit SET actor = ?, target = ?, origin = ?, details = ? WHERE seq = ?",
                (
                    pseudonym if own else e.actor,
                    pseudonym if e.target == user_id else e.target,
                    self.pseudonyms.optional(e.origin) if own else e.origin,
                    json.dumps(scrub(e.details), sort_keys=True),
                    e.seq,
                ),
            )
        return len(entries)

    def erasure_recorded_txn(self, t: LoggingTransaction, user_id: str) -> bool:
        t.execute(
            "SELECT 1 FROM medchat_audit WHERE action = ? AND actor = ?", (ERASURE_ACTION, self.pseudonyms.of(user_id))
        )
        return t.fetchone() is not None

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
            t.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM medchat_audit {where} ORDER BY seq DESC LIMIT ?", (*args, limit)
            )
            return [_entry(row) for row in t.fetchall()]

        return await self.run("audit_page", txn)

    async def chain(self, after: int, limit: int) -> list[AuditEntry]:
        """Entries in chain order, for verification in batches."""

        def txn(t: LoggingTransaction) -> list[AuditEntry]:
            t.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM medchat_audit WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
            )
            return [_entry(row) for row in t.fetchall()]

        return await self.run("audit_chain", txn)


def broken_link(
    pseudonyms: Pseudonyms, entries: Iterator[AuditEntry] | list[AuditEntry], expected_prev: str, expected_seq: int
) -> tuple[int | None, str, int]:
    """Checks a run of entries against the chain so far: (first broken seq or None, last hash, next seq)."""
    for entry in entries:
        recomputed = entry_hash(
            pseudonyms,
            entry.seq,
            entry.ts,
            entry.actor,
            entry.action,
            entry.target,
            entry.details,
            entry.origin,
            entry.prev_hash,
        )
        if entry.seq != expected_seq or entry.prev_hash != expected_prev or entry.hash != recomputed:
            return entry.seq, expected_prev, expected_seq
        expected_prev, expected_seq = entry.hash, entry.seq + 1
    return None, expected_prev, expected_seq


def legacy_hash(
    seq: int,
    ts: int,
    actor: str,
    action: str,
    target: str | None,
    details: dict[str, Any],
    origin: str | None,
    prev_hash: str,
) -> str:
    """Scheme 1 (migration 070): SHA-256 over the clear values; only the 080 upgrade (and its test) use it."""
    canonical = json.dumps(
        {
            "seq": seq,
            "ts": ts,
            "actor": actor,
            "action": action,
            "target": target,
            "details": details,
            "origin": origin,
            "prev": prev_hash,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def reseal_legacy_txn(t: LoggingTransaction, pseudonyms: Pseudonyms) -> int:
    """Migration 080's data step: re-hashes scheme-1 entries under scheme 2, in chain order.

    Only an intact scheme-1 chain is re-hashed: re-sealing a tampered one would launder the edit,
    so start-up stops instead and names the first broken entry. Returns the entries re-hashed.
    """
    t.execute(f"SELECT {', '.join(_COLUMNS)} FROM medchat_audit ORDER BY seq")
    entries = [_entry(row) for row in t.fetchall()]
    prev, new_prev = GENESIS, GENESIS
    for expected_seq, e in enumerate(entries, start=1):
        legacy = legacy_hash(e.seq, e.ts, e.actor, e.action, e.target, e.details, e.origin, e.prev_hash)
        if e.seq != expected_seq or e.prev_hash != prev or e.hash != legacy:
            raise RuntimeError(
                f"MedChat: the audit trail is broken at entry {e.seq}; refusing to re-seal it (migration 080)"
            )
        prev = e.hash
        new_hash = entry_hash(pseudonyms, e.seq, e.ts, e.actor, e.action, e.target, e.details, e.origin, new_prev)
        t.execute(
            "UPDATE medchat_audit SET prev_hash = ?, hash = ?, scheme = ? WHERE seq = ?",
            (new_prev, new_hash, SCHEME, e.seq),
        )
        new_prev = new_hash
    return len(entries)
