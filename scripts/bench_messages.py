"""Message throughput and latency: the MedChat API against native Matrix sends, in one run.

Started by scripts/bench-messages. Starts its own Synapse + MedChat (SQLite, or PostgreSQL with
--db postgres) and, unless --no-baseline, the same Synapse configuration without the module, then:

  1. first, on the baseline server and the module's, both fresh, native sends in alternating
     rounds: what the module's callbacks cost Matrix;
  2. sends M messages with C concurrent senders (C users in one room) through
     PUT /_matrix/client/v3/rooms/{id}/send/... and through POST /api/chat/rooms/{id}/messages,
     alternating rounds so drift hits both alike, at concurrency 1 and C;
  3. calls every chat endpoint (history pages API and native, room list, room, participants,
     search API and native, and a message's send, read, reply, edit, react, unreact, forward and
     delete, next to a native send) 200 times each while C-1 senders keep sending: as fast as
     they can, then at half the native send throughput of step 2. The API history page and
     search and their native twins go in turns, which of each pair first alternating by round.

Prints throughput, p50/p99 and the ratios. Not a test: numbers, not pass/fail.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from harness import TEST_RATE_LIMITS, Api, PostgresDatabase, SynapseServer  # noqa: E402

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


class Target:
    """A server already running (scripts/bench's single process, or the cluster's nginx)."""

    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")


class BareSynapse(SynapseServer):
    """The same synapse.yaml without `modules:`: the baseline for what the module costs."""

    ready_path = "/_matrix/client/versions"


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


class Result:
    def __init__(self, latencies: list[float], elapsed: float):
        self.latencies = latencies
        self.elapsed = elapsed

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.elapsed

    def row(self, label: str) -> str:
        ms = [x * 1000 for x in self.latencies]
        return f"{label:<44} {self.throughput:8.1f} msg/s   p50 {percentile(ms, 50):6.1f} ms   p99 {percentile(ms, 99):6.1f} ms"

    @staticmethod
    def merge(results: list[Result]) -> Result:
        return Result([x for r in results for x in r.latencies], sum(r.elapsed for r in results))


def timed_calls(senders: list[Callable[[int], requests.Response]], count: int, rate: float | None = None) -> Result:
    """`count` calls spread over the senders, each sender one thread doing its share in turn:
    as fast as it can, or at `rate` calls per second in all."""
    latencies: list[float] = []
    lock = threading.Lock()
    started = time.perf_counter()

    def run(sender_index: int) -> None:
        call = senders[sender_index]
        for n, i in enumerate(range(sender_index, count, len(senders))):
            if rate is not None:
                time.sleep(max(0.0, started + n * len(senders) / rate - time.perf_counter()))
            start = time.perf_counter()
            response = call(i)
            took = time.perf_counter() - start
            if response.status_code not in (200, 201):
                raise RuntimeError(f"{response.status_code} {response.text[:200]}")
            with lock:
                latencies.append(took)

    with ThreadPoolExecutor(len(senders)) as pool:
        list(pool.map(run, range(len(senders))))
    return Result(latencies, time.perf_counter() - started)


def native_sender(base_url: str, token: str, room_id: str) -> Callable[[int], requests.Response]:
    session = requests.Session()
    txn_ids = itertools.count()
    run_id = uuid.uuid4().hex[:8]
    path = f"{base_url}/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.message/"

    def send(i: int) -> requests.Response:
        body = {"msgtype": "m.text", "body": f"native message {i}"}
        return session.put(
            f"{path}{run_id}-{next(txn_ids)}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    return send


def api_sender(base_url: str, token: str, room_id: str) -> Callable[[int], requests.Response]:
    session = requests.Session()
    path = f"{base_url}/api/chat/rooms/{quote(room_id, safe='')}/messages"

    def send(i: int) -> requests.Response:
        return session.post(
            path, json={"content": f"api message {i}"}, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    return send


class ApiUsers:
    """The module server's bench users. Their access tokens expire (synapse.yaml's
    refreshable_access_token_lifetime, 15 minutes) and a slow run outlasts that, so every phase
    starts with a refreshed pair, as the app would refresh."""

    def __init__(self, base_url: str, sessions: list[dict[str, Any]]):
        self._api = Api(base_url)
        self._sessions = sessions

    def tokens(self) -> list[str]:
        for session in self._sessions:
            response = self._api.call("POST", "/api/auth/refresh", json={"refresh_token": session["refresh_token"]})
            if response.status_code != 200:
                raise RuntimeError(f"refresh: {response.status_code} {response.text[:200]}")
            session.update(response.json())
        return [s["access_token"] for s in self._sessions]


def setup_module_server(server: SynapseServer | Target, concurrency: int) -> tuple[ApiUsers, str]:
    api = Api(server.base_url)
    users = [api.register(f"bench_{uuid.uuid4().hex[:6]}") for _ in range(concurrency)]
    owner = users[0]["access_token"]
    room = api.call(
        "POST",
        "/api/chat/rooms",
        token=owner,
        json={"type": "group", "name": "bench", "participants": [u["user_id"] for u in users[1:]]},
    ).json()["id"]
    for user in users[1:]:
        api.call(
            "POST",
            f"/api/chat/rooms/{quote(room, safe='')}/participants",
            token=user["access_token"],
            json={"user_id": user["user_id"]},
        )
    return ApiUsers(server.base_url, users), room


def native_room(server: SynapseServer, concurrency: int) -> tuple[list[str], str]:
    """Plain Matrix users (shared-secret registration) in a room made with createRoom: set up the
    same way on the servers with and without the module."""
    users = [server.register_matrix_user(f"native_{uuid.uuid4().hex[:6]}") for _ in range(concurrency)]
    tokens = [u["access_token"] for u in users]
    auth = {"Authorization": f"Bearer {tokens[0]}"}
    body = {"preset": "private_chat", "invite": [u["user_id"] for u in users[1:]]}
    room = requests.post(server.base_url + "/_matrix/client/v3/createRoom", json=body, headers=auth, timeout=30).json()[
        "room_id"
    ]
    for token in tokens[1:]:
        requests.post(
            f"{server.base_url}/_matrix/client/v3/join/{quote(room)}",
            json={},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
    return tokens, room


def module_cost(
    servers: tuple[SynapseServer, SynapseServer], concurrency: int, messages: int, rounds: int
) -> tuple[Result, Result]:
    """Native sends on the server without and with the module, both fresh and set up alike, in
    A-B-B-A rounds so that drift and whoever goes first hit both alike."""
    senders = []
    for server in servers:
        tokens, room = native_room(server, concurrency)
        senders.append([native_sender(server.base_url, t, room) for t in tokens])
        timed_calls(senders[-1], 40)  # warm caches and connections
    per_round = max(1, messages // rounds)
    results: tuple[list[Result], list[Result]] = ([], [])
    for i in range(rounds):
        for side in (0, 1) if i % 2 == 0 else (1, 0):
            results[side].append(timed_calls(senders[side], per_round))
    return Result.merge(results[0]), Result.merge(results[1])


def reads_and_writes(
    base_url: str, token: str, room_id: str, stop: threading.Event, minimum: int
) -> dict[str, list[float]]:
    """Every chat endpoint in turn (reads, and a message's whole life: send, reply, edit, react,
    unreact, forward, delete), until `stop` is set and each has `minimum` samples."""
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}"}
    room = quote(room_id, safe="")
    messages = f"{base_url}/api/chat/rooms/{room}/messages"
    messages_only = quote('{"types":["m.room.message"]}')
    search_body = {
        "search_categories": {"room_events": {"search_term": "message", "filter": {"rooms": [room_id], "limit": 20}}}
    }
    samples: dict[str, list[float]] = {label: [] for label in LABELS}

    def call(kind: str, method: str, url: str, body: Any = None) -> Any:
        start = time.perf_counter()
        response = session.request(method, url, headers=headers, json=body, timeout=30)
        samples[kind].append(time.perf_counter() - start)
        if response.status_code not in (200, 201):
            raise RuntimeError(f"{kind}: {response.status_code} {response.text[:200]}")
        return response.json()

    def pair(first_api: bool, api: Callable[[], Any], native: Callable[[], Any]) -> None:
        """An API call and its native twin, the first of them each round alternating: the first
        after the round's writes meets Synapse's caches of the new events cold (their bundled
        edits, references, threads) and pays for them, the second finds them warm."""
        for one in (api, native) if first_api else (native, api):
            one()

    native_page = f"{base_url}/_matrix/client/v3/rooms/{quote(room_id)}/messages?dir=b&limit=50&filter={messages_only}"
    for round_number in itertools.count():
        if stop.is_set() and len(samples["api"]) >= minimum:
            break
        first_api = round_number % 2 == 0
        # The same page natively: messages only, as the API's history returns.
        pair(first_api, lambda: call("api", "GET", f"{messages}?limit=50"), lambda: call("native", "GET", native_page))
        call("room list", "GET", f"{base_url}/api/chat/rooms")
        call("room", "GET", f"{base_url}/api/chat/rooms/{room}")
        call("participants", "GET", f"{base_url}/api/chat/rooms/{room}/participants")
        pair(
            first_api,
            lambda: call("search", "GET", f"{messages}/search?q=message"),
            lambda: call("native search", "POST", f"{base_url}/_matrix/client/v3/search", search_body),
        )
        call(
            "native send",
            "PUT",
            f"{base_url}/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.message/{uuid.uuid4().hex}",
            {"msgtype": "m.text", "body": "a native message"},
        )
        one = f"{messages}/{quote(call('send', 'POST', messages, {'content': 'a message to change'})['id'], safe='')}"
        call("message", "GET", one)
        call("reply", "POST", f"{one}/reply", {"content": "a reply"})
        call("edit", "PUT", one, {"content": "an edited message"})
        call("react", "POST", f"{one}/reactions", {"key": "👍"})
        call("unreact", "DELETE", f"{one}/reactions/{quote('👍', safe='')}")
        call("forward", "POST", f"{one}/forward", {"room_ids": [room_id]})
        call("delete", "DELETE", one)
    return samples


# What each kind of call is, in the printed table.
LABELS = {
    "api": "GET messages (50, API)",
    "native": "GET /messages (50, native)",
    "room list": "GET /api/chat/rooms",
    "room": "GET /api/chat/rooms/{id}",
    "participants": "GET rooms/{id}/participants",
    "search": "GET messages/search (API)",
    "native search": "POST /search (native)",
    "native send": "PUT /send (native)",
    "send": "POST messages",
    "message": "GET messages/{id}",
    "reply": "POST messages/{id}/reply",
    "edit": "PUT messages/{id}",
    "react": "POST messages/{id}/reactions",
    "unreact": "DELETE messages/{id}/reactions/{key}",
    "forward": "POST messages/{id}/forward",
    "delete": "DELETE messages/{id}",
}


def compare(
    server: SynapseServer | Target, users: ApiUsers, room: str, messages: int, concurrency: int, rounds: int
) -> dict[int, tuple[Result, Result]]:
    """Native vs API sends at concurrency 1 and C, in alternating rounds."""
    out = {}
    for c in sorted({1, concurrency}):
        tokens = users.tokens()
        native = [native_sender(server.base_url, t, room) for t in tokens[:c]]
        via_api = [api_sender(server.base_url, t, room) for t in tokens[:c]]
        timed_calls(native, 20), timed_calls(via_api, 20)  # warm caches and connections
        per_round = max(1, messages // rounds)
        native_results, api_results = [], []
        for _ in range(rounds):
            native_results.append(timed_calls(native, per_round))
            api_results.append(timed_calls(via_api, per_round))
        out[c] = (Result.merge(native_results), Result.merge(api_results))
    return out


SAMPLES = 200  # per kind of call: enough for a p99 that is not just the worst sample


def endpoints_under_load(
    server: SynapseServer | Target, users: ApiUsers, room: str, messages: int, rate: float | None
) -> dict[str, list[float]]:
    """Every endpoint called while the other senders keep sending through the API, as fast as they
    can or at `rate` messages per second (at least `messages`, and on until every kind of call
    has its samples)."""
    stop = threading.Event()
    tokens = users.tokens()
    with ThreadPoolExecutor(1) as pool:
        pages = pool.submit(reads_and_writes, server.base_url, tokens[0], room, stop, SAMPLES)
        load = [api_sender(server.base_url, t, room) for t in tokens[1:]] or [
            api_sender(server.base_url, tokens[0], room)
        ]
        sent = 0
        while sent < messages or not pages.done():
            timed_calls(load, 20, rate)
            sent += 20
            if sent >= messages:
                stop.set()
        return pages.result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=300, help="messages per mode and concurrency (default 300)")
    parser.add_argument("--concurrency", type=int, default=4, help="concurrent senders (default 4)")
    parser.add_argument(
        "--rounds", type=int, default=4, help="alternating rounds, native/API and without/with the module (default 4)"
    )
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--postgres-url", default=DEFAULT_PG, help="admin URL; a throw-away database is created")
    parser.add_argument("--no-baseline", action="store_true", help="skip the server without the module")
    parser.add_argument("--target", help="benchmark the server (or cluster) already running at this URL; no baseline")
    parser.add_argument("--json", help="also write the result rows here (for scripts/bench)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="medchat-bench-"))
    databases: list[PostgresDatabase] = []

    def database_url() -> str | None:
        if args.db == "sqlite":
            return None
        databases.append(PostgresDatabase(args.postgres_url))
        return databases[-1].url

    servers: list[SynapseServer] = []
    try:
        if args.target:
            server: SynapseServer | Target = Target(args.target)
        else:
            own = SynapseServer(workdir / "medchat", database_url=database_url(), overrides=TEST_RATE_LIMITS)
            servers.append(own)
            own.start()
            server = own
        baseline: tuple[Result, Result] | None = None
        if not args.no_baseline and not args.target:
            # First, while both servers are fresh: what the module's callbacks cost native sends.
            bare_overrides = {**TEST_RATE_LIMITS, "modules": []}
            bare = BareSynapse(workdir / "bare", database_url=database_url(), overrides=bare_overrides)
            servers.append(bare)
            bare.start()
            assert isinstance(server, SynapseServer)  # no --target: the server started above
            baseline = module_cost((bare, server), args.concurrency, args.messages, max(args.rounds, 6))
            bare.stop()
        users, room = setup_module_server(server, args.concurrency)
        results = compare(server, users, room, args.messages, args.concurrency, args.rounds)
        # Under the heaviest load (senders as fast as they can: the 2 cores saturated, where even a
        # native send's p99 reaches the 100 ms target), then at half the native send throughput.
        paced = results[args.concurrency][0].throughput / 2
        history = endpoints_under_load(server, users, room, args.messages // 2, None)
        history_paced = endpoints_under_load(server, users, room, args.messages // 2, paced)
    finally:
        for s in servers:
            s.stop()
        for db in databases:
            db.drop()

    print(
        f"\nMedChat message benchmark — {args.db}, {args.messages} messages per mode, concurrency 1 and {args.concurrency}\n"
    )
    for c, (native, via_api) in results.items():
        print(native.row(f"native PUT /send, {c} sender(s)"))
        print(via_api.row(f"API POST /messages, {c} sender(s)"))
        print(
            f"  API cost vs native: throughput x{native.throughput / via_api.throughput:.2f}, "
            f"p50 x{percentile(via_api.latencies, 50) / percentile(native.latencies, 50):.2f}, "
            f"p99 x{percentile(via_api.latencies, 99) / percentile(native.latencies, 99):.2f}  (target <= 1.15)"
        )
        print()
    load = max(1, args.concurrency - 1)
    print(
        f"Every endpoint while {load} sender(s) keep sending through the API, as fast as they can | at {paced:.0f} msg/s in all:"
    )
    for kind, label in LABELS.items():
        target = "p99 < 50 ms" if kind in ("api", "native") else "p99 < 100 ms"
        cells = [
            f"p50 {percentile(h[kind], 50) * 1000:6.1f}  p99 {percentile(h[kind], 99) * 1000:6.1f} ms"
            for h in (history, history_paced)
        ]
        print(f"  {label:<38} {cells[0]} | {cells[1]}   (target {target})")
    writes = ("send", "reply", "edit", "react", "unreact", "forward", "delete")
    for name, h in (("saturated", history), ("paced", history_paced)):
        print(
            f"  {name}: writes / native send, p50: "
            + ", ".join(f"{k} x{percentile(h[k], 50) / percentile(h['native send'], 50):.2f}" for k in writes)
        )
        print(
            f"  {name}: search API / native: p50 x{percentile(h['search'], 50) / percentile(h['native search'], 50):.2f}, "
            f"p99 x{percentile(h['search'], 99) / percentile(h['native search'], 99):.2f}"
        )
    print()
    if baseline is not None:
        without_module, with_module = baseline
        print(without_module.row(f"native, no module, {args.concurrency} sender(s)"))
        print(with_module.row(f"native, with module, {args.concurrency} sender(s)"))
        loss = 1 - with_module.throughput / without_module.throughput
        print(f"  module cost on native sends: {loss * 100:+.1f}% throughput (target <= 10%)")
    if args.json:
        native, via_api = results[args.concurrency]
        rows = [
            row(
                f"messages: send, {args.concurrency} senders",
                via_api.throughput,
                "msg/s",
                via_api.latencies,
                native.latencies,
                native.throughput,
            ),
            row("messages: 50-message history page", None, "", history["api"], history["native"]),
        ]
        Path(args.json).write_text(json.dumps(rows))


def row(
    name: str,
    throughput: float | None,
    unit: str,
    api: list[float],
    native: list[float],
    native_throughput: float | None = None,
) -> dict[str, Any]:
    """One line of scripts/bench's table: the API's numbers and their ratios to native Matrix."""
    return {
        "benchmark": name,
        "throughput": throughput,
        "unit": unit,
        "p50_ms": percentile(api, 50) * 1000,
        "p99_ms": percentile(api, 99) * 1000,
        "ratio_throughput": throughput / native_throughput if throughput and native_throughput else None,
        "ratio_p50": percentile(api, 50) / percentile(native, 50),
        "ratio_p99": percentile(api, 99) / percentile(native, 99),
    }


if __name__ == "__main__":
    main()
