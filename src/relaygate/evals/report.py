"""Run reports: JSON (the full summary and every verdict), JUnit XML for CI, a self-contained HTML
page, and a ``manifest.json`` with the SHA-256 of each file so the evidence can be archived.

The HTML puts the decision first (one verdict per candidate, then per metric with its confidence
interval), then the evidence: per-target figures, inline SVG plots (score distributions, paired
differences with intervals, latency CDFs, cost per case), a per-segment table and the worst cases.
It has no scripts and no external assets, so it opens offline and in headless browsers.
JUnit: one ``testcase`` per (case, target), failed when a pass/fail grader failed, in error when
no answer came, skipped when the cost ceiling kept it back; one ``testcase`` per metric verdict.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from relaygate.evals.model import CaseResult
from relaygate.evals.store import RunSummary

__all__ = [
    "REPORT_FILES",
    "build_json",
    "build_junit",
    "compute_verdicts",
    "overall_of",
    "target_figures",
    "verdict_dicts",
    "write_reports",
]

REPORT_FILES = ("report.json", "junit.xml", "report.html")
_ORDER = {"PASS": 0, "INCONCLUSIVE": 1, "FAIL": 2}
_XML_BAD = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_TEXT_LIMIT = 4000


def _segment_key(summary: RunSummary) -> str | None:
    """The tag key that splits the cases: among keys with two or more values, the one most cases
    carry (ties: alphabetical); None when no key does."""
    values: dict[str, set[str]] = defaultdict(set)
    counts: dict[str, int] = defaultdict(int)
    for tags in summary.tags.values():
        for key, value in tags.items():
            values[key].add(value)
            counts[key] += 1
    keys = [k for k in counts if len(values[k]) > 1]
    return min(keys, key=lambda k: (-counts[k], k)) if keys else None


def compute_verdicts(
    summary: RunSummary,
    incumbent: str,
    candidates: Iterable[str],
    *,
    segments_by: str | None = "auto",
    seed: int = 0,
) -> dict[str, Any]:
    """``{candidate: Verdict}`` against ``incumbent`` with the suite's margins, alpha and power
    (``evals/verdict.py``). ``segments_by``: a tag key, ``"auto"`` (the key that splits the
    most cases into two or more values) or None. ``seed`` makes the bootstrap reproducible.
    Raises ``ValueError`` for a target not in the run or a suite without margins."""
    from relaygate.evals.model import Case
    from relaygate.evals.verdict import verdict

    names = [incumbent, *candidates]
    missing = [t for t in names if t not in summary.targets]
    if missing:
        raise ValueError(f"not a target of run {summary.run_id}: {', '.join(missing)}")
    if not summary.margins:
        raise ValueError(f"suite {summary.suite!r} sets no margins: nothing to decide on")
    key = _segment_key(summary) if segments_by == "auto" else segments_by
    cases = [Case(cid, [], tags=tags) for cid, tags in summary.tags.items()]
    meta = summary.meta or {}
    return {
        c: verdict(
            summary.for_target(incumbent),
            summary.for_target(c),
            summary.margins,
            alpha=float(meta.get("alpha", 0.05)),
            power=float(meta.get("power", 0.8)),
            segments_by=key,
            cases=cases,
            rng=seed,
        )
        for c in names[1:]
    }


def verdict_dicts(verdicts: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """``{candidate: Verdict}`` (objects with ``to_dict()`` or plain dicts) as plain dicts."""
    out: dict[str, dict[str, Any]] = {}
    for name, v in (verdicts or {}).items():
        out[name] = v.to_dict() if hasattr(v, "to_dict") else dict(v)
    return out


def overall_of(verdicts: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The worst overall verdict across candidates (FAIL > INCONCLUSIVE > PASS); None if none."""
    found = [str(v.get("status") or v.get("overall") or "INCONCLUSIVE") for v in verdicts.values()]
    return max(found, key=lambda o: _ORDER.get(o, 1)) if found else None


def _percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _mean(values: Iterable[float]) -> float | None:
    xs = list(values)
    return sum(xs) / len(xs) if xs else None


def target_figures(summary: RunSummary) -> dict[str, dict[str, Any]]:
    """Per target: cases answered, errors, cache hits, refusal rate, mean of each metric, pass rate
    of each pass/fail metric, mean and p95 latency (ms), total cost and cost per successful case
    (USD; successful = answered with no failed pass/fail grader)."""
    out: dict[str, dict[str, Any]] = {}
    for target in summary.targets:
        rs = summary.for_target(target)
        ok = [r for r in rs if r.error is None]
        metrics: dict[str, list[float]] = defaultdict(list)
        passes: dict[str, list[bool]] = defaultdict(list)
        for r in ok:
            for s in r.scores:
                metrics[s.metric].append(s.value)
                if s.passed is not None:
                    passes[s.metric].append(s.passed)
        latencies = [r.latency_ms for r in ok if r.latency_ms is not None]
        cost = sum(r.cost_usd or 0.0 for r in rs)
        good = [r for r in ok if all(s.passed is not False for s in r.scores)]
        refusals = [r.refused for r in ok if r.refused is not None]
        out[target] = {
            "answered": len(ok),
            "errors": len(rs) - len(ok),
            "cache_hits": sum((r.case_id, target) in summary.cached for r in rs),
            "refusal_rate": _mean(float(x) for x in refusals),
            "metrics": {m: _mean(v) for m, v in sorted(metrics.items())},
            "pass_rates": {m: _mean(float(x) for x in v) for m, v in sorted(passes.items())},
            "latency_ms_mean": _mean(latencies),
            "latency_ms_p95": _percentile(latencies, 0.95),
            "cost_usd": cost,
            "cost_per_success_usd": cost / len(good) if good else None,
        }
    return out


def build_json(
    summary: RunSummary, verdicts: Mapping[str, Any] | None = None, incumbent: str | None = None
) -> dict[str, Any]:
    """The report document: summary (every result), per-target figures, verdicts, overall."""
    vd = verdict_dicts(verdicts)
    return {
        "schema": "relaygate.eval.report/1",
        "generated_at": datetime.now(UTC).isoformat(),
        "suite": summary.suite,
        "run_id": summary.run_id,
        "incumbent": incumbent,
        "overall": overall_of(vd),
        "verdicts": vd,
        "targets": target_figures(summary),
        "summary": summary.to_dict(),
    }


def _xml_text(text: str | None, limit: int = _TEXT_LIMIT) -> str:
    return _XML_BAD.sub("\ufffd", (text or "")[:limit])


def _result_case(parent: ET.Element, classname: str, r: CaseResult) -> tuple[bool, bool]:
    """Append one testcase; returns (failed, errored)."""
    seconds = f"{(r.latency_ms or 0.0) / 1000:.3f}"
    tc = ET.SubElement(parent, "testcase", classname=classname, name=_xml_text(r.case_id, 500), time=seconds)
    if r.error is not None:
        ET.SubElement(tc, "error", message=_xml_text(r.error, 500), type="no_answer").text = _xml_text(
            r.error
        )
        return False, True
    failed = [s for s in r.scores if s.passed is False]
    if failed:
        message = "; ".join(f"{s.metric} failed" + (f": {s.detail}" if s.detail else "") for s in failed)
        el = ET.SubElement(tc, "failure", message=_xml_text(message, 500), type="grader")
        el.text = _xml_text(f"{message}\n\noutput:\n{r.output or ''}")
    ET.SubElement(tc, "system-out").text = _xml_text(r.output)
    return bool(failed), False


def build_junit(
    summary: RunSummary, verdicts: Mapping[str, Any] | None = None, incumbent: str | None = None
) -> bytes:
    """JUnit XML (the Ant/Jenkins schema most CI systems read) as UTF-8 bytes."""
    root = ET.Element("testsuites", name=f"relaygate eval {summary.suite}")
    totals: defaultdict[str, int] = defaultdict(int)
    for target in summary.targets:
        suite_el = ET.SubElement(root, "testsuite", name=f"{summary.suite}/{target}")
        n = failures = errors = skipped = 0
        seconds = 0.0
        answered = set()
        for r in summary.for_target(target):
            failed, errored = _result_case(suite_el, f"{summary.suite}.{target}", r)
            n, failures, errors = n + 1, failures + failed, errors + errored
            seconds += (r.latency_ms or 0.0) / 1000
            answered.add(r.case_id)
        for case_id in summary.tags:
            if case_id not in answered:
                tc = ET.SubElement(suite_el, "testcase", classname=f"{summary.suite}.{target}", name=case_id)
                ET.SubElement(tc, "skipped", message="not sent (cost ceiling or interrupted run)")
                n, skipped = n + 1, skipped + 1
        suite_el.attrib.update(tests=str(n), failures=str(failures), errors=str(errors), skipped=str(skipped))
        suite_el.set("time", f"{seconds:.3f}")
        for key, value in (("tests", n), ("failures", failures), ("errors", errors), ("skipped", skipped)):
            totals[key] += value
    for candidate, v in verdict_dicts(verdicts).items():
        name = f"{summary.suite}/verdict/{candidate} vs {incumbent or 'incumbent'}"
        suite_el = ET.SubElement(root, "testsuite", name=name)
        overall = overall_of({candidate: v}) or "INCONCLUSIVE"
        rows = [*(dict(m) for m in v.get("metrics") or []), {"metric": "overall", "status": overall}]
        failures = skipped = 0
        for row in rows:
            tc = ET.SubElement(
                suite_el, "testcase", classname=f"verdict.{candidate}", name=str(row["metric"])
            )
            status = str(row.get("status") or "INCONCLUSIVE")
            text = json.dumps(row, default=str, sort_keys=True)
            if status == "FAIL":
                ET.SubElement(tc, "failure", message=f"{row['metric']}: FAIL", type="verdict").text = text
                failures += 1
            elif status != "PASS":
                ET.SubElement(tc, "skipped", message=f"{row['metric']}: {status}").text = text
                skipped += 1
        suite_el.attrib.update(tests=str(len(rows)), failures=str(failures), errors="0", skipped=str(skipped))
        totals["tests"] += len(rows)
        totals["failures"] += failures
        totals["skipped"] += skipped
    root.attrib.update({k: str(totals[k]) for k in ("tests", "failures", "errors", "skipped")})
    ET.indent(root)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8")


def write_reports(
    out_dir: str | Path,
    summary: RunSummary,
    verdicts: Mapping[str, Any] | None = None,
    incumbent: str | None = None,
) -> dict[str, Path]:
    """Write report.json, junit.xml, report.html and manifest.json (sha256 of the other three)
    into ``out_dir`` (created). Returns ``{file name: path}``. Raises ``OSError``."""
    from relaygate.evals.report_html import render_html

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = build_json(summary, verdicts, incumbent)
    html_text = render_html(summary, doc["verdicts"], incumbent, doc["targets"], doc["generated_at"])
    paths = {name: out / name for name in REPORT_FILES}
    paths["report.json"].write_text(json.dumps(doc, indent=2, default=str, ensure_ascii=False), "utf-8")
    paths["junit.xml"].write_bytes(build_junit(summary, verdicts, incumbent))
    paths["report.html"].write_text(html_text, "utf-8")
    manifest = out / "manifest.json"
    manifest.write_text(json.dumps(_manifest(paths), indent=2), "utf-8")
    return {**paths, "manifest.json": manifest}


def _manifest(paths: Mapping[str, Path]) -> dict[str, Any]:
    files = {name: hashlib.sha256(p.read_bytes()).hexdigest() for name, p in paths.items()}
    return {"algorithm": "sha256", "generated_at": datetime.now(UTC).isoformat(), "files": files}
