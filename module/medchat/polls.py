"""Polls (MSC3381) as data: reading a poll in either form, writing one as Element does, and the
tally of its votes by the MSC's rules.

Two forms are in use. The unstable one (`org.matrix.msc3381.poll.start` with
`org.matrix.msc1767.text` strings, answers `{id, org.matrix.msc1767.text}`, responses
`org.matrix.msc3381.poll.response: {answers}`) is what Element sends and reads today; the stable
one (`m.poll.start` with `m.poll: {question: {m.text: [...]}, answers: [{m.id, m.text}]}`,
responses `m.selections`) is what the MSC settled on. Both are read; a poll is written in the
unstable form, so Element shows it, and votes and ends follow the form of their poll. An event
holds one type, so "both at once" cannot be sent.

The tally: per voter only their latest response counts, and only if it arrived before the first
end sent by the poll's creator; selections that are not answers are dropped, at most
`max_selections` are kept, and a response left with none is a spoiled vote (it replaces the earlier
one and counts for nothing). Votes of an undisclosed poll stay hidden (null) until it ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

JsonDict = dict[str, Any]

UNSTABLE_START, STABLE_START = "org.matrix.msc3381.poll.start", "m.poll.start"
UNSTABLE_RESPONSE, STABLE_RESPONSE = "org.matrix.msc3381.poll.response", "m.poll.response"
UNSTABLE_END, STABLE_END = "org.matrix.msc3381.poll.end", "m.poll.end"
TEXT_BLOCK = "org.matrix.msc1767.text"
KINDS = ("disclosed", "undisclosed")


def text_of(block: Any) -> str | None:
    """The plain text of an extensible-event text holder: `m.text` (a string, or the final
    MSC1767 list of representations), `org.matrix.msc1767.text`, or `body`."""
    if not isinstance(block, dict):
        return None
    for key in ("m.text", TEXT_BLOCK, "body"):
        value = block.get(key)
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            for item in value:
                if isinstance(item, dict) and isinstance(item.get("body"), str):
                    if item.get("mimetype", "text/plain") == "text/plain":
                        return str(item["body"])
    return None


@dataclass(frozen=True)
class PollStart:
    question: str
    answers: tuple[tuple[str, str], ...]  # (id, text)
    kind: str  # disclosed | undisclosed
    max_selections: int
    unstable: bool


def poll_start(content: JsonDict) -> PollStart | None:
    """The poll of a start event's content, either form; None if it is not a readable poll."""
    unstable = isinstance(content.get(UNSTABLE_START), dict)
    block = content.get(UNSTABLE_START) if unstable else (content.get("m.poll") or content.get(STABLE_START))
    if not isinstance(block, dict):
        return None
    question = text_of(block.get("question"))
    answers = tuple(
        (answer_id, text)
        for answer in block.get("answers") or []
        if isinstance(answer, dict)
        for answer_id in [answer.get("id", answer.get("m.id"))]
        for text in [text_of(answer)]
        if isinstance(answer_id, str) and text is not None
    )[:20]
    if question is None or not answers:
        return None
    kind = "undisclosed" if str(block.get("kind", "")).endswith("undisclosed") else "disclosed"
    limit = block.get("max_selections")
    max_selections = limit if isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1 else 1
    return PollStart(question, answers, kind, min(max_selections, len(answers)), unstable)


def start_content(question: str, answers: list[tuple[str, str]], kind: str, max_selections: int) -> JsonDict:
    """A poll in the unstable form Element sends, with the text fallback older clients show."""
    fallback = question + "".join(f"\n{i}. {text}" for i, (_, text) in enumerate(answers, 1))
    return {
        UNSTABLE_START: {
            "question": {TEXT_BLOCK: question, "body": question},
            "kind": f"org.matrix.msc3381.poll.{kind}",
            "max_selections": max_selections,
            "answers": [{"id": answer_id, TEXT_BLOCK: text} for answer_id, text in answers],
        },
        TEXT_BLOCK: fallback,
        "body": fallback,
    }


def response_event(poll: PollStart, poll_id: str, selections: list[str]) -> tuple[str, JsonDict]:
    """(type, content) of a vote, in the form of its poll."""
    relates = {"m.relates_to": {"rel_type": "m.reference", "event_id": poll_id}}
    if poll.unstable:
        return UNSTABLE_RESPONSE, {**relates, UNSTABLE_RESPONSE: {"answers": selections}}
    return STABLE_RESPONSE, {**relates, "m.selections": selections}


def end_event(poll: PollStart, poll_id: str) -> tuple[str, JsonDict]:
    """(type, content) of a poll's end, in the form of its poll."""
    relates = {"m.relates_to": {"rel_type": "m.reference", "event_id": poll_id}}
    text = f"Ended poll: {poll.question}"
    if poll.unstable:
        return UNSTABLE_END, {**relates, UNSTABLE_END: {}, TEXT_BLOCK: text, "body": text}
    return STABLE_END, {**relates, "m.text": [{"body": text}]}


def _selections(event: JsonDict) -> list[Any]:
    content = event.get("content") or {}
    unstable = content.get(UNSTABLE_RESPONSE)
    found = unstable.get("answers") if isinstance(unstable, dict) else content.get("m.selections")
    return found if isinstance(found, list) else []


def _ts(event: JsonDict) -> int:
    ts = event.get("origin_server_ts")
    return ts if isinstance(ts, int) else 0


def ended_at(creator: str, related: list[JsonDict]) -> int | None:
    """When the poll's creator first ended it (ms), or None."""
    ends = [
        _ts(e)
        for e in related
        if e.get("type") in (UNSTABLE_END, STABLE_END)
        and e.get("sender") == creator
        and "redacted_because" not in e.get("unsigned", {})
    ]
    return min(ends) if ends else None


def tally(poll: PollStart, creator: str, related: list[JsonDict], viewer: str) -> JsonDict:
    """The model's `poll` object from the poll and its `m.reference` relations (any order)."""
    end = ended_at(creator, related)
    latest: dict[str, tuple[int, int, list[str]]] = {}
    valid = [answer_id for answer_id, _ in poll.answers]
    for order, event in enumerate(related):
        if event.get("type") not in (UNSTABLE_RESPONSE, STABLE_RESPONSE):
            continue
        if "redacted_because" in event.get("unsigned", {}) or (end is not None and _ts(event) > end):
            continue
        chosen = list(dict.fromkeys(s for s in _selections(event) if s in valid))[: poll.max_selections]
        sender = str(event.get("sender"))
        if sender not in latest or (_ts(event), order) >= latest[sender][:2]:
            latest[sender] = (_ts(event), order, chosen)
    counts = dict.fromkeys(valid, 0)
    for _, _, chosen in latest.values():
        for answer_id in chosen:
            counts[answer_id] += 1
    hidden = poll.kind == "undisclosed" and end is None
    voters = sum(1 for _, _, chosen in latest.values() if chosen)
    return {
        "question": poll.question,
        "kind": poll.kind,
        "max_selections": poll.max_selections,
        "answers": [
            {"id": answer_id, "text": text, "votes": None if hidden else counts[answer_id]}
            for answer_id, text in poll.answers
        ],
        "total_votes": None if hidden else voters,
        "my_selections": latest[viewer][2] if viewer in latest else [],
        "ended": end is not None,
        "ended_at_ms": end,
    }
