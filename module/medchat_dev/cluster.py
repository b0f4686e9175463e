"""The config/ topology run natively on loopback: Synapse main, every worker and nginx as children.

scripts/run-cluster and tests/test_cluster.py both start it from here, with the same config files
docker-compose uses. Order: Synapse's schema is prepared first (workers refuse an unprepared
database), then the main process and all workers start together, so the module's migrations are
raced for and its advisory lock decides; nginx starts last.

Once up, `supervise()` keeps it up: a process that exits is started again with back-off (0.5 s,
doubling to 30 s, back to 0.5 s once it has stayed up a minute), logged, while the others go on
serving. Only Ctrl-C / SIGTERM stops everything, or the main process failing `MAIN_GIVE_UP` times
in a row without staying up (its workers cannot serve without it, so the cluster is down anyway).
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse, urlunparse

import yaml

from medchat_dev.devconfig import (
    ROOT,
    nginx_command,
    prepare,
    prepare_nginx,
    prepare_worker,
    schema_command,
    synapse_command,
    worker_names,
)

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/medchat_cluster"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"

# Restart back-off: the first restart after FIRST_BACKOFF_S, doubling to MAX_BACKOFF_S; a process
# that stayed up STABLE_AFTER_S counts as healthy again (its next exit restarts after FIRST_BACKOFF_S).
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
STABLE_AFTER_S = 60.0
# Consecutive quick exits of the main process after which supervision gives up.
MAIN_GIVE_UP = 5


def redis_answers(url: str) -> bool:
    """True when something at the URL's address answers a Redis PING (even with NOAUTH)."""
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=2) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def ensure_nginx() -> str:
    """The nginx binary, installed from Debian's packages when missing (the cluster needs it)."""
    search_path = os.environ.get("PATH", "") + ":/usr/sbin"
    found = shutil.which("nginx", path=search_path)
    if found:
        return found
    install = ["apt-get", "install", "-y", "--no-install-recommends", "nginx"]
    if subprocess.run(install, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(install, check=True, stdout=subprocess.DEVNULL)
    return shutil.which("nginx", path=search_path) or "nginx"


def ensure_database(url: str) -> None:
    """Creates the URL's database (C-collated, as Synapse wants) on its server when it is missing."""
    import psycopg2

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    conn = psycopg2.connect(urlunparse(parsed._replace(path="/postgres")), connect_timeout=5)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cur.fetchone() is None:
            cur.execute(f"CREATE DATABASE \"{name}\" ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
    conn.close()


class Cluster:
    """Every process of the topology under one data directory; `start()` returns when all answer."""

    def __init__(
        self,
        data_dir: Path,
        env: Mapping[str, str],
        overrides: Mapping[str, Any] | None = None,
        module_overrides: Mapping[str, Any] | None = None,
    ):
        """`overrides` / `module_overrides` are merged into every process's config (e.g. the
        benchmarks' rate limits), as devconfig.prepare merges them."""
        self.data_dir = data_dir.resolve()
        self._overrides = (overrides, module_overrides)
        self.env = {**env, "DATABASE_URL": env.get("DATABASE_URL") or DEFAULT_DATABASE_URL}
        self.env.setdefault("REDIS_URL", DEFAULT_REDIS_URL)
        self.logs = self.data_dir / "logs"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}
        self.restarts: dict[str, int] = {}  # name -> how many times supervision restarted it
        self._commands: dict[str, list[str]] = {}
        self._log_files: dict[str, IO[bytes]] = {}
        self._started_at: dict[str, float] = {}
        self._backoff: dict[str, float] = {}
        self._restart_at: dict[str, float] = {}
        self._quick_exits: dict[str, int] = {}
        self._lock = threading.Lock()  # supervise() and stop() never act on a process at once
        self._stopping = threading.Event()
        self._started = False  # every process answered once: exits are restarted from then on

    @property
    def base_url(self) -> str:
        """nginx: the address clients use."""
        return f"http://127.0.0.1:{self.ports['nginx']}"

    def process_url(self, name: str) -> str:
        """One process's own HTTP listener, bypassing nginx."""
        return f"http://127.0.0.1:{self.ports[name]}"

    def start(self, timeout: float = 150) -> None:
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        nginx_binary = ensure_nginx()
        if not redis_answers(self.env["REDIS_URL"]):
            redis_port = urlparse(self.env["REDIS_URL"]).port or 6379
            self._spawn(
                "redis",
                ["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "", "--appendonly", "no"],
            )
            self._wait(lambda: redis_answers(self.env["REDIS_URL"]), "redis", timeout=20)
        shared = prepare(
            self.data_dir, env=self.env, overrides=self._overrides[0], module_overrides=self._overrides[1], cluster=True
        )
        main_config = yaml.safe_load(shared[0].read_text())
        self.ports["main"] = main_config["listeners"][0]["port"]
        commands = {"main": synapse_command(shared)}
        for name in worker_names():
            worker_path = prepare_worker(self.data_dir, name, env=self.env)
            self.ports[name] = yaml.safe_load(worker_path.read_text())["worker_listeners"][0]["port"]
            commands[name] = synapse_command([*shared, worker_path], worker=True)
        nginx_conf = prepare_nginx(self.data_dir, env=self.env)
        self.ports["nginx"] = int(re.search(r"^\s*listen\s+[^;]*:(\d+);", nginx_conf.read_text(), re.M).group(1))  # type: ignore[union-attr]

        schema = subprocess.run(
            schema_command(shared[0]), cwd=self.data_dir, capture_output=True, text=True, env=self.env
        )
        if schema.returncode != 0:
            raise RuntimeError(f"preparing Synapse's schema failed:\n{schema.stdout[-3000:]}{schema.stderr[-3000:]}")
        for name, command in commands.items():
            self._spawn(name, command)
        deadline = time.monotonic() + timeout
        for name in commands:
            health = self.process_url(name) + "/api/health"
            self._wait(functools.partial(self._answers, health), name, deadline - time.monotonic())
        self._spawn("nginx", [nginx_binary, *nginx_command(nginx_conf)[1:]])
        self._wait(lambda: self._answers(self.base_url + "/health"), "nginx", timeout=20)
        self._started = True

    def _spawn(self, name: str, command: list[str]) -> None:
        old_log = self._log_files.pop(name, None)
        if old_log is not None:
            old_log.close()
        log = (self.logs / f"{name}.log").open("ab")
        self._log_files[name] = log
        self._commands[name] = command
        self._started_at[name] = time.monotonic()
        # Own process group: Ctrl-C in scripts/run-cluster reaches the supervisor, which stops
        # the children in order rather than all at once.
        self.processes[name] = subprocess.Popen(
            command, cwd=self.data_dir, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @staticmethod
    def _answers(url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def _wait(self, ready: Callable[[], bool], name: str, timeout: float) -> None:
        deadline = time.monotonic() + max(timeout, 1)
        while time.monotonic() < deadline:
            self.check_alive()
            if ready():
                return
            time.sleep(0.25)
        raise RuntimeError(f"{name} did not answer within {timeout:.0f}s:\n{self.log_tail(name)}")

    def check_alive(self) -> None:
        """During start-up, raises with the log's tail if any process has exited (a broken config,
        nothing to retry). Once started, restarts what exited instead (`supervise_once`): a dead
        worker never makes it raise, only a main process that will not stay up."""
        if self._started:
            self.supervise_once()
            return
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.log_tail(name)}")

    def supervise_once(self) -> None:
        """Restarts every process that has exited and whose back-off has passed; logs each exit.

        Raises RuntimeError only when the main process has failed `MAIN_GIVE_UP` times in a row.
        """
        with self._lock:
            if self._stopping.is_set():
                return
            now = time.monotonic()
            for name, process in list(self.processes.items()):
                if process.poll() is None:
                    if now - self._started_at.get(name, now) >= STABLE_AFTER_S:
                        self._backoff.pop(name, None)
                        self._quick_exits.pop(name, None)
                    continue
                if name not in self._restart_at:
                    self._note_exit(name, process.returncode, now)
                if now >= self._restart_at[name]:
                    del self._restart_at[name]
                    self.restarts[name] = self.restarts.get(name, 0) + 1
                    _say(f"restarting {name} (restart {self.restarts[name]})")
                    self._spawn(name, self._commands[name])

    def _note_exit(self, name: str, returncode: int, now: float) -> None:
        uptime = now - self._started_at.get(name, now)
        if uptime >= STABLE_AFTER_S:
            self._backoff.pop(name, None)
            self._quick_exits.pop(name, None)
        self._quick_exits[name] = self._quick_exits.get(name, 0) + 1
        if name == "main" and self._quick_exits[name] >= MAIN_GIVE_UP:
            raise RuntimeError(f"main exited {MAIN_GIVE_UP} times in a row without staying up:\n{self.log_tail(name)}")
        delay = self._backoff.get(name, FIRST_BACKOFF_S)
        self._backoff[name] = min(delay * 2, MAX_BACKOFF_S)
        self._restart_at[name] = now + delay
        _say(
            f"{name} exited with {returncode} after {uptime:.1f}s; restarting in {delay:.1f}s (log: {self.logs / (name + '.log')})"
        )

    def supervise(self, interval: float = 0.25) -> None:
        """Keeps the cluster up until `stop()` (from another thread) or a RuntimeError of
        `supervise_once`."""
        while not self._stopping.wait(interval):
            self.supervise_once()

    def supervise_in_background(self) -> threading.Thread:
        """`supervise()` in a daemon thread (the tests' way; scripts/run-cluster supervises in
        its main thread). An error there is logged; `stop()` ends the thread."""

        def run() -> None:
            try:
                self.supervise()
            except RuntimeError as e:
                _say(f"supervision stopped: {e}")

        thread = threading.Thread(target=run, name="medchat-cluster-supervisor", daemon=True)
        thread.start()
        return thread

    def log_tail(self, name: str, lines: int = 60) -> str:
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"

    def stop(self) -> None:
        """nginx first, then the workers and main (SIGTERM, then SIGKILL after 30 s), Redis last.
        Supervision stops first, so nothing stopped here is started again."""
        self._stopping.set()
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        order = ["nginx", *[n for n in self.processes if n not in ("nginx", "main", "redis")], "main", "redis"]
        running = [self.processes[n] for n in order if n in self.processes and self.processes[n].poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        for process in running:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in self._log_files.values():
            log.close()
        self._log_files.clear()


def _say(message: str) -> None:
    """A supervision line on the runner's stderr (each process's own output is in its log)."""
    print(f"medchat cluster: {message}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the config/ topology (Synapse main, workers, nginx) on loopback.")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data-cluster")
    args = parser.parse_args()
    env = dict(os.environ)
    env.setdefault("DATABASE_URL", DEFAULT_DATABASE_URL)
    ensure_database(env["DATABASE_URL"])
    cluster = Cluster(args.data_dir, env)
    # Ctrl-C and SIGTERM both stop the children, even when started with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        cluster.start()
        print(f"medchat cluster: {cluster.base_url} (nginx); processes:", file=sys.stderr)
        for name, port in cluster.ports.items():
            print(f"  {name:<18} 127.0.0.1:{port}  log: {cluster.logs / (name + '.log')}", file=sys.stderr)
        print("A process that exits is restarted; Ctrl-C stops everything.", file=sys.stderr)
        cluster.supervise()
    except KeyboardInterrupt:
        pass
    except RuntimeError as e:  # the main process would not stay up
        print(f"medchat cluster: giving up: {e}", file=sys.stderr)
        sys.exit(1)
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
