"""Showing a stored eval run: load it from the database, print the verdict of each candidate
(each metric with its confidence intervals) and the per-target figures, and ``relaygate eval
report``, which writes report.json, junit.xml, report.html and manifest.json for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from relaygate.cli.eval_options import EXIT_STORAGE, ConfigOpt, DbOpt, err, fail
from relaygate.ledger.db import StorageError

if TYPE_CHECKING:
    from relaygate.evals.store import RunSummary

__all__ = ["load_summary", "num", "print_targets", "print_verdict", "report_cmd"]


def num(value: Any, fmt: str = ".3f") -> str:
    return "-" if value is None else format(value, fmt)


def _with_ci(stat: Mapping[str, Any], key: str, fmt: str) -> str:
    """``value [lo, hi]`` of a summary or difference dict; ``-`` when there is none."""
    if not stat:
        return "-"
    return f"{num(stat.get(key), fmt)} [{num(stat.get('lo'), '.4g')}, {num(stat.get('hi'), '.4g')}]"


def print_targets(figures: Mapping[str, Mapping[str, Any]], summary: RunSummary) -> None:
    metrics = sorted({m for f in figures.values() for m in f["metrics"]})
    table = Table(title=f"suite {summary.suite}, run {summary.run_id}")
    for header in ("target", "answered", "errors", "cached", *metrics, "refusals", "p95 ms", "USD"):
        table.add_column(header, justify="left" if header == "target" else "right")
    for target, f in figures.items():
        table.add_row(
            target,
            str(f["answered"]),
            str(f["errors"]),
            str(f["cache_hits"]),
            *(num(f["metrics"].get(m)) for m in metrics),
            num(f["refusal_rate"]),
            num(f["latency_ms_p95"], ".0f"),
            num(f["cost_usd"], ".4f"),
        )
    Console(highlight=False).print(table)


def print_verdict(candidate: str, incumbent: str, v: Mapping[str, Any]) -> None:
    status = str(v.get("status"))
    style = {"PASS": "bold green", "FAIL": "bold red"}.get(status, "bold yellow")
    table = Table(title=f"{candidate} vs {incumbent}: [{style}]{status}[/{style}]")
    for header in (
        "metric",
        "verdict",
        "incumbent [CI]",
        "candidate [CI]",
        "diff (+ = better) [CI]",
        "margin",
        "n more",
    ):
        table.add_column(header)
    for m in v.get("metrics") or []:
        d, inc, cand = m.get("diff") or {}, m.get("incumbent") or {}, m.get("candidate") or {}
        table.add_row(
            str(m.get("metric")),
            str(m.get("status")),
            _with_ci(inc, "mean", ".4g"),
            _with_ci(cand, "mean", ".4g"),
            _with_ci(d, "mean_diff", "+.4g"),
            f"{m.get('delta')} ({m.get('better')})",
            num(m.get("n_more"), "d"),
        )
    Console(highlight=False).print(table)
    if status == "INCONCLUSIVE" and v.get("n_more"):
        err.print(f"about {v['n_more']} more cases would settle it (power {v.get('power')})")


def load_summary(db: str | None, config: Path | None, run_id: str) -> RunSummary:
    from relaygate.cli.main import _load
    from relaygate.evals.store import EvalStore
    from relaygate.ledger.migrate import open_database

    url = db
    if url is None and config is not None:
        url = _load(config)[0].storage.url
    try:
        engine = open_database(url, create=False)
        try:
            summary = EvalStore(engine).load_summary(run_id)
        finally:
            engine.dispose()
    except StorageError as exc:
        raise fail(f"database: {exc}", EXIT_STORAGE) from None
    if summary is None:
        raise fail(f"no eval run {run_id!r} in this database")
    return summary


def report_cmd(
    run_id: Annotated[str, typer.Option("--run-id", help="the stored run")],
    out: Annotated[Path, typer.Option("--out", help="folder for the report files")],
    incumbent: Annotated[
        str | None, typer.Option("--incumbent", help="default: the run's first target")
    ] = None,
    candidate: Annotated[
        list[str] | None, typer.Option("--candidate", help="repeat; default: every other target")
    ] = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
    segment_by: Annotated[
        str | None, typer.Option("--segment-by", help="tag key for per-segment results")
    ] = None,
) -> None:
    """Write report.json, junit.xml, report.html and manifest.json for a stored run."""
    from relaygate.evals.report import compute_verdicts, write_reports

    summary = load_summary(db, config, run_id)
    inc = incumbent or summary.targets[0]
    cands = candidate or [t for t in summary.targets if t != inc]
    verdicts: dict[str, Any] = {}
    if cands:
        try:
            verdicts = compute_verdicts(summary, inc, cands, segments_by=segment_by or "auto")
        except ValueError as exc:
            if summary.margins:  # a bad target name; a suite without margins just has no verdict
                raise fail(str(exc)) from None
    paths = write_reports(out, summary, verdicts, inc)
    for path in paths.values():
        typer.echo(str(path))
