"""``relaygate`` command line: serve, check-config, sim, keys, usage.

Results go to standard output (so scripts can capture them); messages go to standard error.
Exit codes: the one table in ``relaygate.cli.common``; ``serve`` and ``sim`` exit 1 when they
cannot listen (``port P is in use``) or the gateway fails to start, and 2 for a bad config.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from relaygate import __version__
from relaygate.cli import audit as audit_cmd
from relaygate.cli import cutoff as cutoff_cmd
from relaygate.cli import drill as drill_cmd
from relaygate.cli import eval as eval_cmd
from relaygate.cli import keys as keys_cmd
from relaygate.cli import usage as usage_cmd
from relaygate.config import Config, default_config, load_config
from relaygate.config.state_schema import resolve_redis_url
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
app.add_typer(eval_cmd.app, name="eval", help="Run eval suites, decide switch-readiness, report, replay.")
app.command("usage", help="Usage ledger summary, e.g. `relaygate usage --since 1h --by tenant`.")(
    usage_cmd.usage
)
app.command("drill", help=drill_cmd.HELP)(drill_cmd.drill)
app.command(
    "replay",
    help="Replay a route's captured traffic against a candidate, e.g. "
    "`relaygate replay --route gpt-4o --since 7d --candidate mistral`.",
)(eval_cmd.replay_ledger)

err = Console(stderr=True)


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="relaygate.yaml; default: $RELAYGATE_CONFIG, else the embedded default"
    ),
]


def _check_port(host: str, port: int) -> None:
    """Exit 1 with one line when ``host:port`` cannot be bound (port 0 is always free).

    Binds and closes a socket with SO_REUSEADDR, as uvicorn and aiohttp do, so a port left in
    TIME_WAIT passes and one with a listener fails. Another process may still take the port
    before the server binds it; ``serve`` maps that failure to exit 1 too.
    """
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
    except OSError as exc:
        _cannot_listen(host, port, exc)


def _cannot_listen(host: str, port: int, exc: OSError) -> None:
    if exc.errno == errno.EADDRINUSE:
        err.print(f"[red]error:[/red] port {port} is in use", highlight=False)
    else:
        err.print(f"[red]error:[/red] cannot listen on {host}:{port}: {exc.strerror or exc}", highlight=False)
    raise typer.Exit(1)


def _load(path: Path | None) -> tuple[Config, str]:
    path = path or (Path(os.environ["RELAYGATE_CONFIG"]) if os.environ.get("RELAYGATE_CONFIG") else None)
    if path is None:
        return default_config(), "embedded default (local model, SQLite, open auth on loopback)"
    try:
        cfg = load_config(path)
        try:  # an inline redis_url is checked by load_config; one from the env var only here
            resolve_redis_url(cfg.state)
        except ValueError as exc:
            raise ConfigError(str(path), "state.redis_url_env", str(exc)) from None
        return cfg, str(path)
    except ConfigError as exc:
        err.print(f"[red]config error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def config_warnings(cfg: Config) -> list[str]:
    """What is valid but will not work as probably meant: unset env vars, no routes, open auth
    on a non-loopback host."""
    out: list[str] = []
    if not cfg.routes:
        out.append("no routes: the gateway would answer every model with 404")
    for name, p in cfg.providers.items():
        env = getattr(p, "api_key_env", None)
        if env and not os.environ.get(env):
            out.append(f"providers.{name}.api_key_env: {env} is not set in this environment")
    for name, t in cfg.tenants.items():
        for k in t.keys:
            if k.key_env and not os.environ.get(k.key_env):
                out.append(f"tenants.{name}.keys: {k.key_env} is not set; that key is disabled")
    if cfg.auth.mode == "open" and cfg.server.host not in ("127.0.0.1", "localhost", "::1"):
        out.append(f"auth.mode open on host {cfg.server.host}: serve will refuse (open is for loopback only)")
    if cfg.state.redis_url_env and not os.environ.get(cfg.state.redis_url_env):
        out.append(
            f"state.redis_url_env: {cfg.state.redis_url_env} is not set; "
            "replicas would serve on local state (limits per replica)"
        )
    if not os.environ.get(cfg.admin.key_env):
        out.append(f"admin.key_env: {cfg.admin.key_env} is not set; the admin API will be disabled")
    return out


@app.command("check-config")
def check_config(config: ConfigOpt = None) -> None:
    """Validate a config file without serving; exit 2 with one line naming file, field and reason."""
    cfg, source = _load(config)
    for warning in config_warnings(cfg):
        err.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)
    deployments = sum(len(r.deployments) for r in cfg.routes.values())
    err.print(
        f"ok: {source}: {len(cfg.providers)} providers, {len(cfg.routes)} routes, "
        f"{deployments} deployments, {len(cfg.tenants)} tenants"
    )


@app.command()
def serve(
    config: ConfigOpt = None,
    host: Annotated[str | None, typer.Option(help="bind address (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default 4000)", min=0, max=65535)] = None,
    log_level: Annotated[LogLevel, typer.Option(help="log level", case_sensitive=False)] = LogLevel.info,
    workers: Annotated[
        int,
        typer.Option(
            help="worker processes sharing the port; the ledger, keys, cutoffs and audit are shared "
            "through the database; limits, budgets, breakers and cooldowns are per worker unless "
            "state.backend is redis",
            min=1,
            max=64,
        ),
    ] = 1,
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
    _check_port(host, port)
    logging.basicConfig(
        level=log_level.value.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    err.print(f"relaygate {__version__}: config {source}")
    err.print(f"routes: {', '.join(cfg.routes) or '(none)'}; auth: {cfg.auth.mode}")
    err.print(f"OpenAI base URL: http://{host}:{port}/v1")
    config_path = str(config) if config else os.environ.get("RELAYGATE_CONFIG")
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level.value,
        "access_log": False,
        "timeout_graceful_shutdown": 10,
    }
    try:
        if workers > 1:
            # Each worker process builds its own app from the environment (uvicorn's factory mode).
            if config_path:
                os.environ["RELAYGATE_CONFIG"] = str(Path(config_path).resolve())
            uvicorn.run("relaygate.app:app_from_environment", factory=True, workers=workers, **common)
            return
        uvicorn.run(create_app(cfg, config_path=config_path), **common)
    except SystemExit as exc:
        # uvicorn exits 3 (its STARTUP_FAILURE) when binding or the app's start-up fails, having
        # logged why; 3 is the CLI's warning state, so say it failed and exit 1.
        if exc.code in (0, None):
            raise
        err.print("[red]error:[/red] the gateway did not start (see the log above)", highlight=False)
        raise typer.Exit(1) from None


@app.command()
def sim(
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port (0: any free port)")] = 8900,
    scenario: Annotated[
        Path | None, typer.Option(help="scenario YAML (see README 'Provider simulator')")
    ] = None,
) -> None:
    """Run the provider simulator: an OpenAI-compatible server scripted to be slow, fail or cut streams."""
    from relaygate.sim.cli import sim_command

    _check_port(host, port)
    try:
        sim_command(host, port, str(scenario) if scenario else None)
    except OSError as exc:  # the port was taken between the check and the bind
        _cannot_listen(host, port, exc)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    # Help screens and tables sent to a pipe or a CI log would be cut at 80 columns.
    if not sys.stdout.isatty():
        os.environ.setdefault("COLUMNS", "120")
    app()
