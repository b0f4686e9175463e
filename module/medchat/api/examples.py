"""Examples for the OpenAPI document, made from the same schemas it publishes (the request models'
and responses.py's): a value's own `examples` first (the request models' fields and bodies carry
them where a pattern or a rule needs a real-looking value), else its `const`, default or first
enum value, else a value of its type, named after its field where that says what it holds (an id
of the right kind, an mxc URL, a time). tests/test_openapi_examples.py checks that every example
validates against its schema and that the live server takes the request examples.
"""

from __future__ import annotations

from typing import Any

from medchat.models import JsonDict

_TIME = "2026-01-15T09:30:00Z"
_USER = "@alice:medchat.example"
_MXC = "mxc://medchat.example/AbCdEf0123"

# What a string field of this name holds, where its schema says only "a string".
_BY_NAME: dict[str, str] = {
    "id": "$Mq3dK9v0e1aB2c3D:medchat.example",
    "user_id": _USER,
    "sender": _USER,
    "actor": _USER,
    "created_by": _USER,
    "decided_by": "@admin:medchat.example",
    "room_id": "!kXaQeWcLpHtUfYoNzR:medchat.example",
    "message_id": "$Mq3dK9v0e1aB2c3D",
    "event_id": "$Mq3dK9v0e1aB2c3D",
    "read_up_to": "$Mq3dK9v0e1aB2c3D",
    "reply_to": "$Mq3dK9v0e1aB2c3D",
    "thread_id": "$Mq3dK9v0e1aB2c3D",
    "space_id": "!sPaCeIdOfTheInstitution:medchat.example",
    "media_url": _MXC,
    "thumbnail_url": _MXC,
    "profile_image": _MXC,
    "avatar_url": _MXC,
    "document": _MXC,
    "file_id": "AbCdEf0123",
    "username": "alice",
    "email": "alice@hospital.example",
    "full_name": "Dr Alice Example",
    "name": "Cardiology team",
    "institution": "St Example Hospital",
    "specialization": "Cardiology",
    "role": "Consultant",
    "bio": "Cardiologist.",
    "content": "Hello, the results are in.",
    "file_name": "scan.png",
    "mime_type": "image/png",
    "server": "medchat.example",
    "server_name": "medchat.example",
    "home_server": "medchat.example",
    "device_id": "ABCDEFGHIJ",
    "access_token": "syt_YWxpY2U_ZXhhbXBsZXRva2Vu_0a1b2c",
    "refresh_token": "syr_YWxpY2U_ZXhhbXBsZXRva2Vu_3d4e5f",
    "next_cursor": "djE6NTA",
    "version": "0.1.0",
    "error": "What went wrong, in a sentence.",
    "errcode": "M_UNKNOWN",
    "geo_uri": "geo:51.5074,-0.1278",
    "client_msg_id": "9b2c1e4a-local-1",
}
_DEPTH = 6


def example_of(schema: JsonDict, components: dict[str, JsonDict], field: str = "", full: bool = True) -> Any:
    """An example value of `schema` ($refs into `components`); `full`: every property of an
    object (an answer), else the required ones only (a request: the smallest that is accepted)."""
    return _example(schema, components, field, full, 0)


def _example(schema: JsonDict, components: dict[str, JsonDict], field: str, full: bool, depth: int) -> Any:
    if "$ref" in schema:
        return _example(components[schema["$ref"].rsplit("/", 1)[1]], components, field, full, depth)
    if schema.get("examples"):
        return schema["examples"][0]
    if "const" in schema:
        return schema["const"]
    if schema.get("default") is not None:
        return schema["default"]
    if "enum" in schema:
        return next(value for value in schema["enum"] if value is not None)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            branches = [b for b in schema[key] if b.get("type") != "null"] or schema[key]
            return _example(branches[0], components, field, full, depth)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        return _object(schema, components, full, depth)
    if kind == "array":
        count = max(1, schema.get("minItems", 1)) if depth < _DEPTH else 0
        items = [_example(schema.get("items", {}), components, field, full, depth + 1) for _ in range(count)]
        if schema.get("uniqueItems") and all(isinstance(item, str) for item in items):
            items = [f"{item} {n}" if count > 1 else item for n, item in enumerate(items, 1)]
        return items
    if kind == "integer":
        return max(schema.get("minimum", 1), min(schema.get("maximum", 1), 1))
    if kind == "boolean":
        return False
    if kind == "string":
        return _string(schema, field)
    return None


def _object(schema: JsonDict, components: dict[str, JsonDict], full: bool, depth: int) -> JsonDict:
    properties: dict[str, JsonDict] = schema.get("properties", {})
    if depth >= _DEPTH:
        return {}
    names = list(properties) if full else list(schema.get("required", []))
    if not names and properties and schema.get("minProperties", 0) > 0:
        names = list(properties)[:1]
    return {name: _example(properties[name], components, name, full, depth + 1) for name in names}


def _string(schema: JsonDict, field: str) -> str:
    if schema.get("format") == "date-time":
        return _TIME
    value = _BY_NAME.get(field, "example")
    if field == "id" and schema.get("pattern", "").startswith("^@"):
        value = _USER
    low, high = schema.get("minLength", 0), schema.get("maxLength", len(value))
    return (value + "x" * max(0, low - len(value)))[:high]
