"""The Postman collection (v2.1) of an OpenAPI document: one folder per tag, one request per
operation, path parameters as `:name` variables, query parameters listed (disabled unless
required), a JSON example body made from the request schema, bearer auth from the collection
variable `access_token` (none on public operations). Started by scripts/postman.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.request import urlopen

SCHEMA_URL = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"
_PARAM = re.compile(r"\{(\w+)\}")


def example(schema: dict[str, Any], spec: dict[str, Any], depth: int = 0) -> Any:
    """A small valid-looking value for `schema`: required fields only, first enum value."""
    if "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    kind = next((k for k in kind if k != "null"), None) if isinstance(kind, list) else kind
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        required = list(schema.get("required", []))
        for option in schema.get("oneOf", [])[:1]:
            required += [r for r in option.get("required", []) if r not in required]
        return {name: example(properties.get(name, {}), spec, depth + 1) for name in required} if depth < 5 else {}
    if kind == "array":
        return [example(schema.get("items", {}), spec, depth + 1)]
    if kind == "integer":
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    if kind == "string":
        return schema.get("default", "")
    return None


def request_item(path: str, method: str, op: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    segments = [_PARAM.sub(r":\1", s) for s in path.strip("/").split("/")]
    parameters = op.get("parameters", [])
    query = [
        {
            "key": p["name"],
            "value": "",
            "description": p.get("description", ""),
            "disabled": not p.get("required", False),
        }
        for p in parameters
        if p["in"] == "query"
    ]
    url: dict[str, Any] = {
        "raw": "{{baseUrl}}/" + "/".join(segments),
        "host": ["{{baseUrl}}"],
        "path": segments,
        "variable": [
            {"key": p["name"], "value": "", "description": "URL-encoded Matrix id"}
            for p in parameters
            if p["in"] == "path"
        ],
    }
    if query:
        url["query"] = query
    request: dict[str, Any] = {
        "method": method.upper(),
        "header": [],
        "url": url,
        "description": op.get("description", op["summary"]),
    }
    content = op.get("requestBody", {}).get("content", {})
    if "application/json" in content:
        request["header"].append({"key": "Content-Type", "value": "application/json"})
        body = example(content["application/json"]["schema"], spec)
        request["body"] = {"mode": "raw", "raw": json.dumps(body, indent=2), "options": {"raw": {"language": "json"}}}
    elif content:
        request["body"] = {"mode": "file", "file": {}}
    if op.get("security") == []:
        request["auth"] = {"type": "noauth"}
    return {"name": op["summary"].rstrip("."), "request": request, "response": []}


def collection(spec: dict[str, Any], base_url: str) -> dict[str, Any]:
    folders: dict[str, list[dict[str, Any]]] = {}
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            folders.setdefault(op.get("tags", ["API"])[0], []).append(request_item(path, method, op, spec))
    return {
        "info": {
            "_postman_id": str(uuid.uuid5(uuid.NAMESPACE_URL, spec["info"]["title"])),
            "name": spec["info"]["title"],
            "description": spec["info"].get("description", ""),
            "version": spec["info"]["version"],
            "schema": SCHEMA_URL,
        },
        "item": [{"name": name, "item": items} for name, items in sorted(folders.items())],
        "auth": {"type": "bearer", "bearer": [{"key": "token", "value": "{{access_token}}", "type": "string"}]},
        "variable": [{"key": "baseUrl", "value": base_url}, {"key": "access_token", "value": ""}],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--spec", default="docs/openapi.json", help="an OpenAPI file or http(s) URL (default docs/openapi.json)"
    )
    parser.add_argument("--base-url", default="http://127.0.0.1:8008", help="the collection's baseUrl variable")
    parser.add_argument("-o", "--output", help="write here instead of stdout")
    args = parser.parse_args()
    if args.spec.startswith(("http://", "https://")):
        with urlopen(args.spec, timeout=30) as response:
            spec = json.load(response)
    else:
        spec = json.loads(Path(args.spec).read_text())
    text = json.dumps(collection(spec, args.base_url), indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
