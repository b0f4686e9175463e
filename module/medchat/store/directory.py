"""Directory queries over medchat_profiles: filtered listing, ranked search, institution counts.

Search uses the engine's own text index (migration 003): a weighted tsvector with GIN on
PostgreSQL, FTS5 on SQLite. Both tokenise on non-alphanumerics and match every query word as a
prefix, case-insensitively.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from synapse.module_api import ModuleApi
from synapse.storage.database import LoggingTransaction

from medchat.models import Profile
from medchat.store.profiles import COLUMNS_SQL, row_to_profile

_SORT_KEY = "lower(coalesce(p.display_name, p.user_id))"
_WORD_RE = re.compile(r"[^\W_]+")
_MAX_WORDS = 10
_COLUMNS = ", ".join(f"p.{c.strip()}" for c in COLUMNS_SQL.split(","))


@dataclass(frozen=True)
class Filters:
    """What a directory query may return. `levels` already combines visibility and filters."""

    levels: tuple[str, ...]
    role: str | None = None
    institution: str | None = None
    specialization: str | None = None
    only_users: Collection[str] | None = None
    except_users: Collection[str] | None = None

    def where(self) -> tuple[str, list[Any]]:
        clauses = ["p.hidden = ?", f"p.verification_level IN ({_marks(self.levels)})"]
        args: list[Any] = [False, *self.levels]
        for column in ("role", "institution", "specialization"):
            value = getattr(self, column)
            if value is not None:
                clauses.append(f"p.{column} = ?")
                args.append(value)
        if self.only_users is not None:
            clauses.append(f"p.user_id IN ({_marks(self.only_users)})" if self.only_users else "1 = 0")
            args.extend(self.only_users)
        if self.except_users:
            clauses.append(f"p.user_id NOT IN ({_marks(self.except_users)})")
            args.extend(self.except_users)
        return " AND ".join(clauses), args


def _marks(values: Collection[Any]) -> str:
    return ", ".join("?" for _ in values)


def query_words(q: str) -> list[str]:
    """The words of a search, lower-cased, as the indexes tokenise them."""
    return _WORD_RE.findall(q.lower())[:_MAX_WORDS]


class DirectoryStore:
    def __init__(self, api: ModuleApi, engine: str):
        self._api = api
        self._engine = engine

    async def page(
        self, filters: Filters, after: tuple[str, str] | None, limit: int
    ) -> tuple[list[Profile], tuple[str, str] | None]:
        """One page in name order, and the position after it (None on the last page).

        Positions are (sort key, user id) pairs, so pages stay stable while users join or leave.
        """
        where, args = filters.where()
        if after is not None:
            where += f" AND ({_SORT_KEY}, p.user_id) > (?, ?)"
            args.extend(after)
        sql = f"SELECT {_COLUMNS}, {_SORT_KEY} FROM medchat_profiles p WHERE {where} ORDER BY {_SORT_KEY}, p.user_id LIMIT ?"

        def txn(t: LoggingTransaction) -> tuple[list[Profile], tuple[str, str] | None]:
            t.execute(sql, [*args, limit + 1])
            rows = t.fetchall()
            profiles = [row_to_profile(row[:-1]) for row in rows[:limit]]
            more = len(rows) > limit
            return profiles, (rows[limit - 1][-1], profiles[-1].user_id) if more else None

        return await self._api.run_db_interaction("medchat_directory_page", txn)

    async def search(self, q: str, filters: Filters, offset: int, limit: int) -> list[Profile]:
        """Profiles matching every word of `q` as a prefix, best first.

        Rank: exact full name, then names starting with `q`, then by text relevance (name over
        username over role/institution/specialization), then name order.
        """
        words = query_words(q)
        if not words:
            return []
        phrase = q.strip().lower()
        where, args = filters.where()
        tier = "CASE WHEN lower(p.display_name) = ? THEN 0 WHEN substr(lower(p.display_name), 1, ?) = ? THEN 1 ELSE 2 END"
        tier_args = [phrase, len(phrase), phrase]
        if self._engine == "postgresql":
            tsquery = " & ".join(f"'{w}':*" for w in words)
            sql = (
                f"SELECT {_COLUMNS} FROM medchat_profiles p"
                f" WHERE p.search_vector @@ to_tsquery('simple', ?) AND {where}"
                f" ORDER BY {tier}, ts_rank(p.search_vector, to_tsquery('simple', ?)) DESC, {_SORT_KEY}, p.user_id"
                " LIMIT ? OFFSET ?"
            )
            params = [tsquery, *args, *tier_args, tsquery, limit, offset]
        else:
            match = " ".join(f'"{w}"*' for w in words)
            sql = (
                f"SELECT {_COLUMNS} FROM medchat_profiles_fts f JOIN medchat_profiles p ON p.rowid = f.rowid"
                f" WHERE medchat_profiles_fts MATCH ? AND {where}"
                f" ORDER BY {tier}, bm25(medchat_profiles_fts, 10.0, 5.0, 1.0, 1.0, 1.0), {_SORT_KEY}, p.user_id"
                " LIMIT ? OFFSET ?"
            )
            params = [match, *args, *tier_args, limit, offset]
        return await self._select("medchat_directory_search", sql, params)

    async def institutions(self, filters: Filters) -> list[tuple[str, int]]:
        """(institution, listed members), largest first."""
        where, args = filters.where()
        sql = (
            "SELECT p.institution, COUNT(*) FROM medchat_profiles p"
            f" WHERE p.institution IS NOT NULL AND {where}"
            " GROUP BY p.institution ORDER BY COUNT(*) DESC, p.institution"
        )

        def txn(t: LoggingTransaction) -> list[tuple[str, int]]:
            t.execute(sql, args)
            return [(row[0], int(row[1])) for row in t.fetchall()]

        return await self._api.run_db_interaction("medchat_directory_institutions", txn)

    async def visibility(self, user_ids: Collection[str]) -> dict[str, tuple[bool, str]]:
        """user id → (hidden, verification level), for users that have a MedChat profile."""

        def txn(t: LoggingTransaction) -> dict[str, tuple[bool, str]]:
            t.execute(
                f"SELECT user_id, hidden, verification_level FROM medchat_profiles WHERE user_id IN ({_marks(user_ids)})",
                list(user_ids),
            )
            return {row[0]: (bool(row[1]), row[2]) for row in t.fetchall()}

        return await self._api.run_db_interaction("medchat_directory_visibility", txn)

    async def _select(self, name: str, sql: str, args: list[Any]) -> list[Profile]:
        def txn(t: LoggingTransaction) -> list[Profile]:
            t.execute(sql, args)
            return [row_to_profile(row) for row in t.fetchall()]

        return await self._api.run_db_interaction(name, txn)

