"""Every operation of the OpenAPI document has examples (api/examples.py makes them from the
published schemas): each query parameter, each JSON request body, each JSON answer, and the
common refusals. Each example validates against its own schema, and the live server takes the
request examples: none is refused for its shape (an unknown, missing or invalid field or
parameter), whatever else it answers for the made-up ids in the path."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from harness import Api, SynapseServer
from medchat.api.openapi import all_routes, build_spec

SPEC = build_spec(all_routes())
_PARAM = re.compile(r"\{(\w+)\}")
# What read_json and read_query answer for a body or query the model refuses (api/http.py).
_SHAPE_REFUSAL = re.compile(
    r"^(Unknown field|Missing field|Invalid field|Unknown parameter|Missing parameter|Invalid parameter|"
    r"Give exactly one of|The request body)"
)
# Run last: they end the session or the account the others use.
_LAST = ("auth_logout", "gdpr_erase")


def _operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, ops in SPEC["paths"].items():
        for method, op in ops.items():
            yield method, path, op


def _examples() -> Iterator[tuple[str, dict[str, Any], Any]]:
    """(where, schema, example) for every example of the document."""
    for method, path, op in _operations():
        where = f"{method.upper()} {path}"
        for parameter in op.get("parameters", []):
            if parameter["in"] == "query":
                yield f"{where} ?{parameter['name']}", parameter["schema"], parameter["example"]
        request = op.get("requestBody", {}).get("content", {}).get("application/json")
        if request is not None:
            yield f"{where} body", request["schema"], request["example"]
        for status, response in op["responses"].items():
            answer = response.get("content", {}).get("application/json")
            if answer is not None:
                yield f"{where} {status}", answer["schema"], answer["example"]
    for name, example in SPEC["components"]["responses"]["Error"]["content"]["application/json"]["examples"].items():
        yield f"Error {name}", {"$ref": "#/components/schemas/Error"}, example["value"]


def _problems(schema: dict[str, Any], value: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(
        {**schema, "components": SPEC["components"]}, format_checker=jsonschema.FormatChecker()
    )
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(value)]


def test_every_operation_has_examples() -> None:
    for method, path, op in _operations():
        where = f"{method.upper()} {path}"
        for parameter in op.get("parameters", []):
            assert parameter["in"] != "query" or "example" in parameter, f"{where} ?{parameter['name']}"
        request = op.get("requestBody", {}).get("content", {}).get("application/json")
        assert request is None or "example" in request, f"{where}: no body example"
        for status, response in op["responses"].items():
            answer = response.get("content", {}).get("application/json")
            assert answer is None or "example" in answer, f"{where} {status}: no example"
    errors = SPEC["components"]["responses"]["Error"]["content"]["application/json"]["examples"]
    assert {name.split()[0] for name in errors} >= {"400", "401", "403", "404", "429"}


def test_every_example_validates_against_its_schema() -> None:
    problems = {where: p for where, schema, value in _examples() if (p := _problems(schema, value))}
    assert problems == {}


def _fill(path: str) -> str:
    ids = {"room_id": "%21nope%3Amedchat.test", "event_id": "%24nope", "message_id": "%24nope", "root_id": "%24nope"}
    return _PARAM.sub(lambda m: ids.get(m.group(1), "%40nobody%3Amedchat.test"), path)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        (m, p)
        for _, m, p in sorted(
            (op["operationId"] in _LAST, m, p)
            for m, p, op in _operations()
            if "parameters" in op or "requestBody" in op
        )
    ],
)
def test_the_server_takes_the_request_examples(server: SynapseServer, method: str, path: str) -> None:
    api = Api(server.base_url)
    token = api.register()["access_token"]
    op = SPEC["paths"][path][method]
    query = {
        p["name"]: str(p["example"])
        for p in op.get("parameters", [])
        if p["in"] == "query" and p["name"] != "cursor"  # cursors come from a page
    }
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("example")
    response = api.call(method.upper(), _fill(path), token=token, json=body, params=query)
    if response.status_code == 400:
        refusal = response.json()
        assert not _SHAPE_REFUSAL.match(refusal["error"]), f"{method.upper()} {path}: {refusal}"
    assert response.status_code < 500, response.text
