"""The ``json_schema`` grader: the answer parses as JSON and validates against a JSON Schema.

The schema comes from the grader's ``schema`` parameter, else from the case's OpenAI
``response_format`` (``{"type": "json_schema", "json_schema": {"schema": ...}}``); with neither,
the answer only has to be valid JSON. Validation uses the ``jsonschema`` library with the
draft the schema's ``$schema`` names (default 2020-12).
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema
from jsonschema import exceptions as jsonschema_errors

from relaygate.evals.graders_context import GraderError, answer_text
from relaygate.evals.model import Case, GraderSpec, Score

__all__ = [
    "PARAMS",
    "check_params",
    "check_schema",
    "grade_json_schema",
    "parse_json_answer",
    "schema_errors",
]

PARAMS: dict[str, frozenset[str]] = {"json_schema": frozenset({"schema", "allow_fences"})}
_FENCE = re.compile(r"^\s*```(?:json|JSON)?\s*\n(.*?)\n?```\s*$", re.DOTALL)


def check_schema(schema: Any, where: str) -> None:
    """Raise ``GraderError`` unless ``schema`` is a valid JSON Schema (its own meta-schema)."""
    if not isinstance(schema, dict | bool):
        raise GraderError(f"{where}: a JSON Schema must be an object")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema_errors.SchemaError as exc:
        raise GraderError(f"{where}: invalid JSON Schema: {exc.message}") from exc


def check_params(kind: str, params: dict[str, Any]) -> None:
    if "schema" in params:
        check_schema(params["schema"], "json_schema 'schema'")


def schema_errors(instance: Any, schema: dict[str, Any] | bool, *, limit: int = 3) -> list[str]:
    """Up to ``limit`` validation messages (``path: message``), best match first; ``[]`` if valid."""
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(instance), key=jsonschema_errors.relevance)
    out = []
    for error in errors[:limit]:
        path = "/".join(str(p) for p in error.absolute_path) or "(root)"
        out.append(f"{path}: {error.message}")
    return out


def parse_json_answer(text: str, *, allow_fences: bool = True) -> Any:
    """The JSON value in ``text``; a single Markdown code fence around it is allowed unless
    ``allow_fences`` is false. Raises ``ValueError`` when it is not JSON."""
    if allow_fences:
        fenced = _FENCE.match(text)
        if fenced:
            text = fenced.group(1)
    return json.loads(text)


def _schema_for(case: Case, spec: GraderSpec) -> dict[str, Any] | bool | None:
    if "schema" in spec.params:
        schema: dict[str, Any] | bool = spec.params["schema"]
        return schema
    response_format = case.params.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        inner = response_format.get("json_schema")
        if isinstance(inner, dict) and isinstance(inner.get("schema"), dict | bool):
            found: dict[str, Any] | bool = inner["schema"]
            return found
    return None


def grade_json_schema(case: Case, response: dict[str, Any], spec: GraderSpec) -> Score:
    """Passes when the answer is JSON (a fenced block allowed unless ``allow_fences: false``)
    valid against the schema; the detail names the first failures."""
    try:
        value = parse_json_answer(answer_text(response), allow_fences=spec.params.get("allow_fences", True))
    except ValueError as exc:
        return Score(spec.metric_name, 0.0, passed=False, detail=f"not JSON: {exc}")
    schema = _schema_for(case, spec)
    if schema is None:
        return Score(spec.metric_name, 1.0, passed=True, detail="valid JSON (no schema given)")
    errors = schema_errors(value, schema)
    if errors:
        return Score(spec.metric_name, 0.0, passed=False, detail="; ".join(errors))
    return Score(spec.metric_name, 1.0, passed=True)
