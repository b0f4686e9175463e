"""Filling a history page: up to `limit` messages, however many hidden events lie between them.

Synapse pages count events, and many events of a timeline are not messages. Reactions, votes,
ends and redactions are left out by type, and edits, reactions and poll responses (whatever their
type: an encrypted edit is an `m.room.encrypted` event) by their relation, both in Synapse's own
pagination query: so 200 trailing edits cost the page nothing. What that query cannot leave out
(state events, a relation too malformed for Synapse to index) is skipped here, and the page keeps
reading, with growing Synapse pages, until it holds its messages and knows whether one more exists,
Synapse reaches the room's start, or the bound is met. A page is therefore never empty while an
older message exists, and one Synapse page is read per request in the usual case: the cursor of a
page cut after its last message is made from that message's position, not by reading again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from medchat.models import JsonDict
from medchat.synapse import Span

# Bounds per request: Synapse pages read, events read in all, events per Synapse page; the
# smallest read after the first.
MAX_ROUNDS = 8
MAX_EVENTS = 2000
MAX_BATCH = 500
MIN_LOOKAHEAD = 8

# read(token, size, wanted): one Synapse page of `size` events back from `token`, of which up to
# `wanted` shown events (SynapseEvents.history_span).
Reader = Callable[[str | None, int, int], Awaitable[Span]]


async def shown_page(read: Reader, cursor: str | None, limit: int) -> tuple[list[JsonDict], str | None]:
    """Up to `limit` shown events from `cursor` back, and the cursor of the next page (None when
    the room has no older message).

    Only when the bounds are met before `limit` messages are found is the page short (even empty),
    and then with a cursor, since Synapse has more."""
    shown: list[JsonDict] = []
    token = cursor
    events_read = 0
    for round_ in range(MAX_ROUNDS):
        needed = limit - len(shown)
        # One more than still needed, to know whether an older message exists; later rounds at
        # least MIN_LOOKAHEAD, doubled each round: a page one short reads 16 more events, not a
        # whole page again (an event hidden from clients among a busy room's newest is common).
        size = limit + 1 if round_ == 0 else max(needed + 1, MIN_LOOKAHEAD) * 2**round_
        span = await read(token, min(MAX_BATCH, size), needed)
        shown += span.kept
        token = span.token
        events_read += span.read
        if span.more or token is None or events_read >= MAX_EVENTS:
            break
    return shown, token
