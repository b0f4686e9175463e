"""The Postman collection (v2.1) of the MedChat API: a user's journey (scripts/postman_journey.py)
made into requests from the OpenAPI document, each with a test script that checks the status and
the answer's required fields and saves the ids later steps use. Started by scripts/postman:

    scripts/postman --base-url URL --out DIR   writes DIR/medchat.postman_collection.json,
                                               DIR/medchat.postman_environment.json and the
                                               small photo the upload steps send
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote
from urllib.request import urlopen

from postman_journey import JOURNEY, Step

SCHEMA_URL = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
# The real small files the upload steps send (written beside the collection): a 1×1 PNG, a note.
SAMPLES = {
    "sample.png": base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5ErkJggg=="
    ),
    "notes.txt": b"Handover notes: nothing to report.\n",
}
_PARAM = re.compile(r"\{(\w+)\}")


def _operations(spec: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    return {op["operationId"]: (method, path, op) for path, ops in spec["paths"].items() for method, op in ops.items()}


def _required(schema: dict[str, Any], spec: dict[str, Any]) -> list[str]:
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return list(schema.get("required", []))


def _fill(value: str) -> str:
    """A path segment: `{{var}}` stays a variable (URL-encoded at run time), text is encoded."""
    return value if value.startswith("{{") else quote(value, safe="")


def _tests(step: Step, status: int, fields: list[str]) -> list[str]:
    lines = [f'pm.test("status is {status}", function () {{ pm.response.to.have.status({status}); }});']
    if fields:
        lines += [
            "const body = pm.response.json();",
            f'pm.test("the answer has its model\'s fields", function () {{ {json.dumps(fields)}.forEach('
            "function (f) { pm.expect(body).to.have.property(f); }); });",
        ]
    for variable, dotted in step.save.items():
        lines.append(
            f"pm.environment.set({json.dumps(variable)}, {json.dumps(dotted.split('.'))}"
            ".reduce(function (v, k) { return v == null ? v : v[k]; }, body));"
        )
    return lines


def request_item(step: Step, spec: dict[str, Any]) -> dict[str, Any]:
    method, path, op = _operations(spec)[step.operation]
    successes = sorted(int(s) for s in op["responses"] if s.startswith("2"))
    status = step.status or successes[0]
    answer = op["responses"].get(str(status), {}).get("content", {}).get("application/json")
    fields = _required(answer["schema"], spec) if answer else []
    segments = [_PARAM.sub(lambda m: _fill(step.path[m.group(1)]), s) for s in path.strip("/").split("/")]
    url: dict[str, Any] = {
        "raw": "{{baseUrl}}/" + "/".join(segments),
        "host": ["{{baseUrl}}"],
        "path": segments,
    }
    declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
    if set(step.query) - declared:
        raise ValueError(f"{step.name}: {step.operation} takes no {sorted(set(step.query) - declared)}")
    if step.query:
        url["query"] = [{"key": k, "value": v} for k, v in step.query.items()]
        url["raw"] += "?" + "&".join(f"{k}={v}" for k, v in step.query.items())
    request: dict[str, Any] = {"method": method.upper(), "header": [], "url": url, "description": op["summary"]}
    content = op.get("requestBody", {}).get("content", {})
    if step.upload:
        request["body"] = {"mode": "formdata", "formdata": [{"key": "file", "type": "file", "src": step.upload}]}
    elif "application/json" in content:
        body = step.body if step.body is not None else content["application/json"].get("example", {})
        request["header"].append({"key": "Content-Type", "value": "application/json"})
        request["body"] = {"mode": "raw", "raw": json.dumps(body, indent=2, ensure_ascii=False)}
    if step.as_ is None:
        request["auth"] = {"type": "noauth"}
    else:
        request["auth"] = {"type": "bearer", "bearer": [{"key": "token", "value": f"{{{{token_{step.as_}}}}}"}]}
    events = [{"listen": "test", "script": {"type": "text/javascript", "exec": _tests(step, status, fields)}}]
    return {"name": step.name, "request": request, "response": [], "event": events}


def collection(spec: dict[str, Any]) -> dict[str, Any]:
    """The journey as one ordered list of requests (Postman runs them in this order)."""
    return {
        "info": {
            "_postman_id": str(uuid.uuid5(uuid.NAMESPACE_URL, spec["info"]["title"])),
            "name": spec["info"]["title"],
            "description": spec["info"].get("description", ""),
            "version": spec["info"]["version"],
            "schema": SCHEMA_URL,
        },
        "item": [request_item(step, spec) for step in JOURNEY],
        "event": [
            {
                "listen": "prerequest",
                "script": {
                    "type": "text/javascript",
                    "exec": [
                        "if (!pm.environment.get('username_a')) {",
                        "  const run = Date.now().toString(36);",
                        "  pm.environment.set('username_a', 'alice_' + run);",
                        "  pm.environment.set('username_b', 'bob_' + run);",
                        "}",
                    ],
                },
            }
        ],
    }


def environment(base_url: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, base_url)),
        "name": "MedChat",
        "values": [{"key": "baseUrl", "value": base_url.rstrip("/"), "enabled": True}],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", help="an OpenAPI file or http(s) URL (default: BASE_URL/api/openapi.json)")
    parser.add_argument("--base-url", default="http://127.0.0.1:8008", help="the server the collection calls")
    parser.add_argument("--out", required=True, help="the folder to write the collection and environment to")
    args = parser.parse_args()
    source = args.spec or args.base_url.rstrip("/") + "/api/openapi.json"
    if source.startswith(("http://", "https://")):
        with urlopen(source, timeout=30) as response:
            spec = json.load(response)
    else:
        spec = json.loads(Path(source).read_text())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "medchat.postman_collection.json").write_text(
        json.dumps(collection(spec), indent=2, ensure_ascii=False) + "\n"
    )
    (out / "medchat.postman_environment.json").write_text(json.dumps(environment(args.base_url), indent=2) + "\n")
    for name, data in SAMPLES.items():
        (out / name).write_bytes(data)
    print(f"wrote {out}/medchat.postman_collection.json ({len(JOURNEY)} requests)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
