"""``relaygate sim``: run the provider simulator in the foreground until Ctrl-C or SIGTERM.

A plain function so the typer CLI (``relaygate.cli``) only parses options and calls it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from relaygate.sim.scenario import Scenario, ScenarioError, load_scenario
from relaygate.sim.server import SimServer

__all__ = ["sim_command"]


async def _serve(scenario: Scenario, host: str, port: int) -> None:
    sim = SimServer(scenario)
    url = await sim.start(host, port)
    models = ", ".join(sorted(scenario.models)) or "(default behaviour only)"
    print(f"relaygate sim listening on {url}  models: {models}", file=sys.stderr, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):  # no signal handlers on Windows
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)  # also when the parent ignores SIGINT
    try:
        await stop.wait()
    finally:
        await sim.stop()
        print("relaygate sim stopped", file=sys.stderr, flush=True)


def sim_command(host: str = "127.0.0.1", port: int = 8090, scenario_path: str | Path | None = None) -> None:
    """Serve the simulator on ``host:port`` with the YAML scenario at ``scenario_path`` (None: defaults).

    Prints the listening URL (``http://HOST:PORT/v1``) to stderr and blocks until Ctrl-C or SIGTERM.
    An unreadable or invalid scenario prints the reason to stderr and exits with status 2.
    """
    try:
        scenario = load_scenario(scenario_path) if scenario_path is not None else Scenario()
    except (ScenarioError, OSError) as exc:
        print(f"relaygate sim: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(scenario, host, port))
