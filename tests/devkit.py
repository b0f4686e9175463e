"""The app developer kit's tools for the tests (installed by scripts/install-devkit, in the project
only): where they are, and one call that installs them once per session."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NODE_BIN = ROOT / "tools" / "node" / "node_modules" / ".bin"
VENV_BIN = Path(sys.executable).parent


@functools.cache
def install() -> None:
    """Runs scripts/install-devkit (a no-op once installed); a failure fails the test, never skips."""
    subprocess.run([str(ROOT / "scripts" / "install-devkit")], check=True, cwd=ROOT, timeout=600)


def tool_env() -> dict[str, str]:
    """The environment to run the tools in: the project's .venv and node tools first on PATH
    (openapi-python-client runs ruff from PATH on what it generates)."""
    return {**os.environ, "PATH": os.pathsep.join([str(VENV_BIN), str(NODE_BIN), os.environ.get("PATH", "")])}
