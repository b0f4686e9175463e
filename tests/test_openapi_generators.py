"""The served OpenAPI document works with the tools an app developer uses on it: it validates
(openapi-spec-validator), openapi-python-client generates a client from it with no warning, and
openapi-typescript's types compile under `tsc --strict`. Also the shape rules that make it so:
every enum and every reused object is a named component, alternatives are `oneOf` of named
schemas, operationIds are readable, `servers` is set. The tools come from scripts/install-devkit."""

from __future__ import annotations

import json
import re
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import devkit
from harness import Api, SynapseServer

PYTHON_CLIENT_CONFIG = devkit.ROOT / "docs" / "clients" / "openapi-python-client.yaml"


@pytest.fixture(scope="module")
def spec_file(server: SynapseServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    devkit.install()
    response = Api(server.base_url).call("GET", "/api/openapi.json")
    assert response.status_code == 200, response.text
    path = tmp_path_factory.mktemp("spec") / "openapi.json"
    path.write_text(response.text)
    return path


def _schemas(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema-like dict below `node` with where it is, `if` conditions left out."""
    if isinstance(node, dict):
        yield where, node
        for key, value in node.items():
            if key != "if":
                yield from _schemas(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _schemas(value, f"{where}/{i}")


def _is_component(where: str) -> bool:
    return where.count("/") == 3 and where.startswith("/components/schemas/")


def test_the_spec_validates(spec_file: Path) -> None:
    from openapi_spec_validator import validate
    from openapi_spec_validator.readers import read_from_filename

    spec, _ = read_from_filename(str(spec_file))
    validate(spec)


def test_enums_and_reused_objects_are_named(spec_file: Path) -> None:
    spec = json.loads(spec_file.read_text())
    inline_enums = [where for where, s in _schemas(spec) if "enum" in s and not _is_component(where)]
    assert inline_enums == [], "name these enums in api/schemas/enums.py"
    objects: dict[str, list[str]] = defaultdict(list)
    for where, s in _schemas(spec):
        if s.get("type") == "object" and s.get("properties") and not _is_component(where):
            objects[json.dumps(s, sort_keys=True)].append(where)
    reused = [places for places in objects.values() if len(places) > 1]
    assert reused == [], "give these objects a title (responses.py obj(..., title=))"


def test_alternatives_servers_and_operation_ids(spec_file: Path) -> None:
    spec = json.loads(spec_file.read_text())
    schemas = spec["components"]["schemas"]
    assert schemas["LoginBody"]["oneOf"] == [
        {"$ref": "#/components/schemas/LoginWithUsername"},
        {"$ref": "#/components/schemas/LoginWithEmail"},
    ]
    assert schemas["LoginWithEmail"]["required"][0] == "email"
    assert schemas["LoginWithEmail"]["additionalProperties"] is False
    assert spec["servers"] and all("url" in server for server in spec["servers"])
    ids = [op["operationId"] for ops in spec["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)+", i) for i in ids), ids
    assert spec["paths"]["/api/auth/login"]["post"]["operationId"] == "auth_login"


def test_openapi_python_client_generates_without_warnings(spec_file: Path, tmp_path: Path) -> None:
    run = subprocess.run(
        [
            str(devkit.VENV_BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(spec_file),
            "--config",
            str(PYTHON_CLIENT_CONFIG),
            "--output-path",
            str(tmp_path / "client"),
            "--meta",
            "none",
        ],
        capture_output=True,
        text=True,
        env=devkit.tool_env(),
        timeout=300,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "warning" not in output.lower() and "error" not in output.lower(), output
    models = {p.stem for p in (tmp_path / "client" / "models").glob("*.py")}
    assert {"message", "delivery_status", "message_status", "login_with_email", "user_page"} <= models
    export = (tmp_path / "client" / "api" / "gdpr" / "gdpr_export.py").read_text()
    assert "File" in export, "the zip export keeps its typed (binary) response"


def test_openapi_typescript_compiles_strict(spec_file: Path, tmp_path: Path) -> None:
    types = tmp_path / "medchat.d.ts"
    subprocess.run(
        [str(devkit.NODE_BIN / "openapi-typescript"), str(spec_file), "-o", str(types)],
        check=True,
        env=devkit.tool_env(),
        timeout=120,
        capture_output=True,
    )
    text = types.read_text()
    assert 'LoginBody: components["schemas"]["LoginWithUsername"] | components["schemas"]["LoginWithEmail"]' in text
    assert 'DeliveryStatus: "sent" | "delivered" | "read"' in text
    (tmp_path / "use.ts").write_text(
        'import type { components } from "./medchat";\n'
        'type Message = components["schemas"]["Message"];\n'
        'export const status: Message["status"] = "read";\n'
        'export const login: components["schemas"]["LoginBody"] = { email: "a@b.example", password: "pw" };\n'
    )
    config = {
        "compilerOptions": {"strict": True, "noEmit": True, "target": "es2022", "module": "esnext"},
        "files": ["medchat.d.ts", "use.ts"],
    }
    (tmp_path / "tsconfig.json").write_text(json.dumps(config))
    run = subprocess.run(
        [str(devkit.NODE_BIN / "tsc"), "-p", str(tmp_path / "tsconfig.json")],
        capture_output=True,
        text=True,
        env=devkit.tool_env(),
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
