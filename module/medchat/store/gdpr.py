"""What the module's tables hold about a person, table by table: exported on request, removed on
erasure. Every `medchat_` table is named here (tests/test_gdpr.py checks the database against it),
so a new table cannot be forgotten by either."""

from __future__ import annotations

from typing import Any

from synapse.storage.database import LoggingTransaction

from medchat.store.audit import ERASURE_ACTION, AuditStore

# The person's own rows, found by these columns (both directions for contacts and requests):
# exported, and deleted on erasure.
OWN_ROWS: dict[str, tuple[str, ...]] = {
    "medchat_profiles": ("user_id",),
    "medchat_verification_requests": ("user_id",),
    "medchat_verification_log": ("user_id",),
    "medchat_contacts": ("owner_id", "contact_id"),
    "medchat_contact_requests": ("requester_id", "target_id"),
    "medchat_notifications": ("user_id",),
    "medchat_dismissed_notifications": ("user_id",),
    "medchat_delivery": ("user_id",),
    "medchat_expiring_messages": ("sender",),
}
# Other people's rows naming the person as the one who acted (a verifier deciding their request):
# kept, since they are the others' history, with the name replaced by the audit pseudonym.
ACTOR_COLUMNS: dict[str, tuple[str, ...]] = {
    "medchat_verification_requests": ("decided_by",),
    "medchat_verification_log": ("actor",),
}
# Other people's notifications whose payload names the person (a contact request from them, a
# decision by them): deleted, a notification about an erased account means nothing.
MENTIONING_NOTIFICATIONS = "medchat_notifications"
# Kept and pseudonymised (medchat.store.audit), or holding nothing personal.
AUDIT_TABLE = "medchat_audit"
NOT_PERSONAL = ("medchat_schema_versions", "medchat_institution_spaces")  # institution → space id
# SQLite's full-text index of medchat_profiles (and FTS5's shadow tables), kept by triggers.
DERIVED_PREFIX = "medchat_profiles_fts"
# PostgreSQL's generated search vectors of medchat_profiles: not exported.
DERIVED_COLUMNS = frozenset({"name_vector", "field_vector", "search_vector"})


def planned(table: str) -> bool:
    """Whether erasure and export know what `table` holds."""
    return (
        table in OWN_ROWS
        or table in ACTOR_COLUMNS
        or table in (AUDIT_TABLE, *NOT_PERSONAL)
        or table.startswith(DERIVED_PREFIX)
    )


def _own_where(table: str) -> str:
    return " OR ".join(f"{column} = ?" for column in OWN_ROWS[table])


def own_rows_txn(t: LoggingTransaction, user_id: str) -> dict[str, list[dict[str, Any]]]:
    """The person's own rows of every table, as column → value objects."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for table, columns in OWN_ROWS.items():
        t.execute(f"SELECT * FROM {table} WHERE {_own_where(table)}", (user_id,) * len(columns))
        names = [d[0] for d in t.description or ()]
        rows[table] = [{k: v for k, v in zip(names, row) if k not in DERIVED_COLUMNS} for row in t.fetchall()]
    return rows


def erase_txn(
    t: LoggingTransaction,
    engine: str,
    audit: AuditStore,
    user_id: str,
    now_ms: int,
    origin: str | None,
    details: dict[str, Any],
) -> bool:
    """Removes everything the module holds about `user_id`, in the caller's one transaction.

    Own rows are deleted, other people's rows naming them as actor keep a pseudonym, notifications
    naming them go, audit entries are pseudonymised, and a `gdpr.erasure` entry (by pseudonym) is
    appended the first time. Safe to run again: returns whether this run recorded the erasure.
    """
    audit.open_txn(t)
    for table, columns in OWN_ROWS.items():
        t.execute(f"DELETE FROM {table} WHERE {_own_where(table)}", (user_id,) * len(columns))
    contains = "strpos(payload, ?) > 0" if engine == "postgresql" else "instr(payload, ?) > 0"
    t.execute(f"DELETE FROM {MENTIONING_NOTIFICATIONS} WHERE {contains}", (user_id,))
    pseudonym = audit.pseudonyms.of(user_id)
    for table, columns in ACTOR_COLUMNS.items():
        for column in columns:
            t.execute(f"UPDATE {table} SET {column} = ? WHERE {column} = ?", (pseudonym, user_id))
    if engine == "sqlite":
        # FTS5 keeps deleted terms in old segments until they are merged: merge them now.
        t.execute(f"INSERT INTO {DERIVED_PREFIX} ({DERIVED_PREFIX}) VALUES ('optimize')")
    audit.pseudonymise_user_txn(t, user_id)
    if audit.erasure_recorded_txn(t, user_id):
        return False
    audit.append_txn(t, now_ms, pseudonym, ERASURE_ACTION, None, details, audit.pseudonyms.optional(origin))
    return True
