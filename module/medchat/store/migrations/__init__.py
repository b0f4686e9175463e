"""Versioned schema migrations for the module's tables.

Files are `NNN_name.sql` (any engine) or `NNN_name.postgresql.sql` / `NNN_name.sqlite.sql` (one
engine). Each version is applied once, in order, inside the start-up transaction; the applied
versions are recorded in `medchat_schema_versions`. A version may also have a data step in Python
(what SQL cannot do portably, or what needs the server's secrets), run right after its SQL in the
same transaction; `MedChatModule` passes them in.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from synapse.storage.database import LoggingTransaction

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent
_FILE_RE = re.compile(r"^(\d{3})_[a-z0-9_]+(?:\.(postgresql|sqlite))?\.sql$")
# Serialises concurrent start-ups (main process and workers) on PostgreSQL.
_ADVISORY_LOCK_KEY = 0x6D656463  # "medc"


def pending_files(engine: str, applied: set[int]) -> list[tuple[int, Path]]:
    """The migration files still to apply on `engine`, in version order."""
    chosen: dict[int, Path] = {}
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        match = _FILE_RE.match(path.name)
        if not match:
            raise RuntimeError(f"badly named migration file: {path.name}")
        version, only_for = int(match.group(1)), match.group(2)
        if only_for in (None, engine) and version not in applied:
            chosen.setdefault(version, path)
    return sorted(chosen.items())


def split_statements(sql: str) -> list[str]:
    """Splits a migration file on `;` at line ends; `--` comment lines are dropped."""
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return [stmt.strip() for stmt in "\n".join(lines).split(";\n") if stmt.strip().rstrip(";")]


DataStep = Callable[[LoggingTransaction], object]


def apply_migrations(txn: LoggingTransaction, engine: str, data_steps: Mapping[int, DataStep]) -> list[int]:
    """Brings the module's schema up to date; returns the versions applied now."""
    if engine == "postgresql":
        txn.execute(f"SELECT pg_advisory_xact_lock({_ADVISORY_LOCK_KEY})")
    else:
        # Python's sqlite3 opens a transaction only before DML, so DDL would otherwise commit
        # on its own and a failing migration would leave half its changes behind.
        txn.execute("BEGIN")
    txn.execute(
        "CREATE TABLE IF NOT EXISTS medchat_schema_versions"
        " (version INTEGER NOT NULL PRIMARY KEY, applied_ts BIGINT NOT NULL)"
    )
    txn.execute("SELECT version FROM medchat_schema_versions")
    applied = {row[0] for row in txn.fetchall()}
    done = []
    for version, path in pending_files(engine, applied):
        logger.info("MedChat: applying migration %s", path.name)
        for statement in split_statements(path.read_text()):
            txn.execute(statement.rstrip(";"))
        if version in data_steps:
            data_steps[version](txn)
        txn.execute(
            "INSERT INTO medchat_schema_versions (version, applied_ts) VALUES (?, ?)",
            (version, int(time.time() * 1000)),
        )
        done.append(version)
    return done
