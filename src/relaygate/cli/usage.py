"""``relaygate usage``: the usage ledger summed per tenant, route or deployment over a window.

The table and the totals line go to standard output; errors go to standard error (exit 2 for a
bad option or config, 4 for a database failure).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, cast

import typer
from rich.console import Console
from rich.table import Table

from relaygate.cli.common import ConfigPathOption, DbOption, resolve_db, storage_exit
from relaygate.durations import parse_duration
from relaygate.ledger.db import StorageError
from relaygate.ledger.migrate import open_database
from relaygate.ledger.usage_store import GROUP_BY, GroupBy, UsageStore, UsageSummary

__all__ = ["parse_duration", "usage"]  # parse_duration re-exported for older imports


def usage(
    since: Annotated[str, typer.Option("--since", help="window back from now: 30m, 1h, 2d, 1w")] = "1h",
    by: Annotated[str, typer.Option("--by", help="group by: tenant, route or deployment")] = "tenant",
    db: DbOption = None,
    config: ConfigPathOption = None,
) -> None:
    """Requests, errors, tokens, cost and latency from the usage ledger, summed per group."""
    if by not in GROUP_BY:
        raise typer.BadParameter(f"{by!r} is not one of {', '.join(GROUP_BY)}", param_hint="'--by'")
    try:
        window = parse_duration(since)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--since'") from None
    start = datetime.now(UTC) - window
    try:
        engine = open_database(resolve_db(db, config), create=False)
        try:
            rows = UsageStore(engine).query_usage(start, cast(GroupBy, by))
        finally:
            engine.dispose()
    except StorageError as exc:
        raise storage_exit(exc) from None
    out = Console(highlight=False)
    if rows:
        out.print(_table(rows, by, start))
    else:
        Console(stderr=True).print(f"no requests since {start:%Y-%m-%d %H:%M} UTC")
    out.print(_totals(rows), soft_wrap=True)


def _table(rows: list[UsageSummary], by: str, start: datetime) -> Table:
    table = Table(title=f"usage by {by} since {start:%Y-%m-%d %H:%M} UTC")
    table.add_column(by, no_wrap=True)
    for header in ("requests", "errors", "prompt tokens", "completion tokens", "cost USD", "avg latency ms"):
        table.add_column(header, justify="right")
    for row in rows:
        latency = row["avg_latency_ms"]
        table.add_row(
            row["key"] if row["key"] is not None else "(none)",
            f"{row['requests']:,}",
            f"{row['errors']:,}",
            f"{row['prompt_tokens']:,}",
            f"{row['completion_tokens']:,}",
            f"{row['cost_usd']:.6f}",
            "-" if latency is None else f"{latency:,.0f}",
        )
    return table


def _totals(rows: list[UsageSummary]) -> str:
    requests = sum(r["requests"] for r in rows)
    errors = sum(r["errors"] for r in rows)
    prompt = sum(r["prompt_tokens"] for r in rows)
    completion = sum(r["completion_tokens"] for r in rows)
    cost = sum(r["cost_usd"] for r in rows)
    return (
        f"total: {requests:,} requests, {errors:,} errors, {prompt:,} prompt tokens, "
        f"{completion:,} completion tokens, {cost:.6f} USD"
    )
