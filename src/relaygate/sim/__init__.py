"""The provider simulator: a real OpenAI-compatible HTTP server scripted per model or by a YAML scenario.

Used by the gateway's tests and by users' failover drills (``relaygate sim --scenario FILE``)::

    sim = SimServer({"models": {"gpt-x": {"steps": [{"error": {"preset": "overloaded"}}, {"status": 200}]}}})
    url = await sim.start()          # "http://127.0.0.1:PORT/v1"
    ...
    await sim.stop()
"""

from relaygate.sim.presets import PRESETS, ErrorPreset
from relaygate.sim.scenario import (
    Behaviour,
    ErrorSpec,
    Plan,
    Scenario,
    ScenarioError,
    Step,
    ToolCallSpec,
    UsageOverride,
    coerce_scenario,
    load_scenario,
)
from relaygate.sim.server import SimServer
from relaygate.sim.thread import SimHandle, run_sim_in_thread

__all__ = [
    "PRESETS",
    "Behaviour",
    "ErrorPreset",
    "ErrorSpec",
    "Plan",
    "Scenario",
    "ScenarioError",
    "SimHandle",
    "SimServer",
    "Step",
    "ToolCallSpec",
    "UsageOverride",
    "coerce_scenario",
    "load_scenario",
    "run_sim_in_thread",
]
