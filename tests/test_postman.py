"""scripts/postman: a Postman v2.1 collection with every operation of the served document."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema

from harness import SynapseServer

ROOT = Path(__file__).resolve().parent.parent

# The parts of Postman's collection v2.1 schema the export uses (the full schema is online only).
_URL = {
    "type": "object",
    "required": ["raw", "host", "path"],
    "properties": {
        "raw": {"type": "string"},
        "host": {"type": "array", "items": {"type": "string"}},
        "path": {"type": "array", "items": {"type": "string"}},
        "variable": {"type": "array", "items": {"type": "object", "required": ["key"]}},
        "query": {
            "type": "array",
            "items": {"type": "object", "required": ["key"], "properties": {"disabled": {"type": "boolean"}}},
        },
    },
}
_REQUEST_ITEM = {
    "type": "object",
    "required": ["name", "request"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "request": {
            "type": "object",
            "required": ["method", "url"],
            "properties": {
                "method": {"enum": ["GET", "PUT", "POST", "PATCH", "DELETE"]},
                "url": _URL,
                "header": {"type": "array", "items": {"type": "object", "required": ["key", "value"]}},
                "body": {
                    "type": "object",
                    "required": ["mode"],
                    "properties": {"mode": {"enum": ["raw", "file", "formdata", "urlencoded"]}},
                },
                "auth": {"type": "object", "required": ["type"]},
            },
        },
    },
}
POSTMAN_V21 = {
    "type": "object",
    "required": ["info", "item"],
    "properties": {
        "info": {
            "type": "object",
            "required": ["name", "schema"],
            "properties": {"schema": {"const": "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"}},
        },
        "item": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "item"],
                "properties": {"item": {"type": "array", "items": _REQUEST_ITEM}},
            },
        },
        "auth": {"type": "object", "required": ["type"]},
        "variable": {"type": "array", "items": {"type": "object", "required": ["key"]}},
    },
}


def test_the_collection_has_every_operation(server: SynapseServer, tmp_path: Path) -> None:
    out = tmp_path / "medchat.postman.json"
    spec_url = server.base_url + "/api/openapi.json"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "postman.py"), "--spec", spec_url, "-o", str(out)],
        check=True,
        cwd=ROOT,
        timeout=60,
    )
    exported = json.loads(out.read_text())
    jsonschema.validate(exported, POSTMAN_V21)

    spec = json.loads((ROOT / "docs" / "openapi.json").read_text())
    wanted = sorted((m.upper(), p) for p, ops in spec["paths"].items() for m in ops)
    requests = [item["request"] for folder in exported["item"] for item in folder["item"]]
    found = sorted(
        (r["method"], "/" + "/".join("{" + s[1:] + "}" if s.startswith(":") else s for s in r["url"]["path"]))
        for r in requests
    )
    assert found == wanted

    register = next(r for r in requests if r["url"]["raw"] == "{{baseUrl}}/api/auth/register")
    assert register["auth"] == {"type": "noauth"}
    assert set(json.loads(register["body"]["raw"])) == {"username", "password", "email", "full_name", "role"}
    assert exported["auth"]["type"] == "bearer"
