"""``relaygate eval run``, ``verdict`` and ``compare``: run a suite against routes through the
gateway in process, and decide whether a candidate can replace the incumbent, from a fresh run
or a stored one. The decision is printed first, then the evidence (``cli/eval_report.py``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from relaygate.cli.eval_options import (
    EXIT_CODES,
    EXIT_STORAGE,
    ConfigOpt,
    DbOpt,
    FormatOpt,
    check_format,
    err,
    fail,
)
from relaygate.cli.eval_report import load_summary, print_targets, print_verdict
from relaygate.ledger.db import StorageError

if TYPE_CHECKING:
    from relaygate.config.schema import Config
    from relaygate.evals.store import RunSummary
    from relaygate.ledger.runtime import Storage
    from relaygate.pipeline import Gateway

__all__ = ["compare_cmd", "in_process_gateway", "run", "verdict_cmd"]


@asynccontextmanager
async def in_process_gateway(cfg: Config, db: str | None) -> AsyncIterator[tuple[Gateway, Storage]]:
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
    from relaygate.evals.suite_yaml import SuiteError
    from relaygate.evals.suites import load_suite

    try:
        loaded = load_suite(suite)
    except (SuiteError, OSError) as exc:
        raise fail(f"suite: {exc}") from None
    cfg, _source = _load(config)

    async def go() -> RunSummary:
        async with in_process_gateway(cfg, db) as (gw, storage):
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
        raise fail(str(exc)) from None
    except StorageError as exc:
        raise fail(f"database: {exc}", EXIT_STORAGE) from None
    except KeyboardInterrupt:
        raise fail("interrupted; answers so far are saved: rerun with --run-id to continue", 130) from None
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
        print_verdict(candidate, incumbent, v)
    print_targets(target_figures(summary), summary)
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

    check_format(fmt)
    summary = load_summary(db, config, run_id)
    try:
        verdicts = compute_verdicts(summary, incumbent, [candidate], segments_by=segment_by or "auto")
    except ValueError as exc:
        raise fail(str(exc)) from None
    v = verdict_dicts(verdicts)[candidate]
    if fmt == "json":
        typer.echo(
            json.dumps({"run_id": run_id, "incumbent": incumbent, "candidate": candidate, **v}, indent=2)
        )
    else:
        print_verdict(candidate, incumbent, v)
    raise typer.Exit(EXIT_CODES.get(str(v.get("status")), 3))


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

    check_format(fmt)
    candidates = list(dict.fromkeys(candidate))
    if incumbent in candidates:
        raise fail(f"{incumbent!r} is the incumbent; a candidate must be another target")
    summary = load_summary(db, config, run_id)
    try:
        verdicts = compute_verdicts(summary, incumbent, candidates, segments_by=segment_by or "auto")
    except ValueError as exc:
        raise fail(str(exc)) from None
    try:
        paths = write_reports(out or Path("eval-reports") / run_id, summary, verdicts, incumbent)
    except OSError as exc:
        raise fail(f"cannot write the reports: {exc}") from None
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
            print_verdict(name, incumbent, v)
        print_targets(target_figures(summary), summary)
        err.print(f"overall: {overall}; reports in {paths['report.html'].parent}", soft_wrap=True)
    raise typer.Exit(EXIT_CODES.get(overall, 3))
