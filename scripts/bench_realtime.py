"""The body of scripts/bench-realtime (see there). Starts its own Synapse + MedChat, or uses --target.

For each listener count N it makes two rooms of N listeners plus one sender: in one every listener
holds an `/api/chat/ws` WebSocket, in the other every listener long-polls `/sync`. Messages go to the
two rooms in turn, one at a time (the next only once the previous one reached every listener or
timed out, and the server is at rest again: `settle`), so both transports are measured in the same
run under the same conditions. Latency is
send → arrival per listener; "all" is send → the last listener's arrival.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from harness import TEST_RATE_LIMITS, Api, SynapseServer, fresh_database  # noqa: E402

# Lazy-loaded members and a one-event timeline: a listener's first /sync stays small in a big room.
SYNC_FILTER = json.dumps({"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 1}}})
DELIVERY_TIMEOUT_SECONDS = 20
# A listener's long-poll, as Element and matrix-js-sdk ask for it: 500 listeners asking again every
# 5 s would be 100 requests a second of background load on both transports' measurements.
SYNC_TIMEOUT_MS = 30_000
# Between messages: the server is at rest once this many trivial requests in a row took under
# this long (a few ms on an idle 2-core machine), or after the time-out.
SETTLE_PROBES = 3
SETTLE_PROBE_SECONDS = 0.05
SETTLE_TIMEOUT_SECONDS = 30
# Hundreds of listeners join one room in seconds.
JOIN_LIMITS = {"rc_joins_per_room": {"per_second": 10000, "burst_count": 10000}}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] if ordered else float("nan")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def setup_users(api: Api, prefix: str, count: int) -> list[dict]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda i: api.register(f"bench_{prefix}_{i}_{os.getpid()}"), range(count)))


def setup_room(api: Api, owner: dict, members: list[dict]) -> str:
    room = api.call(
        "POST", "/_matrix/client/v3/createRoom", token=owner["access_token"], json={"preset": "public_chat"}
    ).json()["room_id"]

    def join(member: dict) -> None:
        while True:  # a target's per-room join limit (rc_joins_per_room) is waited out
            r = api.call("POST", f"/_matrix/client/v3/join/{room}", token=member["access_token"], json={})
            if r.status_code != 429:
                break
            time.sleep(r.json().get("retry_after_ms", 1000) / 1000)
        assert r.status_code == 200, r.text

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(join, members))
    return room


class Clock:
    """Send times by message body; per transport, each arrival's latency and each message's last."""

    def __init__(self, listeners: int) -> None:
        self.listeners = listeners
        self.sent: dict[str, float] = {}
        self.arrived: dict[str, int] = {}
        self.done: dict[str, asyncio.Event] = {}
        self.latency: dict[str, list[float]] = {"websocket": [], "sync": []}
        self.last: dict[str, list[float]] = {"websocket": [], "sync": []}

    def start(self, body: str) -> asyncio.Event:
        self.sent[body], self.arrived[body], self.done[body] = time.monotonic(), 0, asyncio.Event()
        return self.done[body]

    def received(self, transport: str, body: str | None) -> None:
        if body not in self.sent:
            return
        took = (time.monotonic() - self.sent[body]) * 1000
        self.latency[transport].append(took)
        self.arrived[body] += 1
        if self.arrived[body] == self.listeners:
            self.last[transport].append(took)
            self.done[body].set()


async def websocket_reader(
    session: aiohttp.ClientSession, ws_url: str, token: str, clock: Clock, ready: list[int], stop: asyncio.Event
) -> None:
    async with session.ws_connect(ws_url, params={"access_token": token}, heartbeat=None, max_msg_size=0) as ws:
        await ws.receive_json(timeout=120)
        ready[0] += 1
        while not stop.is_set():
            try:
                frame = await ws.receive_json(timeout=1)
            except (asyncio.TimeoutError, TypeError):
                continue
            for event in frame.get("events", []):
                if event["type"] == "message.new":
                    clock.received("websocket", event["message"]["content"])


async def sync_reader(
    session: aiohttp.ClientSession, base_url: str, token: str, clock: Clock, ready: list[int], stop: asyncio.Event
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{base_url}/_matrix/client/v3/sync"
    async with session.get(url, params={"timeout": "0", "filter": SYNC_FILTER}, headers=headers) as r:
        since = (await r.json())["next_batch"]
    ready[0] += 1
    while not stop.is_set():
        params = {"timeout": str(SYNC_TIMEOUT_MS), "since": since, "filter": SYNC_FILTER}
        async with session.get(url, params=params, headers=headers) as r:
            body = await r.json()
        since = body["next_batch"]
        for room in body.get("rooms", {}).get("join", {}).values():
            for event in room.get("timeline", {}).get("events", []):
                if event["type"] == "m.room.message":
                    clock.received("sync", event["content"].get("body"))


async def send(session: aiohttp.ClientSession, base_url: str, room: str, token: str, body: str, txn: str) -> None:
    url = f"{base_url}/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"
    async with session.put(
        url, json={"msgtype": "m.text", "body": body}, headers={"Authorization": f"Bearer {token}"}
    ) as r:
        assert r.status == 200, await r.text()


async def fanout_phase(
    base_url: str, sender: dict, ws_room: tuple[str, list[dict]], sync_room: tuple[str, list[dict]], args: Any
) -> Clock:
    listeners = len(ws_room[1])
    clock, stop = Clock(listeners), asyncio.Event()
    ws_url = base_url.replace("http", "ws", 1) + "/api/chat/ws"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        ws_ready, sync_ready = [0], [0]
        tasks = [
            asyncio.create_task(websocket_reader(session, ws_url, m["access_token"], clock, ws_ready, stop))
            for m in ws_room[1]
        ]
        tasks += [
            asyncio.create_task(sync_reader(session, base_url, m["access_token"], clock, sync_ready, stop))
            for m in sync_room[1]
        ]
        deadline = time.monotonic() + 120 + listeners / 5
        while (ws_ready[0] < listeners or sync_ready[0] < listeners) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)  # the first long-polls are waiting
        await settle(session, base_url)  # and the listeners' first syncs and connections are done
        start, sent = time.monotonic(), 0
        while time.monotonic() - start < args.seconds or sent < 4:
            room = ws_room if sent % 2 == 0 else sync_room
            body = f"bench {listeners} {sent} {time.time()}"
            done = clock.start(body)
            await send(session, base_url, room[0], sender["access_token"], body, f"b{listeners}-{sent}-{os.getpid()}")
            try:
                await asyncio.wait_for(done.wait(), DELIVERY_TIMEOUT_SECONDS)
            except asyncio.TimeoutError:
                print(f"  message {sent}: {clock.arrived[body]}/{listeners} arrived in {DELIVERY_TIMEOUT_SECONDS}s")
            sent += 1
            await settle(session, base_url)
            await asyncio.sleep(max(0.2, start + sent / args.rate - time.monotonic()))
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return clock


async def settle(session: aiohttp.ClientSession, base_url: str) -> None:
    """Waits until the server answers a trivial request at once again: a message's last arrival
    is not the end of its cost (each `/sync` listener then asks again, and its next long-poll is
    set up), and the next message, in the other room, is measured from a server at rest rather
    than inside the previous one's aftermath."""
    quick = 0
    deadline = time.monotonic() + SETTLE_TIMEOUT_SECONDS
    while quick < SETTLE_PROBES and time.monotonic() < deadline:
        started = time.monotonic()
        async with session.get(f"{base_url}/_matrix/client/versions") as r:
            await r.read()
        quick = quick + 1 if time.monotonic() - started < SETTLE_PROBE_SECONDS else 0
        await asyncio.sleep(0.05)


def ratio(a: list[float], b: list[float], p: float) -> float | None:
    return percentile(a, p) / percentile(b, p) if a and b else None


def fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


async def idle_phase(server: SynapseServer, users: list[dict], count: int) -> tuple[int, int, float]:
    """Opens `count` sockets spread over the users; returns (opened, rss growth KiB, seconds to open)."""
    ws_url = server.base_url.replace("http", "ws", 1) + "/api/chat/ws"
    connector = aiohttp.TCPConnector(limit=0)
    opened: list[aiohttp.ClientWebSocketResponse[bool]] = []
    async with aiohttp.ClientSession(connector=connector) as session:
        semaphore = asyncio.Semaphore(100)

        async def open_one(i: int) -> None:
            async with semaphore:
                ws = await session.ws_connect(
                    ws_url, params={"access_token": users[i % len(users)]["access_token"]}, heartbeat=None
                )
                await ws.receive_json(timeout=60)
                opened.append(ws)

        # A first round opened and closed warms the server's allocator, so the measured round
        # counts the sockets and not the first use of code paths and caches.
        await asyncio.gather(*(open_one(i) for i in range(min(count, 200))), return_exceptions=True)
        for ws in opened:
            await ws.close()
        opened.clear()
        await asyncio.sleep(3)
        before = rss_kib(server.pid)
        start = time.monotonic()
        results = await asyncio.gather(*(open_one(i) for i in range(count)), return_exceptions=True)
        took = time.monotonic() - start
        failures = [r for r in results if isinstance(r, Exception)]
        if failures:
            print(f"  {len(failures)} sockets failed to open, e.g. {failures[0]!r}")
        await asyncio.sleep(5)
        still_open = sum(1 for ws in opened if not ws.closed)
        grown = rss_kib(server.pid) - before
        for ws in opened:
            await ws.close()
    return still_open, grown, took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sockets", default="50,500,1000", help="listener counts, comma-separated")
    parser.add_argument("--rate", type=float, default=2, help="messages per second at most (each waits for the last)")
    parser.add_argument("--seconds", type=float, default=20, help="sending time per listener count")
    parser.add_argument("--idle", type=int, default=2000, help="idle sockets to hold for the memory figure (0 skips)")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--target",
        help="use the server (or cluster) already running at this URL; no idle phase (it reads the process's memory)",
    )
    parser.add_argument(
        "--presence",
        action="store_true",
        help="keep Synapse's presence on in the server this starts: each of N listeners coming online then"
        " wakes all N streams, for minutes at N=500, and the fan-out is measured inside that storm",
    )
    parser.add_argument("--json", help="also write one row per listener count here (for scripts/bench)")
    args = parser.parse_args()
    if args.target:
        run(Target(args.target), args)
        return
    if args.db == "postgres":
        os.environ.setdefault("MEDCHAT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
    else:
        os.environ.pop("MEDCHAT_TEST_POSTGRES", None)

    with tempfile.TemporaryDirectory() as workdir, fresh_database() as database_url:
        server = SynapseServer(
            Path(workdir),
            database_url=database_url,
            overrides={
                **TEST_RATE_LIMITS,
                **JOIN_LIMITS,
                "bcrypt_rounds": 4,
                **({} if args.presence else {"presence": {"enabled": False}}),
            },
            module_overrides={"websocket": {"heartbeat_seconds": 60}},
        )
        server.start()
        try:
            run(server, args)
        finally:
            server.stop()


class Target:
    """A server already running (scripts/bench's single process, or the cluster's nginx)."""

    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")


def run(server: SynapseServer | Target, args: argparse.Namespace) -> None:
    api = Api(server.base_url)
    counts = [int(n) for n in str(args.sockets).split(",") if n]
    rows: list[dict[str, Any]] = []
    lines = []
    all_users: list[dict] = []
    for n in counts:
        print(f"setting up two rooms of {n} listeners ...", flush=True)
        # A sender of its own per count: access tokens live 15 minutes, and the larger counts'
        # set-up alone can outlast the first sender's.
        sender = setup_users(api, f"sender{n}", 1)[0]
        ws_users, sync_users = setup_users(api, f"ws{n}", n), setup_users(api, f"sync{n}", n)
        all_users += ws_users
        ws_room = (setup_room(api, sender, ws_users), ws_users)
        sync_room = (setup_room(api, sender, sync_users), sync_users)
        clock = asyncio.run(fanout_phase(server.base_url, sender, ws_room, sync_room, args))
        ws, sync = clock.latency["websocket"], clock.latency["sync"]
        ws_last, sync_last = clock.last["websocket"], clock.last["sync"]
        messages = len(clock.sent)
        lines.append(
            f"{n:>9} {messages:>5} "
            f"{percentile(ws, 50):>8.0f} {percentile(ws, 99):>8.0f} {percentile(ws_last, 50):>8.0f} "
            f"{percentile(sync, 50):>8.0f} {percentile(sync, 99):>8.0f} {percentile(sync_last, 50):>8.0f} "
            f"{fmt(ratio(ws, sync, 50)):>7} {fmt(ratio(ws, sync, 99)):>7}"
        )
        rows.append(
            {
                "benchmark": f"real time: delivery to {n} WebSockets vs /sync",
                "throughput": len(ws) / max(args.seconds, 1) if ws else None,
                "unit": "deliveries/s",
                "p50_ms": percentile(ws, 50),
                "p99_ms": percentile(ws, 99),
                "ratio_throughput": None,
                "ratio_p50": ratio(ws, sync, 50),
                "ratio_p99": ratio(ws, sync, 99),
            }
        )
    print("\nsend → arrival, ms (WebSocket room and /sync room in turn, one message at a time)")
    print(
        f"{'listeners':>9} {'msgs':>5} {'ws p50':>8} {'ws p99':>8} {'ws all':>8} "
        f"{'sync p50':>8} {'sync p99':>8} {'sync all':>8} {'p50 ×':>7} {'p99 ×':>7}"
    )
    print("\n".join(lines))
    if args.idle and isinstance(server, SynapseServer):
        idle_users = all_users or setup_users(api, "idle", 100)
        held, grown_kib, took = asyncio.run(idle_phase(server, idle_users, args.idle))
        per_socket = grown_kib / max(held, 1)
        print(
            f"\nidle: {held}/{args.idle} sockets held (opened in {took:.1f}s); server RSS grew {grown_kib / 1024:.1f} MiB,"
            f" {per_socket:.1f} KiB per connection"
        )
        rows.append({"benchmark": f"real time: server memory per idle WebSocket ({per_socket:.1f} KiB, {held} held)"})
    if args.json:
        Path(args.json).write_text(json.dumps(rows))


if __name__ == "__main__":
    main()
