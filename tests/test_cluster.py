"""The production topology of config/ on loopback: Synapse main, six workers, nginx, Redis, PostgreSQL.

nginx terminates TLS with a self-signed pair the fixture makes (given as MEDCHAT_TLS_CERT/KEY, as
an operator gives theirs), and the real Prometheus (config/monitoring/) scrapes every process.

Started by medchat_dev.cluster exactly as scripts/run-cluster starts it, on a fresh PostgreSQL database
and a server name of its own (Redis replication channels are named after it). Workers are
PostgreSQL-only, so this file runs in the PostgreSQL pass; there, in CI, a missing PostgreSQL or
Redis fails the run instead of skipping it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

import media_samples
from harness import (
    TEST_RATE_LIMITS,
    Api,
    PostgresDatabase,
    expect_error,
    free_port,
    nio_login,
    postgres_admin_url,
    run,
    send_text,
    shared_room,
)
from medchat.store.migrations import pending_files
from medchat_dev.cluster import DEFAULT_REDIS_URL, Cluster, redis_answers
from medchat_dev.devconfig import worker_names
from medchat_dev.monitoring import ensure_prometheus, render_scrape_config
from medchat_dev.tls import self_signed_pair
from test_history_reads import acknowledge, history, react, read_receipt
from test_monitoring import alert_rules, dashboard_expressions, medchat_series

pytestmark = pytest.mark.skipif(
    postgres_admin_url() is None,
    reason="Synapse workers need PostgreSQL: the cluster test runs in the PostgreSQL pass (MEDCHAT_TEST_POSTGRES)",
)

CLIENT_READERS = {"client_reader1", "client_reader2"}


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI must run the cluster test)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    redis_url = os.environ.get("REDIS_URL", DEFAULT_REDIS_URL)
    if not redis_answers(redis_url) and shutil.which("redis-server") is None:
        _unavailable(f"Redis at {redis_url} does not answer and redis-server is not installed")
    try:
        database = PostgresDatabase(postgres_admin_url() or "")
    except RuntimeError as e:
        _unavailable(str(e))
    certificate, key = self_signed_pair(tmp_path_factory.mktemp("tls"))
    env = {
        **os.environ,
        "DATABASE_URL": database.url,
        "REDIS_URL": redis_url,
        "MEDCHAT_SERVER_NAME": f"cluster-{uuid.uuid4().hex[:8]}.test",
        "MEDCHAT_PORT": str(free_port()),
        "MEDCHAT_MAIN_REPLICATION_PORT": str(free_port()),
        "MEDCHAT_NGINX_PORT": str(free_port()),
        "MEDCHAT_NGINX_TLS_PORT": str(free_port()),
        "MEDCHAT_FEDERATION_PORT": str(free_port()),
        "MEDCHAT_TLS_CERT": str(certificate),
        "MEDCHAT_TLS_KEY": str(key),
        **{f"MEDCHAT_{name.upper()}_PORT": str(free_port()) for name in worker_names()},
        **{f"MEDCHAT_{name.upper()}_METRICS_PORT": str(free_port()) for name in ["main", *worker_names()]},
    }
    env["MEDCHAT_PUBLIC_BASEURL"] = f"http://127.0.0.1:{env['MEDCHAT_NGINX_PORT']}/"
    # The tests' rate limits: the send loop below sends faster than Synapse's default rc_message.
    running = Cluster(tmp_path_factory.mktemp("cluster"), env, overrides=TEST_RATE_LIMITS)
    try:
        running.start()
        running.supervise_in_background()  # as scripts/run-cluster supervises it
        yield running
    finally:
        running.stop()
        database.drop()


@pytest.fixture(scope="module")
def api(cluster: Cluster) -> Api:
    """The app's view: everything through nginx."""
    return Api(cluster.base_url)


def _access_log(cluster: Cluster, name: str, pattern: str) -> list[str]:
    """The lines of one process's Synapse access log whose request matches `pattern`."""
    lines = (cluster.logs / f"{name}.log").read_text(errors="replace").splitlines()
    return [line for line in lines if "synapse.access.http" in line and re.search(pattern, line)]


def test_module_api_answers_on_every_process_and_names_it(cluster: Cluster) -> None:
    for name in ["main", *worker_names()]:
        response = requests.get(cluster.process_url(name) + "/api/health", timeout=10)
        assert response.status_code == 200, (name, response.text)
        body = response.json()
        assert body["worker"] == name
        assert body["database"] == "postgresql"
        assert body["background_tasks"] is (name == "background1"), body


def test_every_process_serves_metrics_with_the_module_series(cluster: Cluster) -> None:
    for name in ["main", *worker_names()]:
        port = cluster.env[f"MEDCHAT_{name.upper()}_METRICS_PORT"]
        response = requests.get(f"http://127.0.0.1:{port}/_synapse/metrics", timeout=10)
        assert response.status_code == 200, name
        assert "medchat_websocket_connections" in response.text, name


def test_nginx_sends_api_to_both_client_readers(api: Api) -> None:
    answered = {api.call("GET", "/api/health").json()["worker"] for _ in range(6)}
    assert answered == CLIENT_READERS


def test_message_sent_through_a_client_reader_is_persisted_by_the_event_persister_and_synced_by_the_sync_worker(
    cluster: Cluster, api: Api
) -> None:
    alice, bob = api.register(), api.register()
    room = api.call(
        "POST", "/_matrix/client/v3/createRoom", token=alice["access_token"], json={"invite": [bob["user_id"]]}
    )
    assert room.status_code == 200, room.text
    room_id = room.json()["room_id"]
    joined = api.call("POST", f"/_matrix/client/v3/rooms/{quote(room_id)}/join", token=bob["access_token"], json={})
    assert joined.status_code == 200, joined.text
    text = f"across processes {secrets.token_hex(4)}"
    txn = secrets.token_hex(8)
    sent = api.call(
        "PUT",
        f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.message/{txn}",
        token=alice["access_token"],
        json={"msgtype": "m.text", "body": text},
    )
    assert sent.status_code == 200, sent.text
    event_id = sent.json()["event_id"]

    async def bob_reads() -> list[str | None]:
        client = await nio_login(cluster.base_url, bob["user_id"], bob["password"])
        try:
            response = await client.sync(timeout=5000, full_state=True)
            room = response.rooms.join.get(room_id)
            return [getattr(event, "body", None) for event in room.timeline.events] if room else []
        finally:
            await client.close()

    assert text in run(bob_reads())
    send_path = rf"PUT /_matrix/client/v3/rooms/[^ ]+/send/m.room.message/{txn}"
    handled_by = {name for name in CLIENT_READERS if _access_log(cluster, name, send_path)}
    assert len(handled_by) == 1, "the send went to exactly one client reader"
    assert not _access_log(cluster, "main", send_path)
    assert _access_log(cluster, "event_persister1", r"/_synapse/replication/send_events"), "event persister wrote it"
    assert _access_log(cluster, "sync1", r"GET /_matrix/client/v3/sync"), "sync went to the sync worker"
    assert not _access_log(cluster, "main", r"/_matrix/client/v3/sync")
    fetched = api.call(
        "GET", f"/_matrix/client/v3/rooms/{quote(room_id)}/event/{quote(event_id)}", token=bob["access_token"]
    )
    assert fetched.status_code == 200 and fetched.json()["content"]["body"] == text


def test_what_each_client_reader_keeps_of_a_page_follows_writes_made_through_the_others(api: Api) -> None:
    """Each client reader keeps a history page's reactions, read receipts and delivery marks
    between reads (kept.py, DeliveryStore.room_marks); a reaction, an acknowledgement and a
    receipt made through any process are on the next pages from both readers."""
    alice, bob = api.register(), api.register()
    room = shared_room(api, alice, bob)
    message = send_text(api, alice["access_token"], room, "handover at 7")

    def pages() -> list[tuple[str, list[dict[str, Any]]]]:
        """Alice's newest message from four pages in a row: nginx alternates the two readers."""
        return [
            (newest["status"], newest["reactions"])
            for newest in (history(api, alice, room, 5)["results"][0] for _ in range(4))
        ]

    def eventually(expected: tuple[str, list[dict[str, Any]]]) -> None:
        deadline = time.monotonic() + 15
        while (seen := pages()) != [expected] * 4:
            assert time.monotonic() < deadline, seen
            time.sleep(0.2)

    assert pages() == [("sent", [])] * 4  # and each reader now keeps the page
    acknowledge(api, bob, message)
    react(api, bob, room, message, "👍")
    thumbs = [{"key": "👍", "count": 1, "reacted_by_me": False}]
    eventually(("delivered", thumbs))
    read_receipt(api, bob, room, message)
    eventually(("read", thumbs))


def test_main_only_account_endpoints_reach_main_through_nginx(api: Api) -> None:
    user = api.register()
    refreshed = api.call("POST", "/api/auth/refresh", json={"refresh_token": user["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    assert api.call("GET", "/api/auth/profile", token=refreshed.json()["access_token"]).status_code == 200
    bogus = {"token": "nope", "client_secret": "nope", "sid": "nope", "new_password": "a long new password"}
    reset = api.call("POST", "/api/auth/reset-password", json=bogus)
    assert 400 <= reset.status_code < 500, reset.text
    assert reset.json()["errcode"].startswith("M_")


def test_module_migrations_ran_once_though_every_process_started_at_once(cluster: Cluster) -> None:
    synapse_processes = ["main", *worker_names()]
    assert all(cluster.processes[name].poll() is None for name in synapse_processes)
    for _, path in pending_files("postgresql", set()):
        appliers = [
            name
            for name in synapse_processes
            for line in (cluster.logs / f"{name}.log").read_text(errors="replace").splitlines()
            if f"applying migration {path.name}" in line
        ]
        assert len(appliers) == 1, f"{path.name} applied by {appliers}"


def test_media_goes_to_the_media_worker(cluster: Cluster, api: Api) -> None:
    user = api.register()
    upload = api.call(
        "POST",
        "/_matrix/media/v3/upload?filename=x.txt",
        token=user["access_token"],
        data=b"hello from the media worker",
        headers={"Content-Type": "text/plain"},
    )
    assert upload.status_code == 200, upload.text
    media_id = upload.json()["content_uri"].split("/")[-1]
    server = upload.json()["content_uri"].split("/")[-2]
    download = api.call("GET", f"/_matrix/client/v1/media/download/{server}/{media_id}", token=user["access_token"])
    assert download.status_code == 200 and download.content == b"hello from the media worker"
    assert _access_log(cluster, "media1", r"POST /_matrix/media/v3/upload")
    expect_error(
        requests.post(cluster.process_url("main") + "/_matrix/media/v3/upload", timeout=10), 404, "M_UNRECOGNIZED"
    )


def test_data_dir_holds_one_rendered_config_per_process(cluster: Cluster) -> None:
    rendered = {path.stem for path in (cluster.data_dir / "workers").glob("*.yaml")}
    assert rendered == set(worker_names())
    assert "${" not in (cluster.data_dir / "nginx" / "nginx.conf").read_text()
    assert Path(cluster.data_dir / "secrets.yaml").stat().st_mode & 0o077 == 0


# --- TLS and nginx's access log -----------------------------------------------------------------


def _https(cluster: Cluster, port_variable: str, path: str) -> requests.Response:
    """A request over TLS to one of nginx's TLS listeners, trusting only the fixture's certificate."""
    url = f"https://127.0.0.1:{cluster.env[port_variable]}{path}"
    return requests.get(url, verify=cluster.env["MEDCHAT_TLS_CERT"], timeout=10)


def test_nginx_terminates_tls_for_clients_and_federation(cluster: Cluster) -> None:
    health = _https(cluster, "MEDCHAT_NGINX_TLS_PORT", "/api/health")
    assert health.status_code == 200 and health.json()["worker"] in CLIENT_READERS
    assert health.headers["Strict-Transport-Security"].startswith("max-age=")
    version = _https(cluster, "MEDCHAT_FEDERATION_PORT", "/_matrix/federation/v1/version")
    assert version.status_code == 200 and version.json()["server"]["name"] == "Synapse"
    with pytest.raises(requests.exceptions.SSLError):  # the certificate really is the one checked
        requests.get(f"https://127.0.0.1:{cluster.env['MEDCHAT_NGINX_TLS_PORT']}/health", verify=True, timeout=10)


def test_nginx_access_log_is_json_without_query_strings(cluster: Cluster) -> None:
    marker = secrets.token_hex(6)
    assert _https(cluster, "MEDCHAT_NGINX_TLS_PORT", f"/api/health?access_token={marker}").status_code == 200
    deadline, lines, text = time.monotonic() + 10, list[dict[str, str]](), ""
    while time.monotonic() < deadline and not lines:
        text = (cluster.logs / "nginx.log").read_text(errors="replace")
        records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        lines = [record for record in records if record["uri"] == "/api/health" and record["tls"]]
        time.sleep(0.2)
    assert lines, "an access-log line for the TLS request"
    line = lines[-1]
    assert line["status"] == "200" and line["method"] == "GET" and line["tls"].startswith("TLSv1.")
    assert line["request_id"] and line["upstream"]
    assert marker not in text, "query strings (tokens) stay out of the access log"


# --- Prometheus against the cluster ---------------------------------------------------------


def _prometheus_get(base: str, path: str, **params: str) -> Any:
    response = requests.get(base + path, params=params, timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]


def _make_every_medchat_series_appear(cluster: Cluster, api: Api) -> None:
    """Labelled counters appear once counted: a WebSocket closed with 4001, an upload refused and a
    contact request the shipped contact policy refuses (a student and an unverified clinician)."""
    ws = requests.get(cluster.base_url + "/api/chat/ws", timeout=10)  # through nginx, no upgrade
    assert ws.status_code == 400

    async def bad_token() -> None:
        import aiohttp

        async with aiohttp.ClientSession() as session:
            url = cluster.base_url.replace("http", "ws", 1) + "/api/chat/ws"
            async with session.ws_connect(url, params={"access_token": "nope"}) as socket:
                await socket.receive(timeout=10)

    run(bad_token())
    user = api.register()
    refused = media_samples.upload(api, user, "image", media_samples.pdf(), "image/png")
    assert refused.status_code == 415, refused.text
    student, clinician = api.register(role="MBBS Student"), api.register(role="Consultant")
    request = api.call(
        "POST", "/api/chat/contacts", token=student["access_token"], json={"user_id": clinician["user_id"]}
    )
    assert request.status_code == 403, request.text


def test_prometheus_scrapes_every_process_and_every_medchat_series(
    cluster: Cluster, api: Api, tmp_path_factory: pytest.TempPathFactory
) -> None:
    prometheus, _ = ensure_prometheus()
    _make_every_medchat_series_appear(cluster, api)
    processes = ["main", *worker_names()]
    targets = {name: f"127.0.0.1:{cluster.env[f'MEDCHAT_{name.upper()}_METRICS_PORT']}" for name in processes}
    workdir = tmp_path_factory.mktemp("prometheus")
    config = render_scrape_config(workdir, targets, interval="1s")
    base = f"http://127.0.0.1:{free_port()}"
    command = [
        prometheus,
        f"--config.file={config}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address={base.removeprefix('http://')}",
    ]
    with (workdir / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            wanted = medchat_series()
            deadline, health, seen = time.monotonic() + 90, {}, set()
            while time.monotonic() < deadline:
                assert process.poll() is None, (workdir / "prometheus.log").read_text()[-3000:]
                try:
                    if requests.get(base + "/-/ready", timeout=10).status_code != 200:
                        time.sleep(0.5)  # Prometheus answers 503 until its storage is ready
                        continue
                    active = _prometheus_get(base, "/api/v1/targets")["activeTargets"]
                    health = {t["labels"]["process"]: t["health"] for t in active}
                    found = _prometheus_get(
                        base, "/api/v1/query", query='count by (__name__) ({__name__=~"medchat_.*"})'
                    )
                    seen = {series["metric"]["__name__"] for series in found["result"]}
                except requests.ConnectionError:
                    pass
                if health == dict.fromkeys(processes, "up") and wanted <= seen:
                    break
                time.sleep(0.5)
            assert health == dict.fromkeys(processes, "up"), health
            assert wanted <= seen, f"not scraped: {sorted(wanted - seen)}"
            connections = _prometheus_get(base, "/api/v1/query", query="medchat_websocket_connections")
            assert {s["metric"]["process"] for s in connections["result"]} == set(processes), "every process exports it"

            # Every chart and every alert is a query this Prometheus accepts.
            for expr in [*dashboard_expressions(), *(rule["expr"] for rule in alert_rules())]:
                _prometheus_get(base, "/api/v1/query", query=expr)
            for expr in dashboard_expressions():
                if "medchat_" in expr and "increase(" not in expr and "rate(" not in expr:
                    assert _prometheus_get(base, "/api/v1/query", query=expr)["result"], f"no data for {expr}"
            groups = _prometheus_get(base, "/api/v1/rules")["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            assert len(rules) == len(alert_rules()) and all(rule["health"] != "err" for rule in rules), rules
        finally:
            process.terminate()
            process.wait(timeout=30)


def _send_with_one_retry(api: Api, token: str, room_id: str, text: str) -> requests.Response:
    """One message PUT through nginx; a request cut off in flight (the worker died under it) is
    sent once more with the same transaction id, as a client would, so it is sent at most once."""
    path = f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.message/{secrets.token_hex(8)}"
    body = {"msgtype": "m.text", "body": text}
    try:
        response = api.call("PUT", path, token=token, json=body)
        if response.status_code < 500:
            return response
    except requests.ConnectionError:
        pass
    return api.call("PUT", path, token=token, json=body)


def test_a_killed_client_reader_is_restarted_while_the_other_serves(cluster: Cluster, api: Api) -> None:
    """Last in this module: it kills a worker. The issue's case: SIGKILL of client_reader1 in a
    send loop used to stop the whole cluster (28 of 30 sends failed)."""
    token = api.register()["access_token"]
    room = api.call("POST", "/_matrix/client/v3/createRoom", token=token, json={})
    assert room.status_code == 200, room.text
    room_id = room.json()["room_id"]
    victim = cluster.processes["client_reader1"]
    sent: list[int] = []
    killed_at = None
    for i in range(30):
        if i == 5:
            victim.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
        sent.append(_send_with_one_retry(api, token, room_id, f"message {i}").status_code)
        cluster.check_alive()  # a dead worker no longer makes it raise (it restarts the worker)
        time.sleep(0.1)
    assert sent == [200] * 30, sent
    assert killed_at is not None
    health = cluster.process_url("client_reader1") + "/api/health"
    while time.monotonic() - killed_at < 10:
        try:
            if requests.get(health, timeout=2).json().get("worker") == "client_reader1":
                break
        except (requests.ConnectionError, requests.Timeout, ValueError):
            pass
        time.sleep(0.25)
    else:
        raise AssertionError(f"client_reader1 did not answer within 10 s:\n{cluster.log_tail('client_reader1')}")
    assert cluster.restarts.get("client_reader1") == 1, cluster.restarts
    assert cluster.processes["client_reader1"] is not victim
    others = ["main", *(n for n in worker_names() if n != "client_reader1")]
    assert all(cluster.processes[n].poll() is None for n in others), "the others kept running"
    assert cluster.restarts.keys() == {"client_reader1"}
    # nginx sends to both readers again, once its `fail_timeout` (10 s) for the dead one is over.
    answered: set[str] = set()
    deadline = time.monotonic() + 20
    while answered != CLIENT_READERS and time.monotonic() < deadline:
        answered.add(api.call("GET", "/api/health").json()["worker"])
        time.sleep(0.2)
    assert answered == CLIENT_READERS
