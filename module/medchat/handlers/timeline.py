"""Filling a history page: up to `limit` messages, however many hidden events lie between them.

Synapse pages count events, and many events of a timeline are not messages: state, edits (which
are `m.room.message` events, so no type filter removes them), encrypted edits. Reactions, votes,
ends and redactions are filtered out by type in Synapse's own query; the rest are skipped here. A
page of Synapse's alone could thus be all hidden events, and the app would get empty pages with a
cursor. Instead this keeps reading, with growing Synapse pages, until it holds one message more
than the page (so it knows there is more), Synapse reaches the room's start, or the bound is met.

The page must end exactly after its last message, so that the next page starts with the one after:
Synapse's token is per event, so the final span is read again, cut after that message, for its token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from medchat.messagekinds import is_shown
from medchat.models import JsonDict

# Bounds per request: Synapse pages read, events read in all, events per Synapse page.
MAX_ROUNDS = 8
MAX_EVENTS = 2000
MAX_BATCH = 500

Reader = Callable[[str | None, int], Awaitable[JsonDict]]


async def shown_page(read: Reader, cursor: str | None, limit: int) -> tuple[list[JsonDict], str | None]:
    """Up to `limit` shown events from `cursor` back, and the cursor of the next page (None when
    the room has no older message). `read(token, size)` is one Synapse page, newest first.

    Only when the bounds are met before `limit` messages are found is the page short (even empty),
    and then with a cursor, since Synapse has more."""
    shown: list[JsonDict] = []
    token = cursor
    size = limit + 1
    events_read = 0
    for _ in range(MAX_ROUNDS):
        needed = limit - len(shown)
        page = await read(token, min(MAX_BATCH, max(size, needed + 1)))
        chunk = page.get("chunk") or []
        events_read += len(chunk)
        fresh = [event for event in chunk if is_shown(event)]
        if len(fresh) > needed:  # a message beyond this page exists
            if needed == 0:
                return shown, token
            cut = chunk.index(fresh[needed - 1]) + 1
            again = await read(token, cut)
            return shown + [e for e in again.get("chunk") or [] if is_shown(e)], again.get("end")
        shown += fresh
        token = page.get("end")
        if token is None or events_read >= MAX_EVENTS:
            break
        size *= 2
    return shown, token
