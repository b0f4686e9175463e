"""medchat_contacts and medchat_contact_requests: each user's contact list and pending requests."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from synapse.storage.database import LoggingTransaction
from synapse.storage.engines import BaseDatabaseEngine

from medchat.models import localpart
from medchat.store._base import Store
from medchat.store.notifications import add_notification_txn
from medchat.synapse.sql import directory_name_join, in_list, is_postgres

PENDING, DECLINED = "pending", "declined"


@dataclass(frozen=True)
class ContactRow:
    """A contact with the medical fields of their profile (None for users without one)."""

    contact_id: str
    nickname: str | None
    is_favorite: bool
    created_ts: int
    updated_ts: int
    role: str | None
    institution: str | None
    specialization: str | None


@dataclass(frozen=True)
class ContactFilters:
    favorite: bool | None = None
    role: str | None = None
    institution: str | None = None
    specialization: str | None = None
    # Blocking lives in account data; the caller passes the blocked ids and whether to keep them.
    blocked: bool | None = None
    blocked_ids: Collection[str] = ()


@dataclass(frozen=True)
class ContactRequest:
    requester_id: str
    target_id: str
    status: str
    message: str | None
    nickname: str | None
    created_ts: int
    updated_ts: int


_CONTACT_COLUMNS = (
    "c.contact_id, c.nickname, c.is_favorite, c.created_ts, c.updated_ts, p.role, p.institution, p.specialization"
)
_CONTACT_FROM = " FROM medchat_contacts c LEFT JOIN medchat_profiles p ON p.user_id = c.contact_id"
_CONTACT_SQL = f"SELECT {_CONTACT_COLUMNS}{_CONTACT_FROM}"
_REQUEST_COLUMNS = ("requester_id", "target_id", "status", "message", "nickname", "created_ts", "updated_ts")


def _contains_sql(engine: BaseDatabaseEngine, text: str) -> str:
    """`text`, lower-cased as both engines do (ASCII letters only, Synapse's C locale), contains `?`."""
    return f"strpos(lower({text}), ?) > 0" if is_postgres(engine) else f"instr(lower({text}), ?) > 0"


def _non_ascii_sql(engine: BaseDatabaseEngine, text: str) -> str:
    """`text` has a character outside ASCII (more bytes than characters)."""
    return (
        f"octet_length({text}) <> char_length({text})"
        if is_postgres(engine)
        else f"length(CAST({text} AS BLOB)) <> length({text})"
    )


def _localpart_sql(engine: BaseDatabaseEngine, user_id: str) -> str:
    """models.localpart in SQL."""
    if is_postgres(engine):
        return f"split_part(substr({user_id}, 2), ':', 1)"
    return f"substr({user_id}, 2, instr({user_id}, ':') - 2)"


def matches(needle: str, texts: Iterable[str | None]) -> bool:
    """The `?q=` rule: the case-folded needle is part of one of the texts, case-folded."""
    return any(needle in (text or "").casefold() for text in texts)


def _contact(row: tuple[Any, ...]) -> ContactRow:
    return ContactRow(row[0], row[1], bool(row[2]), *row[3:])


def _insert_contact(t: LoggingTransaction, owner_id: str, contact_id: str, nickname: str | None, now: int) -> bool:
    t.execute(
        "INSERT INTO medchat_contacts (owner_id, contact_id, nickname, is_favorite, created_ts, updated_ts)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (owner_id, contact_id) DO NOTHING",
        (owner_id, contact_id, nickname, False, now, now),
    )
    return t.rowcount == 1


def _filter_sql(
    engine: BaseDatabaseEngine, owner_id: str, filters: ContactFilters, after: str | None
) -> tuple[str, list[Any]]:
    """The WHERE clause (and its arguments) of the owner's contacts the filters keep, after `after`."""
    where = " WHERE c.owner_id = ?"
    args: list[Any] = [owner_id]
    for column, value in (
        ("c.is_favorite", filters.favorite),
        ("p.role", filters.role),
        ("p.institution", filters.institution),
        ("p.specialization", filters.specialization),
    ):
        if value is not None:
            where += f" AND {column} = ?"
            args.append(value)
    if filters.blocked is not None:
        clause, ids = in_list(engine, "c.contact_id", filters.blocked_ids, negative=not filters.blocked)
        where += f" AND {clause}"
        args += ids
    if after is not None:
        where += " AND c.contact_id > ?"
        args.append(after)
    return where, args


class ContactStore(Store):
    # --- contacts -----------------------------------------------------------------------------

    async def get(self, owner_id: str, contact_id: str) -> ContactRow | None:
        def txn(t: LoggingTransaction) -> ContactRow | None:
            t.execute(f"{_CONTACT_SQL} WHERE c.owner_id = ? AND c.contact_id = ?", (owner_id, contact_id))
            row = t.fetchone()
            return _contact(row) if row else None

        return await self.run("get_contact", txn)

    async def add(self, owner_id: str, contact_id: str, nickname: str | None, now: int) -> bool:
        """Adds the contact unless already there; True if this call added it."""
        return await self.run("add_contact", _insert_contact, owner_id, contact_id, nickname, now)

    async def update(self, owner_id: str, contact_id: str, changes: dict[str, Any], now: int) -> bool:
        """Sets `nickname` and/or `is_favorite`; False if there is no such contact."""
        fields = [f for f in ("nickname", "is_favorite") if f in changes]
        assignments = ", ".join(f"{f} = ?" for f in [*fields, "updated_ts"])

        def txn(t: LoggingTransaction) -> bool:
            t.execute(
                f"UPDATE medchat_contacts SET {assignments} WHERE owner_id = ? AND contact_id = ?",
                (*(changes[f] for f in fields), now, owner_id, contact_id),
            )
            return t.rowcount == 1

        return await self.run("update_contact", txn)

    async def delete(self, owner_id: str, contact_id: str) -> bool:
        def txn(t: LoggingTransaction) -> bool:
            t.execute("DELETE FROM medchat_contacts WHERE owner_id = ? AND contact_id = ?", (owner_id, contact_id))
            return t.rowcount == 1

        return await self.run("delete_contact", txn)

    async def contacts_of(
        self, owner_id: str, filters: ContactFilters, after: str | None, limit: int
    ) -> list[ContactRow]:
        """Up to `limit` of the owner's contacts in user-id order, after the cursor `after`."""

        def txn(t: LoggingTransaction) -> list[ContactRow]:
            where, args = _filter_sql(t.database_engine, owner_id, filters, after)
            t.execute(f"{_CONTACT_SQL}{where} ORDER BY c.contact_id LIMIT ?", (*args, limit))
            return [_contact(row) for row in t.fetchall()]

        return await self.run("list_contacts", txn)

    async def matching(
        self, owner_id: str, filters: ContactFilters, q: str, after: str | None, limit: int
    ) -> list[ContactRow]:
        """Up to `limit` of the owner's contacts whose nickname, display name (Synapse's user
        directory) or username contains `q` case-insensitively (`matches`), in user-id order after
        `after`.

        One query walks the owner's rows by the primary key (owner_id, contact_id), which also gives
        the order, and looks each name up by user_directory's unique index. Both engines lower-case
        ASCII only (Synapse's databases use the C locale), so SQL decides for ASCII texts and passes
        on every text with other characters; Python's case folding then has the last word on those,
        and a batch it thins is followed by the next one.
        """
        needle = q.casefold()

        def txn(t: LoggingTransaction, after: str | None, want: int) -> list[tuple[ContactRow, str | None]]:
            engine = t.database_engine
            join, name = directory_name_join("c.contact_id")
            where, args = _filter_sql(engine, owner_id, filters, after)
            texts = ("c.nickname", name, _localpart_sql(engine, "c.contact_id"))
            tests = []
            for text in texts:
                if needle.isascii():
                    tests.append(f"{_contains_sql(engine, text)} OR {_non_ascii_sql(engine, text)}")
                    args.append(needle)
                else:  # an ASCII text never folds to a non-ASCII needle
                    tests.append(_non_ascii_sql(engine, text))
            t.execute(
                f"SELECT {_CONTACT_COLUMNS}, {name}{_CONTACT_FROM}{join}{where} AND ({' OR '.join(tests)}) ORDER BY c.contact_id LIMIT ?",
                (*args, want),
            )
            return [(_contact(row[:-1]), row[-1]) for row in t.fetchall()]

        found: list[ContactRow] = []
        while True:
            batch = await self.run("match_contacts", txn, after, limit)
            found += [r for r, name in batch if matches(needle, (r.nickname, name, localpart(r.contact_id)))]
            if len(batch) < limit or len(found) >= limit:
                return found[:limit]
            after = batch[-1][0].contact_id

    async def favorites(self, owner_id: str) -> list[str]:
        def txn(t: LoggingTransaction) -> list[str]:
            t.execute(
                "SELECT contact_id FROM medchat_contacts WHERE owner_id = ? AND is_favorite = ?", (owner_id, True)
            )
            return [row[0] for row in t.fetchall()]

        return await self.run("favorite_contacts", txn)

    # --- requests -----------------------------------------------------------------------------

    async def get_request(self, requester_id: str, target_id: str) -> ContactRequest | None:
        def txn(t: LoggingTransaction) -> ContactRequest | None:
            t.execute(
                f"SELECT {', '.join(_REQUEST_COLUMNS)} FROM medchat_contact_requests WHERE requester_id = ? AND target_id = ?",
                (requester_id, target_id),
            )
            row = t.fetchone()
            return ContactRequest(*row) if row else None

        return await self.run("get_contact_request", txn)

    async def put_request(
        self, requester_id: str, target_id: str, message: str | None, nickname: str | None, now: int
    ) -> bool:
        """Creates the pending request, or renews a declined one; False if one is already pending."""

        def txn(t: LoggingTransaction) -> bool:
            t.execute(
                "INSERT INTO medchat_contact_requests (requester_id, target_id, status, message, nickname, created_ts, updated_ts)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (requester_id, target_id) DO UPDATE"
                " SET status = excluded.status, message = excluded.message, nickname = excluded.nickname,"
                " created_ts = excluded.created_ts, updated_ts = excluded.updated_ts"
                " WHERE medchat_contact_requests.status <> ?",
                (requester_id, target_id, PENDING, message, nickname, now, now, PENDING),
            )
            if t.rowcount != 1:
                return False
            add_notification_txn(
                t, target_id, "contact_request", {"requester_id": requester_id, "message": message}, now
            )
            return True

        return await self.run("put_contact_request", txn)

    async def list_requests(self, user_id: str, incoming: bool, after: str | None, limit: int) -> list[ContactRequest]:
        """Pending requests to (incoming) or from the user, ordered by the other side's id."""
        mine, other = ("target_id", "requester_id") if incoming else ("requester_id", "target_id")
        sql = f"SELECT {', '.join(_REQUEST_COLUMNS)} FROM medchat_contact_requests WHERE {mine} = ? AND status = ?"
        args: list[Any] = [user_id, PENDING]
        if after is not None:
            sql += f" AND {other} > ?"
            args.append(after)
        sql += f" ORDER BY {other} LIMIT ?"

        def txn(t: LoggingTransaction) -> list[ContactRequest]:
            t.execute(sql, (*args, limit))
            return [ContactRequest(*row) for row in t.fetchall()]

        return await self.run("list_contact_requests", txn)

    async def accept_request(self, requester_id: str, target_id: str, nickname: str | None, now: int) -> bool:
        """Turns a pending request into a contact on both sides, in one transaction."""

        def txn(t: LoggingTransaction) -> bool:
            t.execute(
                "SELECT nickname FROM medchat_contact_requests WHERE requester_id = ? AND target_id = ? AND status = ?",
                (requester_id, target_id, PENDING),
            )
            row = t.fetchone()
            if row is None:
                return False
            t.execute(
                "DELETE FROM medchat_contact_requests WHERE requester_id = ? AND target_id = ?",
                (requester_id, target_id),
            )
            _insert_contact(t, requester_id, target_id, row[0], now)
            _insert_contact(t, target_id, requester_id, nickname, now)
            return True

        return await self.run("accept_contact_request", txn)

    async def set_request_status(self, requester_id: str, target_id: str, status: str, now: int) -> bool:
        """Moves a pending request to `status`; False if none was pending."""

        def txn(t: LoggingTransaction) -> bool:
            t.execute(
                "UPDATE medchat_contact_requests SET status = ?, updated_ts = ? WHERE requester_id = ? AND target_id = ? AND status = ?",
                (status, now, requester_id, target_id, PENDING),
            )
            return t.rowcount == 1

        return await self.run("decide_contact_request", txn)

    async def delete_request(self, requester_id: str, target_id: str) -> bool:
        def txn(t: LoggingTransaction) -> bool:
            t.execute(
                "DELETE FROM medchat_contact_requests WHERE requester_id = ? AND target_id = ? AND status = ?",
                (requester_id, target_id, PENDING),
            )
            return t.rowcount == 1

        return await self.run("delete_contact_request", txn)
