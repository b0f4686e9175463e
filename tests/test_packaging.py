"""The wheel: what a non-editable install gets. The module's config schema and its migrations are
package data read through importlib.resources, so they must be inside the wheel, and the dev
tooling (medchat_dev) must stay out of the runtime package `medchat`.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (found,) = out.glob("medchat-*.whl")
    return found


def test_the_wheel_carries_the_schema_and_migrations(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "medchat/config.schema.json" in names
    assert any(n.startswith("medchat/store/migrations/") and n.endswith(".sql") for n in names)


def test_installed_from_the_wheel_the_module_validates_its_config(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); import medchat.config as c; "
        "assert c.__file__.startswith(sys.argv[1]), c.__file__; "
        "print(sorted(c.load_schema()['properties'])[:1])"
    )
    # Run from an empty folder, so nothing of the checkout can be found by relative path.
    result = subprocess.run(
        [sys.executable, "-c", probe, str(target)], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("['")


DEV_ONLY = {"medchat_dev", "subprocess", "signal", "psycopg2"}


def test_the_runtime_package_imports_no_dev_tooling() -> None:
    found = []
    for path in (ROOT / "module" / "medchat").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            found += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in DEV_ONLY]
    assert found == []
