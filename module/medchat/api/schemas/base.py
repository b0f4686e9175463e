"""The base classes and field types of the request models (requests.py, queries.py).

Kept apart from the models so that both files share one notion of "may be left out but not null",
"items unique", a query boolean, what a name may contain, and one JSON Schema generator (no
per-field titles, which the OpenAPI document would otherwise turn into components of their own).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from medchat.wellformed import NAME_REFUSED, PROSE_REFUSED, name_problem

T = TypeVar("T")


class RequestBody(BaseModel):
    """A JSON request body: names its fields, refuses unknown ones, coerces nothing (`"1"` is no
    integer). `given(name)` tells a field left out from one sent (an update changes only those)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    def given(self, name: str) -> bool:
        return name in self.model_fields_set


# Query parameters any route takes without declaring them: Synapse reads the access token from
# the query string as well as from the Authorization header (Matrix clients send it either way).
IMPLICIT_QUERY_PARAMS = frozenset({"access_token"})


class QueryParams(BaseModel):
    """The query parameters a route reads. Values arrive as strings (so `limit=20` is parsed); a
    parameter the route does not declare is refused (400 `Unknown parameter: …`), as unknown body
    fields are, so a filter the route does not support is never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def missing_param(message: str) -> PydanticCustomError:
    """A whole-body rule's refusal that read_json answers with 400 M_MISSING_PARAM and `message`."""
    return PydanticCustomError("missing_param", message)


def invalid_param(message: str) -> PydanticCustomError:
    """As missing_param, with 400 M_INVALID_PARAM."""
    return PydanticCustomError("invalid_param", message)


class _NotNull:
    """Metadata for `Omittable`: the field may be left out (it is then None), but null is refused,
    and the JSON Schema shows the non-null type only."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_before_validator_function(_refuse_null, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler.resolve_ref_schema(handler(schema))
        branches = json_schema.get("anyOf")
        if isinstance(branches, list) and {"type": "null"} in branches and len(branches) == 2:
            (kept,) = (b for b in branches if b != {"type": "null"})
            rest = {k: v for k, v in json_schema.items() if k != "anyOf"}
            return {**kept, **rest}
        return json_schema


def _refuse_null(value: Any) -> Any:
    if value is None:
        raise PydanticCustomError("not_null", "may be left out, but not null")
    return value


# A field that may be left out (then None) but not sent as null: `topic: Omittable[Topic] = None`.
Omittable = Annotated[T | None, _NotNull()]


class _Unique:
    """Metadata for a list whose items must differ (JSON Schema `uniqueItems`)."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(_check_unique, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {**handler.resolve_ref_schema(handler(schema)), "uniqueItems": True}


def _check_unique(items: list[Any]) -> list[Any]:
    if len(set(items)) != len(items):
        raise PydanticCustomError("unique_items", "the items must all differ")
    return items


UNIQUE = _Unique()


class _Text:
    """Metadata for text shown to other people (medchat.wellformed.name_problem): a name refuses
    control characters, line breaks and bidi overrides; `prose` (a topic, a bio) allows tabs
    and line breaks. The JSON Schema says the same as a `pattern`."""

    def __init__(self, prose: bool = False):
        self._prose = prose

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def _check(self, value: str) -> str:
        problem = name_problem(value, prose=self._prose)
        if problem is not None:
            raise PydanticCustomError("text_characters", problem)
        return value

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        refused = PROSE_REFUSED if self._prose else NAME_REFUSED
        return {**handler.resolve_ref_schema(handler(schema)), "pattern": f"^[^{refused}]*$"}


# Last in a string field's metadata (after its length): `Annotated[str, Field(max_length=200), NAME]`.
# NAME: a display name, room name, institution, ...; PROSE: a topic or bio, lines allowed.
NAME = _Text()
PROSE = _Text(prose=True)


class _QueryBool:
    """Metadata for a query flag: `true` or `false` (documented as that string enum); `lenient`
    also takes `1`/`0` and any case (what the directory has always accepted)."""

    def __init__(self, lenient: bool = False):
        self._words = {"true": True, "false": False, **({"1": True, "0": False} if lenient else {})}
        self._lenient = lenient

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_before_validator_function(self._parse, handler(source))

    def _parse(self, value: Any) -> Any:
        if isinstance(value, bool):
            return value
        word = value.lower() if self._lenient and isinstance(value, str) else value
        if word not in self._words:
            raise PydanticCustomError("query_bool", "use true or false")
        return self._words[word]

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "string", "enum": ["true", "false"]}


QueryBool = Annotated[bool, _QueryBool()]
LenientQueryBool = Annotated[bool, _QueryBool(lenient=True)]


def one_of(**alternatives: str) -> Callable[[JsonSchemaValue], None]:
    """A model's `json_schema_extra` for a body that takes exactly one of some fields (the model
    checks it): its schema becomes a `oneOf` of one object per field (`title=field`), each with
    the other fields too and nothing else, so that a generated client offers a union of named
    types rather than `unknown | unknown`."""

    def rewrite(schema: JsonSchemaValue) -> None:
        properties = schema.pop("properties")
        required = schema.pop("required", [])
        schema.pop("type", None)
        schema.pop("additionalProperties", None)
        schema["oneOf"] = [
            {
                "title": title,
                "type": "object",
                "properties": {k: v for k, v in properties.items() if k == field or k not in alternatives.values()},
                "required": [field, *required],
                "additionalProperties": False,
            }
            for title, field in alternatives.items()
        ]

    return rewrite


class OpenApiSchema(GenerateJsonSchema):
    """The JSON Schema of a model as the OpenAPI document shows it: no `title` on each field, no
    `default: null` (a field left out is "unchanged" or "none", which null would not say), and a
    query flag's default as the string it is sent as."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        json_schema = super().default_schema(schema)
        if json_schema.get("default", ...) is None:
            json_schema.pop("default")
        elif json_schema.get("enum") == ["true", "false"] and isinstance(json_schema.get("default"), bool):
            json_schema["default"] = "true" if json_schema["default"] else "false"
        return json_schema


def json_schema_of(model: type[BaseModel]) -> tuple[JsonSchemaValue, dict[str, JsonSchemaValue]]:
    """The model's schema with `$ref`s into `#/components/schemas/`, and the components it uses
    (its nested models), by name."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", schema_generator=OpenApiSchema)
    return schema, schema.pop("$defs", {})
