"""``relaygate eval replay`` (captured requests from a JSONL file) and the top-level ``relaygate
replay`` (``replay_ledger``: the payloads the ledger captured for a route): replay them against a
candidate through the gateway in process and compare with the stored answers, label-free.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from relaygate.cli.eval_options import (
    EXIT_STORAGE,
    ConfigOpt,
    DbOpt,
    FormatOpt,
    check_format,
    err,
    fail,
)
from relaygate.cli.eval_report import num
from relaygate.cli.eval_run import in_process_gateway
from relaygate.ledger.db import StorageError

if TYPE_CHECKING:
    from relaygate.evals.replay import ReplayReport

__all__ = ["replay_cmd", "replay_ledger"]


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

    check_format(fmt)
    if agreement not in ("similarity", "normalized"):
        raise typer.BadParameter("must be similarity or normalized", param_hint="'--agreement'")
    try:
        captures = load_capture(capture)
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    cfg, _source = _load(config)

    async def go() -> ReplayReport:
        async with in_process_gateway(cfg, db) as (gw, _storage):
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
        raise fail(str(exc)) from None
    except StorageError as exc:
        raise fail(f"database: {exc}", EXIT_STORAGE) from None
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
            (f"{k} (agreement: {result.agreement_metric})" if k == "agreement" else k, num(v))
            for k, v in result.rates.items()
        ),
        *((f"latency ms {k}", num(v, ".0f")) for k, v in result.latency_ms.items()),
        *((f"cost USD {k}", num(v, ".6f")) for k, v in result.cost_usd.items()),
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

    check_format(fmt)
    if agreement not in ("similarity", "normalized"):
        raise typer.BadParameter("must be similarity or normalized", param_hint="'--agreement'")
    try:
        start = datetime.now(UTC) - parse_duration(since)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--since'") from None
    cfg, _source = _load(config)

    async def go() -> tuple[int, ReplayReport]:
        async with in_process_gateway(cfg, db) as (gw, storage):
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
        raise fail(str(exc)) from None
    except StorageError as exc:
        raise fail(f"database: {exc}", EXIT_STORAGE) from None
    if found == 0:
        err.print(f"no captured payloads for route {route!r} since {since} (is capture on?)", soft_wrap=True)
    _print_replay(result, f"replay of {route} (since {since}) against {candidate}", fmt)
