"""Case-room retention and the config that bounds case-room policies, on a server of their own:
synapse.yaml's module config (warn mode forbidden) with a 4-second case-room lifetime and a purge
job every second, so expiry and purging are seen within the test."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from nio import RoomCreateResponse
from synapse.module_api.errors import ConfigError

from harness import (
    TEST_RATE_LIMITS,
    Api,
    SynapseServer,
    expect_error,
    fresh_database,
    licence_verified,
    nio_login,
    nio_request,
    query_db,
    run,
)
from medchat.rules.case_retention import check_retention

LIFETIME_MS = 4000
RETENTION = {
    "enabled": True,
    "allowed_lifetime_min": "1s",
    "allowed_lifetime_max": "1d",
    "purge_jobs": [{"interval": "1s"}],
}


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    with fresh_database() as database_url:
        server = SynapseServer(
            tmp_path_factory.mktemp("retention"),
            database_url=database_url,
            overrides={**TEST_RATE_LIMITS, "retention": RETENTION},
            module_overrides={"case_rooms": {"retention": {"max_lifetime": f"{LIFETIME_MS}ms"}}},
        )
        server.start()
        yield server
        server.stop()


def retention_of(api: Api, user: dict, room: str) -> dict:
    response = api.call(
        "GET", f"/_matrix/client/v3/rooms/{quote(room)}/state/m.room.retention", token=user["access_token"]
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_case_rooms_start_with_the_configured_retention(strict: SynapseServer) -> None:
    api = Api(strict.base_url)
    doctor = licence_verified(api, strict)
    room = api.call(
        "POST", "/api/chat/rooms", token=doctor["access_token"], json={"type": "case", "name": "Bay 4"}
    ).json()["id"]
    assert retention_of(api, doctor, room) == {"max_lifetime": LIFETIME_MS}

    async def from_a_matrix_client() -> tuple[object, object, object]:
        nio = await nio_login(strict.base_url, doctor["user_id"], doctor["password"])
        try:
            case = await nio.room_create(name="Bay 5", room_type="org.medchat.case")
            own = await nio.room_create(
                name="Bay 6",
                room_type="org.medchat.case",
                initial_state=[{"type": "m.room.retention", "state_key": "", "content": {"max_lifetime": 86_400_000}}],
            )
            plain = await nio.room_create(name="Coffee")
            return case, own, plain
        finally:
            await nio.close()

    case, own, plain = run(from_a_matrix_client())
    assert isinstance(case, RoomCreateResponse) and isinstance(own, RoomCreateResponse), (case, own)
    assert retention_of(api, doctor, case.room_id) == {"max_lifetime": LIFETIME_MS}
    assert retention_of(api, doctor, own.room_id) == {"max_lifetime": 86_400_000}  # the creator's own policy stands
    missing = api.call(
        "GET", f"/_matrix/client/v3/rooms/{quote(plain.room_id)}/state/m.room.retention", token=doctor["access_token"]
    )
    expect_error(missing, 404, "M_NOT_FOUND")  # other rooms keep Synapse's default (none)


def test_expired_case_room_messages_are_hidden_then_purged(strict: SynapseServer) -> None:
    api = Api(strict.base_url)
    doctor = licence_verified(api, strict)
    room = api.call(
        "POST", "/api/chat/rooms", token=doctor["access_token"], json={"type": "case", "name": "Bay 7"}
    ).json()["id"]
    path = f"/api/chat/rooms/{quote(room)}/messages"
    old = [
        api.call("POST", path, token=doctor["access_token"], json={"content": f"Handover note {i}"}).json()["id"]
        for i in range(3)
    ]
    time.sleep(LIFETIME_MS / 1000 + 1)
    fresh = api.call("POST", path, token=doctor["access_token"], json={"content": "Still current"}).json()["id"]

    shown = [m["id"] for m in api.call("GET", path, token=doctor["access_token"]).json()["results"]]
    assert fresh in shown and not set(old) & set(shown), shown
    for _ in range(3):
        native = api.call(
            "GET", f"/_matrix/client/v3/rooms/{quote(room)}/messages?dir=b&limit=50", token=doctor["access_token"]
        )
        # Synapse's /messages answers 500 when its purge job (every second here) deletes the
        # page's events while it reads them; the API's history retries that read (medchat.synapse.events).
        if native.status_code != 500:
            break
    assert native.status_code == 200, native.text
    assert not set(old) & {e["event_id"] for e in native.json()["chunk"]}

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        left = {row[0] for row in query_db(strict, "SELECT event_id FROM events WHERE room_id = ?", (room,))} & set(old)
        if len(left) <= 1:  # Synapse keeps the newest purged-up-to event as the boundary
            break
        time.sleep(0.5)
    assert len(left) <= 1, f"the purge job left {left}"
    assert fresh in {row[0] for row in query_db(strict, "SELECT event_id FROM events WHERE room_id = ?", (room,))}


def test_warn_mode_is_refused_where_the_config_forbids_it(strict: SynapseServer) -> None:
    api = Api(strict.base_url)
    doctor = licence_verified(api, strict)
    room = api.call(
        "POST", "/api/chat/rooms", token=doctor["access_token"], json={"type": "case", "name": "Bay 8"}
    ).json()["id"]
    refused = expect_error(
        api.call("PUT", f"/api/chat/rooms/{quote(room)}", token=doctor["access_token"], json={"phi_guard": "warn"}),
        403,
        "ORG_MEDCHAT_PHI_GUARD_MODE_REFUSED",
    )
    assert "allow_warn_mode" in refused["error"]

    async def from_a_matrix_client() -> tuple[int, object]:
        nio = await nio_login(strict.base_url, doctor["user_id"], doctor["password"])
        try:
            return await nio_request(
                nio, "PUT", f"/_matrix/client/v3/rooms/{quote(room)}/state/org.medchat.phi_guard/", {"mode": "warn"}
            )
        finally:
            await nio.close()

    status, body = run(from_a_matrix_client())
    assert (status, body["errcode"]) == (403, "ORG_MEDCHAT_PHI_GUARD_MODE_REFUSED"), body
    sent = api.call(
        "POST",
        f"/api/chat/rooms/{quote(room)}/messages",
        token=doctor["access_token"],
        json={"content": "Ring 07911 123456"},
    )
    expect_error(sent, 403, "ORG_MEDCHAT_PHI_DETECTED")


def test_retention_must_be_one_synapse_applies(tmp_path: Path) -> None:
    check_retention(None, (False, None, None))
    check_retention(LIFETIME_MS, (True, 1000, None))
    with pytest.raises(ConfigError, match="allowed_lifetime_min/max"):
        check_retention(LIFETIME_MS, (True, 86_400_000, None))
    server = SynapseServer(tmp_path, overrides={"retention": {"enabled": False}})
    code, output = server.run_until_exit()
    assert code != 0 and "case_rooms.retention.max_lifetime" in output and "retention.enabled" in output, output[-2000:]
