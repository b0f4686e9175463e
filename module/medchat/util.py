"""Small helpers shared by the handlers that are about Twisted, not about any one feature."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from synapse.util.async_helpers import yieldable_gather_results


async def concurrently(*calls: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Independent lookups at once, so their database round trips overlap (Synapse's own gather,
    which keeps log contexts right); the first failure is raised as itself."""
    return await yieldable_gather_results(lambda call: call(), calls)
