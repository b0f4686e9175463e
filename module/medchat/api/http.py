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

Handler = Callable[..., Awaitable[tuple[int, Any]]]

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


def query_int(request: Any, name: str, default: int, minimum: int, maximum: int) -> int:
    """An integer query parameter within bounds; 400 naming it otherwise."""
    raw = request.args.get(name.encode())
    if not raw:
        return default
    try:
        value = int(raw[0])
    except ValueError:
        raise SynapseError(400, f"Invalid query parameter {name}: not an integer", "M_INVALID_PARAM")
    if not minimum <= value <= maximum:
        raise SynapseError(400, f"Invalid query parameter {name}: must be {minimum}..{maximum}", "M_INVALID_PARAM")
    return value


def query_bool(request: Any, name: str) -> bool:
    raw = request.args.get(name.encode())
    if not raw:
        return False
    if raw[0] not in (b"true", b"false"):
        raise SynapseError(400, f"Invalid query parameter {name}: use true or false", "M_INVALID_PARAM")
    return raw[0] == b"true"
