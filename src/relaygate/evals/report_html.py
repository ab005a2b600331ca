"""The self-contained HTML report: the verdict first, then the evidence, with inline SVG plots.

No scripts, fonts, images or style sheets are fetched: everything is in the one file, so it opens
offline, in a mail attachment, or in a headless browser in CI. Every value from a run (outputs,
case ids, tags) is HTML-escaped.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from relaygate.evals.model import CaseResult
from relaygate.evals.store import RunSummary

__all__ = ["render_html"]

_PALETTE = ("#1f6feb", "#d97706", "#059669", "#b91c1c", "#7c3aed", "#0e7490", "#be185d", "#4d7c0f")
_W, _H, _PAD = 560, 220, 36
_CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1f2328;
background:#f6f8fa}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:28px 0 10px;border-bottom:1px solid #d0d7de}
.muted{color:#57606a}.small{font-size:13px}
.verdict{display:flex;align-items:center;gap:14px;padding:14px 18px;border-radius:8px;margin:10px 0;
background:#fff;border:1px solid #d0d7de}
.badge{font-weight:700;font-size:20px;padding:4px 14px;border-radius:6px;color:#fff}
.PASS{background:#1a7f37}.FAIL{background:#cf222e}.INCONCLUSIVE{background:#9a6700}
table{border-collapse:collapse;width:100%;background:#fff;margin:8px 0 16px;font-size:14px}
th,td{border:1px solid #d0d7de;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#eaeef2}td.num{text-align:right;font-variant-numeric:tabular-nums}
pre{white-space:pre-wrap;word-break:break-word;margin:0;font-size:12px;max-height:180px;overflow:auto}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(520px,1fr));gap:16px}
figure{background:#fff;border:1px solid #d0d7de;border-radius:8px;margin:0;padding:10px}
figcaption{font-weight:600;margin-bottom:6px}
svg text{font:11px system-ui,sans-serif;fill:#57606a}
.legend span{display:inline-block;margin-right:12px;font-size:13px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: Any, digits: int = 3) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return "-" if value is None else _e(value)
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _overall(verdict: Mapping[str, Any]) -> str:
    return str(verdict.get("status") or verdict.get("overall") or "INCONCLUSIVE")


def _metric_rows(verdict: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [dict(m) for m in verdict.get("metrics") or []]


def _side(row: Mapping[str, Any], side: str) -> str:
    summary = row.get(side)
    if not isinstance(summary, Mapping) or summary.get("mean") is None:
        return "-"
    return f"{summary['mean']:.4g} [{_num(summary.get('lo'), 3)}, {_num(summary.get('hi'), 3)}]"


def _diff(row: Mapping[str, Any]) -> tuple[float, float, float] | None:
    d = row.get("diff")
    if not isinstance(d, Mapping) or any(d.get(k) is None for k in ("mean_diff", "lo", "hi")):
        return None
    return float(d["mean_diff"]) + 0.0, float(d["lo"]) + 0.0, float(d["hi"]) + 0.0  # no "-0"


def _legend(targets: Sequence[str]) -> str:
    items = "".join(
        f'<span><i style="background:{_PALETTE[i % len(_PALETTE)]}"></i>{_e(t)}</span>'
        for i, t in enumerate(targets)
    )
    return f'<div class="legend">{items}</div>'


def _badge(status: str, small: bool = False) -> str:
    style = ' style="font-size:13px"' if small else ""
    return f'<span class="badge {_e(status)}"{style}>{_e(status)}</span>'


def _metric_table(verdict: Mapping[str, Any]) -> str:
    rows = [
        "<table><tr><th>metric</th><th>verdict</th><th>incumbent [CI]</th><th>candidate [CI]</th>"
        "<th>difference, + = candidate better [CI]</th><th>margin</th><th>p non-inferior (Holm)</th>"
        "<th>pairs</th><th>cases needed</th></tr>"
    ]
    for row in _metric_rows(verdict):
        d = _diff(row)
        diff = f"{d[0]:+.4g} [{d[1]:.4g}, {d[2]:.4g}]" if d else "-"
        notes = "; ".join(row.get("notes") or [])
        rows.append(
            f"<tr><td>{_e(row.get('metric'))}<div class='muted small'>{_e(row.get('kind'))}"
            f"{' - ' + _e(notes) if notes else ''}</div></td><td>{_badge(str(row.get('status')), True)}</td>"
            f'<td class="num">{_side(row, "incumbent")}</td><td class="num">{_side(row, "candidate")}</td>'
            f'<td class="num">{diff}</td><td class="num">{_num(row.get("delta"), 4)} '
            f"({_e(row.get('better'))} is better)</td>"
            f'<td class="num">{_num(row.get("p_noninferior_adj"), 4)}</td>'
            f'<td class="num">{_num(row.get("n_pairs"))}</td>'
            f'<td class="num">{_num(row.get("n_more"))}</td></tr>'
        )
    rows.append("</table>")
    return "".join(rows)


def _verdict_section(verdicts: Mapping[str, Mapping[str, Any]], incumbent: str | None) -> str:
    if not verdicts:
        return (
            '<section id="verdict"><h2>Verdict</h2><p>No verdict: give an incumbent and at least one '
            "candidate target.</p></section>"
        )
    parts = ['<section id="verdict"><h2>Verdict</h2>']
    for candidate, v in verdicts.items():
        overall = _overall(v)
        more = v.get("n_more")
        extra = f"; about {more} more cases would settle it" if overall == "INCONCLUSIVE" and more else ""
        parts.append(
            f'<div class="verdict">{_badge(overall)}<div><b>{_e(candidate)}</b> as a replacement for '
            f"<b>{_e(incumbent)}</b><div class='muted small'>{_e(v.get('n_cases'))} paired cases, "
            f"alpha {_e(v.get('alpha'))} (Holm across metrics), power {_e(v.get('power'))}{_e(extra)}"
            "</div></div></div>"
        )
        parts.append(_metric_table(v))
    parts.append("</section>")
    return "".join(parts)


def _figures_table(figures: Mapping[str, Mapping[str, Any]]) -> str:
    metrics = sorted({m for f in figures.values() for m in f["metrics"]})
    head = "".join(f"<th>{_e(m)}</th>" for m in metrics)
    rows = []
    for target, f in figures.items():
        cells = "".join(f'<td class="num">{_num(f["metrics"].get(m))}</td>' for m in metrics)
        rows.append(
            f"<tr><td>{_e(target)}</td><td class='num'>{f['answered']}</td>"
            f"<td class='num'>{f['errors']}</td><td class='num'>{f['cache_hits']}</td>{cells}"
            f"<td class='num'>{_num(f['refusal_rate'])}</td>"
            f"<td class='num'>{_num(f['latency_ms_mean'], 0)}</td>"
            f"<td class='num'>{_num(f['latency_ms_p95'], 0)}</td>"
            f"<td class='num'>{_num(f['cost_usd'], 6)}</td>"
            f"<td class='num'>{_num(f['cost_per_success_usd'], 6)}</td></tr>"
        )
    return (
        '<section id="targets"><h2>Evidence per target</h2><table><tr><th>target</th><th>answered</th>'
        f"<th>errors</th><th>cached</th>{head}<th>refusal rate</th><th>latency mean ms</th>"
        f"<th>latency p95 ms</th><th>cost USD</th><th>USD per successful case</th></tr>"
        + "".join(rows)
        + "</table></section>"
    )


def _svg(body: str, caption: str, legend: str = "") -> str:
    return (
        f"<figure><figcaption>{_e(caption)}</figcaption>{legend}"
        f'<svg viewBox="0 0 {_W} {_H}" width="100%" role="img" aria-label="{_e(caption)}">'
        f"{body}</svg></figure>"
    )


def _axes(x0: float, x1: float, label: str) -> str:
    ticks = []
    for i in range(5):
        v = x0 + (x1 - x0) * i / 4
        x = _PAD + (_W - 2 * _PAD) * i / 4
        ticks.append(f'<text x="{x:.1f}" y="{_H - 8}" text-anchor="middle">{v:.3g}</text>')
    return (
        f'<line x1="{_PAD}" y1="{_H - _PAD + 10}" x2="{_W - _PAD}" y2="{_H - _PAD + 10}" stroke="#8c959f"/>'
        + "".join(ticks)
        + f'<text x="{_W - _PAD}" y="14" text-anchor="end">{_e(label)}</text>'
    )


def _scale(v: float, lo: float, hi: float) -> float:
    return _PAD + (_W - 2 * _PAD) * ((v - lo) / (hi - lo) if hi > lo else 0.5)


def _histogram(values: Mapping[str, list[float]], caption: str, targets: Sequence[str]) -> str:
    bins = 10
    counts = {t: [0] * bins for t in targets}
    for t in targets:
        for v in values.get(t, []):
            counts[t][min(bins - 1, max(0, int(v * bins)))] += 1
    top = max([c for cs in counts.values() for c in cs] or [1]) or 1
    width = (_W - 2 * _PAD) / bins / max(1, len(targets))
    bars = []
    for ti, t in enumerate(targets):
        for b, c in enumerate(counts[t]):
            h = (_H - 2 * _PAD) * c / top
            x = _PAD + (_W - 2 * _PAD) * b / bins + ti * width
            color = _PALETTE[ti % len(_PALETTE)]
            bars.append(
                f'<rect x="{x:.1f}" y="{_H - _PAD + 10 - h:.1f}" width="{width - 1:.1f}" height="{h:.1f}" '
                f'fill="{color}"><title>{_e(t)}: {c}</title></rect>'
            )
    return _svg("".join(bars) + _axes(0, 1, "score"), caption, _legend(targets))


def _cdf(values: Mapping[str, list[float]], caption: str, targets: Sequence[str], label: str) -> str:
    every = [v for t in targets for v in values.get(t, [])]
    if not every:
        return _svg(f'<text x="{_PAD}" y="{_H / 2}">no data</text>', caption)
    lo, hi = min(every), max(every)
    lines = []
    for ti, t in enumerate(targets):
        xs = sorted(values.get(t, []))
        if not xs:
            continue
        pts = [f"{_scale(xs[0], lo, hi):.1f},{_H - _PAD + 10:.1f}"]
        for i, v in enumerate(xs, 1):
            y = _H - _PAD + 10 - (_H - 2 * _PAD) * i / len(xs)
            pts.append(f"{_scale(v, lo, hi):.1f},{y:.1f}")
        color = _PALETTE[ti % len(_PALETTE)]
        lines.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{" ".join(pts)}"/>')
    return _svg("".join(lines) + _axes(lo, hi, label), caption, _legend(targets))


def _strip(values: Mapping[str, list[float]], caption: str, targets: Sequence[str]) -> str:
    every = [v for t in targets for v in values.get(t, [])]
    if not every:
        return _svg(f'<text x="{_PAD}" y="{_H / 2}">no data</text>', caption)
    lo, hi = min(every), max(every)
    dots = []
    row_h = (_H - 2 * _PAD) / max(1, len(targets))
    for ti, t in enumerate(targets):
        y = _PAD + row_h * (ti + 0.5)
        color = _PALETTE[ti % len(_PALETTE)]
        for i, v in enumerate(values.get(t, [])):
            jitter = ((i * 7919) % 11 - 5) * row_h / 30
            dots.append(
                f'<circle cx="{_scale(v, lo, hi):.1f}" cy="{y + jitter:.1f}" r="3" fill="{color}" '
                f'fill-opacity="0.7"><title>{_e(t)}: {v:.6f} USD</title></circle>'
            )
    return _svg("".join(dots) + _axes(lo, hi, "USD per case"), caption, _legend(targets))


def _forest(verdicts: Mapping[str, Mapping[str, Any]]) -> str:
    """Each metric's oriented difference (+ = candidate better) and interval, scaled by its margin
    so metrics in different units share one axis: -1 is the non-inferiority margin."""
    rows = []
    for candidate, v in verdicts.items():
        for row in _metric_rows(v):
            d, delta = _diff(row), row.get("delta")
            if d is not None and isinstance(delta, int | float) and delta > 0:
                scaled = (d[0] / delta, d[1] / delta, d[2] / delta)
                rows.append((f"{candidate}: {row.get('metric')}", scaled, str(row.get("status"))))
    caption = "Paired differences with intervals, in units of each metric's margin"
    if not rows:
        return _svg(f'<text x="{_PAD}" y="{_H / 2}">no intervals to show</text>', caption)
    values = [x for _, d, _ in rows for x in d]
    lo, hi = min([*values, -1.5]), max([*values, 0.5])
    body = []
    for x, dash in ((0.0, "3,3"), (-1.0, "6,3")):
        body.append(
            f'<line x1="{_scale(x, lo, hi):.1f}" y1="{_PAD - 10}" x2="{_scale(x, lo, hi):.1f}" '
            f'y2="{_H - _PAD + 10}" stroke="#8c959f" stroke-dasharray="{dash}"/>'
        )
    body.append(f'<text x="{_scale(-1.0, lo, hi):.1f}" y="{_PAD - 14}" text-anchor="middle">margin</text>')
    step = (_H - 2 * _PAD) / len(rows)
    colors = {"PASS": "#1a7f37", "FAIL": "#cf222e"}
    for i, (label, (mid, a, b), status) in enumerate(rows):
        y = _PAD + step * (i + 0.5)
        color = colors.get(status, "#9a6700")
        body.append(
            f'<line x1="{_scale(a, lo, hi):.1f}" y1="{y:.1f}" x2="{_scale(b, lo, hi):.1f}" y2="{y:.1f}" '
            f'stroke="{color}" stroke-width="3"/><circle cx="{_scale(mid, lo, hi):.1f}" cy="{y:.1f}" r="4" '
            f'fill="{color}"/><text x="{_PAD}" y="{y - 6:.1f}">{_e(label)} ({_e(status)})</text>'
        )
    return _svg("".join(body) + _axes(lo, hi, "difference / margin"), caption)


def _plots(summary: RunSummary, verdicts: Mapping[str, Mapping[str, Any]]) -> str:
    targets = summary.targets
    by_metric: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    latency: dict[str, list[float]] = defaultdict(list)
    cost: dict[str, list[float]] = defaultdict(list)
    for r in summary.results:
        for s in r.scores:
            by_metric[s.metric][r.target].append(min(1.0, max(0.0, s.value)))
        if r.error is None and r.latency_ms is not None:
            latency[r.target].append(r.latency_ms)
        if r.cost_usd is not None:
            cost[r.target].append(r.cost_usd)
    figs = [_forest(verdicts)]
    figs += [_histogram(v, f"Score distribution: {m}", targets) for m, v in sorted(by_metric.items())]
    figs.append(_cdf(latency, "Latency CDF (ms)", targets, "ms"))
    figs.append(_strip(cost, "Cost per case (USD)", targets))
    return '<section id="plots"><h2>Plots</h2><div class="plots">' + "".join(figs) + "</div></section>"


def _quality_metrics(summary: RunSummary) -> list[str]:
    """Score metrics where higher is better: those with a ``higher`` margin, else every score
    metric but ``refusal`` (1.0 = refused)."""
    seen = sorted({s.metric for r in summary.results for s in r.scores})
    higher = [m.metric for m in summary.margins if m.better == "higher" and m.metric in seen]
    return higher or [m for m in seen if m != "refusal"]


def _segments(summary: RunSummary, verdicts: Mapping[str, Mapping[str, Any]]) -> str:
    metrics = _quality_metrics(summary)
    groups: dict[tuple[str, str], dict[tuple[str, str], list[float]]] = defaultdict(lambda: defaultdict(list))
    ids: dict[tuple[str, str], set[str]] = defaultdict(set)
    for r in summary.results:
        if r.error is not None:
            continue
        for key, value in summary.tags.get(r.case_id, {}).items():
            ids[(key, value)].add(r.case_id)
            for s in r.scores:
                if s.metric in metrics:
                    groups[(key, value)][(r.target, s.metric)].append(s.value)
    parts = ['<section id="segments"><h2>Per segment</h2>']
    columns = [(t, m) for t in summary.targets for m in metrics]
    if groups and columns:
        head = "".join(f"<th>{_e(t)}: {_e(m)}</th>" for t, m in columns)
        parts.append(f"<table><tr><th>tag</th><th>value</th><th>cases</th>{head}</tr>")
        for (key, value), per in sorted(groups.items()):
            cells = "".join(
                f'<td class="num">{_num(sum(per[c]) / len(per[c]) if per.get(c) else None)}</td>'
                for c in columns
            )
            n = len(ids[(key, value)])
            parts.append(f"<tr><td>{_e(key)}</td><td>{_e(value)}</td><td class='num'>{n}</td>{cells}</tr>")
        parts.append("</table>")
    else:
        parts.append("<p class='muted'>The cases carry no tags.</p>")
    for candidate, v in verdicts.items():
        rows = [
            f"<tr><td>{_e(seg.get('key'))}={_e(seg.get('value'))}</td><td class='num'>"
            f"{_e(seg.get('n_cases'))}</td><td>{_badge(str(seg.get('status')), True)}</td>"
            f"<td>{_e(_metric_list(seg))}</td></tr>"
            for seg in v.get("segments") or []
            if isinstance(seg, Mapping)
        ]
        if rows:
            parts.append(
                f"<h3>{_e(candidate)}: verdict per segment (descriptive: each segment its own Holm "
                "family)</h3><table><tr><th>segment</th><th>cases</th><th>verdict</th><th>metrics</th></tr>"
                + "".join(rows)
                + "</table>"
            )
    parts.append("</section>")
    return "".join(parts)


def _metric_list(verdict: Mapping[str, Any]) -> str:
    return ", ".join(f"{row.get('metric')}: {row.get('status')}" for row in _metric_rows(verdict))


def _mean_score(r: CaseResult | None, metrics: Sequence[str]) -> float | None:
    values = [s.value for s in r.scores if s.metric in metrics] if r is not None and r.error is None else []
    return sum(values) / len(values) if values else None


def _worst(summary: RunSummary, incumbent: str | None, limit: int = 10) -> str:
    """Candidates' cases with the largest drop in mean quality score against the incumbent on the
    same case (no answer counts as the worst); with one target, its lowest-scoring cases."""
    metrics = _quality_metrics(summary)
    inc = {r.case_id: r for r in summary.for_target(incumbent)} if incumbent else {}
    rows: list[tuple[float, str, CaseResult, CaseResult | None]] = []
    for t in summary.targets:
        if t == incumbent:
            continue
        for r in summary.for_target(t):
            mine, theirs = _mean_score(r, metrics), _mean_score(inc.get(r.case_id), metrics)
            key = -1.0 if mine is None else mine - (theirs if theirs is not None else 0.0)
            rows.append((key, t, r, inc.get(r.case_id)))
    if not rows and incumbent:
        rows = [(_mean_score(r, metrics) or -1.0, incumbent, r, None) for r in summary.for_target(incumbent)]
    rows.sort(key=lambda x: x[0])
    out = [
        '<section id="worst"><h2>Worst cases</h2><table><tr><th>case</th><th>target</th><th>scores</th>'
        "<th>answer</th><th>incumbent's answer</th></tr>"
    ]
    for _key, target, r, other in rows[:limit]:
        scores = ", ".join(f"{s.metric}={s.value:.2f}" for s in r.scores) or _e(r.error or "-")
        out.append(
            f"<tr><td>{_e(r.case_id)}</td><td>{_e(target)}</td><td>{_e(scores)}</td>"
            f"<td><pre>{_e((r.output or r.error or '')[:1500])}</pre></td>"
            f"<td><pre>{_e(((other.output or '') if other else '')[:1500])}</pre></td></tr>"
        )
    out.append("</table></section>")
    return "".join(out)


def _run_facts(summary: RunSummary) -> str:
    ceiling = "none" if summary.cost_ceiling_usd is None else f"{summary.cost_ceiling_usd:.4f} USD"
    facts = [
        ("status", summary.status),
        ("spent", f"{summary.spent_usd:.6f} USD (cost ceiling: {ceiling})"),
        (
            "stopped by the cost ceiling",
            f"yes, {summary.not_sent} case(s) not sent" if summary.stopped_by_ceiling else "no",
        ),
        ("judge route", summary.judge or "none"),
        ("answers from the response cache", str(len(summary.cached))),
        ("rate-limit waits / retries", f"{summary.rate_limited} / {summary.retries}"),
        ("grader problems", str(len(summary.grader_errors))),
        ("suite source", str((summary.meta or {}).get("source") or "local file")),
    ]
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in facts)
    problems = "".join(
        f"<tr><td>{_e(p.get('case_id'))}</td><td>{_e(p.get('target'))}</td><td>{_e(p.get('metric'))}</td>"
        f"<td>{_e(p.get('error'))}</td></tr>"
        for p in summary.grader_errors[:50]
    )
    if problems:
        problems = (
            "<h3>Grader problems (not counted as wrong answers)</h3><table><tr><th>case</th><th>target</th>"
            f"<th>metric</th><th>error</th></tr>{problems}</table>"
        )
    return f'<section id="run"><h2>Run</h2><table>{rows}</table>{problems}</section>'


def render_html(
    summary: RunSummary,
    verdicts: Mapping[str, Mapping[str, Any]],
    incumbent: str | None,
    figures: Mapping[str, Mapping[str, Any]],
    generated_at: str,
) -> str:
    """The whole page as text; ``verdicts`` and ``figures`` as in ``report.build_json``."""
    overall = max(
        (_overall(v) for v in verdicts.values()),
        default=None,
        key=lambda o: {"PASS": 0, "INCONCLUSIVE": 1, "FAIL": 2}.get(o, 1),
    )
    title = f"relaygate eval: {summary.suite}" + (f" - {overall}" if overall else "")
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{_e(title)}</title>'
        f"<style>{_CSS}</style></head><body><main>"
        f"<h1>Switch-readiness: {_e(summary.suite)}</h1>"
        f'<p class="muted">run <b>{_e(summary.run_id)}</b>; targets {_e(", ".join(summary.targets))}; '
        f"incumbent {_e(incumbent or '-')}; generated {_e(generated_at)}</p>"
        + _verdict_section(verdicts, incumbent)
        + _figures_table(figures)
        + _plots(summary, verdicts)
        + _segments(summary, verdicts)
        + _worst(summary, incumbent)
        + _run_facts(summary)
        + "</main></body></html>"
    )
