"""Directory queries over medchat_profiles: filtered listing, ranked search, institution counts.

Search uses the engine's own text index (migration 003): tsvectors with GIN on PostgreSQL,
FTS5 on SQLite. Both tokenise on non-alphanumerics and match every query word as a
prefix, case-insensitively.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from synapse.module_api import ModuleApi
from synapse.storage.database import LoggingTransaction
from synapse.storage.engines import BaseDatabaseEngine

from medchat.models import Profile
from medchat.store._base import Store
from medchat.store.profiles import COLUMNS_SQL, row_to_profile
from medchat.synapse.sql import in_list, is_postgres

_SORT_KEY = "lower(coalesce(p.display_name, p.user_id))"
_WORD_RE = re.compile(r"[^\W_]+")
_MAX_WORDS = 10
# Per rank tier, how many matches are sorted at most (Synapse's own directory search ranks its
# first 10,000): bounds the cost of one-letter or "hospital"-like queries on a large directory.
_TIER_CANDIDATES = 5000
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

    def where(self, engine: BaseDatabaseEngine) -> tuple[str, list[Any]]:
        levels, args = in_list(engine, "p.verification_level", self.levels)
        clauses = ["p.hidden = ?", levels]
        args = [False, *args]
        for column in ("role", "institution", "specialization"):
            value = getattr(self, column)
            if value is not None:
                clauses.append(f"p.{column} = ?")
                args.append(value)
        for users, negative in ((self.only_users, False), (self.except_users, True)):
            if users is not None:
                clause, user_args = in_list(engine, "p.user_id", users, negative=negative)
                clauses.append(clause)
                args.extend(user_args)
        return " AND ".join(clauses), args


def query_words(q: str) -> list[str]:
    """The words of a search, lower-cased, as the indexes tokenise them."""
    return _WORD_RE.findall(q.lower())[:_MAX_WORDS]


class DirectoryStore(Store):
    def __init__(self, api: ModuleApi, engine: BaseDatabaseEngine):
        super().__init__(api)
        self._engine = engine

    async def page(
        self, filters: Filters, after: tuple[str, str] | None, limit: int
    ) -> tuple[list[Profile], tuple[str, str] | None]:
        """One page in name order, and the position after it (None on the last page).

        Positions are (sort key, user id) pairs, so pages stay stable while users join or leave.
        """
        where, args = filters.where(self._engine)
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

        return await self.run("directory_page", txn)

    async def search(self, q: str, filters: Filters, offset: int, limit: int) -> list[Profile]:
        """Profiles matching every word of `q` as a prefix, best first.

        Rank tiers, each in name order: (0) the name starts with `q` — so an exact name comes
        first —, (1) every word matches the name or username, (2) the rest (role, institution,
        specialization). On PostgreSQL each tier is its own index-friendly query, cut at
        offset + limit rows; tiers 1 and 2 sort at most _TIER_CANDIDATES matches each. A query of
        one-letter words only is a type-ahead for names: tier 0 alone.
        """
        words = query_words(q)
        if not words:
            return []
        phrase = q.strip().lower()
        where, args = filters.where(self._engine)
        # One-letter words match a fifth of any directory; alone, they mean "names starting with".
        if all(len(w) == 1 for w in words):
            sql = f"SELECT {_COLUMNS} FROM medchat_profiles p WHERE substr({_SORT_KEY}, 1, ?) = ? AND {where} ORDER BY {_SORT_KEY}, p.user_id LIMIT ? OFFSET ?"
            return await self._select("directory_search", sql, [len(phrase), phrase, *args, limit, offset])
        if is_postgres(self._engine):
            all_words = " & ".join(f"'{w}':*" for w in words)
            upper = phrase[:-1] + chr(min(ord(phrase[-1]) + 1, 0x10FFFF))
            tiers = [
                (f"{_SORT_KEY} >= ? AND {_SORT_KEY} < ?", [phrase, upper]),
                (
                    f"p.name_vector @@ to_tsquery('simple', ?) AND NOT ({_SORT_KEY} >= ? AND {_SORT_KEY} < ?)",
                    [all_words, phrase, upper],
                ),
                (
                    "p.search_vector @@ to_tsquery('simple', ?) AND NOT p.name_vector @@ to_tsquery('simple', ?)",
                    [all_words, all_words],
                ),
            ]
            parts, params = [], []
            for tier, (condition, condition_args) in enumerate(tiers):
                select = f"SELECT {_COLUMNS}, {tier} AS tier, {_SORT_KEY} AS sort_key FROM medchat_profiles p WHERE {condition} AND {where}"
                if tier == 0:  # a range of the name-order index: already sorted
                    parts.append(f"({select} ORDER BY sort_key, p.user_id LIMIT ?)")
                    params += [*condition_args, *args, offset + limit]
                else:
                    # Text matches correlate with name order in ways the planner cannot see, so
                    # walking the name-order index can scan the whole table; collect matches by
                    # text index instead, at most _TIER_CANDIDATES, then sort them.
                    parts.append(f"(SELECT * FROM ({select} LIMIT ?) m ORDER BY sort_key, user_id LIMIT ?)")
                    params += [*condition_args, *args, _TIER_CANDIDATES, offset + limit]
            sql = " UNION ALL ".join(parts) + " ORDER BY tier, sort_key, user_id LIMIT ? OFFSET ?"
            params += [limit, offset]
            return await self._select("directory_search", sql, params, extra_columns=2)
        match = " ".join(f'"{w}"*' for w in words)
        sql = (
            f"SELECT {_COLUMNS} FROM medchat_profiles_fts f JOIN medchat_profiles p ON p.rowid = f.rowid"
            f" WHERE medchat_profiles_fts MATCH ? AND {where}"
            f" ORDER BY CASE WHEN substr({_SORT_KEY}, 1, ?) = ? THEN 0"
            " WHEN p.rowid IN (SELECT rowid FROM medchat_profiles_fts WHERE medchat_profiles_fts MATCH ?) THEN 1"
            f" ELSE 2 END, {_SORT_KEY}, p.user_id LIMIT ? OFFSET ?"
        )
        params = [match, *args, len(phrase), phrase, f"{{name username}} : ({match})", limit, offset]
        return await self._select("directory_search", sql, params)

    async def institutions(self, filters: Filters) -> list[tuple[str, int]]:
        """(institution, listed members), largest first."""
        where, args = filters.where(self._engine)
        sql = (
            "SELECT p.institution, COUNT(*) FROM medchat_profiles p"
            f" WHERE p.institution IS NOT NULL AND {where}"
            " GROUP BY p.institution ORDER BY COUNT(*) DESC, p.institution"
        )

        def txn(t: LoggingTransaction) -> list[tuple[str, int]]:
            t.execute(sql, args)
            return [(row[0], int(row[1])) for row in t.fetchall()]

        return await self.run("directory_institutions", txn)

    async def visibility(self, user_ids: Collection[str]) -> dict[str, tuple[bool, str]]:
        """user id → (hidden, verification level), for users that have a MedChat profile."""

        def txn(t: LoggingTransaction) -> dict[str, tuple[bool, str]]:
            clause, args = in_list(t.database_engine, "user_id", user_ids)
            t.execute(f"SELECT user_id, hidden, verification_level FROM medchat_profiles WHERE {clause}", args)
            return {row[0]: (bool(row[1]), row[2]) for row in t.fetchall()}

        return await self.run("directory_visibility", txn)

    async def _select(self, name: str, sql: str, args: list[Any], extra_columns: int = 0) -> list[Profile]:
        """Profiles from a SELECT of the profile columns (plus `extra_columns` after them)."""

        def txn(t: LoggingTransaction) -> list[Profile]:
            t.execute(sql, args)
            return [row_to_profile(row[: len(row) - extra_columns]) for row in t.fetchall()]

        return await self.run(name, txn)
