"""``relaygate`` command line: serve, check-config, sim, keys, usage.

Results go to standard output (so scripts can capture them); messages go to standard error.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from relaygate import __version__
from relaygate.cli import audit as audit_cmd
from relaygate.cli import cutoff as cutoff_cmd
from relaygate.cli import drill as drill_cmd
from relaygate.cli import keys as keys_cmd
from relaygate.cli import usage as usage_cmd
from relaygate.config import Config, default_config, load_config
from relaygate.errors import ConfigError

__all__ = ["app", "main"]

app = typer.Typer(
    name="relaygate",
    help="Self-hosted LLM gateway: one OpenAI-compatible endpoint, failover across providers, usage ledger.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(keys_cmd.app, name="keys", help="Create, list and revoke virtual keys.")
app.add_typer(cutoff_cmd.app, name="cutoff", help="Set, clear and list provider cutoffs per region.")
app.add_typer(audit_cmd.app, name="audit", help="List audit events and verify their hash chain.")
app.command("usage", help="Usage ledger summary, e.g. `relaygate usage --since 1h --by tenant`.")(
    usage_cmd.usage
)
app.command("drill", help=drill_cmd.HELP)(drill_cmd.drill)

err = Console(stderr=True)
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="relaygate.yaml; default: $RELAYGATE_CONFIG, else the embedded default"
    ),
]


def _load(path: Path | None) -> tuple[Config, str]:
    path = path or (Path(os.environ["RELAYGATE_CONFIG"]) if os.environ.get("RELAYGATE_CONFIG") else None)
    if path is None:
        return default_config(), "embedded default (local model, SQLite, open auth on loopback)"
    try:
        return load_config(path), str(path)
    except ConfigError as exc:
        err.print(f"[red]config error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


@app.command("check-config")
def check_config(config: ConfigOpt = None) -> None:
    """Validate a config file without serving; exit 2 with one line naming file, field and reason."""
    cfg, source = _load(config)
    deployments = sum(len(r.deployments) for r in cfg.routes.values())
    err.print(
        f"ok: {source}: {len(cfg.providers)} providers, {len(cfg.routes)} routes, "
        f"{deployments} deployments, {len(cfg.tenants)} tenants"
    )


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="bind address (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default 4000)")] = None,
    log_level: Annotated[str, typer.Option(help="debug|info|warning|error")] = "info",
) -> None:
    """Start the gateway. With no config: the embedded local model, SQLite, no API key needed."""
    import uvicorn

    from relaygate.app import create_app

    cfg, source = _load(config)
    host = host or cfg.server.host
    port = cfg.server.port if port is None else port
    if cfg.auth.mode == "open" and host not in ("127.0.0.1", "localhost", "::1"):
        err.print(
            f"[red]refusing to serve with auth.mode=open on {host}[/red]: open mode is for loopback "
            "only; set auth.mode: keys and create keys with `relaygate keys create`."
        )
        raise typer.Exit(2)
    logging.basicConfig(
        level=log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    err.print(f"relaygate {__version__}: config {source}")
    err.print(f"routes: {', '.join(cfg.routes) or '(none)'}; auth: {cfg.auth.mode}")
    err.print(f"OpenAI base URL: http://{host}:{port}/v1")
    uvicorn.run(
        create_app(cfg, config_path=str(config) if config else os.environ.get("RELAYGATE_CONFIG")),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


@app.command()
def sim(
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port (0: any free port)")] = 8900,
    scenario: Annotated[Path | None, typer.Option(help="scenario YAML (see README 'Simulator')")] = None,
) -> None:
    """Run the provider simulator: an OpenAI-compatible server scripted to be slow, fail or cut streams."""
    from relaygate.sim.cli import sim_command

    sim_command(host, port, str(scenario) if scenario else None)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    app()
