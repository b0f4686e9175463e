"""Transport helpers shared by the servlets: routing, request bodies and query parameters.

`route()` records what each endpoint takes and answers (its request body and query models from
api/schemas/, response schemas, summary from the handler's docstring) next to the handler; the
OpenAPI document (api/openapi.py) is made from those records, and `read_json`/`read_query` parse
only what the route declared, with the model it declared, so the documentation cannot drift from
the code.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import jsonschema
from pydantic import BaseModel, ValidationError
from synapse.api.errors import Codes
from synapse.http.server import JsonResource
from synapse.module_api.errors import SynapseError

from medchat import errors
from medchat.api.schemas.base import QueryParams, RequestBody
from medchat.models import JsonDict

B = TypeVar("B", bound=RequestBody)
Q = TypeVar("Q", bound=QueryParams)

# A handler answers (status, JSON body), or None once it has written the response itself (a download).
Handler = Callable[..., Awaitable[tuple[int, Any] | None]]

# The WebSocket (api/__init__.py routes it to its own resource, not through route()).
WEBSOCKET_PATH = b"/api/chat/ws"

_PARAM_RE = re.compile(r"\{(\w+)\}")
_ROUTES_ATTR = "medchat_routes"
_REQUEST_ATTR = "medchat_route"


@dataclass(frozen=True)
class Query:
    """A query parameter a route reads (`schema` is its JSON Schema, for the documentation)."""

    name: str
    schema: JsonDict
    description: str = ""
    required: bool = False


BINARY: JsonDict = {"type": "string", "format": "binary"}


@dataclass(frozen=True)
class Content:
    """A body that is not (only) JSON: media type → schema (uploads, the docs page and its assets)."""

    media: Mapping[str, JsonDict]


@dataclass(frozen=True)
class Route:
    """One endpoint as declared: what the OpenAPI document says about it."""

    method: str
    path: str
    handler: Handler
    responses: Mapping[int, JsonDict | Content]
    body: type[RequestBody] | JsonDict | Content | None = None
    body_required: bool = True
    query: type[QueryParams] | tuple[Query, ...] = ()
    public: bool = False

    @property
    def summary(self) -> str:
        return (inspect.getdoc(self.handler) or "").split("\n\n")[0].replace("\n", " ")

    @property
    def description(self) -> str:
        return (inspect.getdoc(self.handler) or "").partition("\n\n")[2]


def route(
    resource: JsonResource,
    method: str,
    path: str,
    handler: Handler,
    *,
    responses: Mapping[int, JsonDict | Content],
    body: type[RequestBody] | JsonDict | Content | None = None,
    body_required: bool = True,
    query: type[QueryParams] | tuple[Query, ...] = (),
    public: bool = False,
) -> None:
    """Registers `handler` for `method path`; `{name}` segments arrive URL-decoded as kwargs.

    `responses` maps each success status to its schema (errors are the common 4xx `{errcode,
    error}`); `body` is the model `read_json` parses the body with; `query` the model `read_query`
    parses the query string with; `public` routes need no access token. The handler's docstring is
    the endpoint's summary (first paragraph) and description (the rest).
    """
    declared = Route(method, path, handler, responses, body, body_required, query, public)
    if not declared.summary:
        raise ValueError(f"{handler.__qualname__}: a route's handler needs a docstring (the endpoint's summary)")

    async def serve(request: Any, **kwargs: str) -> tuple[int, Any] | None:
        setattr(request, _REQUEST_ATTR, declared)
        if _has_nul(kwargs):
            raise errors.invalid_param("The path contains a NUL character (%00).")
        return await handler(request, **kwargs)

    pattern = re.compile("^" + _PARAM_RE.sub(r"(?P<\1>[^/]+)", path) + "$")
    resource.register_paths(method, [pattern], serve, handler.__qualname__)
    routes_of(resource).append(declared)


def routes_of(resource: Any) -> list[Route]:
    """The routes registered on `resource` through `route()`, in registration order."""
    return resource.__dict__.setdefault(_ROUTES_ATTR, [])


def _declared(request: Any) -> Route:
    declared = getattr(request, _REQUEST_ATTR, None)
    if declared is None:
        raise RuntimeError("request did not come through route()")
    return declared


def read_json(request: Any, model: type[B], *, optional: bool = False) -> B:
    """The request body parsed with `model`, which must be the one its route declared (`body=`).

    Errors are 400s that name the offending field: M_NOT_JSON for a body that is not a JSON object,
    M_MISSING_PARAM for an absent required field, M_INVALID_PARAM for anything else. `optional`:
    no body at all is the model with every field left out.
    """
    if _declared(request).body is not model:
        raise RuntimeError(f"{request.path!r}: read_json with a model its route does not declare")
    if optional and not _has_body(request):
        return model()
    try:
        return model.model_validate(_json_object(request))
    except ValidationError as e:
        raise body_error(e) from None


def read_json_dict(request: Any) -> JsonDict:
    """The request body as a JSON object, checked against the JSON Schema its route declared
    (routes not yet given a model)."""
    schema = _declared(request).body
    if not isinstance(schema, dict):
        raise RuntimeError(f"{request.path!r}: read_json_dict on a route that declares no JSON Schema body")
    body = _json_object(request)
    error = jsonschema.exceptions.best_match(_validator(schema).iter_errors(body))
    if error is not None:
        raise _schema_error(error)
    return body


def _json_object(request: Any) -> JsonDict:
    raw = request.content.read() if request.content else b""
    try:
        body = json.loads(raw or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SynapseError(400, "The request body is not valid JSON.", Codes.NOT_JSON)
    if not isinstance(body, dict):
        raise SynapseError(400, "The request body must be a JSON object.", Codes.NOT_JSON)
    if _has_nul(body):
        raise errors.invalid_param("The request body contains a NUL character (\\u0000).")
    return body


def _has_body(request: Any) -> bool:
    """Whether a body was sent (accepting a contact request may send none)."""
    content = request.content
    if content is None:
        return False
    position = content.tell()
    present = bool(content.read(1))
    content.seek(position)
    return present


def _dotted(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc)


def body_error(error: ValidationError) -> SynapseError:
    """The 400 for a body the model refused: its shallowest problem, naming the field.

    Unknown fields come first and are listed together (a misspelt field is then named as such,
    not reported as the required one it was meant to be); a whole-body rule (`missing_param`/`invalid_param` of
    api/schemas/base.py) answers with its own message and errcode.
    """
    problems = error.errors(include_url=False)
    first = min(problems, key=lambda p: (len(p["loc"]), p["type"] != "extra_forbidden"))
    kind, field = first["type"], _dotted(first["loc"])
    if kind == "extra_forbidden":
        parent = first["loc"][:-1]
        extra = sorted(_dotted(p["loc"]) for p in problems if p["type"] == kind and p["loc"][:-1] == parent)
        return errors.invalid_param(f"Unknown field: {', '.join(extra)}")
    if kind == "missing":
        return errors.missing_param(f"Missing field: {field}")
    if kind == "missing_param":
        return errors.missing_param(first["msg"])
    if kind == "invalid_param" and not field:
        return errors.invalid_param(first["msg"])
    return errors.invalid_param(f"Invalid field {field}: {first['msg']}" if field else first["msg"])


def _has_nul(value: Any) -> bool:
    """Whether any string (or key) holds U+0000, which PostgreSQL cannot store in text."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


_validators: dict[int, jsonschema.Draft202012Validator] = {}


def _validator(schema: JsonDict) -> jsonschema.Draft202012Validator:
    """Compiled once per schema object; the request schemas are module-level constants."""
    if id(schema) not in _validators:
        _validators[id(schema)] = jsonschema.Draft202012Validator(schema)
    return _validators[id(schema)]


def _schema_error(error: jsonschema.ValidationError) -> SynapseError:
    field = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "required":
        missing = error.message.split("'")[1]
        return errors.missing_param(f"Missing field: {missing}")
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return errors.invalid_param(f"Unknown field: {', '.join(extra)}")
    if error.validator == "oneOf" and not field:
        options = " or ".join(sorted(r for s in error.schema["oneOf"] for r in s.get("required", [])))
        return errors.missing_param(f"Give exactly one of: {options}")
    if error.validator == "minProperties":
        return errors.invalid_param("The request body has no fields to change.")
    return errors.invalid_param(f"Invalid field {field}: {error.message}")


# --- query parameters --------------------------------------------------------------------------

MAX_PAGE = 100
CURSOR_MAX = 1000  # Matrix pagination tokens and our own cursors fit well within this


def read_query(request: Any, model: type[Q]) -> Q:
    """The query string parsed with `model`, which must be the one its route declared (`query=`).

    Only the model's parameters are read (the first value of each); 400 M_MISSING_PARAM for a
    required one left out, M_INVALID_PARAM naming the parameter for a value the model refuses
    (bytes that are not UTF-8 and NUL characters included).
    """
    if _declared(request).query is not model:
        raise RuntimeError(f"{request.path!r}: read_query with a model its route does not declare")
    args = request.args or {}
    given: dict[str, str] = {}
    for field_name, field in model.model_fields.items():
        name = field.alias or field_name
        values = args.get(name.encode("ascii"))
        if not values:
            continue
        try:
            value = values[0].decode("utf-8")
        except UnicodeDecodeError:
            raise errors.invalid_param(f"Invalid parameter {name}: not UTF-8")
        if "\x00" in value:
            raise errors.invalid_param(f"Invalid parameter {name}: contains a NUL character")
        given[name] = value
    try:
        return model.model_validate(given)
    except ValidationError as e:
        raise query_error(e, model) from None


def query_error(error: ValidationError, model: type[BaseModel]) -> SynapseError:
    """The 400 for a query the model refused, naming the parameter and what it accepts."""
    problem = error.errors(include_url=False)[0]
    name = str(problem["loc"][0]) if problem["loc"] else ""
    if problem["type"] == "missing":
        return errors.missing_param(f"Missing parameter: {name}")
    if not name:
        return errors.invalid_param(problem["msg"])
    bounds = _bounds(model, name)
    kind = problem["type"]
    if kind.startswith(("int_", "greater_than", "less_than")):
        lower = bounds.get("ge", 0)
        wanted = f"from {lower} to {bounds['le']}" if "le" in bounds else f"of at least {lower}"
        return errors.invalid_param(f"Invalid parameter {name}: give a whole number {wanted}")
    if kind.startswith("string_too"):
        return errors.invalid_param(
            f"Invalid parameter {name}: give {bounds.get('min_length', 0)} to {bounds.get('max_length')} characters"
        )
    if kind == "literal_error":
        return errors.invalid_param(f"Invalid parameter {name}: use one of {problem['ctx']['expected']}")
    return errors.invalid_param(f"Invalid parameter {name}: {problem['msg']}")


def _bounds(model: type[BaseModel], name: str) -> dict[str, Any]:
    """The length and value bounds declared on a query parameter (for a clear message)."""
    field = next(f for n, f in model.model_fields.items() if (f.alias or n) == name)
    bounds: dict[str, Any] = {}
    for constraint in field.metadata:
        for key in ("ge", "le", "min_length", "max_length"):
            if getattr(constraint, key, None) is not None:
                bounds[key] = getattr(constraint, key)
    return bounds


def query_string(request: Any, name: str, max_length: int = 200) -> str | None:
    """A query parameter, or None if absent; 400 if empty or longer than `max_length`.

    Only parameters the route declares (`query=`) may be read, so each is documented.
    """
    if not any(q.name == name for q in _declared(request).query):
        raise RuntimeError(f"{request.path!r}: query parameter {name!r} is not declared on its route")
    values = request.args.get(name.encode("ascii"))
    if not values:
        return None
    try:
        value = values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise errors.invalid_param(f"Invalid parameter {name}: not UTF-8")
    if not value or len(value) > max_length:
        raise errors.invalid_param(f"Invalid parameter {name}: give 1 to {max_length} characters")
    if "\x00" in value:
        raise errors.invalid_param(f"Invalid parameter {name}: contains a NUL character")
    return value


def query_bool(request: Any, name: str) -> bool | None:
    value = query_string(request, name)
    if value is None:
        return None
    if value not in ("true", "false"):
        raise errors.invalid_param(f"Invalid parameter {name}: use true or false")
    return value == "true"


def query_limit(request: Any, default: int, maximum: int) -> int:
    """The page size `limit`: 1 to `maximum` (400 outside), `default` if absent."""
    value = query_string(request, "limit", max_length=6)
    if value is None:
        return default
    if not value.isdigit() or not 1 <= int(value) <= maximum:
        raise errors.invalid_param(f"Invalid parameter limit: give a whole number from 1 to {maximum}")
    return int(value)


def query_params(request: Any) -> dict[str, str]:
    """The query string as name → first value (UTF-8); 400 for bytes that are not UTF-8."""
    try:
        params = {k.decode(): v[0].decode() for k, v in (request.args or {}).items() if v}
    except UnicodeDecodeError:
        raise errors.invalid_param("The query string is not valid UTF-8.")
    if _has_nul(params):
        raise errors.invalid_param("The query string contains a NUL character.")
    return params


# --- declarations of the common query parameters ------------------------------------------------


def text_query(name: str, description: str, max_length: int = 200, required: bool = False) -> Query:
    return Query(name, {"type": "string", "minLength": 1, "maxLength": max_length}, description, required)


def bool_query(name: str, description: str) -> Query:
    return Query(name, {"type": "string", "enum": ["true", "false"]}, description)


def limit_query(default: int, maximum: int = MAX_PAGE) -> Query:
    return Query("limit", {"type": "integer", "minimum": 1, "maximum": maximum, "default": default}, "page size")


def cursor_query(max_length: int = CURSOR_MAX, name: str = "cursor") -> Query:
    return text_query(name, "the `next_cursor` of the previous page", max_length)
