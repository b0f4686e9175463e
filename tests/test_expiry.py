"""Disappearing messages: `expires_in` on send, redacted at expiry, even across a restart."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from harness import TEST_RATE_LIMITS, Api, SynapseServer, expect_error, fresh_database


def send(api: Api, user: dict, room: str, **body: object) -> requests.Response:
    return api.call("POST", f"/api/chat/rooms/{quote(room)}/messages", token=user["access_token"], json=body)


def wait_deleted(api: Api, user: dict, room: str, message_id: str, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        model = api.call(
            "GET", f"/api/chat/rooms/{quote(room)}/messages/{quote(message_id)}", token=user["access_token"]
        ).json()
        if model["is_deleted"] or time.monotonic() > deadline:
            return model
        time.sleep(0.2)


def group(api: Api, owner: dict) -> str:
    return api.call(
        "POST", "/api/chat/rooms", token=owner["access_token"], json={"type": "group", "name": "Rota"}
    ).json()["id"]


@pytest.mark.parametrize("expires_in", [0, -5, 2_592_001, "soon"])
def test_bad_expiry_is_400_and_sends_nothing(api: Api, expires_in: object) -> None:
    user = api.register()
    room = group(api, user)
    expect_error(send(api, user, room, content="gone soon", expires_in=expires_in), 400, "M_INVALID_PARAM")
    history = api.call("GET", f"/api/chat/rooms/{quote(room)}/messages", token=user["access_token"]).json()["results"]
    assert [m for m in history if m["content"] == "gone soon"] == []


def test_message_is_redacted_at_expiry(api: Api) -> None:
    user = api.register()
    room = group(api, user)
    sent = send(api, user, room, content="Door code for the on-call room", expires_in=2)
    assert sent.status_code == 201, sent.text
    model = sent.json()
    assert model["expires_at"] and model["expires_at"].endswith("Z")
    assert api.call(
        "GET", f"/api/chat/rooms/{quote(room)}/messages/{quote(model['id'])}", token=user["access_token"]
    ).json()["content"]
    gone = wait_deleted(api, user, room, model["id"])
    assert gone["is_deleted"] and gone["content"] is None


def test_expiry_survives_a_restart(tmp_path: Path) -> None:
    with fresh_database() as database_url:
        server = SynapseServer(tmp_path, database_url=database_url, overrides=TEST_RATE_LIMITS)
        server.start()
        try:
            api = Api(server.base_url)
            user = api.register()
            room = group(api, user)
            message = send(api, user, room, content="expires while the server is down", expires_in=3).json()["id"]
            server.stop()
            time.sleep(3.5)  # the expiry passes while nothing runs
            server.start()
            assert wait_deleted(api, user, room, message)["is_deleted"]
        finally:
            server.stop()


def matrix(api: Api, user: dict, method: str, path: str, **body: object) -> requests.Response:
    return api.call(method, f"/_matrix/client/v3{path}", token=user["access_token"], json=body)


def test_expiry_holds_for_a_rate_limited_sender(tmp_path: Path) -> None:
    """A sender who has used up their message rate limit still loses their expiring messages on time:
    the redaction is the server's act, not a message of theirs."""
    limits = {**TEST_RATE_LIMITS, "rc_message": {"per_second": 0.01, "burst_count": 4}}
    with fresh_database() as database_url:
        server = SynapseServer(tmp_path, database_url=database_url, overrides=limits)
        server.start()
        try:
            api = Api(server.base_url)
            user = api.register()
            room = group(api, user)
            sent = [send(api, user, room, content=f"bed {n} code", expires_in=2) for n in range(3)]
            assert [r.status_code for r in sent] == [201, 201, 201], [r.text for r in sent]
            expect_error(send(api, user, room, content="one too many"), 429, "M_LIMIT_EXCEEDED")
            for model in (r.json() for r in sent):
                gone = wait_deleted(api, user, room, model["id"])
                assert gone["is_deleted"] and gone["content"] is None, gone
        finally:
            server.stop()


def test_a_failed_redaction_is_retried_until_it_lands(tmp_path: Path) -> None:
    """The sender is out of the room when their message expires, so the redaction is refused; the
    pending row stays and the redaction is tried again (with back-off) until it lands."""
    with fresh_database() as database_url:
        server = SynapseServer(tmp_path, database_url=database_url, overrides=TEST_RATE_LIMITS)
        server.start()
        try:
            api = Api(server.base_url)
            owner, member = api.register(), api.register()
            room = group(api, owner)
            assert (
                matrix(api, owner, "POST", f"/rooms/{quote(room)}/invite", user_id=member["user_id"]).status_code == 200
            )
            assert matrix(api, member, "POST", f"/join/{quote(room)}").status_code == 200
            message = send(api, member, room, content="gone while away", expires_in=1).json()["id"]
            assert matrix(api, member, "POST", f"/rooms/{quote(room)}/leave").status_code == 200
            time.sleep(3)  # expired, and the first redaction attempt was refused: the sender had left
            assert server.log_path.read_text().count(f"could not redact expired message {message}") >= 1
            assert not wait_deleted(api, owner, room, message, timeout=0)["is_deleted"]
            assert (
                matrix(api, owner, "POST", f"/rooms/{quote(room)}/invite", user_id=member["user_id"]).status_code == 200
            )
            assert matrix(api, member, "POST", f"/join/{quote(room)}").status_code == 200
            assert wait_deleted(api, owner, room, message, timeout=30)["is_deleted"]
            metrics = requests.get(server.metrics_url, timeout=10).text
            assert "medchat_expiring_messages_overdue" in metrics
        finally:
            server.stop()


def test_expiry_survives_kill_9(tmp_path: Path) -> None:
    """A crash (SIGKILL, no shutdown) loses no pending expiry: the row is written before the send
    is answered, and the reaper picks it up after the restart."""
    with fresh_database() as database_url:
        server = SynapseServer(tmp_path, database_url=database_url, overrides=TEST_RATE_LIMITS)
        server.start()
        try:
            api = Api(server.base_url)
            user = api.register()
            room = group(api, user)
            message = send(api, user, room, content="expires while the server is dead", expires_in=2).json()["id"]
            assert server.process is not None
            server.process.kill()
            server.process.wait()
            time.sleep(2.5)
            server.start()
            assert wait_deleted(api, user, room, message)["is_deleted"]
        finally:
            server.stop()
