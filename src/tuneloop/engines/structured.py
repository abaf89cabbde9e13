"""Structured output: what an answer must look like (JSON, a JSON Schema) as a grammar.

An OpenAI `response_format` becomes a `ResponseFormat`, which every engine receives in its
`GenerationParams`. Engines that can constrain decoding (llama.cpp, through a GBNF grammar) make
every token keep the answer a valid prefix, so a finished answer always parses and, with a
schema, always validates; engines that forward requests (OpenAI-compatible HTTP) pass it on; an
engine that can do neither refuses it (`supports_grammar` is False) instead of ignoring it.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any, Literal

from tuneloop.errors import InvalidRequest

Kind = Literal["json_object", "json_schema"]


@dataclass(frozen=True)
class ResponseFormat:
    """`{"type": "json_object"}` or `{"type": "json_schema", "json_schema": {...}}`.

    `schema` is kept as canonical JSON text so that the object stays hashable and a grammar is
    built once per distinct schema.
    """

    kind: Kind
    schema_text: str | None = None
    name: str = "response"

    @property
    def schema(self) -> dict[str, Any] | None:
        return None if self.schema_text is None else json.loads(self.schema_text)

    def to_openai(self) -> dict[str, Any]:
        """The `response_format` field to forward to an OpenAI-compatible server."""
        if self.kind == "json_object":
            return {"type": "json_object"}
        return {"type": "json_schema",
                "json_schema": {"name": self.name, "schema": self.schema, "strict": True}}


def from_schema(schema: dict[str, Any], name: str = "response") -> ResponseFormat:
    """A json_schema format for `schema` (checked to be a valid JSON Schema)."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise InvalidRequest(f"response_format.json_schema.schema is not a valid JSON Schema: "
                             f"{exc.message}") from None
    return ResponseFormat("json_schema", json.dumps(schema, sort_keys=True), name)


def from_openai(value: dict[str, Any] | None) -> ResponseFormat | None:
    """The OpenAI `response_format` field, or None for `{"type": "text"}` and no field."""
    if not value or value.get("type") in (None, "text"):
        return None
    kind = value.get("type")
    if kind == "json_object":
        return ResponseFormat("json_object")
    if kind == "json_schema":
        spec = value.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
            raise InvalidRequest("response_format.json_schema.schema must be a JSON Schema object")
        return from_schema(spec["schema"], str(spec.get("name") or "response"))
    raise InvalidRequest(f"response_format.type {kind!r} is not one of text, json_object, "
                         "json_schema")


# Any JSON object (OpenAI's json_object mode asks for an object, not any value). Whitespace is
# bounded, so a model cannot spend its whole budget on spaces between tokens.
_JSON_OBJECT_GBNF = r"""
root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null")
object ::= "{" ws ( string ":" ws value ("," ws string ":" ws value)* )? "}"
array  ::= "[" ws ( value ("," ws value)* )? "]"
string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4}) )* "\""
number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,3})?
ws     ::= | " " | "\n" [ \t]{0,20}
"""


# What llama.cpp's JSON-Schema-to-grammar converter turns into grammar rules; anything else
# (minimum, multipleOf, uniqueItems, not, if/then, ...) it would silently drop, so a schema that
# uses it is refused rather than half-enforced.
_ENFORCED = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "prefixItems", "enum",
    "const", "anyOf", "oneOf", "allOf", "minLength", "maxLength", "minItems", "maxItems",
    "pattern", "format", "$ref", "$defs", "definitions"})
_NOTES = frozenset({"title", "description", "default", "examples", "$schema", "$id",
                    "$comment", "deprecated", "readOnly", "writeOnly"})
_FORMATS = frozenset({"date", "time", "date-time", "uuid"})
_SCHEMA_MAPS = ("properties", "$defs", "definitions")


def unenforceable(schema: Any, where: str = "schema") -> str | None:
    """The first place in `schema` that a grammar cannot enforce, or None."""
    if not isinstance(schema, dict):
        return None
    for key, value in schema.items():
        if key not in _ENFORCED and key not in _NOTES:
            return f"{where}.{key}"
        if key == "format" and value not in _FORMATS:
            return f"{where}.format ({value!r})"
        if key == "$ref" and not str(value).startswith("#"):
            return f"{where}.$ref ({value!r}: only local references)"
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            children = [(f"{where}.{key}.{k}", v) for k, v in value.items()]
        elif key in ("anyOf", "oneOf", "allOf", "prefixItems") and isinstance(value, list):
            children = [(f"{where}.{key}[{i}]", v) for i, v in enumerate(value)]
        elif key in ("items", "additionalProperties"):
            children = [(f"{where}.{key}", value)]
        else:
            children = []
        for path, child in children:
            found = unenforceable(child, path)
            if found:
                return found
    return None


@functools.lru_cache(maxsize=128)
def _schema_grammar(schema_text: str) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    found = unenforceable(json.loads(schema_text))
    if found:
        raise InvalidRequest(f"this JSON Schema uses {found}, which grammar-constrained "
                             "decoding cannot enforce",
                             hint="drop the keyword or check it after the answer; supported: "
                                  + ", ".join(sorted(_ENFORCED)))
    try:
        return json_schema_to_gbnf(schema_text)
    except Exception as exc:  # the converter raises plain exceptions for what it cannot express
        raise InvalidRequest(f"this JSON Schema cannot be turned into a grammar: {exc}",
                             hint="simplify the schema (no external $ref, no unsupported "
                                  "keywords)") from None


def gbnf(fmt: ResponseFormat) -> str:
    """The GBNF grammar (llama.cpp's grammar language) that only admits answers in `fmt`."""
    if fmt.kind == "json_object":
        return _JSON_OBJECT_GBNF
    assert fmt.schema_text is not None
    return _schema_grammar(fmt.schema_text)
