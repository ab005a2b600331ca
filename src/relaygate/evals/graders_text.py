"""Text graders: exact, normalized, contains, regex, numeric. Pure functions of the answer text.

``expected`` may be one value or a list of acceptable values (any one matching passes).
"""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

from relaygate.evals.graders_context import GraderError, answer_text, expected_of
from relaygate.evals.model import Case, GraderSpec, Score

__all__ = [
    "PARAMS",
    "check_params",
    "extract_last_number",
    "grade_contains",
    "grade_exact",
    "grade_normalized",
    "grade_numeric",
    "grade_regex",
    "normalize_text",
]

PARAMS: dict[str, frozenset[str]] = {
    "exact": frozenset({"expected", "strip"}),
    "normalized": frozenset({"expected"}),
    "contains": frozenset({"expected", "mode", "case_sensitive", "normalize"}),
    "regex": frozenset({"pattern", "flags", "fullmatch", "negate"}),
    "numeric": frozenset({"expected", "abs_tol", "rel_tol"}),
}
_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE}
# A number as people write it: sign, thousands separators, decimals, exponent.
# A sign only counts where no word character precedes it ("2024-01-02" has no negative numbers).
_NUMBER = re.compile(r"(?<![\w.])[-+\u2212]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?")


def check_params(kind: str, params: dict[str, Any]) -> None:
    """Raise ``GraderError`` for parameter values that cannot work (checked at suite load)."""
    if kind == "regex":
        if not isinstance(params.get("pattern", ""), str):
            raise GraderError("regex: 'pattern' must be a string")
        _compile(str(params.get("pattern", "")), params.get("flags", ""))
    if kind == "contains" and params.get("mode", "any") not in ("any", "all"):
        raise GraderError("contains: 'mode' must be 'any' or 'all'")
    if kind == "numeric":
        for key in ("abs_tol", "rel_tol"):
            value = params.get(key, 0)
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise GraderError(f"numeric: {key!r} must be a number >= 0")


def _alternatives(expected: Any) -> list[Any]:
    return list(expected) if isinstance(expected, list | tuple) else [expected]


def _pass(spec: GraderSpec, ok: bool, detail: str = "") -> Score:
    return Score(spec.metric_name, 1.0 if ok else 0.0, passed=ok, detail=detail)


def normalize_text(text: str) -> str:
    """NFKC, case-folded, punctuation removed (Unicode category P*), whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)
    return " ".join(text.split())


def grade_exact(case: Case, response: dict[str, Any], spec: GraderSpec) -> Score:
    """Passes when the answer equals an expected string (surrounding whitespace ignored unless
    ``strip: false``)."""
    strip = spec.params.get("strip", True)
    answer = answer_text(response)
    answer = answer.strip() if strip else answer
    for alt in _alternatives(expected_of(case, spec)):
        target = str(alt).strip() if strip else str(alt)
        if answer == target:
            return _pass(spec, True)
    return _pass(spec, False, f"answer {answer[:80]!r} differs")


def grade_normalized(case: Case, response: dict[str, Any], spec: GraderSpec) -> Score:
    """Passes when ``normalize_text`` of the answer equals that of an expected string."""
    answer = normalize_text(answer_text(response))
    ok = any(answer == normalize_text(str(alt)) for alt in _alternatives(expected_of(case, spec)))
    return _pass(spec, ok, "" if ok else f"normalized answer {answer[:80]!r} differs")


def grade_contains(case: Case, response: dict[str, Any], spec: GraderSpec) -> Score:
    """Substring test for each expected string. ``mode: any`` (default) passes when one is
    present; ``all`` scores the fraction present and passes when all are. Case-insensitive
    unless ``case_sensitive``; ``normalize: true`` compares ``normalize_text`` forms."""
    mode = spec.params.get("mode", "any")
    normalize = bool(spec.params.get("normalize", False))
    case_sensitive = bool(spec.params.get("case_sensitive", False))

    def prep(text: str) -> str:
        if normalize:
            return normalize_text(text)
        return text if case_sensitive else text.casefold()

    answer = prep(answer_text(response))
    needles = [str(x) for x in _alternatives(expected_of(case, spec))]
    found = [n for n in needles if prep(n) in answer]
    missing = [n for n in needles if n not in found]
    if mode == "all":
        value = len(found) / len(needles) if needles else 1.0
        return Score(
            spec.metric_name, value, passed=not missing, detail=f"missing {missing}" if missing else ""
        )
    return _pass(spec, bool(found), "" if found else "none of the expected strings found")


def _compile(pattern: str, flags: Any) -> re.Pattern[str]:
    bits = 0
    for flag in str(flags or ""):
        if flag not in _FLAGS:
            raise GraderError(f"regex: unknown flag {flag!r} (use i, m, s, x)")
        bits |= _FLAGS[flag]
    try:
        return re.compile(pattern, bits)
    except re.error as exc:
        raise GraderError(f"regex: bad pattern {pattern!r}: {exc}") from exc


def grade_regex(case: Case, response: dict[str, Any], spec: GraderSpec) -> Score:
    """Passes when ``pattern`` (default: the case's expected string) is found in the answer
    (``fullmatch: true``: matches all of it); ``negate: true`` passes when it is not found.
    ``flags``: any of ``imsx``."""
    pattern = spec.params.get("pattern")
    if pattern is None:
        pattern = expected_of(case, spec)
    regex = _compile(str(pattern), spec.params.get("flags", ""))
    answer = answer_text(response)
    match = regex.fullmatch(answer.strip()) if spec.params.get("fullmatch") else regex.search(answer)
    ok = (match is None) if spec.params.get("negate") else (match is not None)
    return _pass(spec, ok, "" if ok else f"pattern {regex.pattern!r} {'found' if match else 'not found'}")


def extract_last_number(text: str) -> float | None:
    """The last number written in ``text`` (``1,234.5``, ``-3``, ``2e-3``, ``45%`` as 45), or
    None. LaTeX ``\\boxed{...}`` content wins when present (math answers)."""
    boxed = re.findall(r"\\boxed\{([^{}]*)\}", text)
    if boxed:
        text = boxed[-1]
    matches = _NUMBER.findall(text)
    if not matches:
        return None
    raw = matches[-1].replace(",", "").replace("\u2212", "-")
    try:
        return float(raw)
    except ValueError:
        return None


def grade_numeric(case: Case, response: dict[str, Any], spec: GraderSpec) -> Score:
    """Passes when the last number in the answer is within ``abs_tol`` (default 1e-6) or
    ``rel_tol`` (default 0, a fraction) of an expected number."""
    abs_tol = float(spec.params.get("abs_tol", 1e-6))
    rel_tol = float(spec.params.get("rel_tol", 0.0))
    got = extract_last_number(answer_text(response))
    if got is None:
        return _pass(spec, False, "no number in the answer")
    targets: list[float] = []
    for alt in _alternatives(expected_of(case, spec)):
        value = alt if isinstance(alt, int | float) else extract_last_number(str(alt))
        if value is None or isinstance(value, bool):
            raise GraderError(f"numeric: expected value {alt!r} of case {case.id!r} is not a number")
        targets.append(float(value))
    ok = any(math.isclose(got, t, rel_tol=rel_tol, abs_tol=abs_tol) for t in targets)
    return _pass(spec, ok, "" if ok else f"got {got:g}, expected {targets[0]:g}")
