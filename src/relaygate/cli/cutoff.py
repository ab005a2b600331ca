"""``relaygate cutoff``: set, clear and list (provider, region) cutoffs.

A running gateway picks a change up at its next database poll (``cutoffs.poll_interval_s``, 1 s by
default). When the config (``--config`` / ``$RELAYGATE_CONFIG``) has ``state.backend: redis``, a
change is also published to the replicas through Redis (the notice they send each other), so they
apply it within a second whatever their poll interval; the database stays the source of truth, so
an unreachable Redis is a warning, never a failure. Tables and JSON go to standard output;
confirmations and errors go to standard error (exit 1 for nothing to clear, 2 for a bad argument
such as a region that is not ISO 3166-1 alpha-2 / EU / EEA or a provider the config does not define,
4 for a database failure). Without a config the provider cannot be checked: ``set`` warns. Every
change is an audit event whose actor is ``cli:<login name>``.
"""

from __future__ import annotations

import asyncio
import json
import os
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from relaygate.cli.common import (
    ConfigPathOption,
    DbOption,
    cli_actor,
    open_store,
    resolve_config,
    stderr,
)
from relaygate.config.regions import check_cutoff_region
from relaygate.durations import parse_duration
from relaygate.ledger.cutoff_store import Cutoff, CutoffStore, normalize_region

__all__ = ["app", "parse_target"]

app = typer.Typer(
    help="Set, clear and list provider cutoffs (provider, region) -> restricted.",
    no_args_is_help=True,
    add_completion=False,
)

TargetArg = Annotated[
    str, typer.Argument(metavar="PROVIDER[:REGION]", help="e.g. openai:CN; no region means every region (*)")
]


def parse_target(text: str, *, strict: bool = True) -> tuple[str, str]:
    """``"openai:cn"`` -> ``("openai", "CN")``; ``"openai"`` -> ``("openai", "*")``.

    Raises ``ValueError`` for an empty provider or a region that is not ``*``, an ISO 3166-1
    alpha-2 code, ``EU`` or ``EEA`` (``relaygate.config.regions``). ``strict=False`` (``clear``)
    accepts any well-formed code, so a row stored before regions were checked can still be cleared.
    """
    provider, colon, region = text.partition(":")
    provider = provider.strip()
    if not provider:
        raise ValueError(f"{text!r} does not name a provider (PROVIDER or PROVIDER:REGION)")
    if colon and not region.strip():
        raise ValueError(f"{text!r} has an empty region: write PROVIDER for every region, or PROVIDER:REGION")
    return provider, check_cutoff_region(region) if strict else normalize_region(region)


def _cutoff_store(
    db: str | None, config: Path | None, *, create: bool = False
) -> AbstractContextManager[CutoffStore]:
    return open_store(db, CutoffStore, config, create=create)


def _target(text: str, *, strict: bool = True) -> tuple[str, str]:
    try:
        return parse_target(text, strict=strict)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'PROVIDER[:REGION]'") from None


def _check_provider(provider: str, config: Path | None) -> None:
    """Exit 2 for a provider the config does not define; without a config, warn and go on."""
    cfg = resolve_config(config)
    if cfg is None:
        stderr().print(
            f"[yellow]warning:[/yellow] no config (--config or $RELAYGATE_CONFIG), so provider "
            f"{escape(repr(provider))} is not checked; a misspelled provider is never cut off",
            soft_wrap=True,
        )
    elif provider not in cfg.providers:
        known = ", ".join(sorted(cfg.providers)) or "none"
        raise typer.BadParameter(
            f"unknown provider {provider!r} (known: {known})", param_hint="'PROVIDER[:REGION]'"
        )


@app.command("set")
def set_cutoff(
    target: TargetArg,
    reason: Annotated[str, typer.Option("--reason", help="why, for the audit log and `cutoff list`")],
    expires: Annotated[
        str | None, typer.Option("--expires", help="lift automatically after 30m, 2h, 1d ...")
    ] = None,
    db: DbOption = None,
    config: ConfigPathOption = None,
) -> None:
    """Restrict a provider for a region (or everywhere); running gateways follow within seconds."""
    provider, region = _target(target)
    _check_provider(provider, config)
    if not reason.strip():
        raise typer.BadParameter("must not be empty", param_hint="'--reason'")
    expires_at = None
    if expires is not None:
        try:
            expires_at = datetime.now(UTC) + parse_duration(expires)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="'--expires'") from None
    with _cutoff_store(db, config, create=True) as store:
        cutoff = store.set(provider, region, reason, "operator", expires_at, actor=cli_actor())
    until = f" until {_when(cutoff.expires_at)} UTC" if cutoff.expires_at else ""
    stderr().print(f"cut off {cutoff.target}{until}: {cutoff.reason}", soft_wrap=True)
    _notify_replicas(config)


@app.command()
def clear(
    target: TargetArg,
    reason: Annotated[str, typer.Option("--reason", help="why, for the audit log")] = "",
    db: DbOption = None,
    config: ConfigPathOption = None,
) -> None:
    """Lift the cutoff for a provider and region; its history is kept."""
    provider, region = _target(target, strict=False)
    with _cutoff_store(db, config) as store:
        cleared = store.clear(provider, region, actor=cli_actor(), reason=reason)
    if not cleared:
        stderr().print(f"[red]no active cutoff for {provider}:{region}[/red]")
        raise typer.Exit(1)
    stderr().print(f"cleared {provider}:{region}")
    _notify_replicas(config)


def _notify_replicas(config: Path | None) -> None:
    """Publish a cutoff notice when the config shares state through Redis; a failure only warns
    (the change is in the database, which every replica polls)."""
    cfg = resolve_config(config)
    if cfg is None or cfg.state.backend != "redis":
        return
    from relaygate.state.base import StateEvent
    from relaygate.state.redis_state import SharedStateError, publish_event

    event = StateEvent("cutoffs", origin=f"{cli_actor()}-{os.getpid()}")
    try:
        listeners = asyncio.run(publish_event(cfg.state, event))
    except SharedStateError as exc:
        stderr().print(
            f"[yellow]warning:[/yellow] could not notify the replicas through Redis ({exc}); they will "
            f"see the change at their next database poll (cutoffs.poll_interval_s: "
            f"{cfg.cutoffs.poll_interval_s:g} s)",
            soft_wrap=True,
        )
        return
    stderr().print(f"notified the replicas through Redis ({listeners} listening)")


@app.command("list")
def list_cutoffs(
    all_: Annotated[bool, typer.Option("--all", help="include cleared and expired cutoffs")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON array on standard output")] = False,
    db: DbOption = None,
    config: ConfigPathOption = None,
) -> None:
    """Cutoffs in force (or, with --all, every cutoff ever set, newest first)."""
    with _cutoff_store(db, config) as store:
        rows = store.history() if all_ else store.active()
    if as_json:
        typer.echo(json.dumps([_as_json(c) for c in rows], indent=2))
        return
    if not rows:
        stderr().print("no cutoffs" if all_ else "no cutoffs in force")
        return
    now = datetime.now(UTC)
    table = Table("provider", "region", "source", "reason", "since (UTC)", "expires (UTC)", "status")
    for c in rows:
        table.add_row(
            c.provider,
            c.region,
            c.source,
            c.reason,
            _when(c.created_at),
            _when(c.expires_at) if c.expires_at else "-",
            _status(c, now),
        )
    Console(highlight=False).print(table)


def _status(cutoff: Cutoff, now: datetime) -> str:
    if cutoff.cleared_at is not None:
        how = "expired" if cutoff.clear_reason == "expired" else "cleared"
        return f"{how} {_when(cutoff.cleared_at)}"
    if not cutoff.in_force(now):
        return "expired"
    if cutoff.source == "detected" and cutoff.probe_successes:
        return f"active ({cutoff.probe_successes} ok probes)"
    return "active"


def _as_json(cutoff: Cutoff) -> dict[str, Any]:
    def iso(moment: datetime | None) -> str | None:
        return None if moment is None else moment.isoformat()

    return {
        "id": cutoff.id,
        "provider": cutoff.provider,
        "region": cutoff.region,
        "reason": cutoff.reason,
        "source": cutoff.source,
        "created_at": iso(cutoff.created_at),
        "created_by": cutoff.created_by,
        "expires_at": iso(cutoff.expires_at),
        "probe_successes": cutoff.probe_successes,
        "last_probe_at": iso(cutoff.last_probe_at),
        "cleared_at": iso(cutoff.cleared_at),
        "cleared_by": cutoff.cleared_by,
        "clear_reason": cutoff.clear_reason,
    }


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M")
