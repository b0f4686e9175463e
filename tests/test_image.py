"""The image, checked without Docker (no daemon here): build context, Dockerfile and image pins.

The build context is computed from .dockerignore with Docker's own rules (below), over the real
worktree, so a data/ with keys or a .venv left lying around is what the test looks at.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

from medchat_dev.devconfig import ROOT

DOCKERFILE = ROOT / "Dockerfile"
LOCK = ROOT / "requirements.lock"


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """One .dockerignore pattern as a regex over a slash-separated context path.

    Docker's rules (moby/patternmatcher): patterns are cleaned and anchored at the context root;
    `*` matches within one path segment, `?` one character but `/`, `**` any number of segments;
    a pattern also matches everything below a directory it matches.
    """
    pattern = os.path.normpath(pattern.strip().lstrip("/")).replace(os.sep, "/")
    regex, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            regex, i = regex + ".*", i + 2
        elif pattern[i] == "*":
            regex, i = regex + "[^/]*", i + 1
        elif pattern[i] == "?":
            regex, i = regex + "[^/]", i + 1
        else:
            regex, i = regex + re.escape(pattern[i]), i + 1
    return re.compile(regex + "(?:/.*)?")


@cache
def _rules() -> tuple[tuple[bool, re.Pattern[str]], ...]:
    """(is an exception `!`, regex) per line of .dockerignore, in order (the last match decides)."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            rules.append((negated, _pattern_regex(line[1:] if negated else line)))
    return tuple(rules)


def excluded(path: str) -> bool:
    """Whether Docker leaves the context path `path` out of the build context."""
    verdict = False
    for negated, regex in _rules():
        if regex.fullmatch(path):
            verdict = not negated
    return verdict


@cache
def build_context() -> frozenset[str]:
    """Every file of the worktree that `docker build .` would send, as context-relative paths."""
    prune = not any(negated for negated, _ in _rules())  # no exception can bring a pruned dir back
    files: set[str] = set()
    for directory, subdirs, names in os.walk(ROOT):
        relative = Path(directory).relative_to(ROOT).as_posix()
        prefix = "" if relative == "." else relative + "/"
        if prune:
            subdirs[:] = [d for d in subdirs if not excluded(prefix + d)]
        files.update(prefix + name for name in names if not excluded(prefix + name))
    return frozenset(files)


def test_dockerignore_matching_follows_dockers_rules() -> None:
    """The matcher itself, so the context checks below cannot pass by matching nothing."""
    assert _pattern_regex("data/").fullmatch("data/signing.key")
    assert not _pattern_regex("data/").fullmatch("module/data/x")
    assert _pattern_regex("**/*.pyc").fullmatch("a/b/c.pyc") and _pattern_regex("**/*.pyc").fullmatch("c.pyc")
    assert not _pattern_regex("*.key").fullmatch("a/b.key")  # one segment: anchored at the root
    assert _pattern_regex("/build").fullmatch("build/lib/x")


@pytest.mark.parametrize(
    "path",
    [
        "data/signing.key",
        "data/secrets.yaml",
        "data/homeserver.db",
        "data/media_store/local_content/ab/cd",
        "data-cluster/secrets.yaml",
        ".venv/bin/python",
        ".venvs/synapse-1.162.0/bin/python",
        ".git/HEAD",
        "config/secrets.yaml",
        "config/tls/privkey.pem",
        "somewhere/signing.key",
        ".env",
        "module/medchat/__pycache__/x.cpython-311.pyc",
        ".pytest_cache/v/cache/nodeids",
        ".mypy_cache/3.10/x.json",
        "node_modules/x/index.js",
        "htmlcov/index.html",
        "homeserver.log",
    ],
)
def test_build_context_leaves_out_state_secrets_and_caches(path: str) -> None:
    assert excluded(path), path


def test_build_context_holds_the_module_and_configs_and_nothing_secret() -> None:
    context = build_context()
    for needed in ["module/medchat/__init__.py", "module/medchat_dev/devconfig.py", "config/homeserver.yaml"]:
        assert needed in context, needed
    assert {"synapse.yaml", "pyproject.toml", "requirements.lock", "config/nginx.conf"} <= context
    for path in context:
        top = path.split("/", 1)[0]
        assert top not in {"data", ".venv", ".venvs", ".git", "tests"}, path
        assert Path(path).name not in {"signing.key", "secrets.yaml", ".env", "homeserver.db"}, path
        assert not path.endswith((".pyc", ".key", ".pem")), path


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") and not current:
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            if current.strip():
                logical.append(current.strip())
            current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1] if " " in text else "") for text in logical]


def test_dockerfile_is_multi_stage_installs_from_the_lock_and_runs_unprivileged() -> None:
    instructions = _instructions()
    stages = [args for op, args in instructions if op == "FROM"]
    assert len(stages) >= 2, "a build stage and a runtime stage"
    for base in stages:
        image = base.split()[0]
        assert re.search(r":\d+\.\d+\.\d+", image) or "@sha256:" in image, f"base image not pinned: {image}"
    runs = [args for op, args in instructions if op == "RUN"]
    assert any("-r /tmp/requirements.lock" in run and "--no-deps" in run for run in runs), "install from the lock"
    assert not any(re.search(r"pip install(?!.*--no-deps)", run) for run in runs), "every pip install is --no-deps"
    assert any(op == "COPY" and args.split()[0] == "requirements.lock" for op, args in instructions)
    final = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM") :]
    users = [args for op, args in final if op == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, "the runtime stage drops root"
    assert [op for op, _ in final].index("USER") > max(i for i, (op, _) in enumerate(final) if op == "RUN")
    healthcheck = " ".join(args for op, args in final if op == "HEALTHCHECK")
    assert "/api/health" in healthcheck
    assert not any(op == "COPY" and args.split()[0] == "." for op, args in instructions), "no COPY of the whole tree"


def test_every_file_the_dockerfile_copies_is_in_the_context() -> None:
    context = build_context()
    for op, args in _instructions():
        if op != "COPY" or args.startswith("--from"):
            continue
        *sources, _ = shlex.split(args)
        for source in sources:
            assert source in context or any(path.startswith(source.rstrip("/") + "/") for path in context), source


def test_lock_pins_every_runtime_dependency_at_the_tested_version() -> None:
    """requirements.lock is exactly scripts/lock's output for this venv (the one the suite runs on)."""
    pins = dict(line.split("==") for line in LOCK.read_text().splitlines() if line and not line.startswith("#"))
    assert {"matrix-synapse", "twisted", "psycopg2", "synapse-s3-storage-provider"} <= set(pins)
    assert "pytest" not in pins and "ruff" not in pins, "test and lint tools stay out of the image"
    if os.environ.get("MEDCHAT_VENV"):  # scripts/test-synapse: another release than the lock's
        pytest.skip("the lock is made from the main .venv")
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "lock.py"), "--check"], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr


def test_every_compose_image_is_pinned_to_an_exact_version() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)  # type: ignore[union-attr]
    for name, service in services.items():
        image = service["image"]
        if "@sha256:" in image:
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and tag, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image}"
        # An exact release: major.minor.patch, PostgreSQL's major.minor, or MinIO's RELEASE stamp.
        exact = r"v?\d+\.\d+\.\d+(-[a-z0-9]+)?|RELEASE\.[0-9T-]+Z"
        assert re.fullmatch(exact, tag) or (repository == "postgres" and re.fullmatch(r"\d+\.\d+(-\w+)?", tag)), (
            f"{name}: {image} is not an exact version"
        )
        if service.get("build"):
            assert tag == version, f"{name}: the built image is tagged with the project's version"
