"""The simulator's mutable state: current scenario, per-model request counts and step positions, request log.

Only touched from the server's event loop (the thread handle hops onto that loop), so no locks.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

from relaygate.sim.scenario import Plan, Scenario, resolve_plan

__all__ = ["REQUEST_LOG_SIZE", "SimState"]

REQUEST_LOG_SIZE = 200


class SimState:
    """Counters, step positions and the last ``REQUEST_LOG_SIZE`` requests, for one scenario."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self._counts: Counter[str] = Counter()
        self._positions: Counter[str] = Counter()
        self._log: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)

    def set_scenario(self, scenario: Scenario) -> None:
        """Replace the scenario; step positions restart (counts and the log are kept)."""
        self.scenario = scenario
        self._positions.clear()

    def reset(self) -> None:
        """Zero the counters and step positions and empty the request log."""
        self._counts.clear()
        self._positions.clear()
        self._log.clear()

    def take(
        self, model: str, body: dict[str, Any], path: str, headers: dict[str, str], raw: bytes | None = None
    ) -> Plan:
        """Record one request to ``model`` and return its plan, advancing that model's step position.

        ``headers`` are the request headers, lower-cased names (``authorization`` included).
        ``raw``: the body bytes as received, logged as text under ``"raw"`` (so tests can check a
        pass-through kept them byte for byte).
        """
        self._counts[model] += 1
        entry: dict[str, Any] = {"model": model, "path": path, "body": body, "headers": headers}
        if raw is not None:
            entry["raw"] = raw.decode("utf-8", "replace")
        self._log.append(entry)
        index = self._positions[model]
        self._positions[model] += 1
        return resolve_plan(self.scenario.behaviour(model), index)

    def stats(self) -> dict[str, Any]:
        """``{"models": {model: {"requests": n}}, "total": n}``."""
        return {
            "models": {model: {"requests": n} for model, n in sorted(self._counts.items())},
            "total": sum(self._counts.values()),
        }

    def requests(self, model: str | None = None) -> list[dict[str, Any]]:
        """Logged requests (one model's, or all), oldest first: ``[{"model", "path", "body", "headers"}]``."""
        return [entry for entry in self._log if model is None or entry["model"] == model]
