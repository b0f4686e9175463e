"""scripts/postman: the user's-journey collection runs green in newman against the live server,
every request with at least one assertion, and each step is an operation of the document."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import devkit
from harness import SynapseServer

ROOT = devkit.ROOT


@pytest.fixture(scope="module")
def exported(server: SynapseServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    devkit.install()
    out = tmp_path_factory.mktemp("postman")
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "postman.py"), "--base-url", server.base_url, "--out", str(out)],
        check=True,
        cwd=ROOT,
        timeout=60,
    )
    return out


def test_the_collection_is_the_journey(exported: Path) -> None:
    collection = json.loads((exported / "medchat.postman_collection.json").read_text())
    items = collection["item"]
    assert len(items) >= 70
    names = [item["name"] for item in items]
    assert names[1:3] == ["Register a", "Register b"] and names[-1] == "Log out"
    assert all(":" + "id" not in item["request"]["url"]["raw"] for item in items), "no empty path variables"
    upload = next(item for item in items if item["name"] == "Upload a photo")
    assert upload["request"]["body"]["formdata"][0]["src"] == "sample.png"
    assert (exported / "sample.png").read_bytes().startswith(b"\x89PNG")


def test_newman_runs_it_green(exported: Path) -> None:
    report = exported / "report.json"
    run = subprocess.run(
        [
            str(devkit.NODE_BIN / "newman"),
            "run",
            "medchat.postman_collection.json",
            "-e",
            "medchat.postman_environment.json",
            "--working-dir",
            str(exported),
            "--reporters",
            "cli,json",
            "--reporter-json-export",
            str(report),
            "--bail",
            "failure",
        ],
        cwd=exported,
        capture_output=True,
        text=True,
        env=devkit.tool_env(),
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    stats = json.loads(report.read_text())["run"]["stats"]
    assert stats["requests"]["total"] >= 70 and stats["requests"]["failed"] == 0
    assert stats["assertions"]["failed"] == 0
    assert stats["assertions"]["total"] >= stats["requests"]["total"]
