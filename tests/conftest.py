"""Session fixtures: one real Synapse + MedChat for the suite, an SMTP sink, HTTP helpers.

MEDCHAT_TEST_POSTGRES=postgresql://... runs everything on a fresh PostgreSQL database instead
of SQLite. A failing test shows the tail of the server's log.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from harness import TEST_MODULE_CONFIG, TEST_RATE_LIMITS, Api, SynapseServer, free_port, fresh_database


class MailSink:
    """A real SMTP server on loopback that keeps every message it receives."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[tuple[list[str], Message]] = []
        self._lock = threading.Lock()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        with self._lock:
            self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))  # type: ignore[attr-defined]
        return "250 Message accepted"

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def sent_to(self, address: str) -> list[Message]:
        with self._lock:
            return [m for rcpts, m in self.messages if address in rcpts]

    def wait_for(self, address: str, timeout: float = 15) -> Message:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.sent_to(address)
            if found:
                return found[-1]
            time.sleep(0.1)
        raise AssertionError(f"no mail reached {address} within {timeout}s")


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
    outcome = yield
    report = outcome.get_result()
    hs = item.funcargs.get("server") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(hs, SynapseServer):
        report.sections.append(("synapse log (tail)", hs.log_tail()))
