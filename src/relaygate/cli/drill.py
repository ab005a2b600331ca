"""``relaygate drill``: what if a provider were cut off (for one region, or everywhere)?

Loads the config as ``serve`` does, the ledger window and the cutoffs already in force, and hands
them to ``relaygate.evals.drill``, with published eval quality merged over the config as the
gateway does (and shown in a table of its own, or as ``quality`` in the JSON). The table (or one
JSON document) goes to standard output, a one-line summary to standard error.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from relaygate.cli.common import DbOption, resolve_db, storage_exit
from relaygate.cli.cutoff import parse_target
from relaygate.config.quality_schema import PublishedQuality
from relaygate.config.schema import Config
from relaygate.durations import parse_duration
from relaygate.evals.drill import NO_ALLOWED, DrillReport, GroupImpact, run_drill
from relaygate.ledger.cutoff_store import CutoffStore
from relaygate.ledger.db import StorageError
from relaygate.ledger.migrate import open_database
from relaygate.ledger.quality_store import QualityStore
from relaygate.ledger.usage_store import TrafficSummary, UsageStore
from relaygate.policy import compile_policy
from relaygate.routing.quality import with_quality

__all__ = ["EXIT_DANGEROUS", "HELP", "drill"]

EXIT_DANGEROUS = 3
HELP = (
    "What if a provider is cut off? Per route, tenant region and data class: share of past traffic "
    "affected, what would serve instead, change in USD per 1M tokens. "
    "e.g. `relaygate drill --cutoff openai:CN --since 7d`.\n\n"
    "Exit codes: 0 every route/region keeps an allowed deployment; 3 some route/region would be left "
    "with NO ALLOWED DEPLOYMENT; 2 bad argument or config; 4 database error."
)
_FORMATS = ("table", "json")


def drill(
    cutoff: Annotated[
        list[str],
        typer.Option(
            "--cutoff",
            metavar="PROVIDER[:REGION]",
            help="provider to cut off, for REGION or (no region) every region; repeat for several",
        ),
    ],
    since: Annotated[str, typer.Option("--since", help="ledger window back from now: 1h, 7d, 2w")] = "7d",
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="relaygate.yaml; default: $RELAYGATE_CONFIG, else the embedded default"
        ),
    ] = None,
    db: DbOption = None,
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """Cutoff drill over config, policy and ledger; exit 3 when a route/region would have no deployment."""
    from relaygate.cli.main import _load  # main imports this module: import at call time

    if fmt not in _FORMATS:
        raise typer.BadParameter(f"{fmt!r} is not one of {', '.join(_FORMATS)}", param_hint="'--format'")
    try:
        start = datetime.now(UTC) - parse_duration(since)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--since'") from None
    try:
        pairs = [parse_target(text) for text in cutoff]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--cutoff'") from None
    cfg, _source = _load(config)
    unknown = sorted({p for p, _ in pairs if p not in cfg.providers})
    if unknown:
        known = ", ".join(sorted(cfg.providers)) or "none"
        raise typer.BadParameter(
            f"unknown provider {', '.join(map(repr, unknown))} (known: {known})", param_hint="'--cutoff'"
        )
    traffic, active, published = _read_ledger(resolve_db(db, config), start)
    cfg = with_quality(cfg, published)  # as the gateway does: published eval quality over the config
    report = run_drill(cfg, compile_policy(cfg.policy), traffic, pairs, active=active)
    if fmt == "json":
        doc = report.to_json(start)
        quality = _quality_rows(cfg)
        if quality:
            doc["quality"] = quality
        typer.echo(json.dumps(doc, indent=2))
    else:
        _print_tables(report, start)
        _print_quality(cfg)
    Console(stderr=True, highlight=False).print(_summary(report, start), soft_wrap=True)
    if report.dangerous:
        raise typer.Exit(EXIT_DANGEROUS)


def _read_ledger(
    db: str | None, start: datetime
) -> tuple[list[TrafficSummary], list[tuple[str, str]], list[PublishedQuality]]:
    """Traffic since ``start``, the (provider, region) cutoffs in force and the published eval
    quality; exit 4 on a database error."""
    try:
        engine = open_database(db, create=False)
        try:
            traffic = UsageStore(engine).traffic_by(start)
            active = [(c.provider, c.region) for c in CutoffStore(engine).active()]
            published = QualityStore(engine).all()
        finally:
            engine.dispose()
    except StorageError as exc:
        raise storage_exit(exc) from None
    return traffic, active, published


def _quality_rows(cfg: Config) -> list[dict[str, Any]]:
    """Every deployment's quality (published or from the config), one dict per (route, dep, suite)."""
    return [
        {"route": rname, "deployment": d.deployment_id, "suite": suite, **q.model_dump(mode="json")}
        for rname, r in cfg.routes.items()
        for d in r.deployments
        for suite, q in sorted(d.quality.items())
    ]


def _print_quality(cfg: Config) -> None:
    rows = _quality_rows(cfg)
    if not rows:
        return
    table = Table(title="eval quality per deployment (relaygate eval publish)")
    for header in ("route", "deployment", "suite", "metric", "mean [CI]", "n", "verdict", "vs"):
        table.add_column(header)
    for q in rows:
        ci = "" if q["ci_low"] is None else f" [{q['ci_low']:.3f}, {q['ci_high']:.3f}]"
        table.add_row(
            q["route"], q["deployment"], q["suite"], q["metric"], f"{q['mean']:.3f}{ci}", str(q["n"]),
            q["verdict"], q["incumbent"],
        )  # fmt: skip
    Console(highlight=False).print(table)


def _print_tables(report: DrillReport, start: datetime) -> None:
    out = Console(highlight=False)
    cut = ", ".join(f"{p}:{r}" for p, r in report.cutoffs)
    if report.groups:
        table = Table(title=f"drill: cut off {cut}; traffic since {start:%Y-%m-%d %H:%M} UTC")
        for header in ("route", "region", "class"):
            table.add_column(header, no_wrap=True)
        for header in ("requests", "affected", "share"):
            table.add_column(header, justify="right")
        table.add_column("serving now")
        table.add_column("would serve")
        for header in ("old $/1M", "new $/1M", "delta $/1M"):
            table.add_column(header, justify="right")
        for g in report.groups:
            table.add_row(
                g.route,
                g.tenant_region or "-",
                g.data_class or "-",
                f"{g.requests:,}",
                f"{g.affected_requests:,}",
                f"{g.affected_share:.1%}",
                ", ".join(g.current_deployments) or "-",
                _replacement(g),
                _usd(g.old_usd_per_1m),
                _usd(g.new_usd_per_1m),
                "-" if g.delta_usd_per_1m is None else f"{g.delta_usd_per_1m:+.4f}",
            )
        out.print(table)
        for g in report.groups:
            if g.no_allowed_deployment:
                where = f"{g.route} {g.tenant_region or '-'} {g.data_class or '-'}"
                out.print(Text(f"{where}: {g.replacement_reason}"), soft_wrap=True)
    if report.idle:
        idle = Table(title="routes without traffic in the window left with no allowed deployment")
        for header in ("route", "region", "class", "tenants", "why"):
            idle.add_column(header)
        for i in report.idle:
            idle.add_row(
                Text(i.route, style="bold red" if i.dangerous else "yellow"),
                i.tenant_region or "-",
                i.data_class,
                ", ".join(i.tenants),
                i.reason,
            )
        out.print(idle)


def _replacement(g: GroupImpact) -> Text:
    if g.dangerous:
        return Text(g.replacement or NO_ALLOWED, style="bold red")
    if g.no_allowed_deployment:
        return Text(g.replacement or "none (policy refuses even without cutoffs)", style="yellow")
    return Text(g.replacement or "-")


def _summary(report: DrillReport, start: datetime) -> str:
    total = sum(g.requests for g in report.groups)
    affected = sum(g.affected_requests for g in report.groups)
    cut = ", ".join(f"{p}:{r}" for p, r in report.cutoffs)
    also = f" (also in force: {', '.join(f'{p}:{r}' for p, r in report.active)})" if report.active else ""
    share = f" ({affected / total:.1%})" if total else ""
    head = (
        f"drill {cut}{also}: {affected:,} of {total:,} requests since {start:%Y-%m-%d %H:%M} UTC{share} "
        "were served by a cut provider; "
    )
    broken = sum(g.dangerous for g in report.groups) + sum(i.dangerous for i in report.idle)
    if broken:
        return head + f"[bold red]{broken} route/region group(s) left with {NO_ALLOWED}[/bold red] (exit 3)"
    return head + "every route/region keeps an allowed deployment"


def _usd(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
