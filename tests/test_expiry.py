"""Disappearing messages: `expires_in` on send, redacted at expiry, even across a restart."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote

import pytest

from harness import TEST_RATE_LIMITS, Api, SynapseServer, expect_error, fresh_database


def send(api: Api, user: dict, room: str, **body: object) -> object:
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
    history = api.call("GET", f"/api/chat/rooms/{quote(room)}/messages", token=user["access_token"]).json()["messages"]
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
