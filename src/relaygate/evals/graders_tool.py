"""The ``tool_call`` grader: are the answer's tool calls valid, and are they the expected ones?

Validity: every call names a function in ``case.tools`` and its arguments are a JSON object
valid against that function's ``parameters`` schema. Then, when an expected value is given:

- ``[]``: the model must call no tool (an irrelevance case).
- a list of ``{"name": ..., "arguments": {...}}``: the same number of calls, each matched once,
  in any order (``ordered: true``: in order). ``match: exact`` (default) compares arguments
  for equality (``1 == 1.0``, but ``True != 1``); ``match: possible`` reads each argument as a
  list of acceptable values, the Berkeley Function Calling Leaderboard's "possible answer"
  format: ``""`` in the list means the argument may be omitted, strings compare after removing
  spaces and ``,./-_*^`` and case-folding, a dict value is itself a possible-answer mapping.
  Re-implemented from ``bfcl_eval/eval_checker/ast_eval/ast_checker.py`` (Apache-2.0).
"""

from __future__ import annotations

import json
import re
from typing import Any

from relaygate.evals.graders_context import GraderError, expected_of, tool_calls_of
from relaygate.evals.graders_json import schema_errors
from relaygate.evals.model import Case, GraderSpec, Score

__all__ = ["PARAMS", "check_params", "grade_tool_call", "matches_possible"]

PARAMS: dict[str, frozenset[str]] = {"tool_call": frozenset({"expected", "match", "ordered", "require_call"})}
_BFCL_STRIP = re.compile(r"[ ,./\-_*^]")
Call = tuple[str, dict[str, Any]]


def check_params(kind: str, params: dict[str, Any]) -> None:
    if params.get("match", "exact") not in ("exact", "possible"):
        raise GraderError("tool_call: 'match' must be 'exact' or 'possible'")


def _fail(spec: GraderSpec, detail: str) -> Score:
    return Score(spec.metric_name, 0.0, passed=False, detail=detail)


def _schemas(case: Case) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tool in case.tools or []:
        function = tool.get("function", tool)
        if isinstance(function, dict) and "name" in function:
            out[str(function["name"])] = function.get("parameters") or {"type": "object"}
    return out


def _valid_calls(case: Case, response: dict[str, Any]) -> tuple[list[Call], str]:
    schemas = _schemas(case)
    calls: list[Call] = []
    for name, raw in tool_calls_of(response):
        if name not in schemas:
            return calls, f"called unknown function {name!r} (tools: {sorted(schemas)})"
        try:
            arguments = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            return calls, f"{name}: arguments are not JSON: {exc}"
        if not isinstance(arguments, dict):
            return calls, f"{name}: arguments are not a JSON object"
        errors = schema_errors(arguments, schemas[name])
        if errors:
            return calls, f"{name}: " + "; ".join(errors)
        calls.append((name, arguments))
    return calls, ""


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _standard(value: Any) -> Any:
    if isinstance(value, str):
        return _BFCL_STRIP.sub("", value).casefold().replace("'", '"')
    return value


def _one_possible(actual: Any, possible: Any) -> bool:
    if isinstance(possible, dict) and isinstance(actual, dict):
        return matches_possible(actual, possible)
    if isinstance(possible, list) and isinstance(actual, list):
        return len(possible) == len(actual) and all(
            _one_possible(a, p) for a, p in zip(actual, possible, strict=True)
        )
    return _equal(_standard(actual), _standard(possible))


def matches_possible(arguments: dict[str, Any], possible: dict[str, Any]) -> bool:
    """BFCL possible-answer match of one call's ``arguments`` (see the module docstring)."""
    for key, value in arguments.items():
        options = possible.get(key)
        if not isinstance(options, list) or not any(
            _one_possible(value, opt) for opt in options if opt != ""
        ):
            return False
    return all(
        "" in options
        for key, options in possible.items()
        if key not in arguments and isinstance(options, list)
    )


def _expected_calls(expected: Any) -> list[Call]:
    items = [expected] if isinstance(expected, dict) else expected
    if not isinstance(items, list):
        raise GraderError("tool_call: expected must be a list of {name, arguments}")
    calls: list[Call] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise GraderError(f"tool_call: expected call {item!r} needs a 'name'")
        arguments = item.get("arguments", {})
        if not isinstance(arguments, dict):
            raise GraderError(f"tool_call: arguments of expected call {item['name']!r} must be an object")
        calls.append((item["name"], arguments))
    return calls


def _match(actual: list[Call], expected: list[Call], *, possible: bool, ordered: bool) -> str:
    if len(actual) != len(expected):
        return f"{len(actual)} call(s), expected {len(expected)}"
    same = matches_possible if possible else _equal
    unused = list(range(len(actual)))
    for position, (name, arguments) in enumerate(expected):
        candidates = [position] if ordered else unused
        hit = next((i for i in candidates if actual[i][0] == name and same(actual[i][1], arguments)), None)
        if hit is None:
            return f"no call matches expected {name}({json.dumps(arguments)[:200]})"
        if not ordered:
            unused.remove(hit)
    return ""


def grade_tool_call(case: Case, response: dict[str, Any], spec: GraderSpec) -> Score:
    """Pass/fail on validity and, with an expected value, on matching the expected calls."""
    if not case.tools:
        raise GraderError(f"tool_call: case {case.id!r} has no tools")
    calls, problem = _valid_calls(case, response)
    if problem:
        return _fail(spec, problem)
    expected = expected_of(case, spec, required=False)
    if expected is None:
        if not calls and spec.params.get("require_call", True):
            return _fail(spec, "no tool call")
        return Score(spec.metric_name, 1.0, passed=True, detail=f"{len(calls)} valid call(s)")
    problem = _match(
        calls,
        _expected_calls(expected),
        possible=spec.params.get("match", "exact") == "possible",
        ordered=bool(spec.params.get("ordered", False)),
    )
    if problem:
        return _fail(spec, problem)
    return Score(spec.metric_name, 1.0, passed=True)
