"""The body of scripts/bench-realtime (see there). Starts its own Synapse + MedChat."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from harness import TEST_RATE_LIMITS, Api, SynapseServer, fresh_database  # noqa: E402

ROOM_SIZE = 10


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] if ordered else float("nan")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def setup_users(api: Api, count: int) -> list[dict]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda i: api.register(f"bench_{i}_{os.getpid()}"), range(count)))


def setup_rooms(api: Api, users: list[dict]) -> list[tuple[str, list[dict]]]:
    groups = [users[i : i + ROOM_SIZE] for i in range(0, len(users), ROOM_SIZE)]

    def make(group: list[dict]) -> tuple[str, list[dict]]:
        owner, members = group[0], group[1:]
        room = api.call(
            "POST",
            "/_matrix/client/v3/createRoom",
            token=owner["access_token"],
            json={"invite": [m["user_id"] for m in members]},
        ).json()["room_id"]
        for member in members:
            api.call("POST", f"/_matrix/client/v3/join/{room}", token=member["access_token"], json={})
        return room, group

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(make, groups))


class Clock:
    """Send times by message body, receive latencies by transport."""

    def __init__(self) -> None:
        self.sent: dict[str, float] = {}
        self.latency: dict[str, list[float]] = {"websocket": [], "sync": []}

    def received(self, transport: str, body: str | None) -> None:
        if body in self.sent:
            self.latency[transport].append((time.monotonic() - self.sent[body]) * 1000)


async def websocket_reader(
    session: aiohttp.ClientSession, ws_url: str, token: str, clock: Clock, stop: asyncio.Event
) -> None:
    async with session.ws_connect(ws_url, params={"access_token": token}, heartbeat=None, max_msg_size=0) as ws:
        await ws.receive_json()
        while not stop.is_set():
            try:
                frame = await ws.receive_json(timeout=1)
            except (asyncio.TimeoutError, TypeError):
                continue
            for event in frame.get("events", []):
                if event["type"] == "message.new":
                    clock.received("websocket", event["message"]["content"])


async def sync_reader(
    session: aiohttp.ClientSession, base_url: str, token: str, clock: Clock, stop: asyncio.Event
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with session.get(f"{base_url}/_matrix/client/v3/sync", params={"timeout": "0"}, headers=headers) as r:
        since = (await r.json())["next_batch"]
    while not stop.is_set():
        async with session.get(
            f"{base_url}/_matrix/client/v3/sync", params={"timeout": "5000", "since": since}, headers=headers
        ) as r:
            body = await r.json()
        since = body["next_batch"]
        for room in body.get("rooms", {}).get("join", {}).values():
            for event in room.get("timeline", {}).get("events", []):
                if event["type"] == "m.room.message":
                    clock.received("sync", event["content"].get("body"))


async def sender(base_url: str, rooms: list[tuple[str, list[dict]]], rate: float, seconds: float, clock: Clock) -> int:
    sent = 0
    async with aiohttp.ClientSession() as session:
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            room, group = random.choice(rooms)
            body = f"bench {sent} {random.random()}"
            clock.sent[body] = time.monotonic()
            url = f"{base_url}/_matrix/client/v3/rooms/{room}/send/m.room.message/b{sent}"
            async with session.put(
                url,
                json={"msgtype": "m.text", "body": body},
                headers={"Authorization": f"Bearer {group[0]['access_token']}"},
            ) as r:
                assert r.status == 200, await r.text()
            sent += 1
            await asyncio.sleep(max(0.0, start + sent / rate - time.monotonic()))
    return sent


async def latency_phase(
    server: SynapseServer | Target, rooms: list[tuple[str, list[dict]]], rate: float, seconds: float
) -> tuple[Clock, int, int, int]:
    clock, stop = Clock(), asyncio.Event()
    ws_url = server.base_url.replace("http", "ws", 1) + "/api/chat/ws"
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        readers = []
        for (
            _,
            group,
        ) in rooms:  # in each room the last member long-polls /sync, the others (not the sender) hold a socket
            readers += [websocket_reader(session, ws_url, m["access_token"], clock, stop) for m in group[1:-1]]
            readers.append(sync_reader(session, server.base_url, group[-1]["access_token"], clock, stop))
        tasks = [asyncio.create_task(r) for r in readers]
        await asyncio.sleep(3 + len(tasks) / 200)  # let the sockets connect
        sent = await sender(server.base_url, rooms, rate, seconds, clock)
        await asyncio.sleep(3)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    sockets = sum(len(g) - 2 for _, g in rooms)
    return clock, sent, sockets, len(rooms)


async def idle_phase(server: SynapseServer, users: list[dict], count: int) -> tuple[int, int, float]:
    """Opens `count` sockets spread over the users; returns (opened, rss growth KiB, seconds to open)."""
    ws_url = server.base_url.replace("http", "ws", 1) + "/api/chat/ws"
    before = rss_kib(server.pid)
    connector = aiohttp.TCPConnector(limit=0)
    opened: list[aiohttp.ClientWebSocketResponse[bool]] = []
    start = time.monotonic()
    async with aiohttp.ClientSession(connector=connector) as session:
        semaphore = asyncio.Semaphore(200)

        async def open_one(i: int) -> None:
            async with semaphore:
                ws = await session.ws_connect(
                    ws_url, params={"access_token": users[i % len(users)]["access_token"]}, heartbeat=None
                )
                await ws.receive_json(timeout=60)
                opened.append(ws)

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
    parser.add_argument("--sockets", type=int, default=1000, help="users on WebSockets in the latency phase")
    parser.add_argument("--rate", type=float, default=20, help="messages per second")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--idle", type=int, default=10000, help="idle sockets to hold (0 skips)")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--target",
        help="use the server (or cluster) already running at this URL; no idle phase (it reads the process's memory)",
    )
    parser.add_argument("--json", help="also write the latency row here (for scripts/bench)")
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
            overrides={**TEST_RATE_LIMITS, "bcrypt_rounds": 4},
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
    users_needed = args.sockets + 2 * (args.sockets // (ROOM_SIZE - 2) + 1)
    api = Api(server.base_url)
    print(f"setting up {users_needed} users in rooms of {ROOM_SIZE} ...")
    users = setup_users(api, users_needed)
    rooms = setup_rooms(api, users)
    clock, sent, sockets, pollers = asyncio.run(latency_phase(server, rooms, args.rate, args.seconds))
    ws, sync = clock.latency["websocket"], clock.latency["sync"]
    print(
        f"\nlatency: {sent} messages at {args.rate}/s over {args.seconds}s; {sockets} WebSockets, {pollers} /sync long-polls"
    )
    print(f"{'transport':<12}{'deliveries':>12}{'p50 ms':>10}{'p99 ms':>10}")
    for name, values in (("websocket", ws), ("/sync", sync)):
        print(f"{name:<12}{len(values):>12}{percentile(values, 50):>10.1f}{percentile(values, 99):>10.1f}")
    if ws and sync:
        print(
            f"ratio websocket/sync: p50 {percentile(ws, 50) / percentile(sync, 50):.2f}, p99 {percentile(ws, 99) / percentile(sync, 99):.2f}"
        )
    if args.json:
        row = {
            "benchmark": f"real time: delivery to {sockets} WebSockets vs /sync",
            "throughput": len(ws) / args.seconds,
            "unit": "deliveries/s",
            "p50_ms": percentile(ws, 50),
            "p99_ms": percentile(ws, 99),
            "ratio_throughput": None,
            "ratio_p50": percentile(ws, 50) / percentile(sync, 50),
            "ratio_p99": percentile(ws, 99) / percentile(sync, 99),
        }
        Path(args.json).write_text(json.dumps([row]))
    if args.idle and isinstance(server, SynapseServer):
        held, grown_kib, took = asyncio.run(idle_phase(server, users, args.idle))
        print(
            f"\nidle: {held}/{args.idle} sockets held (opened in {took:.1f}s); server RSS grew {grown_kib / 1024:.1f} MiB,"
            f" {grown_kib / max(held, 1):.1f} KiB per connection"
        )


if __name__ == "__main__":
    main()
