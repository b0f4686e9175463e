"""medchat_institution_spaces: which Matrix space is each institution's (Matrix has no index)."""

from __future__ import annotations

from synapse.storage.database import LoggingTransaction

from medchat.store._base import Store, first_value


class SpaceStore(Store):
    async def space_of(self, institution: str) -> str | None:
        def txn(t: LoggingTransaction) -> str | None:
            t.execute("SELECT space_id FROM medchat_institution_spaces WHERE institution = ?", (institution,))
            row = t.fetchone()
            return row[0] if row else None

        return await self.run("space_of", txn)

    async def claim(self, institution: str, space_id: str, now_ms: int) -> str:
        """Records `space_id` as the institution's unless one is recorded already; returns the
        recorded one (the first claim wins, across processes)."""

        def txn(t: LoggingTransaction) -> str:
            t.execute(
                "INSERT INTO medchat_institution_spaces (institution, space_id, created_ts) VALUES (?, ?, ?)"
                " ON CONFLICT (institution) DO NOTHING",
                (institution, space_id, now_ms),
            )
            t.execute("SELECT space_id FROM medchat_institution_spaces WHERE institution = ?", (institution,))
            return first_value(t)

        return await self.run("claim_space", txn)

    async def institution_known(self, institution: str) -> bool:
        """An institution exists once a profile names it or it has a space."""

        def txn(t: LoggingTransaction) -> bool:
            t.execute(
                "SELECT 1 FROM medchat_profiles WHERE institution = ?"
                " UNION ALL SELECT 1 FROM medchat_institution_spaces WHERE institution = ?",
                (institution, institution),
            )
            return t.fetchone() is not None

        return await self.run("institution_known", txn)
