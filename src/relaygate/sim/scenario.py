"""The simulator's script: strict pydantic models for a scenario, its YAML loader, and step resolution.

A scenario maps model names to behaviours; a behaviour may hold a list of steps, one per request, the
last repeating forever. ``Plan`` is what one request does once the built-in defaults, the model level
and the current step have been merged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from relaygate.sim.presets import PRESETS, PresetName, default_error_body, error_body

__all__ = [
    "DEFAULT_REPLY",
    "Behaviour",
    "ErrorSpec",
    "Plan",
    "Scenario",
    "ScenarioError",
    "Step",
    "ToolCallSpec",
    "UsageOverride",
    "coerce_scenario",
    "load_scenario",
    "resolve_plan",
]

DEFAULT_REPLY = "Hello from the simulator."


class ScenarioError(ValueError):
    """A scenario file or dict that does not validate; the message names every bad field by path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UsageOverride(_Strict):
    """Token counts to report instead of the simulator's word counts (tokens)."""

    prompt_tokens: NonNegativeInt | None = None
    completion_tokens: NonNegativeInt | None = None


class ToolCallSpec(_Strict):
    """A function call to answer with when the request offers tools; ``arguments`` dicts become JSON."""

    name: str = Field(min_length=1)
    arguments: dict[str, Any] | str = "{}"


class ErrorSpec(_Strict):
    """Shorthand for an error answer: a ``preset`` name and/or a ``status``, with optional field overrides.

    ``status`` overrides the preset's status; ``message``/``type``/``code``/``param`` override its body.
    """

    preset: PresetName | None = None
    status: int | None = Field(default=None, ge=400, le=599)
    message: str | None = None
    type: str | None = None
    code: str | None = None
    param: str | None = None

    @model_validator(mode="after")
    def _needs_preset_or_status(self) -> ErrorSpec:
        if self.preset is None and self.status is None:
            raise ValueError("error needs 'preset' or 'status'")
        return self

    def expand(self) -> tuple[int, dict[str, Any], dict[str, str]]:
        """``(status, body, headers)`` of this error."""
        preset = PRESETS[self.preset] if self.preset else None
        status = self.status or (preset.status if preset else 500)
        base = preset.body()["error"] if preset else default_error_body(status)["error"]
        body = error_body(
            self.message or base["message"],
            self.type or base["type"],
            self.code if self.code is not None else base["code"],
            self.param if self.param is not None else base["param"],
        )
        return status, body, dict(preset.headers) if preset else {}


class Step(_Strict):
    """What one request does. Every field is optional; unset fields fall back to the model level.

    ``status``, ``body`` and ``error`` travel together: a level that sets any of them replaces all three
    of the level below, so ``{status: 200}`` after an ``error`` model answers a clean success.
    Durations are milliseconds.
    """

    status: int | None = None
    body: dict[str, Any] | list[Any] | str | None = None
    headers: dict[str, str] | None = None
    reply: str | None = None
    latency_ms: NonNegativeFloat | None = None
    latency_jitter_ms: NonNegativeFloat | None = None
    ttft_ms: NonNegativeFloat | None = None
    chunk_gap_ms: NonNegativeFloat | None = None
    cut_after_chunks: NonNegativeInt | None = None
    reset: bool | None = None
    malformed: bool | None = None
    hang: bool | None = None
    usage: UsageOverride | None = None
    error: ErrorSpec | None = None
    tool_call: ToolCallSpec | None = None
    # Several function calls in one answer (parallel tool calls); replaces ``tool_call``.
    tool_calls: list[ToolCallSpec] | None = Field(default=None, min_length=1)
    # Stream bodies are written in pieces of this many bytes (each its own write and HTTP
    # chunk), so multi-byte UTF-8 characters and SSE lines cross read boundaries.
    split_bytes: PositiveInt | None = None

    @field_validator("status")
    @classmethod
    def _status_range(cls, value: int | None) -> int | None:
        if value is not None and value != 200 and not 400 <= value <= 599:
            raise ValueError("status must be 200 or an error status 400-599")
        return value

    @field_validator("headers", mode="before")
    @classmethod
    def _header_values_as_text(cls, value: Any) -> Any:
        # YAML reads `Retry-After: 2` as an int; header values are text on the wire.
        if isinstance(value, dict):
            return {k: v if isinstance(v, str) else str(v) for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _status_or_error(self) -> Step:
        if self.error is not None and (self.status is not None or self.body is not None):
            raise ValueError("set either 'error' or 'status'/'body', not both")
        return self


class Behaviour(Step):
    """A model's behaviour: the step fields as its defaults, plus an optional ``steps`` sequence."""

    steps: list[Step] | None = Field(default=None, min_length=1)


class Scenario(_Strict):
    """The whole script: ``default`` serves every model not listed in ``models``.

    A listed model does not inherit from ``default``; each starts from the built-in plain success.
    """

    default: Behaviour = Field(default_factory=lambda: Behaviour(reply=DEFAULT_REPLY))
    models: dict[str, Behaviour] = Field(default_factory=dict)

    def behaviour(self, model: str) -> Behaviour:
        """The behaviour for ``model`` (its own entry, else ``default``)."""
        return self.models.get(model, self.default)


@dataclass(frozen=True)
class Plan:
    """One request's resolved behaviour. ``body`` is the error (or verbatim) body; durations in ms."""

    status: int = 200
    body: dict[str, Any] | list[Any] | str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    reply: str = DEFAULT_REPLY
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    ttft_ms: float = 0.0
    chunk_gap_ms: float = 0.0
    cut_after_chunks: int | None = None
    reset: bool = False
    malformed: bool = False
    hang: bool = False
    usage: UsageOverride | None = None
    tool_call: ToolCallSpec | None = None
    tool_calls: tuple[ToolCallSpec, ...] | None = None
    split_bytes: int | None = None

    @property
    def calls(self) -> tuple[ToolCallSpec, ...]:
        """The function calls to answer with (``tool_calls`` wins over ``tool_call``)."""
        if self.tool_calls:
            return self.tool_calls
        return (self.tool_call,) if self.tool_call is not None else ()


_PLAIN_FIELDS = (
    "reply",
    "latency_ms",
    "latency_jitter_ms",
    "ttft_ms",
    "chunk_gap_ms",
    "cut_after_chunks",
    "reset",
    "malformed",
    "hang",
    "usage",
    "split_bytes",
)


def _apply(values: dict[str, Any], level: Step) -> None:
    for name in _PLAIN_FIELDS:
        value = getattr(level, name)
        if value is not None:
            values[name] = value
    if level.tool_call is not None or level.tool_calls is not None:
        # tool_call and tool_calls travel together: a level setting either replaces both.
        values["tool_call"] = level.tool_call
        values["tool_calls"] = tuple(level.tool_calls) if level.tool_calls is not None else None
    if level.error is not None:
        values["status"], values["body"], values["error_headers"] = level.error.expand()
    elif level.status is not None or level.body is not None:
        values["status"] = level.status if level.status is not None else 200
        values["body"] = level.body
        values["error_headers"] = {}
    if level.headers:
        values["headers"] = {**values.get("headers", {}), **level.headers}


def resolve_plan(behaviour: Behaviour, index: int) -> Plan:
    """The plan for the ``index``-th request (0-based) to a model with ``behaviour``.

    Steps past the end repeat the last step. An error status without a body gets the default
    OpenAI-shaped error for that status.
    """
    values: dict[str, Any] = {}
    _apply(values, behaviour)
    if behaviour.steps:
        _apply(values, behaviour.steps[min(index, len(behaviour.steps) - 1)])
    error_headers = values.pop("error_headers", {})
    values["headers"] = {**error_headers, **values.get("headers", {})}
    if values.get("status", 200) != 200 and values.get("body") is None:
        values["body"] = default_error_body(values["status"])
    return Plan(**values)


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err["loc"]) or "<root>"
        lines.append(f"  {where}: {err['msg']}")
    return "invalid scenario:\n" + "\n".join(lines)


def coerce_scenario(scenario: Scenario | dict[str, Any] | None) -> Scenario:
    """A validated ``Scenario`` from a Scenario, a plain dict (YAML/JSON shape) or None (all defaults).

    Raises ScenarioError naming each bad field as a dotted path, e.g. ``models.gpt-x.steps.0.status``.
    """
    if scenario is None:
        return Scenario()
    if isinstance(scenario, Scenario):
        return scenario
    if not isinstance(scenario, dict):
        raise ScenarioError(f"invalid scenario: expected a mapping, got {type(scenario).__name__}")
    try:
        return Scenario.model_validate(scenario)
    except ValidationError as exc:
        raise ScenarioError(_format_errors(exc)) from exc


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a YAML scenario file. Raises ScenarioError (bad YAML or fields) or OSError."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"invalid scenario {path}: not YAML: {exc}") from exc
    return coerce_scenario(data or {})
