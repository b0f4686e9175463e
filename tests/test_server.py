"""The server itself: health, module config validation at start-up, migrations across restarts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import synapse

from harness import TEST_RATE_LIMITS, Api, SynapseServer, expect_error, fresh_database


@pytest.fixture
def own_database_url() -> Iterator[str | None]:
    """A database of the test's own, apart from the session server's."""
    with fresh_database() as url:
        yield url


def test_health_reports_versions_and_engine(api: Api, server: SynapseServer) -> None:
    body = api.call("GET", "/api/health").json()
    assert body["status"] == "ok"
    assert body["synapse_version"] == synapse.__version__  # the release the suite runs on
    assert body["database"] == ("postgresql" if server.database_url else "sqlite")
    assert body["version"]
    assert body["worker"] == "main" and body["background_tasks"] is True  # one process does it all


def _module_config(**config: object) -> dict:
    return {"modules": [{"module": "medchat.MedChatModule", "config": config}]}


@pytest.mark.parametrize(
    "config, named",
    [
        ({"rolez": ["GP"]}, "rolez"),
        ({"roles": "GP"}, "roles"),
        ({"roles": []}, "roles"),
        ({"registration_enabled": "yes"}, "registration_enabled"),
        ({"federation_allow_list_file": {"path": "allow-list.json"}}, "federation_allow_list_file"),
    ],
)
def test_bad_module_config_stops_startup_naming_the_key(tmp_path: Path, config: dict, named: str) -> None:
    hs = SynapseServer(tmp_path, overrides=_module_config(**config))
    code, output = hs.run_until_exit()
    assert code != 0
    assert named in output
    assert "Error in configuration" in output or "ConfigError" in output, output[-2000:]


def test_restart_keeps_accounts_and_runs_no_migration_twice(tmp_path: Path, own_database_url: str | None) -> None:
    """A second start on the same data reuses keys, secrets and rows (what scripts/run does)."""
    hs = SynapseServer(tmp_path, database_url=own_database_url, overrides=TEST_RATE_LIMITS)
    hs.start()
    try:
        reg = Api(hs.base_url).register()
        key_before = (tmp_path / "signing.key").read_text()
        hs.restart()
        login = Api(hs.base_url).call(
            "POST", "/api/auth/login", json={"username": reg["username"], "password": reg["password"]}
        )
        assert login.status_code == 200, login.text
        assert login.json()["user"]["role"] == "Resident"
        assert (tmp_path / "signing.key").read_text() == key_before
        assert "applying migration" not in hs.log_tail(400).split("Received SIGTERM")[-1]
    finally:
        hs.stop()


def test_registration_can_be_closed(tmp_path: Path) -> None:
    hs = SynapseServer(tmp_path, overrides={**TEST_RATE_LIMITS, **_module_config(registration_enabled=False)})
    hs.start()
    try:
        body = {
            "username": "closed",
            "password": "long enough pw",
            "email": "c@example.org",
            "full_name": "C",
            "role": "GP",
        }
        expect_error(Api(hs.base_url).call("POST", "/api/auth/register", json=body), 403, "M_FORBIDDEN")
    finally:
        hs.stop()
