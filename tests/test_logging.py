"""Structured logs (MEDCHAT_LOG_FORMAT=json, config/log-json.yaml) and the WebSocket's access log.

A server of its own, started with JSON logs: every line it writes must parse as JSON, requests
carry Synapse's request id, a WebSocket session leaves exactly one access-log line with its user,
duration, close code and frame counts, and a plain GET on the socket path is a 400 logged at INFO.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests

from harness import TEST_MODULE_CONFIG, TEST_RATE_LIMITS, Api, SynapseServer, run


@pytest.fixture(scope="module")
def json_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    server = SynapseServer(
        tmp_path_factory.mktemp("jsonlogs"),
        env={"MEDCHAT_LOG_FORMAT": "json"},
        overrides=TEST_RATE_LIMITS,
        module_overrides=TEST_MODULE_CONFIG,
    )
    server.start()
    yield server
    server.stop()


def _records(server: SynapseServer) -> list[dict[str, Any]]:
    """Every line of the server's log, each parsed as JSON (a line that is not fails the test)."""
    lines = [line for line in server.log_path.read_text().splitlines() if line.strip()]
    assert lines, "the server logged nothing"
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"a log line is not JSON: {line[:300]}")
    return records


def _session(server: SynapseServer, token: str) -> None:
    """One WebSocket session: hello, a ping and its pong, then the client closes with 1000."""

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            url = server.base_url.replace("http", "ws", 1) + "/api/chat/ws"
            async with session.ws_connect(url, params={"access_token": token}) as ws:
                assert (await ws.receive_json(timeout=10))["type"] == "hello"
                await ws.send_json({"type": "ping"})
                assert (await ws.receive_json(timeout=10))["type"] == "pong"

    run(scenario())


def test_every_line_is_json_and_requests_carry_their_id(json_server: SynapseServer) -> None:
    Api(json_server.base_url).register()
    records = _records(json_server)
    assert all({"log", "namespace", "level", "time"} <= record.keys() for record in records)
    access = [
        r for r in records if r["namespace"].startswith("synapse.access.http") and "/api/auth/register" in r["log"]
    ]
    assert access, "Synapse's access line for the registration"
    assert access[0]["request"].startswith("POST-"), access[0]


def test_a_websocket_session_leaves_one_access_line(json_server: SynapseServer) -> None:
    user = Api(json_server.base_url).register()
    _session(json_server, user["access_token"])
    Api(json_server.base_url).call("GET", "/api/health")  # the server is past the close by now
    sessions = [
        r
        for r in _records(json_server)
        if r["namespace"] == "medchat.access.websocket" and r.get("user_id") == user["user_id"]
    ]
    assert len(sessions) == 1, sessions
    line = sessions[0]
    assert line["level"] == "INFO" and line["close_code"] == 1000
    assert line["frames_in"] == 1 and line["frames_out"] == 2  # ping in; hello and pong out
    assert 0 < line["duration_seconds"] < 30
    assert user["user_id"] in line["log"] and "close_code=1000" in line["log"]


def test_a_plain_get_on_the_socket_path_is_a_400_at_info(json_server: SynapseServer) -> None:
    response = requests.get(json_server.base_url + "/api/chat/ws", timeout=10)
    assert response.status_code == 400
    assert response.json()["errcode"] == "M_UNRECOGNIZED"
    records = _records(json_server)
    refusals = [r for r in records if "not a WebSocket handshake" in r["log"]]
    assert refusals and all(r["level"] == "INFO" for r in refusals)
    assert not [r for r in records if r["level"] in ("ERROR", "CRITICAL")], "nothing logged as an error"


def test_log_format_must_be_known(tmp_path: Path) -> None:
    from medchat_dev.devconfig import prepare

    with pytest.raises(ValueError, match="MEDCHAT_LOG_FORMAT"):
        prepare(tmp_path, env={"MEDCHAT_LOG_FORMAT": "xml"})
