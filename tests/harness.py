"""Starts real Synapse processes with the MedChat module for the tests, and talks HTTP to them.

No mock of Synapse: each server is `python -m synapse.app.homeserver` rendered from the repo's
synapse.yaml (medchat_dev.devconfig), on a free loopback port, on SQLite or a fresh PostgreSQL database.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse, urlunparse

import requests
import yaml
from nio import AsyncClient, LoginResponse
from synapse.storage.engines import PostgresEngine, create_engine

from medchat_dev.devconfig import prepare, synapse_command

SERVER_NAME = "medchat.test"
PASSWORD = "correct horse battery staple"

# The suite logs in and registers far more often than a person; the failed-attempt limiter stays
# at synapse.yaml's value so the rate-limit test sees Synapse's real behaviour.
TEST_RATE_LIMITS = {
    "rc_login": {
        "address": {"per_second": 1000, "burst_count": 1000},
        "account": {"per_second": 1000, "burst_count": 1000},
    },
    "rc_registration": {"per_second": 1000, "burst_count": 1000},
    "rc_3pid_validation": {"per_second": 1000, "burst_count": 1000},
    "rc_message": {"per_second": 1000, "burst_count": 1000},
    # The push-gateway sink listens on loopback, which Synapse blocks for outbound requests by default.
    "ip_range_whitelist": ["127.0.0.1"],
}


# Module config the suite's server runs with on top of synapse.yaml's: an institution verifier,
# quick WebSocket heartbeats and token re-checks so those tests need not wait long, and case-room
# admins allowed to switch the identifier guard to warn (synapse.yaml forbids it).
VERIFIER_INSTITUTION = "Verifier Test Hospital"
INSTITUTION_VERIFIER = "inst_verifier"
TEST_MODULE_CONFIG: dict[str, Any] = {
    "verifiers": {VERIFIER_INSTITUTION: [f"@{INSTITUTION_VERIFIER}:{SERVER_NAME}"]},
    "websocket": {"heartbeat_seconds": 2, "token_recheck_seconds": 1, "slow_consumer_seconds": 2},
    "case_rooms": {"allow_warn_mode": True},
}


T = TypeVar("T")


def present(value: T | None) -> T:
    """`value`, which the test expects to be there (a refusal, a row): fails the test if it is None."""
    assert value is not None, "expected a value, got None"
    return value


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A free loopback port *below* the kernel's ephemeral range. A port the kernel hands out for
    `bind(0)` is an ephemeral one, which any outgoing connection of the servers started meanwhile
    (Synapse to Redis or PostgreSQL, weed to itself) may take before the server meant for it binds:
    the clusters and the S3 server died of that. Ports below the range are never given to outgoing
    connections, so a port found free here stays free until a test's own server takes it."""
    low, _ = _ephemeral_range()
    start = max(1024, low - 12000)
    for _ in range(200):
        port = random.randrange(start, low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port between {start} and {low}")


class PostgresDatabase:
    """A throw-away database on the server of `admin_url`, created C-collated as Synapse wants."""

    def __init__(self, admin_url: str):
        import psycopg2

        self._admin_url = admin_url
        self.name = f"medchat_test_{uuid.uuid4().hex[:12]}"
        try:
            conn = psycopg2.connect(admin_url, connect_timeout=5)
        except psycopg2.OperationalError as e:
            raise RuntimeError(f"MEDCHAT_TEST_POSTGRES={admin_url} is not reachable: {e}") from e
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {self.name} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
        conn.close()
        parsed = urlparse(admin_url)
        self.url = urlunparse(parsed._replace(path="/" + self.name))

    def connect(self) -> Any:
        import psycopg2

        return psycopg2.connect(self.url)

    def drop(self) -> None:
        import psycopg2

        conn = psycopg2.connect(self._admin_url)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
        conn.close()


class SynapseServer:
    """One homeserver process. `start()` returns once `ready_path` (`/api/health`) answers."""

    ready_path = "/api/health"  # a server without the module (benchmark baseline) overrides it

    def __init__(
        self,
        workdir: Path,
        database_url: str | None = None,
        env: dict[str, str] | None = None,
        overrides: dict[str, Any] | None = None,
        module_overrides: dict[str, Any] | None = None,
        extra_modules: list[dict[str, Any]] | None = None,
    ):
        self.workdir = workdir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.metrics_url = f"http://127.0.0.1:{free_port()}/_synapse/metrics"  # its own loopback listener
        self.database_url = database_url
        self.log_path = workdir / "homeserver.log"
        self._env = {
            "MEDCHAT_SERVER_NAME": SERVER_NAME,
            "MEDCHAT_PORT": str(self.port),
            "MEDCHAT_METRICS_PORT": self.metrics_url.split(":")[2].split("/")[0],
            "MEDCHAT_PUBLIC_BASEURL": self.base_url + "/",
            **(env or {}),
        }
        if database_url:
            self._env["DATABASE_URL"] = database_url
        self._overrides = overrides or {}
        self._module_overrides = module_overrides or {}
        self._extra_modules = extra_modules or []
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the server has not been started")
        return self.process.pid

    def start(self, timeout: float = 120) -> None:
        config_paths = prepare(
            self.workdir,
            env=self._env,
            overrides=self._overrides,
            module_overrides=self._module_overrides,
            extra_modules=self._extra_modules,
        )
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            synapse_command(config_paths), cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Synapse exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(self.base_url + self.ready_path, timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Synapse did not answer within {timeout}s:\n{self.log_tail()}")

    def run_until_exit(self, timeout: float = 60) -> tuple[int, str]:
        """Starts a server that is expected to refuse to start; returns (exit code, output)."""
        config_paths = prepare(
            self.workdir,
            env=self._env,
            overrides=self._overrides,
            module_overrides=self._module_overrides,
            extra_modules=self._extra_modules,
        )
        result = subprocess.run(
            synapse_command(config_paths), cwd=self.workdir, capture_output=True, timeout=timeout, text=True
        )
        return result.returncode, result.stdout + result.stderr

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def register_matrix_user(self, username: str, password: str = PASSWORD, admin: bool = False) -> dict[str, Any]:
        """A plain Matrix account made with Synapse's shared-secret admin API (no MedChat profile);
        Synapse's answer (`user_id`, `access_token`, ...)."""
        shared_secret = yaml.safe_load((self.workdir / "secrets.yaml").read_text())["registration_shared_secret"]
        url = self.base_url + "/_synapse/admin/v1/register"
        nonce = requests.get(url, timeout=10).json()["nonce"]
        message = b"\x00".join(
            [nonce.encode(), username.encode(), password.encode(), b"admin" if admin else b"notadmin"]
        )
        mac = hmac.new(shared_secret.encode(), message, hashlib.sha1).hexdigest()
        body = {"nonce": nonce, "username": username, "password": password, "admin": admin, "mac": mac}
        response = requests.post(url, json=body, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def log_tail(self, lines: int = 80) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class Api:
    """A thin HTTP client for one server; every call returns the `requests.Response`."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.session = requests.Session()

    def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        json: Any = None,
        data: bytes | Iterator[bytes] | None = None,
        **kw: Any,
    ) -> requests.Response:
        headers = kw.pop("headers", {})
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.session.request(
            method, self.base_url + path, json=json, data=data, headers=headers, timeout=30, **kw
        )

    def register(self, username: str | None = None, **fields: Any) -> dict[str, Any]:
        """Registers a user through /api/auth/register; returns the response plus the password."""
        username = username or f"user_{secrets.token_hex(4)}"
        body = {
            "username": username,
            "password": PASSWORD,
            "email": f"{username}@example.org",
            "full_name": f"Dr. {username.title()}",
            "role": "Resident",
            "institution": "St Elsewhere Hospital",
            "specialization": "Cardiology",
            **fields,
        }
        response = self.call("POST", "/api/auth/register", json=body)
        assert response.status_code == 201, response.text
        return {**response.json(), "password": body["password"], "email": body["email"], "username": username}


def expect_error(response: requests.Response, status: int, errcode: str) -> dict[str, Any]:
    """Asserts a Matrix-style JSON error; returns its body."""
    assert response.status_code == status, f"{response.status_code} {response.text}"
    body = response.json()
    assert body["errcode"] == errcode, body
    assert isinstance(body.get("error"), str) and body["error"], body
    return body


async def nio_login(base_url: str, user_id: str, password: str) -> AsyncClient:
    """A matrix-nio client logged in with a password, as Element would be."""
    client = AsyncClient(base_url, user_id)
    response = await client.login(password, device_name="nio-test")
    if not isinstance(response, LoginResponse):
        await client.close()
        raise AssertionError(f"matrix-nio login failed: {response}")
    return client


def run(coro: Any) -> Any:
    """Runs a matrix-nio coroutine from a synchronous test."""
    return asyncio.run(coro)


def postgres_admin_url() -> str | None:
    return os.environ.get("MEDCHAT_TEST_POSTGRES") or None


@contextmanager
def fresh_database() -> Iterator[str | None]:
    """None on SQLite runs (the server keeps its database in its directory); on PostgreSQL runs
    the URL of a new database, dropped afterwards."""
    admin_url = postgres_admin_url()
    if admin_url is None:
        yield None
        return
    db = PostgresDatabase(admin_url)
    try:
        yield db.url
    finally:
        db.drop()


def register_admin(server: SynapseServer, username: str | None = None) -> dict[str, Any]:
    """A server admin (no MedChat profile): Synapse's answer (`user_id`, `access_token`, ...)."""
    return server.register_matrix_user(username or f"admin_{secrets.token_hex(4)}", admin=True)


def licence_verified(api: Api, server: SynapseServer, **fields: Any) -> dict[str, Any]:
    """A new user of `server`, licence-verified by that server's admin through the API."""
    user = api.register(**fields)
    admin = register_admin(server)
    body = {
        "level": "license_verified",
        "registration_body": "General Medical Council",
        "license_number": "GMC-7012345",
    }
    request = api.call("POST", "/api/chat/verification/requests", token=user["access_token"], json=body)
    assert request.status_code == 201, request.text
    approved = api.call(
        "POST", f"/api/chat/verification/requests/{request.json()['id']}/approve", token=admin["access_token"], json={}
    )
    assert approved.status_code == 200, approved.text
    return user


async def nio_request(client: AsyncClient, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """A raw Matrix call on a logged-in nio client's session, for endpoints nio has no method for
    (user-directory search, extended profile fields)."""
    import json

    headers = {"Authorization": f"Bearer {client.access_token}", "Content-Type": "application/json"}
    response = await client.send(method, path, json.dumps(body) if body is not None else None, headers=headers)
    return response.status, await response.json()


def _connect_db(server: SynapseServer) -> tuple[Any, bool]:
    """A connection to the server's database, and whether it is PostgreSQL."""
    if server.database_url:
        import psycopg2

        return psycopg2.connect(server.database_url), True
    import sqlite3

    return sqlite3.connect(server.workdir / "homeserver.db"), False


def query_db(server: SynapseServer, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows from the server's database (`?` placeholders), to check what has no API yet."""
    conn, postgres = _connect_db(server)
    try:
        cur = conn.cursor()
        cur.execute(sql.replace("?", "%s") if postgres else sql, args)
        return list(cur.fetchall())
    finally:
        conn.close()


def all_tables(server: SynapseServer) -> list[str]:
    """Every table in the database, Synapse's and the module's (so a table added later is checked too)."""
    if server.database_url:
        names = query_db(
            server, "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        )
    else:
        names = query_db(server, "SELECT name FROM sqlite_master WHERE type = 'table'")
    return sorted(name for (name,) in names)


def row_text(row: tuple[Any, ...]) -> str:
    """A database row as one string (binary columns decoded), to look for a value in any column."""
    return " ".join(bytes(v).decode("utf-8", "replace") if isinstance(v, (bytes, memoryview)) else str(v) for v in row)


def found_in_tables(
    server: SynapseServer, needles: list[str], tables: list[str] | None = None
) -> list[tuple[str, str]]:
    """(table, needle) for each needle found in any column of any row of `tables` (default: all)."""
    found = []
    for table in all_tables(server) if tables is None else tables:
        for row in query_db(server, f"SELECT * FROM {table}"):
            text = row_text(row)
            found += [(table, needle) for needle in needles if needle in text]
    return found


def execute_db(server: SynapseServer, sql: str, args: tuple[Any, ...] = ()) -> None:
    """Writes straight into the server's database, as an attacker with database access would."""
    conn, postgres = _connect_db(server)
    try:
        conn.cursor().execute(sql.replace("?", "%s") if postgres else sql, args)
        conn.commit()
    finally:
        conn.close()


class _PlanningTxn:
    """Stands in for Synapse's LoggingTransaction in a module `*_txn` function: plans each query
    on the server's database instead of running it (no rows come back); a `SET` (the function's
    own planner settings) runs as it is."""

    def __init__(self, cursor: Any, engine: Any):
        self.database_engine = engine
        self.plans: list[list[str]] = []
        self._cursor = cursor
        self._postgres = isinstance(engine, PostgresEngine)

    def execute(self, sql: str, args: Any = ()) -> None:
        if sql.lstrip().upper().startswith("SET "):
            self._cursor.execute(sql)
            return
        if self._postgres:
            self._cursor.execute("EXPLAIN " + sql.replace("?", "%s"), args)
        else:
            self._cursor.execute("EXPLAIN QUERY PLAN " + sql, args)
        self.plans.append([str(row[-1]).strip() for row in self._cursor.fetchall()])

    def fetchall(self) -> list[Any]:
        return []

    def fetchone(self) -> None:
        return None


def query_plans(server: SynapseServer, txn_function: Any, *args: Any) -> list[list[str]]:
    """The plan of each query a module `*_txn` function runs with these arguments, as the
    server's database would run it now (PostgreSQL with sequential scans off, as if its tables
    were too big for one: the question is which index it takes). The function sees Synapse's own
    engine of that kind, and on SQLite a connection with the `rank` function Synapse registers."""
    conn, postgres = _connect_db(server)
    try:
        cursor = conn.cursor()
        if postgres:
            cursor.execute("SET LOCAL enable_seqscan = off")
        else:
            conn.create_function("rank", 1, lambda _: 0.0)
        engine = create_engine({"name": "psycopg2" if postgres else "sqlite3", "args": {}})
        txn = _PlanningTxn(cursor, engine)
        txn_function(txn, *args)
        return txn.plans
    finally:
        conn.rollback()
        conn.close()


def transactions(server: SynapseServer) -> dict[str, float]:
    """Synapse's database transactions so far, by name (from the server's own metrics)."""
    text = requests.get(server.metrics_url, timeout=10).text
    pattern = r'^synapse_storage_transaction_time_count(?:_total)?\{desc="([^"]*)"[^}]*\} (\S+)$'
    return {desc: float(value) for desc, value in re.findall(pattern, text, re.M)}


def shared_room(api: Api, owner: dict[str, Any], *members: dict[str, Any]) -> str:
    """A private room made with the native Matrix API, `members` invited and joined."""
    invite = [m["user_id"] for m in members]
    response = api.call("POST", "/_matrix/client/v3/createRoom", token=owner["access_token"], json={"invite": invite})
    assert response.status_code == 200, response.text
    room = response.json()["room_id"]
    for member in members:
        assert (
            api.call("POST", f"/_matrix/client/v3/join/{room}", token=member["access_token"], json={}).status_code
            == 200
        )
    return room


def send_text(api: Api, token: str, room: str, body: str, **content: Any) -> str:
    """Sends an m.text message with the native Matrix API; returns its event id."""
    txn = f"t{time.monotonic_ns()}"
    response = api.call(
        "PUT",
        f"/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}",
        token=token,
        json={"msgtype": "m.text", "body": body, **content},
    )
    assert response.status_code == 200, response.text
    return response.json()["event_id"]
