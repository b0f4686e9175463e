"""The base of the module's stores: one typed way to run a transaction on Synapse's database pool
(`ModuleApi.run_db_interaction`), naming it `medchat_<name>` so the module's transactions stand
apart in Synapse's database metrics and logs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from synapse.module_api import ModuleApi
from synapse.storage.database import LoggingTransaction

P = ParamSpec("P")
T = TypeVar("T")


class Store:
    def __init__(self, api: ModuleApi):
        self._api = api

    async def run(
        self, name: str, func: Callable[Concatenate[LoggingTransaction, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        return await self._api.run_db_interaction(f"medchat_{name}", func, *args, **kwargs)


def first_value(t: LoggingTransaction) -> Any:
    """The first column of the one row a statement that always yields a row returned (a count, an
    upsert's RETURNING, a row just written)."""
    row = t.fetchone()
    if row is None:
        raise RuntimeError("the statement returned no row")
    return row[0]
