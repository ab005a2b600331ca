"""Process and shared state: the cutoff monitor, rate limits, budgets and replica events.

``make_state`` picks the ``SharedState`` the ``state:`` config section asks for.
"""

from __future__ import annotations

from relaygate.config.state_schema import StateConfig
from relaygate.state.base import MemoryState, SharedState

__all__ = ["MemoryState", "SharedState", "make_state"]


def make_state(config: StateConfig, origin: str) -> SharedState:
    """``MemoryState`` (default) or ``RedisState`` (not connected until ``start``).
    ``origin`` names this replica in the events it publishes."""
    if config.backend == "redis":
        from relaygate.state.redis_state import RedisState

        return RedisState(config, origin=origin)
    return MemoryState()
