"""Small helpers shared by the handlers that are about Twisted, not about any one feature."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar, cast

from synapse.logging.context import make_deferred_yieldable, run_in_background
from synapse.util.async_helpers import ObservableDeferred, yieldable_gather_results

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


async def concurrently(*calls: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Independent lookups at once, so their database round trips overlap (Synapse's own gather,
    which keeps log contexts right); the first failure is raised as itself. One call (or none) is
    simply awaited: a socket's frames for one message must not pay for a gather."""
    if len(calls) <= 1:
        return [await call() for call in calls]
    return await yieldable_gather_results(lambda call: call(), calls)


class Shared(Generic[K, V]):
    """One computation per key for every caller that asks while it runs or up to `keep_ms` after
    it finished: the N sockets that receive one event read what it needs once. A failure is not
    kept (the next caller computes afresh). Callers share the value, so they must not change it.
    """

    def __init__(self, now_ms: Callable[[], int], keep_ms: int):
        self._now_ms = now_ms
        self._keep_ms = keep_ms
        # Insertion order is age order: expired entries are dropped from the front.
        self._entries: dict[K, tuple[int, ObservableDeferred[V]]] = {}

    async def get(self, key: K, compute: Callable[[], Awaitable[V]]) -> V:
        now = self._now_ms()
        entry = self._entries.get(key)
        if entry is None or (entry[1].has_called() and now - entry[0] > self._keep_ms):
            self._drop_expired(now)
            shared: ObservableDeferred[V] = ObservableDeferred(run_in_background(compute), consumeErrors=True)
            entry = self._entries[key] = (now, shared)

            def forget(failure: Any) -> None:
                if self._entries.get(key) is entry:
                    del self._entries[key]

            shared.observe().addErrback(forget)
        elif entry[1].has_succeeded():  # the common case: the first socket read it, the rest take it
            return cast(V, entry[1].get_result())
        return await make_deferred_yieldable(entry[1].observe())

    def _drop_expired(self, now: int) -> None:
        while self._entries:
            oldest = next(iter(self._entries))
            created, shared = self._entries[oldest]
            if now - created <= self._keep_ms or not shared.has_called():
                return
            del self._entries[oldest]
