"""The OpenAPI 3.1 document of /api, made from the route table (api/http.py `route()`), served at
GET /api/openapi.json with Swagger UI at GET /api/docs (assets from the swagger-ui-bundle-v2
package, so the page works offline).

`scripts/openapi [--check] [FILE]` (`main` here) writes or compares the committed copy,
docs/openapi.json, from the same routes without starting a server.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import pkgutil
import re
import sys
from http import HTTPStatus
from pathlib import Path
from typing import Any

from swagger_ui_bundle import swagger_ui_path
from synapse.http.server import JsonResource
from synapse.module_api import respond_with_html

import medchat.api
from medchat import errors
from medchat.api.examples import example_of
from medchat.api.http import BINARY, WEBSOCKET_PATH, Content, Route, route, routes_of
from medchat.api.schemas.base import QueryParams, RequestBody, json_schema_of
from medchat.api.schemas.enums import ENUM_NAMES
from medchat.api.schemas.responses import ERROR, obj
from medchat.models import JsonDict
from medchat.version import VERSION

SPEC_PATH = "/api/openapi.json"
DOCS_PATH = "/api/docs"
_METHODS = ("get", "put", "post", "delete", "patch")
_PATH_PARAM = re.compile(r"\{(\w+)\}")

_DESCRIPTION = """The REST API of MedChat, a Synapse module: every call is an ordinary Matrix user, room,
event, receipt or upload, and one access token (`Authorization: Bearer …`, from register or login)
works here and on `/_matrix/client/*`. Ids are Matrix ids (`@user:server`, `!room:server`,
`$event`), URL-encoded in paths. Errors are `{errcode, error}` with a 4xx status."""

# Where the API is: the server that serves this document (Swagger UI's "Try it out"), or the one
# `scripts/run` starts; a generated client takes its base URL as an argument anyway.
_SERVERS = [
    {"url": "/", "description": "the server that serves this document"},
    {"url": "http://127.0.0.1:8008", "description": "a local development server (scripts/run)"},
]

# The main refusals every operation may answer (docs/api.md has the full errcode table).
_ERROR_EXAMPLES: JsonDict = {
    f"{status} {errcode}": {"summary": summary, "value": {"errcode": errcode, "error": error, **more}}
    for status, errcode, summary, error, more in (
        (400, "M_MISSING_PARAM", "a required field left out", "Missing field: password", {}),
        (400, "M_INVALID_PARAM", "a field the model refuses", "Unknown field: passwrd", {}),
        (401, "M_UNKNOWN_TOKEN", "a bad or expired access token", "Invalid access token passed.", {}),
        (403, "M_FORBIDDEN", "not allowed", "You are not a member of this room.", {}),
        (404, "M_NOT_FOUND", "no such thing", "Room not found.", {}),
        (429, "M_LIMIT_EXCEEDED", "rate limited: retry after", "Too Many Requests", {"retry_after_ms": 2000}),
    )
}

# The WebSocket is not a JSON route (api/__init__.py hands it to its own resource), so it is
# described here; see docs/api.md, "Real time", for the frames.
_WEBSOCKET_OPERATION: JsonDict = {
    "operationId": "realtime_websocket",
    "tags": ["Realtime"],
    "summary": "The WebSocket: a push form of Synapse's event stream (upgrade with `Connection: Upgrade`).",
    "description": (
        "Sends `hello`, then `events` batches (`message.new`, `message.edited`, `message.deleted`, "
        "`reaction.added`, `message.status`, `typing`, `presence`, `membership`, `notification.new`) "
        "and `heartbeat`s. Reconnect with `?since=<pos>` to resume. Closes with 4001 (bad or expired "
        "token), 4400 (bad position), 4008 (slow consumer)."
    ),
    "parameters": [
        {
            "name": "access_token",
            "in": "query",
            "schema": {"type": "string"},
            "description": "instead of the Authorization header",
        },
        {"name": "since", "in": "query", "schema": {"type": "string"}, "description": "the `pos` to resume from"},
    ],
    "responses": {"101": {"description": "Switching Protocols"}, "4XX": {"$ref": "#/components/responses/Error"}},
}


def build_spec(routes: list[Route]) -> JsonDict:
    """The OpenAPI document for `routes`; named schemas (`title`) go to components, once each."""
    schemas: dict[str, JsonDict] = {}
    _named(ERROR, schemas)
    paths: dict[str, dict[str, JsonDict]] = {}
    for declared in routes:
        paths.setdefault(declared.path, {})[declared.method.lower()] = _operation(declared, schemas)
    paths[WEBSOCKET_PATH.decode()] = {"get": _WEBSOCKET_OPERATION}
    paths = _named_enums(paths, schemas)
    for name, schema in list(schemas.items()):
        schemas[name] = _named_enums(schema, schemas)
    for operations in paths.values():
        for operation in operations.values():
            _add_examples(operation, schemas)
    return {
        "openapi": "3.1.0",
        "info": {"title": "MedChat API", "version": VERSION, "description": _DESCRIPTION},
        "servers": _SERVERS,
        "paths": {
            p: dict(sorted(ops.items(), key=lambda kv: _METHODS.index(kv[0]))) for p, ops in sorted(paths.items())
        },
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "responses": {
                "Error": _json_response(
                    "A refusal: `errcode` (`M_…` or `ORG_MEDCHAT_…`) and a clear `error`.",
                    {"$ref": "#/components/schemas/Error"},
                    _ERROR_EXAMPLES,
                )
            },
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "a Synapse access token"}
            },
        },
        "security": [{"bearer": []}],
    }


def _operation(declared: Route, schemas: dict[str, JsonDict]) -> JsonDict:
    tag = re.sub(r"Servlets?$", "", declared.handler.__qualname__.split(".")[0])
    operation: JsonDict = {
        "operationId": operation_id(declared),
        "tags": [tag],
        "summary": declared.summary,
    }
    if declared.description:
        operation["description"] = declared.description
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for name in _PATH_PARAM.findall(declared.path)
    ]
    if declared.query is not None:
        parameters += _query_model(declared.query, schemas)
    if parameters:
        operation["parameters"] = parameters
    if isinstance(declared.body, type):
        content = {"application/json": {"schema": _model(declared.body, schemas)}}
        operation["requestBody"] = {"required": declared.body_required, "content": content}
    elif declared.body is not None:  # Content: uploads
        operation["requestBody"] = {"required": declared.body_required, "content": _content(declared.body, schemas)}
    operation["responses"] = {
        str(status): {"description": HTTPStatus(status).phrase, "content": _content(schema, schemas)}
        for status, schema in sorted(declared.responses.items())
    }
    operation["responses"]["4XX"] = {"$ref": "#/components/responses/Error"}
    if declared.public:
        operation["security"] = []
    return operation


def operation_id(declared: Route) -> str:
    """`{servlet}_{handler}` in snake case (`room_create`, `message_send`): readable, and stable as
    long as the handler keeps its name; a route that shares a handler names itself (`name=`)."""
    servlet = re.sub(r"Servlets?$", "", declared.handler.__qualname__.split(".")[0])
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", servlet).lower()
    return f"{snake}_{declared.name or declared.handler.__name__}"


def _query_model(model: type[QueryParams], schemas: dict[str, JsonDict]) -> list[JsonDict]:
    """One `in: query` parameter per field of the model, in field order."""
    schema, components = json_schema_of(model)
    _add_components(components, schemas)
    required = set(schema.get("required", ()))
    parameters = []
    for name, field_schema in schema["properties"].items():
        field_schema = dict(field_schema)
        description = field_schema.pop("description", "")
        parameter: JsonDict = {"name": name, "in": "query", "required": name in required, "schema": field_schema}
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def _model(model: type[RequestBody], schemas: dict[str, JsonDict]) -> JsonDict:
    """A $ref to the model's component; the model, the models it nests and its titled
    alternatives (`oneOf` branches, LoginBody) go to components."""
    schema, components = json_schema_of(model)
    _add_components({**components, model.__name__: _named(schema, schemas, top=True)}, schemas)
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _add_components(components: dict[str, JsonDict], schemas: dict[str, JsonDict]) -> None:
    for name, schema in components.items():
        if schemas.setdefault(name, schema) != schema:
            raise ValueError(f"two different schemas are both named {name!r}")


def _content(body: JsonDict | Content, schemas: dict[str, JsonDict]) -> JsonDict:
    media = body.media if isinstance(body, Content) else {"application/json": body}
    return {media_type: {"schema": _named(schema, schemas)} for media_type, schema in media.items()}


def _json_response(description: str, schema: JsonDict, examples: JsonDict | None = None) -> JsonDict:
    media: JsonDict = {"schema": schema}
    if examples:
        media["examples"] = examples
    return {"description": description, "content": {"application/json": media}}


def _add_examples(operation: JsonDict, schemas: dict[str, JsonDict]) -> None:
    """An example (api/examples.py) on each query parameter, on a JSON request body (the smallest
    accepted one) and on each JSON answer (every field)."""
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "query":
            parameter["example"] = example_of(parameter["schema"], schemas, parameter["name"])
    request = operation.get("requestBody", {}).get("content", {}).get("application/json")
    if request is not None:
        request["example"] = example_of(request["schema"], schemas, full=False)
    for response in operation["responses"].values():
        answer = response.get("content", {}).get("application/json")
        if answer is not None:
            answer["example"] = example_of(answer["schema"], schemas)


def _named(schema: Any, schemas: dict[str, JsonDict], top: bool = False) -> Any:
    """A copy of `schema` in which every sub-schema with a `title` is a $ref to components
    (`top`: except the schema itself, a model's own)."""
    if isinstance(schema, list):
        return [_named(item, schemas) for item in schema]
    if not isinstance(schema, dict):
        return schema
    resolved = {key: _named(value, schemas) for key, value in schema.items()}
    title = schema.get("title")
    if top or title is None or not isinstance(title, str) or "type" not in schema:
        return resolved
    if schemas.setdefault(title, resolved) != resolved:
        raise ValueError(f"two different schemas are both titled {title!r}")
    return {"$ref": f"#/components/schemas/{title}"}


def _named_enums(schema: Any, schemas: dict[str, JsonDict]) -> Any:
    """A copy of `schema` in which every enum is a $ref to its component (named in
    api/schemas/enums.py), or that or null where it lists null. Conditions (`if`) stay as written."""
    if isinstance(schema, list):
        return [_named_enums(item, schemas) for item in schema]
    if not isinstance(schema, dict):
        return schema
    resolved = {key: value if key == "if" else _named_enums(value, schemas) for key, value in schema.items()}
    if "enum" not in schema or schema.get("title") in ENUM_NAMES.values():
        return resolved
    values = tuple(value for value in schema["enum"] if value is not None)
    name = ENUM_NAMES.get(values)
    if name is None:
        raise ValueError(f"the enum {list(values)} has no name: add it to api/schemas/enums.py")
    _add_components({name: {"title": name, "type": "string", "enum": list(values)}}, schemas)
    ref: JsonDict = {"$ref": f"#/components/schemas/{name}"}
    rest = {key: value for key, value in resolved.items() if key not in ("enum", "type")}
    if None in schema["enum"]:
        return {"anyOf": [ref, {"type": "null"}], **rest}
    return {**ref, **rest}


# --- serving it --------------------------------------------------------------------------------

_ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui-standalone-preset.js": "text/javascript; charset=utf-8",
    "favicon-32x32.png": "image/png",
}

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8"><title>MedChat API</title>
<link rel="icon" href="docs/favicon-32x32.png"><link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/swagger-ui-standalone-preset.js"></script>
<script>
SwaggerUIBundle({url: "openapi.json", dom_id: "#swagger-ui", deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset], layout: "StandaloneLayout"});
</script>
</body>
</html>
"""


class DocsServlets:
    """GET /api/openapi.json, /api/docs and the page's assets; no access token needed."""

    def __init__(self, routes: list[Route]):
        self._routes = routes

    def register_routes(self, resource: JsonResource) -> None:
        route(
            resource,
            "GET",
            SPEC_PATH,
            self.spec,
            public=True,
            responses={
                200: obj({"openapi": {"const": "3.1.0"}, "info": {"type": "object"}, "paths": {"type": "object"}})
            },
        )
        route(
            resource,
            "GET",
            DOCS_PATH,
            self.page,
            public=True,
            responses={200: Content({"text/html": {"type": "string"}})},
        )
        assets = Content({"text/css": {"type": "string"}, "text/javascript": {"type": "string"}, "image/png": BINARY})
        route(resource, "GET", DOCS_PATH + "/{asset}", self.asset, public=True, responses={200: assets})

    async def spec(self, request: Any) -> tuple[int, Any]:
        """This document: the OpenAPI 3.1 description of every /api endpoint."""
        return 200, build_spec(self._routes)

    async def page(self, request: Any) -> None:
        """Swagger UI for this document (served by the module; works offline)."""
        respond_with_html(request, 200, _PAGE)

    async def asset(self, request: Any, asset: str) -> None:
        """A file of the Swagger UI page (from the swagger-ui-bundle-v2 package)."""
        if asset not in _ASSETS:
            raise errors.not_found("No such file.")
        data = (Path(str(swagger_ui_path)) / asset).read_bytes()
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", _ASSETS[asset].encode())
        request.setHeader(b"Cache-Control", b"public, max-age=86400")
        request.write(data)
        request.finish()


# --- the committed copy ------------------------------------------------------------------------


class _Recorder:
    """Stands in for the router: collects what servlets register, without a server."""

    def register_paths(self, method: str, patterns: Any, handler: Any, name: str) -> None:
        pass


def all_routes() -> list[Route]:
    """Every route of every servlet class in medchat.api (found by scanning, so none is left
    out), registered on a recorder: the route table without a running server."""
    recorder = _Recorder()
    for info in pkgutil.iter_modules(medchat.api.__path__):
        module = importlib.import_module(f"medchat.api.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and hasattr(cls, "register_routes"):
                cls.__new__(cls).register_routes(recorder)  # routes only: no collaborators needed
    return routes_of(recorder)


def spec_json(spec: JsonDict) -> str:
    return json.dumps(spec, indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write or check the committed OpenAPI document.")
    parser.add_argument("file", nargs="?", default="docs/openapi.json")
    parser.add_argument("--check", action="store_true", help="fail if FILE differs from the routes")
    args = parser.parse_args(argv)
    wanted = spec_json(build_spec(all_routes()))
    path = Path(args.file)
    if args.check:
        if not path.exists() or path.read_text() != wanted:
            print(f"{path} is out of date: run scripts/openapi", file=sys.stderr)
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(wanted)
    print(f"wrote {path} ({len(json.loads(wanted)['paths'])} paths)")
    return 0
