"""``relaygate eval publish RUN_ID --route R``: write a stored run's quality and verdicts to the
route's deployments (table ``deployment_quality``), for the ``cheapest_non_inferior`` strategy.

The gateway reads published quality at start-up and on every reload, so after publishing run
``kill -HUP <pid>`` or ``POST /admin/reload``. Exit codes: 0 published (or, with ``--dry-run``,
would publish), 2 bad arguments, config or nothing to publish, 4 database error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from relaygate.cli.common import DbOption, cli_actor, open_store, stderr

if TYPE_CHECKING:
    from relaygate.config.quality_schema import PublishedQuality

__all__ = ["publish"]


def publish(
    run_id: Annotated[str, typer.Argument(help="the stored eval run")],
    route: Annotated[str, typer.Option("--route", help="route whose deployments get the quality")],
    suite: Annotated[
        str | None, typer.Option("--suite", help="publish under this suite name (default: the run's)")
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option("--metric", help="metric to summarise (default: the suite's first quality margin)"),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="relaygate.yaml; default: $RELAYGATE_CONFIG, else the embedded default"
        ),
    ] = None,
    db: DbOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show, do not write")] = False,
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """Publish RUN_ID's quality per deployment of ROUTE (mean, CI, n, verdict vs the incumbent).

    A target counts for the deployment that served all its answers (``served_by``); the run's first
    target is the incumbent. Reload the gateway afterwards (SIGHUP or POST /admin/reload)."""
    from relaygate.cli.main import _load  # main imports the eval commands: import at call time
    from relaygate.evals.publish import plan_publish
    from relaygate.evals.report import compute_verdicts
    from relaygate.evals.store import EvalStore
    from relaygate.ledger.quality_store import QualityStore

    if fmt not in ("table", "json"):
        raise typer.BadParameter(f"{fmt!r} is not one of table, json", param_hint="'--format'")
    cfg, _source = _load(config)
    if route not in cfg.routes:
        known = ", ".join(cfg.routes) or "none"
        raise typer.BadParameter(f"unknown route {route!r} (known: {known})", param_hint="'--route'")
    with open_store(db or cfg.storage.url, lambda e: e) as engine:
        summary = EvalStore(engine).load_summary(run_id)
        if summary is None:
            stderr().print(f"[red]error:[/red] no eval run {run_id!r} in this database", soft_wrap=True)
            raise typer.Exit(2)
        try:
            verdicts = (
                compute_verdicts(summary, summary.targets[0], summary.targets[1:], segments_by=None)
                if len(summary.targets) > 1 and summary.margins
                else {}
            )
            plan = plan_publish(summary, route, cfg.routes[route], verdicts, suite=suite, metric=metric)
        except ValueError as exc:
            stderr().print(f"[red]error:[/red] {exc}", soft_wrap=True)
            raise typer.Exit(2) from None
        if not plan.records:
            for note in plan.notes:
                stderr().print(f"[yellow]note:[/yellow] {note}", soft_wrap=True)
            stderr().print("[red]error:[/red] nothing to publish", soft_wrap=True)
            raise typer.Exit(2)
        records = plan.records if dry_run else QualityStore(engine).publish(plan.records, actor=cli_actor())
    _print(records, fmt, f"quality of run {run_id} on route {route} (suite {plan.suite})")
    err = stderr()
    for note in plan.notes:
        err.print(f"[yellow]note:[/yellow] {note}", soft_wrap=True)
    if dry_run:
        err.print(f"dry run: {len(records)} record(s) not written", soft_wrap=True)
        return
    strategy = cfg.routes[route].strategy
    hint = "" if strategy == "cheapest_non_inferior" else f" (route {route} uses strategy {strategy})"
    err.print(
        f"published {len(records)} record(s); the gateway uses them after a reload: "
        f"kill -HUP <pid> or POST /admin/reload{hint}",
        soft_wrap=True,
    )


def _print(records: list[PublishedQuality], fmt: str, title: str) -> None:
    if fmt == "json":
        doc = [
            {
                "route": r.route,
                "deployment": r.deployment,
                "suite": r.suite,
                **r.score.model_dump(mode="json"),
            }
            for r in records
        ]
        typer.echo(json.dumps(doc, indent=2))
        return
    table = Table(title=title)
    for header in ("deployment", "metric", "mean [CI]", "n", "verdict", "vs incumbent"):
        table.add_column(header)
    for r in records:
        q = r.score
        ci = "" if q.ci_low is None else f" [{q.ci_low:.3f}, {q.ci_high:.3f}]"
        table.add_row(r.deployment, q.metric, f"{q.mean:.3f}{ci}", str(q.n), q.verdict, q.incumbent)
    Console(highlight=False).print(table)
