"""``relaygate audit``: list audit events and verify the hash chain.

``list`` prints a table (or ``--json``) on standard output. ``verify`` reports on standard error:
exit 0 with ``ok: N events`` (and the head hash, worth keeping elsewhere: a chain cannot show its
own truncation), exit 1 naming the first bad event and what is wrong with it.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from relaygate.cli.common import ConfigPathOption, DbOption, open_store, stderr
from relaygate.durations import parse_duration
from relaygate.ledger.audit import AuditEvent, AuditLog

__all__ = ["app"]

app = typer.Typer(
    help="List audit events and verify their hash chain.", no_args_is_help=True, add_completion=False
)


def _audit_log(db: str | None, config: Path | None) -> AbstractContextManager[AuditLog]:
    return open_store(db, AuditLog, config)


@app.command("list")
def list_events(
    since: Annotated[str | None, typer.Option("--since", help="window back from now: 30m, 1h, 7d")] = None,
    kind: Annotated[
        str | None, typer.Option("--kind", help="kind or prefix, e.g. cutoff. or key.revoke")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="at most this many (the newest)")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="JSON array on standard output")] = False,
    db: DbOption = None,
    config: ConfigPathOption = None,
) -> None:
    """Audit events, oldest first (the newest --limit of those matching)."""
    start = None
    if since is not None:
        try:
            start = datetime.now(UTC) - parse_duration(since)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="'--since'") from None
    with _audit_log(db, config) as log:
        events = log.list(since=start, kind=kind, limit=limit)
    if as_json:
        typer.echo(json.dumps([_as_json(e) for e in events], indent=2))
        return
    if not events:
        stderr().print("no audit events" + (f" of kind {kind}" if kind else ""))
        return
    table = Table("id", "time (UTC)", "kind", "actor", "subject")
    table.add_column("details", overflow="fold")
    for event in events:
        table.add_row(
            str(event.id),
            event.ts.strftime("%Y-%m-%d %H:%M:%S"),
            event.kind,
            event.actor,
            event.subject,
            json.dumps(event.details, separators=(",", ":"), ensure_ascii=False),
        )
    Console(highlight=False).print(table)


@app.command()
def verify(
    db: DbOption = None,
    config: ConfigPathOption = None,
    expect_head: Annotated[
        str | None,
        typer.Option(
            "--expect-head",
            help="a head hash saved earlier: events removed from the end since "
            "then can only be detected against it",
        ),
    ] = None,
) -> None:
    """Check the hash chain; exit 1 naming the first edited, missing or moved event."""
    with _audit_log(db, config) as log:
        result = log.verify()
        if result.ok and expect_head and result.head_hash != expect_head:
            known = any(e.hash == expect_head for e in log.list(limit=1_000_000))
            if not known:
                stderr().print(
                    f"[red]audit chain does not contain the expected head {expect_head}[/red]: events "
                    f"were removed from the end (now {result.checked} events, head {result.head_hash})",
                    soft_wrap=True,
                )
                raise typer.Exit(1)
    if result.ok:
        head = f"; head {result.head_hash}" if result.head_hash else ""
        stderr().print(f"ok: {result.checked} events{head}", soft_wrap=True)
        return
    stderr().print(
        f"[red]audit chain broken at event {result.first_bad_id}:[/red] {result.problem}", soft_wrap=True
    )
    raise typer.Exit(1)


def _as_json(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "ts": event.ts.isoformat(),
        "kind": event.kind,
        "actor": event.actor,
        "subject": event.subject,
        "details": event.details,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }
