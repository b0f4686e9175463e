"""Transport helpers shared by the servlets: routing, JSON bodies and their validation."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import jsonschema
from synapse.http.server import JsonResource
from synapse.module_api.errors import SynapseError

from medchat.models import JsonDict

# A handler answers (status, JSON body), or None once it has written the response itself (a download).
Handler = Callable[..., Awaitable[tuple[int, Any] | None]]

_PARAM_RE = re.compile(r"\{(\w+)\}")


def route(resource: JsonResource, method: str, path: str, handler: Handler) -> None:
    """Registers `handler` for `method path`; `{name}` segments arrive URL-decoded as kwargs."""
    pattern = re.compile("^" + _PARAM_RE.sub(r"(?P<\1>[^/]+)", path) + "$")
    resource.register_paths(method, [pattern], handler, handler.__qualname__)


def read_json(request: Any, schema: JsonDict) -> JsonDict:
    """The request body as a JSON object, checked against `schema`.

    Errors are 400s that name the offending field: M_NOT_JSON for a body that is not a JSON object,
    M_MISSING_PARAM for an absent required field, M_INVALID_PARAM for anything else.
    """
    raw = request.content.read() if request.content else b""
    try:
        body = json.loads(raw or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SynapseError(400, "The request body is not valid JSON.", "M_NOT_JSON")
    if not isinstance(body, dict):
        raise SynapseError(400, "The request body must be a JSON object.", "M_NOT_JSON")
    error = jsonschema.exceptions.best_match(_validator(schema).iter_errors(body))
    if error is not None:
        raise _schema_error(error)
    return body


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
        return SynapseError(400, f"Missing field: {missing}", "M_MISSING_PARAM")
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return SynapseError(400, f"Unknown field: {', '.join(extra)}", "M_INVALID_PARAM")
    if error.validator == "oneOf" and not field:
        options = " or ".join(sorted(r for s in error.schema["oneOf"] for r in s.get("required", [])))
        return SynapseError(400, f"Give exactly one of: {options}", "M_MISSING_PARAM")
    if error.validator == "minProperties":
        return SynapseError(400, "The request body has no fields to change.", "M_INVALID_PARAM")
    return SynapseError(400, f"Invalid field {field}: {error.message}", "M_INVALID_PARAM")


# --- query parameters --------------------------------------------------------------------------

MAX_PAGE = 100
CURSOR_MAX = 1000  # Matrix pagination tokens and our own cursors fit well within this


def query_string(request: Any, name: str, max_length: int = 200) -> str | None:
    """A query parameter, or None if absent; 400 if empty or longer than `max_length`."""
    values = request.args.get(name.encode("ascii"))
    if not values:
        return None
    try:
        value = values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise SynapseError(400, f"Invalid parameter {name}: not UTF-8", "M_INVALID_PARAM")
    if not value or len(value) > max_length:
        raise SynapseError(400, f"Invalid parameter {name}: give 1 to {max_length} characters", "M_INVALID_PARAM")
    return value


def query_bool(request: Any, name: str) -> bool | None:
    value = query_string(request, name)
    if value is None:
        return None
    if value not in ("true", "false"):
        raise SynapseError(400, f"Invalid parameter {name}: use true or false", "M_INVALID_PARAM")
    return value == "true"


def query_limit(request: Any, default: int, maximum: int) -> int:
    """The page size `limit`: 1 to `maximum` (400 outside), `default` if absent."""
    value = query_string(request, "limit", max_length=6)
    if value is None:
        return default
    if not value.isdigit() or not 1 <= int(value) <= maximum:
        raise SynapseError(400, f"Invalid parameter limit: give a whole number from 1 to {maximum}", "M_INVALID_PARAM")
    return int(value)


def query_params(request: Any) -> dict[str, str]:
    """The query string as name → first value (UTF-8); 400 for bytes that are not UTF-8."""
    try:
        return {k.decode(): v[0].decode() for k, v in (request.args or {}).items() if v}
    except UnicodeDecodeError:
        raise SynapseError(400, "The query string is not valid UTF-8.", "M_INVALID_PARAM")

