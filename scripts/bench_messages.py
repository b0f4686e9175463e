"""Message throughput and latency: the MedChat API against native Matrix sends, in one run.

Started by scripts/bench-messages. Starts its own Synapse + MedChat (SQLite, or PostgreSQL with
--db postgres) and, unless --no-baseline, the same Synapse configuration without the module, then:

  1. sends M messages with C concurrent senders (C users in one room) through
     PUT /_matrix/client/v3/rooms/{id}/send/... and through POST /api/chat/rooms/{id}/messages,
     alternating rounds so drift hits both alike, at concurrency 1 and C;
  2. fetches 50-message history pages (API and native) while C-1 senders keep sending;
  3. on the baseline server, the same native sends: what the module's callbacks cost Matrix.

Prints throughput, p50/p99 and the ratios. Not a test: numbers, not pass/fail.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
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
from harness import TEST_RATE_LIMITS, PASSWORD, Api, PostgresDatabase, SynapseServer  # noqa: E402

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


def timed_calls(senders: list[Callable[[int], requests.Response]], count: int) -> Result:
    """`count` calls spread over the senders, each sender one thread doing its share in turn."""
    latencies: list[float] = []
    lock = threading.Lock()

    def run(sender_index: int) -> None:
        call = senders[sender_index]
        for i in range(sender_index, count, len(senders)):
            start = time.perf_counter()
            response = call(i)
            took = time.perf_counter() - start
            if response.status_code not in (200, 201):
                raise RuntimeError(f"{response.status_code} {response.text[:200]}")
            with lock:
                latencies.append(took)

    started = time.perf_counter()
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
        return session.put(f"{path}{run_id}-{next(txn_ids)}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    return send


def api_sender(base_url: str, token: str, room_id: str) -> Callable[[int], requests.Response]:
    session = requests.Session()
    path = f"{base_url}/api/chat/rooms/{quote(room_id, safe='')}/messages"

    def send(i: int) -> requests.Response:
        return session.post(path, json={"content": f"api message {i}"}, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    return send


def setup_module_server(server: SynapseServer | Target, concurrency: int) -> tuple[list[str], str]:
    api = Api(server.base_url)
    users = [api.register(f"bench_{uuid.uuid4().hex[:6]}") for _ in range(concurrency)]
    owner = users[0]["access_token"]
    room = api.call("POST", "/api/chat/rooms", token=owner, json={"type": "group", "name": "bench", "participants": [u["user_id"] for u in users[1:]]}).json()["id"]
    for user in users[1:]:
        api.call("POST", f"/api/chat/rooms/{quote(room, safe='')}/participants", token=user["access_token"], json={"user_id": user["user_id"]})
    return [u["access_token"] for u in users], room


def setup_bare_server(server: SynapseServer, concurrency: int) -> tuple[list[str], str]:
    tokens, user_ids = [], []
    for _ in range(concurrency):
        body = {"username": f"bench_{uuid.uuid4().hex[:6]}", "password": PASSWORD, "auth": {"type": "m.login.dummy"}}
        response = requests.post(server.base_url + "/_matrix/client/v3/register", json=body, timeout=30).json()
        tokens.append(response["access_token"])
        user_ids.append(response["user_id"])
    auth = {"Authorization": f"Bearer {tokens[0]}"}
    room = requests.post(server.base_url + "/_matrix/client/v3/createRoom", json={"preset": "private_chat", "invite": user_ids[1:]}, headers=auth, timeout=30).json()["room_id"]
    for token in tokens[1:]:
        requests.post(f"{server.base_url}/_matrix/client/v3/join/{quote(room)}", json={}, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return tokens, room


def history_pages(base_url: str, token: str, room_id: str, stop: threading.Event, minimum: int) -> dict[str, list[float]]:
    """50-message pages, API and native in turn, until `stop` is set and `minimum` of each are done."""
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}"}
    room = quote(room_id, safe="")
    messages_only = quote('{"types":["m.room.message"]}')
    search_body = {"search_categories": {"room_events": {"search_term": "message", "filter": {"rooms": [room_id], "limit": 20}}}}
    requests_by_kind: dict[str, tuple[str, str, Any]] = {
        "api": ("GET", f"{base_url}/api/chat/rooms/{room}/messages?limit=50", None),
        # The same page natively: messages only, as the API's history returns.
        "native": ("GET", f"{base_url}/_matrix/client/v3/rooms/{quote(room_id)}/messages?dir=b&limit=50&filter={messages_only}", None),
        "room list": ("GET", f"{base_url}/api/chat/rooms", None),
        "room": ("GET", f"{base_url}/api/chat/rooms/{room}", None),
        "search": ("GET", f"{base_url}/api/chat/rooms/{room}/messages/search?q=message", None),
        "native search": ("POST", f"{base_url}/_matrix/client/v3/search", search_body),
    }
    samples: dict[str, list[float]] = {k: [] for k in requests_by_kind}
    while not stop.is_set() or len(samples["api"]) < minimum:
        for kind, (method, url, body) in requests_by_kind.items():
            start = time.perf_counter()
            response = session.request(method, url, headers=headers, json=body, timeout=30)
            samples[kind].append(time.perf_counter() - start)
            if response.status_code != 200:
                raise RuntimeError(f"history {kind}: {response.status_code} {response.text[:200]}")
    return samples


def compare(server: SynapseServer | Target, tokens: list[str], room: str, messages: int, concurrency: int, rounds: int) -> dict[int, tuple[Result, Result]]:
    """Native vs API sends at concurrency 1 and C, in alternating rounds."""
    out = {}
    for c in sorted({1, concurrency}):
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


HISTORY_SAMPLES = 200  # per kind of read: enough for a p99 that is not just the worst sample


def history_under_load(server: SynapseServer | Target, tokens: list[str], room: str, messages: int) -> dict[str, list[float]]:
    """History pages fetched while the other senders keep sending through the API (at least
    `messages`, and on until every kind of read has its samples)."""
    stop = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        pages = pool.submit(history_pages, server.base_url, tokens[0], room, stop, HISTORY_SAMPLES)
        load = [api_sender(server.base_url, t, room) for t in tokens[1:]] or [api_sender(server.base_url, tokens[0], room)]
        sent = 0
        while sent < messages or not pages.done():
            timed_calls(load, 20)
            sent += 20
            if sent >= messages:
                stop.set()
        return pages.result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=300, help="messages per mode and concurrency (default 300)")
    parser.add_argument("--concurrency", type=int, default=4, help="concurrent senders (default 4)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating native/API rounds (default 2)")
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
            server = Target(args.target)
        else:
            server = SynapseServer(workdir / "medchat", database_url=database_url(), overrides=TEST_RATE_LIMITS)
            servers.append(server)
            server.start()
        tokens, room = setup_module_server(server, args.concurrency)
        results = compare(server, tokens, room, args.messages, args.concurrency, args.rounds)
        history = history_under_load(server, tokens, room, args.messages // 2)

        baseline: tuple[Result, Result] | None = None
        if not args.no_baseline and not args.target:
            # Both servers up, rounds alternating, so machine noise hits both alike.
            bare_overrides = {**TEST_RATE_LIMITS, "modules": [], "enable_registration": True, "enable_registration_without_verification": True}
            bare = BareSynapse(workdir / "bare", database_url=database_url(), overrides=bare_overrides)
            servers.append(bare)
            bare.start()
            bare_tokens, bare_room = setup_bare_server(bare, args.concurrency)
            without = [native_sender(bare.base_url, t, bare_room) for t in bare_tokens]
            module_senders = [native_sender(server.base_url, t, room) for t in tokens]
            timed_calls(without, 20)
            per_round = max(1, args.messages // args.rounds)
            pairs = [(timed_calls(without, per_round), timed_calls(module_senders, per_round)) for _ in range(args.rounds)]
            baseline = (Result.merge([p[0] for p in pairs]), Result.merge([p[1] for p in pairs]))
    finally:
        for s in servers:
            s.stop()
        for db in databases:
            db.drop()

    print(f"\nMedChat message benchmark — {args.db}, {args.messages} messages per mode, concurrency 1 and {args.concurrency}\n")
    for c, (native, via_api) in results.items():
        print(native.row(f"native PUT /send, {c} sender(s)"))
        print(via_api.row(f"API POST /messages, {c} sender(s)"))
        print(f"  API cost vs native: throughput x{native.throughput / via_api.throughput:.2f}, "
              f"p50 x{percentile(via_api.latencies, 50) / percentile(native.latencies, 50):.2f}, "
              f"p99 x{percentile(via_api.latencies, 99) / percentile(native.latencies, 99):.2f}  (target <= 1.15)")
        print()
    print(f"Reads while {max(1, args.concurrency - 1)} sender(s) keep sending through the API:")
    labels = {"api": "GET messages (50, API)", "native": "GET /messages (50, native)", "room list": "GET /api/chat/rooms",
              "room": "GET /api/chat/rooms/{id}", "search": "GET messages/search (API)",
              "native search": "POST /search (native)"}
    for kind, label in labels.items():
        ms = [x * 1000 for x in history[kind]]
        target = "p99 < 50 ms" if kind in ("api", "native") else "p99 < 100 ms"
        print(f"  {label:<30} n={len(ms):<4} p50 {percentile(ms, 50):6.1f} ms   p99 {percentile(ms, 99):6.1f} ms   (target {target})")
    api_search, native_search = history["search"], history["native search"]
    print(f"  search API / native: p50 x{percentile(api_search, 50) / percentile(native_search, 50):.2f}, "
          f"p99 x{percentile(api_search, 99) / percentile(native_search, 99):.2f}")
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
            row(f"messages: send, {args.concurrency} senders", via_api.throughput, "msg/s", via_api.latencies, native.latencies, native.throughput),
            row("messages: 50-message history page", None, "", history["api"], history["native"]),
        ]
        Path(args.json).write_text(json.dumps(rows))


def row(name: str, throughput: float | None, unit: str, api: list[float], native: list[float], native_throughput: float | None = None) -> dict[str, Any]:
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
