"""Read paths against the native Matrix call doing the same job, as a growth table (issue 18).

Started by scripts/bench-reads (and by scripts/bench as the `reads` benchmark). Starts its own
Synapse + MedChat on a fresh PostgreSQL database (or SQLite with --db sqlite), or measures the
server at --target URL, then seeds with many concurrent native Matrix calls and measures, growing
each data set between its rows:

  room list      GET /api/chat/rooms?limit=20 vs MSC4186 sliding sync, one list of range [0,19],
                 timeline_limit 1, the name/type/avatar/topic state and `$LAZY` members (the
                 senders shown), for one user in R rooms (each room: another user's message);
  unread-count   GET /api/chat/notifications/unread-count vs sliding sync over *all* the user's
                 rooms with timeline_limit 0 and no state: the cheapest native request that
                 answers every room's unread counts (an initial /sync v2 computes each room's
                 state and timeline whatever its filter, so it would flatter the API);
  501 members    one room of M members: its owner's room list vs the same sliding sync list, and
                 the room view (GET /api/chat/rooms/{id}) vs a sliding sync room subscription
                 with every member's state (`["m.room.member", "*"]`) and timeline_limit 1;
  sender history the owner's own 50-message page in that room, after members sent read receipts,
                 vs native /messages (dir=b, limit 50, messages-only filter);
  history        another member's 50-message page vs the same /messages, at each size of H
                 messages, then after 200 trailing edits (m.replace, sent natively: the native
                 page is then mostly edits, which the API must skip in one request);
  notifications  GET /api/chat/notifications vs /_matrix/client/v3/notifications (both 20), for a
                 user mentioned in each of N messages;
  contacts       GET /api/chat/contacts?q=TERM (20) at C contacts vs /user_directory/search for
                 the same term (20; search_all_users), one in ten contacts matching.

Each row: S samples per side, the REST and native calls interleaved, the order alternating each
round, after a short warm-up; a fast row goes on sampling until each side has run for
MIN_SECONDS (at most 10 × S rounds), so that its p99 is not one scheduling stall of a
few-millisecond call among 100. Prints p50/p99 of both sides, the ratios REST ÷ native, and the
issue's target (≤ 1.2× at p50 and ≤ 1.5× at p99). `--json FILE` writes the rows for scripts/bench.
Lists are read through their status and `next_cursor` only, whatever their list key is called.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import psycopg2
import requests

from bench import MODULE_OVERRIDES, OVERRIDES
from bench_messages import percentile

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from harness import PostgresDatabase, SynapseServer  # noqa: E402

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
TARGET_P50, TARGET_P99 = 1.2, 1.5
SLIDING_SYNC = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"
MESSAGES_ONLY = quote(json.dumps({"types": ["m.room.message"]}))
# The room list's native equivalent: what a list entry shows (name, type, picture, topic, the last
# message and its sender's member event).
LIST_STATE = [["m.room.create", ""], ["m.room.name", ""], ["m.room.avatar", ""], ["m.room.topic", ""]]
WORDS = ["alder", "birch", "cedar", "daphne", "elm", "fir", "gorse", "hazel", "ivy", "juniper"]
SETTLE_SECONDS = 2
MIN_SECONDS = 3.0  # per side and row: a 3 ms call gets ~500 samples, a 50 ms one its 100
MAX_ROUNDS_PER_SAMPLE = 10
TOKEN_REFRESH_SECONDS = 600  # access tokens live 15 minutes (synapse.yaml); a full run is longer

T = TypeVar("T")
R = TypeVar("R")
Call = Callable[[], requests.Response]
Check = Callable[[Any, Any], None]


@dataclass(frozen=True)
class Sizes:
    rooms: list[int]
    members: int
    receipts: int
    history: list[int]
    edits: int
    notifications: list[int]
    contacts: int
    samples: int


FULL = Sizes(
    rooms=[10, 100, 1000],
    members=501,
    receipts=100,
    history=[100, 10_000],
    edits=200,
    notifications=[10, 5000],
    contacts=1000,
    samples=100,
)
QUICK = Sizes(
    rooms=[10, 50],
    members=51,
    receipts=20,
    history=[100, 500],
    edits=50,
    notifications=[10, 200],
    contacts=100,
    samples=30,
)

_local = threading.local()


def session() -> requests.Session:
    """One HTTP session per thread (connections kept alive; requests' Session is not thread-safe)."""
    if not hasattr(_local, "session"):
        _local.session = requests.Session()
    return _local.session


@dataclass
class User:
    """An account registered through /api/auth/register, whose token is refreshed when it ages."""

    base_url: str
    user_id: str
    username: str
    access_token: str
    refresh_token: str
    issued: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def headers(self) -> dict[str, str]:
        with self.lock:
            if time.monotonic() - self.issued > TOKEN_REFRESH_SECONDS:
                fresh = ok(
                    session().post(
                        self.base_url + "/api/auth/refresh", json={"refresh_token": self.refresh_token}, timeout=60
                    )
                )
                self.access_token, self.refresh_token = fresh["access_token"], fresh["refresh_token"]
                self.issued = time.monotonic()
            return {"Authorization": f"Bearer {self.access_token}"}

    def call(self, method: str, path: str, body: Any = None) -> requests.Response:
        return session().request(method, self.base_url + path, json=body, headers=self.headers(), timeout=120)


def ok(response: requests.Response) -> Any:
    if response.status_code not in (200, 201, 202):
        raise RuntimeError(f"{response.request.method} {response.url}: {response.status_code} {response.text[:300]}")
    return response.json()


def parallel(fn: Callable[[T], R], items: Iterable[T], workers: int) -> list[R]:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


class Seeder:
    """Native Matrix calls (and the API where the data is the module's own), many at a time."""

    def __init__(self, base_url: str, workers: int):
        self.base_url = base_url
        self.workers = workers
        self.run = uuid.uuid4().hex[:6]
        self._txn = itertools.count()

    def users(self, prefix: str, count: int) -> list[User]:
        def register(i: int) -> User:
            username = f"{prefix}{WORDS[i % len(WORDS)]}{i}_{self.run}"
            body = {
                "username": username,
                "password": "bench-Password-1",
                "email": f"{username}@example.org",
                "full_name": f"Dr. {WORDS[i % len(WORDS)].title()} {username}",
                "role": "Resident",
                "institution": "St Elsewhere Hospital",
                "specialization": "Cardiology",
            }
            made = ok(session().post(self.base_url + "/api/auth/register", json=body, timeout=120))
            return User(self.base_url, made["user_id"], username, made["access_token"], made["refresh_token"])

        return parallel(register, range(count), self.workers)

    def create_room(self, owner: User, name: str, invite: Iterable[str] = (), public: bool = False) -> str:
        body = {"preset": "public_chat" if public else "private_chat", "name": name, "invite": list(invite)}
        return str(ok(owner.call("POST", "/_matrix/client/v3/createRoom", body))["room_id"])

    def join(self, user: User, room_id: str) -> None:
        ok(user.call("POST", f"/_matrix/client/v3/join/{quote(room_id)}", {}))

    def send(self, user: User, room_id: str, content: dict[str, Any]) -> str:
        path = f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.message/{self.run}-{next(self._txn)}"
        return str(ok(user.call("PUT", path, content))["event_id"])

    def send_many(
        self, user: User, room_id: str, contents: list[dict[str, Any]], workers: int | None = None
    ) -> list[str]:
        return parallel(lambda c: self.send(user, room_id, c), contents, workers or self.workers)

    def rooms_with_message(self, peer: User, member: User, count: int, start: int) -> None:
        """`count` rooms the peer makes, `member` joins and the peer writes one message in."""

        def one(i: int) -> None:
            room = self.create_room(peer, f"Ward round {i}", [member.user_id])
            self.join(member, room)
            self.send(peer, room, {"msgtype": "m.text", "body": f"handover notes for room {i}"})

        parallel(one, range(start, start + count), self.workers)

    def receipt(self, user: User, room_id: str, event_id: str) -> None:
        ok(user.call("POST", f"/_matrix/client/v3/rooms/{quote(room_id)}/receipt/m.read/{quote(event_id)}", {}))

    def contacts(self, owner: User, others: list[User]) -> None:
        """Adds every one of `others` to the owner's contacts; a request (202) is accepted at once."""

        def add(other: User) -> None:
            response = owner.call("POST", "/api/chat/contacts", {"user_id": other.user_id})
            if ok(response) and response.status_code == 202:
                ok(other.call("POST", f"/api/chat/contacts/requests/{quote(owner.user_id)}/accept", {}))

        parallel(add, others, self.workers)


@dataclass
class Row:
    name: str
    rest: list[float]
    native: list[float]

    def as_json(self) -> dict[str, Any]:
        p50, p99 = percentile(self.rest, 50), percentile(self.rest, 99)
        n50, n99 = percentile(self.native, 50), percentile(self.native, 99)
        return {
            "benchmark": f"reads: {self.name}",
            "throughput": None,
            "unit": "",
            "p50_ms": p50 * 1000,
            "p99_ms": p99 * 1000,
            "native_p50_ms": n50 * 1000,
            "native_p99_ms": n99 * 1000,
            "ratio_throughput": None,
            "ratio_p50": p50 / n50,
            "ratio_p99": p99 / n99,
            "goal": f"≤ {TARGET_P50}× / ≤ {TARGET_P99}×",
            "met": p50 / n50 <= TARGET_P50 and p99 / n99 <= TARGET_P99,
            "samples": len(self.rest),
        }


class Measure:
    """Interleaved REST/native samples, the order alternating each round."""

    def __init__(self, samples: int, warmup: int = 5, min_seconds: float = MIN_SECONDS):
        self.samples = samples
        self.warmup = warmup
        self.min_seconds = min_seconds
        self.rows: list[Row] = []

    def more(self, rounds: int, times: tuple[list[float], list[float]]) -> bool:
        """Whether to sample another round: always up to `samples`, then while either side has
        run for less than `min_seconds`, up to 10 × `samples`."""
        if rounds < self.samples:
            return True
        return rounds < self.samples * MAX_ROUNDS_PER_SAMPLE and min(sum(times[0]), sum(times[1])) < self.min_seconds

    def compare(self, name: str, rest: Call, native: Call, check: Check | None = None) -> Row:
        """`check` looks at one answer of each side first: that both see the data seeded."""
        answers = [(ok(rest()), ok(native())) for _ in range(self.warmup)]
        if check is not None:
            check(*answers[-1])
        times: tuple[list[float], list[float]] = ([], [])
        calls = (rest, native)
        rounds = 0
        while self.more(rounds, times):
            for side in (0, 1) if rounds % 2 == 0 else (1, 0):
                start = time.perf_counter()
                response = calls[side]()
                times[side].append(time.perf_counter() - start)
                ok(response)
            rounds += 1
        row = Row(name, *times)
        self.rows.append(row)
        summary = row.as_json()
        print(
            f"  {name:<44} REST p50 {summary['p50_ms']:7.1f} p99 {summary['p99_ms']:7.1f} | native p50 "
            f"{summary['native_p50_ms']:7.1f} p99 {summary['native_p99_ms']:7.1f} ms | "
            f"×{summary['ratio_p50']:.2f} / ×{summary['ratio_p99']:.2f} ({summary['samples']} samples)",
            file=sys.stderr,
            flush=True,
        )
        return row


def sliding_sync(user: User, body: dict[str, Any]) -> Call:
    return lambda: user.call("POST", SLIDING_SYNC, body)


def get(user: User, path: str) -> Call:
    return lambda: user.call("GET", path)


def require(condition: bool, what: str) -> None:
    if not condition:
        raise RuntimeError(f"the seeded data is not what was measured: {what}")


def has_items(body: Any) -> bool:
    """Whether an API page lists anything, whatever its list key is called."""
    return any(isinstance(value, list) and value for value in body.values())


def counted(rooms: int) -> Check:
    """Sliding sync counting all `rooms` of the user."""

    def check(rest: Any, native: Any) -> None:
        require(native["lists"]["rooms"]["count"] == rooms, f"sliding sync counts {rooms} rooms")

    return check


def listed(rooms: int, page: int = 20) -> Check:
    """A room list of `rooms`: a next page on the API's side exactly when there are more than
    `page`, and sliding sync counting them all."""

    def check(rest: Any, native: Any) -> None:
        require((rest.get("next_cursor") is not None) == (rooms > page), f"API next_cursor with {rooms} rooms")
        counted(rooms)(rest, native)

    return check


def pages(native_key: str, expected: int) -> Check:
    """Both pages list something, the native one at least `expected` items (the notifications
    include the room's invite too)."""

    def check(rest: Any, native: Any) -> None:
        require(has_items(rest), "the API page is empty")
        require(len(native[native_key]) >= expected, f"{expected} native {native_key}, got {len(native[native_key])}")

    return check


def room_list_body(last: int) -> dict[str, Any]:
    return {
        "lists": {
            "rooms": {
                "ranges": [[0, last]],
                "timeline_limit": 1,
                "required_state": [*LIST_STATE, ["m.room.member", "$LAZY"]],
            }
        }
    }


def native_history(user: User, room_id: str) -> Call:
    return get(user, f"/_matrix/client/v3/rooms/{quote(room_id)}/messages?dir=b&limit=50&filter={MESSAGES_ONLY}")


def rest_history(user: User, room_id: str) -> Call:
    return get(user, f"/api/chat/rooms/{quote(room_id, safe='')}/messages?limit=50")


class Phases:
    """The seeding and measuring, one data set after another; times each step."""

    def __init__(self, seeder: Seeder, sizes: Sizes, measure: Measure, database_url: str | None):
        self.seed = seeder
        self.sizes = sizes
        self.measure = measure
        self.database_url = database_url
        self.seeding = 0.0
        self.measuring = 0.0

    @contextmanager
    def seeding_step(self, what: str) -> Iterator[None]:
        started = time.monotonic()
        yield
        self.settle()
        took = time.monotonic() - started
        self.seeding += took
        print(f"seeded {what} in {took:.1f}s", file=sys.stderr, flush=True)

    def settle(self) -> None:
        """After seeding: fresh planner statistics (autovacuum's ANALYZE would come at a random
        moment mid-row otherwise) and a moment for Synapse's background work to drain."""
        if self.database_url and self.database_url.startswith("postgres"):
            conn = psycopg2.connect(self.database_url)
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("ANALYZE")
            conn.close()
        time.sleep(SETTLE_SECONDS)

    def compare(self, name: str, rest: Call, native: Call, check: Check | None = None) -> None:
        started = time.monotonic()
        self.measure.compare(name, rest, native, check)
        self.measuring += time.monotonic() - started

    def rooms(self) -> None:
        with self.seeding_step("the room-list users"):
            reader, peer = self.seed.users("list", 2)
        have = 0
        for size in self.sizes.rooms:
            with self.seeding_step(f"{size} rooms"):
                self.seed.rooms_with_message(peer, reader, size - have, have)
                have = size
            self.compare(
                f"room list, {size:,} rooms",
                get(reader, "/api/chat/rooms?limit=20"),
                sliding_sync(reader, room_list_body(19)),
                listed(size),
            )
            everything = {"lists": {"rooms": {"ranges": [[0, size - 1]], "timeline_limit": 0, "required_state": []}}}
            self.compare(
                f"unread-count, {size:,} rooms",
                get(reader, "/api/chat/notifications/unread-count"),
                sliding_sync(reader, everything),
                counted(size),
            )

    def big_room_and_contacts(self) -> None:
        members, contacts = self.sizes.members, self.sizes.contacts
        with self.seeding_step(f"{max(members, contacts + 1)} users"):
            pool = self.seed.users("m", max(members, contacts + 1))
        owner, others = pool[0], pool[1:]
        with self.seeding_step(f"{contacts:,} contacts"):
            self.seed.contacts(owner, others[:contacts])
        term = WORDS[3]
        self.compare(
            f"contacts ?q=, {contacts:,} contacts",
            get(owner, f"/api/chat/contacts?q={term}&limit=20"),
            lambda: owner.call("POST", "/_matrix/client/v3/user_directory/search", {"search_term": term, "limit": 20}),
            lambda rest, native: require(has_items(rest) and bool(native["results"]), f"contacts matching {term!r}"),
        )
        with self.seeding_step(f"a {members}-member room"):
            room = self.seed.create_room(owner, "Grand round", public=True)
            parallel(lambda u: self.seed.join(u, room), others[: members - 1], self.seed.workers)
        self.compare(
            f"room list, one {members}-member room",
            get(owner, "/api/chat/rooms?limit=20"),
            sliding_sync(owner, room_list_body(19)),
            listed(1),
        )
        subscription = {
            "room_subscriptions": {room: {"timeline_limit": 1, "required_state": [*LIST_STATE, ["m.room.member", "*"]]}}
        }
        self.compare(
            f"room view, {members} members",
            get(owner, f"/api/chat/rooms/{quote(room, safe='')}"),
            sliding_sync(owner, subscription),
            lambda rest, native: require(
                len([s for s in native["rooms"][room]["required_state"] if s["type"] == "m.room.member"]) == members,
                f"sliding sync's {members} member events",
            ),
        )
        with self.seeding_step(f"60 messages and {self.sizes.receipts} receipts in it"):
            sent = self.seed.send_many(
                owner, room, [{"msgtype": "m.text", "body": f"grand round note {i}"} for i in range(60)]
            )
            readers = others[: self.sizes.receipts]
            parallel(
                lambda p: self.seed.receipt(p[1], room, sent[p[0] % len(sent)]), enumerate(readers), self.seed.workers
            )
        self.compare(
            f"sender's history, {members} members",
            rest_history(owner, room),
            native_history(owner, room),
            pages("chunk", 50),
        )

    def history_and_notifications(self) -> None:
        """One room of three: the sender mentions the notified user in every message; the third
        member reads the history (so that neither reader's calls change the other's data). The
        sender writes one message at a time, as a person does: many sends at once into one room
        leave Synapse hundreds of forward extremities and a timeline of a few depth levels, no
        room's shape."""
        with self.seeding_step("the history room"):
            sender, reader, notified = self.seed.users("h", 3)
            room = self.seed.create_room(sender, "Case notes", [reader.user_id, notified.user_id])
            self.seed.join(reader, room)
            self.seed.join(notified, room)
        steps = sorted(
            [(n, "history") for n in self.sizes.history] + [(n, "notifications") for n in self.sizes.notifications]
        )
        have: list[str] = []
        for size, kind in steps:
            if size > len(have):
                with self.seeding_step(f"{size:,} messages"):
                    have += self.seed.send_many(
                        sender,
                        room,
                        [
                            {
                                "msgtype": "m.text",
                                "body": f"{notified.username}: case note {i}",
                                "m.mentions": {"user_ids": [notified.user_id]},
                            }
                            for i in range(len(have), size)
                        ],
                        workers=1,
                    )
            if kind == "history":
                self.compare(
                    f"history page, {size:,} messages",
                    rest_history(reader, room),
                    native_history(reader, room),
                    pages("chunk", 50),
                )
            else:
                self.compare(
                    f"notifications, {size:,}",
                    get(notified, "/api/chat/notifications?limit=20"),
                    get(notified, "/_matrix/client/v3/notifications?limit=20"),
                    pages("notifications", min(size, 20)),
                )
        edits = self.sizes.edits
        with self.seeding_step(f"{edits} trailing edits"):
            targets = have[-edits:]
            self.seed.send_many(
                sender,
                room,
                [
                    {
                        "msgtype": "m.text",
                        "body": f"* corrected note {i}",
                        "m.new_content": {"msgtype": "m.text", "body": f"corrected note {i}"},
                        "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
                    }
                    for i, event_id in enumerate(targets)
                ],
                workers=1,
            )
        self.compare(
            f"history page after {edits} trailing edits",
            rest_history(reader, room),
            native_history(reader, room),
            pages("chunk", 50),
        )


def fmt_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| read | REST p50 / p99 ms | native p50 / p99 ms | ratio p50 | ratio p99 | samples | target ≤ 1.2× / ≤ 1.5× |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['benchmark'].removeprefix('reads: ')} | {r['p50_ms']:.1f} / {r['p99_ms']:.1f} | "
            f"{r['native_p50_ms']:.1f} / {r['native_p99_ms']:.1f} | {r['ratio_p50']:.2f} | {r['ratio_p99']:.2f} | "
            f"{r['samples']} | {'pass' if r['met'] else 'FAIL'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test (a few minutes)")
    parser.add_argument("--rooms", help="comma-separated room counts for the room list (default 10,100,1000)")
    parser.add_argument("--members", type=int, help="members of the big room (default 501)")
    parser.add_argument("--history", help="comma-separated history sizes (default 100,10000)")
    parser.add_argument("--edits", type=int, help="trailing edits (default 200)")
    parser.add_argument("--notifications", help="comma-separated notification counts (default 10,5000)")
    parser.add_argument("--contacts", type=int, help="contacts (default 1000)")
    parser.add_argument("--samples", type=int, help="samples per side and row (default 100)")
    parser.add_argument("--workers", type=int, default=16, help="concurrent seeding calls (default 16)")
    parser.add_argument(
        "--only", default="rooms,big,history", help="comma-separated subset of rooms,big,history (default all)"
    )
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="postgres")
    parser.add_argument("--postgres-url", default=DEFAULT_PG, help="admin URL; a throw-away database is created")
    parser.add_argument("--target", help="measure the server already running at this URL")
    parser.add_argument("--target-db", help="with --target: its PostgreSQL database, analyzed after each seeding")
    parser.add_argument("--json", help="also write the result rows here (for scripts/bench)")
    args = parser.parse_args()

    base = QUICK if args.quick else FULL

    def ints(text: str | None, default: list[int]) -> list[int]:
        return sorted(int(x) for x in text.split(",")) if text else default

    sizes = Sizes(
        rooms=ints(args.rooms, base.rooms),
        members=args.members or base.members,
        receipts=min(base.receipts, (args.members or base.members) - 1),
        history=ints(args.history, base.history),
        edits=args.edits if args.edits is not None else base.edits,
        notifications=ints(args.notifications, base.notifications),
        contacts=args.contacts if args.contacts is not None else base.contacts,
        samples=args.samples or base.samples,
    )
    started = time.monotonic()
    server: SynapseServer | None = None
    database: PostgresDatabase | None = None
    try:
        if args.target:
            base_url = args.target.rstrip("/")
        else:
            if args.db == "postgres":
                database = PostgresDatabase(args.postgres_url)
            workdir = Path(tempfile.mkdtemp(prefix="medchat-bench-reads-"))
            server = SynapseServer(
                workdir,
                database_url=database.url if database else None,
                overrides=OVERRIDES,
                module_overrides=MODULE_OVERRIDES,
            )
            server.start()
            base_url = server.base_url
        database_url = database.url if database else args.target_db
        measure = Measure(sizes.samples, min_seconds=0 if args.quick else MIN_SECONDS)
        phases = Phases(Seeder(base_url, args.workers), sizes, measure, database_url)
        chosen = args.only.split(",")
        for name, phase in (
            ("rooms", phases.rooms),
            ("big", phases.big_room_and_contacts),
            ("history", phases.history_and_notifications),
        ):
            if name in chosen:
                phase()
    finally:
        if server is not None:
            server.stop()
        if database is not None:
            database.drop()
    rows = [r.as_json() for r in phases.measure.rows]
    print(
        f"\nMedChat reads vs native Matrix ({'quick' if args.quick else 'full'} sizes, {args.db if not args.target else args.target}), "
        f"{sizes.samples} samples per side or more (a row samples for {measure.min_seconds:.0f}s a side), interleaved. Seeding {phases.seeding:.0f}s, measuring "
        f"{phases.measuring:.0f}s, in all {time.monotonic() - started:.0f}s.\n"
    )
    print(fmt_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows))


if __name__ == "__main__":
    main()
