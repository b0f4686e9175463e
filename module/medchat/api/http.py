"""Transport helpers shared by the servlets: routing, request bodies and query parameters.

`route()` records what each endpoint takes and answers (its request body and query models from
api/schemas/, response schemas, summary from the handler's docstring) next to the handler; the
OpenAPI document (api/openapi.py) is made from those records, and `read_json`/`read_query` parse
only what the route declared, with the model it declared, so the documentation cannot drift from
the code.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from synapse.api.errors import Codes
from synapse.http.server import JsonResource
from synapse.module_api.errors import SynapseError

from medchat import errors
from medchat.api.schemas.base import IMPLICIT_QUERY_PARAMS, QueryParams, RequestBody
from medchat.models import JsonDict
from medchat.wellformed import NotJson, bad_string, json_path, load_json, string_problem

B = TypeVar("B", bound=RequestBody)
Q = TypeVar("Q", bound=QueryParams)

# A handler answers (status, JSON body), or None once it has written the response itself (a download).
# A servlet method: answers (status, JSON), or None where it wrote the response itself (downloads).
Handler = Callable[..., Awaitable[tuple[int, Any]] | Awaitable[None]]

# The WebSocket (api/__init__.py routes it to its own resource, not through route()).
WEBSOCKET_PATH = b"/api/chat/ws"

_PARAM_RE = re.compile(r"\{(\w+)\}")
_ROUTES_ATTR = "medchat_routes"
_REQUEST_ATTR = "medchat_route"


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
    body: type[RequestBody] | Content | None = None
    body_required: bool = True
    query: type[QueryParams] | None = None
    public: bool = False
    name: str | None = None

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
    body: type[RequestBody] | Content | None = None,
    body_required: bool = True,
    query: type[QueryParams] | None = None,
    public: bool = False,
    name: str | None = None,
) -> None:
    """Registers `handler` for `method path`; `{name}` segments arrive URL-decoded as kwargs (the
    router has refused a path that is not UTF-8 text, synapse/http.py).

    `responses` maps each success status to its schema (errors are the common 4xx `{errcode,
    error}`); `body` is the model `read_json` parses the body with; `query` the model `read_query`
    parses the query string with; `public` routes need no access token; `name` the operation's
    (its operationId's end, api/openapi.py) where two routes share a handler. The handler's
    docstring is the endpoint's summary (first paragraph) and description (the rest).
    """
    declared = Route(method, path, handler, responses, body, body_required, query, public, name)
    if not declared.summary:
        raise ValueError(f"{handler.__qualname__}: a route's handler needs a docstring (the endpoint's summary)")

    def serve(request: Any, **kwargs: str) -> Awaitable[tuple[int, Any]] | Awaitable[None]:
        setattr(request, _REQUEST_ATTR, declared)
        refuse_unknown_params(request, query or QueryParams)  # before the handler does anything
        return handler(request, **kwargs)

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

    Errors are 400s that name the offending field: M_NOT_JSON for a body that is not a JSON object
    (or nests deeper than medchat.wellformed.MAX_JSON_DEPTH), M_MISSING_PARAM for an absent
    required field, M_INVALID_PARAM for anything else, a string that is not valid Unicode or holds
    U+0000 included (checked before the model, so no handler ever sees one). `optional`: no body
    at all is the model with every field left out.
    """
    if _declared(request).body is not model:
        raise RuntimeError(f"{request.path!r}: read_json with a model its route does not declare")
    body = {} if optional and not _has_body(request) else _json_object(request)
    try:
        return model.model_validate(body)
    except ValidationError as e:
        raise body_error(e) from None


def _json_object(request: Any) -> JsonDict:
    """The body as a JSON object whose every string (and key) is text the module can store."""
    raw = request.content.read() if request.content else b""
    try:
        body = load_json(raw or b"null")
    except NotJson as e:
        raise SynapseError(400, f"The request body is not valid JSON: {e}.", Codes.NOT_JSON)
    if not isinstance(body, dict):
        raise SynapseError(400, "The request body must be a JSON object.", Codes.NOT_JSON)
    found = bad_string(body)
    if found is not None:
        what, problem = found
        raise errors.invalid_param(f"Invalid {what}: {problem}")
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


def body_error(error: ValidationError) -> SynapseError:
    """The 400 for a body the model refused: its shallowest problem, naming the field.

    Unknown fields come first and are listed together (a misspelt field is then named as such,
    not reported as the required one it was meant to be); a whole-body rule (`missing_param` or
    `invalid_param` of api/schemas/base.py) answers with its own message and errcode.
    """
    problems = error.errors(include_url=False)
    first = min(problems, key=lambda p: (len(p["loc"]), p["type"] != "extra_forbidden"))
    kind, field = first["type"], json_path(first["loc"])
    if kind == "extra_forbidden":
        parent = first["loc"][:-1]
        extra = sorted(json_path(p["loc"]) for p in problems if p["type"] == kind and p["loc"][:-1] == parent)
        return errors.invalid_param(f"Unknown field: {', '.join(extra)}")
    if kind == "missing":
        return errors.missing_param(f"Missing field: {field}")
    if kind == "missing_param":
        return errors.missing_param(first["msg"])
    if kind == "invalid_param" and not field:
        return errors.invalid_param(first["msg"])
    return errors.invalid_param(f"Invalid field {field}: {first['msg']}" if field else first["msg"])


# --- query parameters --------------------------------------------------------------------------


def _param_names(model: type[QueryParams]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def refuse_unknown_params(request: Any, model: type[QueryParams]) -> None:
    """400 M_INVALID_PARAM naming the query parameters `model` does not declare (route() checks
    every request with its route's model, or with none for a route without parameters), except
    those any route takes (IMPLICIT_QUERY_PARAMS). The model's `extra="forbid"` says the same
    for a query parsed without a request."""
    known = _param_names(model) | IMPLICIT_QUERY_PARAMS
    unknown = sorted(
        name.decode("utf-8", "backslashreplace") for name in (request.args or {}) if name.decode("latin-1") not in known
    )
    if unknown:
        raise errors.invalid_param(f"Unknown parameter: {', '.join(unknown)}")


def read_query(request: Any, model: type[Q]) -> Q:
    """The query string parsed with `model`, which must be the one its route declared (`query=`).

    The model's parameters are read (the first value of each), others were refused by route();
    400 M_MISSING_PARAM for a required one left out, M_INVALID_PARAM naming the parameter for a
    value the model refuses (bytes that are not UTF-8 and NUL characters included,
    medchat.wellformed).
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
        problem = string_problem(value)
        if problem is not None:
            raise errors.invalid_param(f"Invalid parameter {name}: {problem}")
        given[name] = value
    try:
        return model.model_validate(given)
    except ValidationError as e:
        raise query_error(e, model) from None


def query_error(error: ValidationError, model: type[BaseModel]) -> SynapseError:
    """The 400 for a query the model refused, naming the parameter and what it accepts."""
    problems = error.errors(include_url=False)
    unknown = sorted(str(p["loc"][0]) for p in problems if p["type"] == "extra_forbidden" and p["loc"])
    if unknown:
        return errors.invalid_param(f"Unknown parameter: {', '.join(unknown)}")
    problem = problems[0]
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
