"""The body of scripts/bench (see there): starts each target, runs every bench script against it
with --target/--json, stops it, and prints the rows of all of them as one table."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from harness import TEST_RATE_LIMITS, PostgresDatabase, SynapseServer, free_port  # noqa: E402
from medchat_dev.cluster import Cluster  # noqa: E402
from medchat_dev.devconfig import worker_names  # noqa: E402

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
# Both targets run with the benchmarks' limits: no rate limiting (the reads benchmark seeds a
# thousand rooms, invites and joins a 501-member room at once), cheap password hashing for the many
# registered users, uploads up to 64 MiB, WebSocket heartbeats out of the way.
_UNLIMITED = {"per_second": 10000, "burst_count": 10000}
OVERRIDES = {
    **TEST_RATE_LIMITS,
    **dict.fromkeys(("rc_user_directory", "rc_joins_per_room", "rc_room_creation", "rc_profile"), _UNLIMITED),
    "rc_joins": {"local": _UNLIMITED, "remote": _UNLIMITED},
    "rc_invites": {"per_room": _UNLIMITED, "per_user": _UNLIMITED, "per_issuer": _UNLIMITED},
    "rc_presence": {"per_user": _UNLIMITED},
    "bcrypt_rounds": 4,
}
MODULE_OVERRIDES = {
    "uploads": {"image": {"max_bytes": 64 * 1024 * 1024}, "file": {"max_bytes": 64 * 1024 * 1024}},
    "websocket": {"heartbeat_seconds": 60},
}
BENCHMARKS: dict[str, dict[str, list[str]]] = {
    "messages": {
        "small": ["--messages", "200", "--concurrency", "4"],
        "full": ["--messages", "2000", "--concurrency", "8"],
    },
    "directory": {"small": ["--users", "5000", "--queries", "200"], "full": ["--users", "100000", "--queries", "400"]},
    "realtime": {
        "small": ["--sockets", "50", "--seconds", "8", "--idle", "500"],
        "full": ["--sockets", "50,500,1000", "--seconds", "20", "--idle", "2000"],
    },
    "media": {"small": ["--quick"], "full": ["--full"]},
    "reads": {"small": ["--quick"], "full": []},
}


@contextmanager
def single(admin_url: str, workdir: Path) -> Iterator[tuple[str, str]]:
    database = PostgresDatabase(admin_url)
    server = SynapseServer(
        workdir / "single", database_url=database.url, overrides=OVERRIDES, module_overrides=MODULE_OVERRIDES
    )
    try:
        server.start()
        yield server.base_url, database.url
    finally:
        server.stop()
        database.drop()


@contextmanager
def cluster(admin_url: str, workdir: Path) -> Iterator[tuple[str, str]]:
    database = PostgresDatabase(admin_url)
    env = {
        **os.environ,
        "DATABASE_URL": database.url,
        "MEDCHAT_SERVER_NAME": f"bench-{uuid.uuid4().hex[:8]}.test",
        "MEDCHAT_PORT": str(free_port()),
        "MEDCHAT_MAIN_REPLICATION_PORT": str(free_port()),
        "MEDCHAT_NGINX_PORT": str(free_port()),
        **{f"MEDCHAT_{name.upper()}_PORT": str(free_port()) for name in worker_names()},
        **{f"MEDCHAT_{name.upper()}_METRICS_PORT": str(free_port()) for name in ["main", *worker_names()]},
    }
    env["MEDCHAT_PUBLIC_BASEURL"] = f"http://127.0.0.1:{env['MEDCHAT_NGINX_PORT']}/"
    running = Cluster(workdir / "cluster", env, overrides=OVERRIDES, module_overrides=MODULE_OVERRIDES)
    try:
        running.start()
        yield running.base_url, database.url
    finally:
        running.stop()
        database.drop()


def run_benchmark(
    name: str, size: str, base_url: str, database_url: str, out: Path, target: str
) -> list[dict[str, Any]]:
    command = [sys.executable, str(ROOT / "scripts" / f"bench_{name}.py"), *BENCHMARKS[name][size], "--json", str(out)]
    if name == "realtime" and target == "single":
        # Its own server, as scripts/bench-realtime starts one: the same configuration but for
        # presence (off: N listeners coming online would wake all N streams N times, for minutes
        # at 1,000, and the fan-out would be measured inside that storm; `--presence` measures it),
        # and a process of its own whose memory the idle sockets' row reads.
        command += ["--db", "postgres"]
    else:
        command += ["--target", base_url]
    if name in ("directory", "reads"):
        command += ["--target-db", database_url]
    started = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    print(f"  {name}: {time.monotonic() - started:.0f}s", file=sys.stderr)
    if result.returncode != 0 or not out.exists():
        print(result.stdout[-2000:] + result.stderr[-3000:], file=sys.stderr)
        return [{"benchmark": f"{name}: FAILED (exit {result.returncode})"}]
    return json.loads(out.read_text())


def fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| benchmark | target | throughput | p50 ms | p99 ms | vs native: throughput / p50 / p99 | goal |",
        "| --- | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        if "p50_ms" not in r:
            lines.append(f"| {r['benchmark']} | {r['target']} | | | | | |")
            continue
        # A row that states its goal (the reads' ≤ 1.2× p50 / ≤ 1.5× p99) says whether it met it.
        goal = f"{r['goal']}: {'pass' if r['met'] else 'FAIL'}" if "goal" in r else ""
        throughput = f"{r['throughput']:.1f} {r['unit']}" if r.get("throughput") else "–"
        ratios = f"{fmt(r.get('ratio_throughput'))} / {fmt(r['ratio_p50'])} / {fmt(r['ratio_p99'])}"
        lines.append(
            f"| {r['benchmark']} | {r['target']} | {throughput} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {ratios} | {goal} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="the benchmarks' full sizes")
    parser.add_argument(
        "--only", default=",".join(BENCHMARKS), help=f"comma-separated subset of {','.join(BENCHMARKS)}"
    )
    parser.add_argument("--targets", default="single,cluster", help="comma-separated subset of single,cluster")
    args = parser.parse_args()
    admin_url = os.environ.get("MEDCHAT_TEST_POSTGRES") or DEFAULT_PG
    size = "full" if args.full else "small"
    chosen = [b for b in args.only.split(",") if b]
    unknown = set(chosen) - set(BENCHMARKS)
    if unknown:
        raise SystemExit(f"unknown benchmarks: {', '.join(sorted(unknown))}")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="medchat-bench-") as tmp:
        workdir = Path(tmp)
        for target, start in (("single", single), ("cluster", cluster)):
            if target not in args.targets.split(","):
                continue
            print(f"{target}: starting", file=sys.stderr)
            with start(admin_url, workdir) as (base_url, database_url):
                for name in chosen:
                    results = run_benchmark(
                        name, size, base_url, database_url, workdir / f"{target}-{name}.json", target
                    )
                    rows += [{**row, "target": target, "order": (name, i)} for i, row in enumerate(results)]
    # Each benchmark's rows in its own order (the reads' growth: 10, 100, 1,000 rooms), each row's
    # single-process result next to the cluster's.
    rows.sort(key=lambda r: (r["order"], r["target"] != "single"))
    print(f"\nMedChat benchmarks ({size}), PostgreSQL; {os.cpu_count()} CPUs. Ratios are API ÷ native Matrix")
    print("(messages: PUT /send and /messages; directory: Synapse's user_directory/search; real time: /sync")
    print("long-poll; uploads: /_matrix/media/v3/upload; reads: sliding sync, /messages, /notifications and")
    print(
        "user_directory/search, as scripts/bench-reads says). Throughput ratio > 1 and latency ratio < 1 favour the API.\n"
    )
    print(table(rows))


if __name__ == "__main__":
    main()
