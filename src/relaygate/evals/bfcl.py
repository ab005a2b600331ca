"""The BFCL importer: the Berkeley Function Calling Leaderboard's ``bfcl-eval`` 2026.3.23 package
(Apache-2.0), which carries ``bfcl_eval/data/BFCL_v4_<category>.json`` and the ground truth in
``data/possible_answer/``; each single-turn entry becomes a case with OpenAI tools, graded by
``tool_call``. Archives are fetched and read by ``evals/archives.py``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from relaygate.evals.archives import read_jsonl, read_member, source_archive, take
from relaygate.evals.model import Case, GraderSpec, Margin, Suite, SuiteSource

__all__ = ["BFCL", "BFCL_CATEGORIES", "bfcl_schema", "import_bfcl"]

BFCL = SuiteSource("bfcl-eval", "2026.3.23", "Apache-2.0")
BFCL_CATEGORIES = ("simple_python", "multiple", "live_simple", "live_multiple")
_BFCL_TYPES = {"dict": "object", "float": "number", "tuple": "array", "int": "integer", "bool": "boolean"}


def bfcl_schema(schema: Any) -> Any:
    """A BFCL parameter schema as JSON Schema: ``dict`` -> ``object``, ``float`` -> ``number``,
    ``tuple`` -> ``array``, ``any`` -> no type; the non-standard ``optional`` flag dropped."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "optional":
            continue
        if key == "type" and isinstance(value, str):
            if value != "any":
                out[key] = _BFCL_TYPES.get(value, value)
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: bfcl_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = bfcl_schema(value)
        else:
            out[key] = value
    return out


def _tool_name(name: str) -> str:
    """OpenAI tool names allow ``[a-zA-Z0-9_-]{1,64}``; BFCL's ``math.factorial`` becomes
    ``math_factorial`` (BFCL's own OpenAI handler does the same)."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", name)[:64]


def _bfcl_case(entry: dict[str, Any], answer: dict[str, Any], category: str) -> Case:
    functions = entry["function"]
    names = {_tool_name(f["name"]): f["name"] for f in functions}
    tools = [
        {
            "type": "function",
            "function": {
                "name": _tool_name(f["name"]),
                "description": f.get("description", ""),
                "parameters": bfcl_schema(f.get("parameters", {"type": "dict", "properties": {}})),
            },
        }
        for f in functions
    ]
    expected = [
        {"name": _tool_name(name), "arguments": arguments}
        for call in answer["ground_truth"]
        for name, arguments in call.items()
    ]
    return Case(
        id=str(entry["id"]),
        messages=[dict(m) for m in entry["question"][0]],
        expected=expected,
        tools=tools,
        params={"temperature": 0.0},
        tags={"category": category, "task": "tool_call", "benchmark": "bfcl"},
        meta={"function_names": names},
    )


def import_bfcl(
    *,
    version: str | None = None,
    archive: Path | None = None,
    cache_dir: Path | None = None,
    limit: int | None = None,
    seed: int | None = None,
    categories: Sequence[str] = BFCL_CATEGORIES,
) -> Suite:
    """BFCL function-calling cases with ground truth, from the single-turn AST categories
    (default: simple_python, multiple, live_simple, live_multiple; parallel and
    parallel_multiple also work). Tools are converted to OpenAI JSON Schema; expected calls
    are BFCL possible answers, graded by ``tool_call`` with ``match: possible``."""
    path = source_archive(BFCL, version, archive, cache_dir)
    pairs: list[tuple[dict[str, Any], dict[str, Any], str]] = []
    members = []
    for category in categories:
        q_member, q_data = read_member(path, rf"(^|/)data/BFCL_v\d+_{re.escape(category)}\.json$")
        a_member, a_data = read_member(
            path, rf"(^|/)data/possible_answer/BFCL_v\d+_{re.escape(category)}\.json$"
        )
        answers = {row["id"]: row for row in read_jsonl(a_data, a_member)}
        members.append(q_member)
        for entry in read_jsonl(q_data, q_member):
            if entry["id"] not in answers or len(entry.get("question", [])) != 1:
                continue  # multi-turn or no ground truth: not gradable as one request
            pairs.append((entry, answers[entry["id"]], category))
    cases = [_bfcl_case(entry, answer, category) for entry, answer, category in take(pairs, limit, seed)]
    return Suite(
        name="bfcl",
        cases=tuple(cases),
        graders=(GraderSpec("tool_call", {"match": "possible"}),),
        margins=(Margin("tool_call", 0.05),),
        source=SuiteSource(BFCL.name, version or BFCL.version, BFCL.licence, ", ".join(members)),
    )
