"""Structured-output metrics: JSON validity against the task's JSON Schema, and field accuracy."""

from __future__ import annotations

import json
import re
from typing import Any

from tuneloop.evaluate.metrics import Metric, MetricContext, register
from tuneloop.evaluate.metrics.text import normalize

_FENCE = re.compile(r"^```(?:json)?\s*\n?(.*?)\n?```$", re.DOTALL | re.IGNORECASE)
_MISSING = object()


def parse_json(text: str, *, strict: bool = False) -> Any:
    """The JSON value in `text`, or `_MISSING`; unless `strict`, a Markdown fence is allowed."""
    text = text.strip()
    if not strict:
        fenced = _FENCE.match(text)
        if fenced:
            text = fenced.group(1).strip()
    try:
        return json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return _MISSING


@register
class JsonValid(Metric):
    """1 when the answer is JSON that validates against the schema (params, else the task's).

    Without any schema, parsing is all that is checked.
    """

    name = "json_valid"
    description = "answer is JSON valid against the task's JSON Schema"

    def __init__(self, *, schema: dict[str, Any] | None = None, strict: bool = False) -> None:
        self.schema = schema
        self.strict = strict
        self._validators: dict[int, Any] = {}

    def _validator(self, schema: dict[str, Any]) -> Any:
        key = id(schema)
        if key not in self._validators:
            from jsonschema import validators
            from jsonschema.exceptions import SchemaError

            cls = validators.validator_for(schema)
            try:
                cls.check_schema(schema)
            except SchemaError as exc:
                raise ValueError(f"the JSON Schema is invalid: {exc.message}") from None
            self._validators[key] = cls(schema)
        return self._validators[key]

    def score(self, prediction: str, reference: str, record: dict[str, Any],
              context: MetricContext) -> float | None:
        """1.0 when the answer parses and validates, else 0.0."""
        value = parse_json(prediction, strict=self.strict)
        if value is _MISSING:
            return 0.0
        schema = self.schema or (context.task.json_schema if context.task else None)
        if not schema:
            return 1.0
        return float(self._validator(schema).is_valid(value))


@register
class JsonFields(Metric):
    """Share of the reference's fields that the answer's JSON gets right.

    Fields are the leaves of the reference object, addressed by path (`customer.plan`); list
    items by index. Strings compare after normalisation, numbers by value. `fields` limits the
    check to some paths. An answer that is not JSON scores 0; a reference that is not a JSON
    object makes the metric not apply (None).
    """

    name = "json_fields"
    description = "field-level accuracy of the JSON answer against the reference"

    def __init__(self, *, fields: list[str] | None = None, strict: bool = False) -> None:
        self.fields = fields
        self.strict = strict

    def score(self, prediction: str, reference: str, record: dict[str, Any],
              context: MetricContext) -> float | None:
        """Fraction of reference fields equal in the answer."""
        expected = parse_json(reference, strict=False)
        if not isinstance(expected, dict):
            return None
        leaves = dict(_leaves(expected))
        if self.fields is not None:
            leaves = {k: v for k, v in leaves.items() if k in self.fields}
        if not leaves:
            return None
        got = parse_json(prediction, strict=self.strict)
        if got is _MISSING:
            return 0.0
        got_leaves = dict(_leaves(got))
        right = sum(_same(got_leaves.get(path, _MISSING), value) for path, value in leaves.items())
        return right / len(leaves)


def _leaves(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        out: list[tuple[str, Any]] = []
        for key, inner in value.items():
            out.extend(_leaves(inner, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, list):
        out = []
        for i, inner in enumerate(value):
            out.extend(_leaves(inner, f"{prefix}[{i}]"))
        return out or [(prefix, [])]
    return [(prefix, value)]


def _same(got: Any, expected: Any) -> bool:
    if got is _MISSING:
        return False
    if isinstance(expected, bool) or isinstance(got, bool):
        return got is expected
    if isinstance(expected, int | float) and isinstance(got, int | float):
        return abs(float(got) - float(expected)) <= 1e-9 * max(1.0, abs(float(expected)))
    if isinstance(expected, str) and isinstance(got, str):
        return normalize(got) == normalize(expected)
    return bool(got == expected)
