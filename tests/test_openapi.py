"""The OpenAPI document: made from the route table, served by the live server, committed in
docs/openapi.json, and it describes every endpoint (and no endpoint that does not exist)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness import Api, SynapseServer
from medchat.api.http import WEBSOCKET_PATH
from medchat.api.openapi import all_routes, build_spec
from medchat.api.schemas.base import json_schema_of
from medchat.api.schemas.requests import RegisterBody

COMMITTED = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"
_PARAM = re.compile(r"\{(\w+)\}")


def _operations(spec: dict) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}


def _fill(path: str) -> str:
    """Made-up ids of the right shape, so that the route matches (and the id is then refused)."""
    kinds = {
        "room_id": "%21nope%3Amedchat.test",
        "event_id": "%24nope",
        "message_id": "%24nope",
        "notification_id": "%24nope",
    }
    return _PARAM.sub(lambda m: kinds.get(m.group(1), "%40nobody%3Amedchat.test"), path)


@pytest.fixture(scope="module")
def served(server: SynapseServer) -> dict:
    response = Api(server.base_url).call("GET", "/api/openapi.json")
    assert response.status_code == 200, response.text
    return response.json()


def test_the_committed_copy_is_current() -> None:
    assert COMMITTED.exists(), "docs/openapi.json is missing: run scripts/openapi"
    assert json.loads(COMMITTED.read_text()) == build_spec(all_routes()), (
        "docs/openapi.json is out of date: run scripts/openapi"
    )


def test_the_served_document_is_the_route_table(served: dict) -> None:
    """Every route the servlets register is described, and nothing else (plus the WebSocket)."""
    table = {(r.method, r.path) for r in all_routes()} | {("GET", WEBSOCKET_PATH.decode())}
    described = _operations(served)
    assert described - table == set(), "described but not routed"
    assert table - described == set(), "routed but not described"
    assert served == json.loads(COMMITTED.read_text())
    assert served["openapi"].startswith("3.1")


def test_every_operation_is_documented(served: dict) -> None:
    for path, ops in served["paths"].items():
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            assert op["summary"] and op["operationId"], where
            successes = [status for status in op["responses"] if status.startswith(("1", "2"))]
            assert successes, f"{where}: no success response"
            assert op["responses"]["4XX"] == {"$ref": "#/components/responses/Error"}, where
            for status in successes:
                if status != "101":
                    assert op["responses"][status]["content"], f"{where} {status}: no schema"
    assert len({op["operationId"] for ops in served["paths"].values() for op in ops.values()}) == len(
        _operations(served)
    )


@pytest.mark.parametrize(("method", "path"), sorted(_operations(build_spec(all_routes()))))
def test_every_described_operation_exists(api: Api, method: str, path: str) -> None:
    """The router knows it: never its 404 M_UNRECOGNIZED or a 405."""
    response = api.call(method, _fill(path))
    assert response.status_code != 405, f"{method} {path}"
    if response.status_code == 404:
        assert response.json()["errcode"] != "M_UNRECOGNIZED", f"{method} {path}: {response.text}"


def test_bodies_are_checked_against_the_documented_schema(api: Api, served: dict) -> None:
    """read_json validates with the model the route declared, whose schema is the one in the document:
    a body the document does not allow (an unknown field, or a required one missing) is refused,
    on every route that takes a JSON body, before anything else happens."""
    register = served["paths"]["/api/auth/register"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert register == {"$ref": "#/components/schemas/RegisterBody"}
    assert served["components"]["schemas"]["RegisterBody"] == json_schema_of(RegisterBody)[0]
    token = api.register()["access_token"]
    for path, ops in served["paths"].items():
        for method, op in ops.items():
            if "application/json" not in op.get("requestBody", {}).get("content", {}):
                continue
            response = api.call(method.upper(), _fill(path), token=token, json={"not_a_documented_field": 1})
            assert response.status_code == 400, f"{method.upper()} {path}: {response.status_code} {response.text}"
            assert response.json()["errcode"] in ("M_INVALID_PARAM", "M_MISSING_PARAM"), (
                f"{method.upper()} {path}: {response.text}"
            )


def test_the_docs_page_is_served_offline(api: Api) -> None:
    page = api.call("GET", "/api/docs")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="(docs/[^"]+)"', page.text)
    assert "docs/swagger-ui-bundle.js" in assets and "docs/swagger-ui.css" in assets
    assert "http" not in "".join(re.findall(r'(?:src|href)="([^"]+)"', page.text)), "no external assets"
    for asset in assets:
        response = api.call("GET", f"/api/{asset}")
        assert response.status_code == 200 and len(response.content) > 100, asset
    assert "text/javascript" in api.call("GET", "/api/docs/swagger-ui-bundle.js").headers["Content-Type"]
    assert api.call("GET", "/api/docs/../../etc/passwd").status_code == 404
    assert api.call("GET", "/api/docs/index.html").json()["errcode"] == "M_NOT_FOUND"
