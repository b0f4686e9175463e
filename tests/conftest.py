"""Session fixtures: one real Synapse + MedChat for the suite, an SMTP sink, HTTP helpers.

MEDCHAT_TEST_POSTGRES=postgresql://... runs everything on a fresh PostgreSQL database instead
of SQLite. A failing test shows the tail of the server's log.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import TEST_MODULE_CONFIG, TEST_RATE_LIMITS, Api, SynapseServer, fresh_database
from mailsink import MailSink


@pytest.fixture(scope="session")
def mail() -> Iterator[MailSink]:
    sink = MailSink()
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture(scope="session")
def database_url() -> Iterator[str | None]:
    """None for SQLite; otherwise the URL of a fresh PostgreSQL database for this session."""
    with fresh_database() as url:
        yield url


@pytest.fixture(scope="session")
def server(
    tmp_path_factory: pytest.TempPathFactory, mail: MailSink, database_url: str | None
) -> Iterator[SynapseServer]:
    workdir: Path = tmp_path_factory.mktemp("synapse")
    env = {"MEDCHAT_SMTP_HOST": "127.0.0.1", "MEDCHAT_SMTP_PORT": str(mail.port)}
    hs = SynapseServer(
        workdir, database_url=database_url, env=env, overrides=TEST_RATE_LIMITS, module_overrides=TEST_MODULE_CONFIG
    )
    hs.start()
    yield hs
    hs.stop()


@pytest.fixture
def api(server: SynapseServer) -> Api:
    return Api(server.base_url)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome: Any = yield  # pluggy's result object
    report = outcome.get_result()
    hs = item.funcargs.get("server") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(hs, SynapseServer):
        report.sections.append(("synapse log (tail)", hs.log_tail()))
