"""What every grader shares: the grading context, the grader error, and reading an OpenAI
``chat.completion`` dict (answer text, tool calls, refusal field, finish reason)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from relaygate.evals.model import Case, GraderSpec

if TYPE_CHECKING:
    import numpy as np

    from relaygate.evals.sandbox import Limits

__all__ = [
    "Embedder",
    "GradeContext",
    "GraderError",
    "JudgeCall",
    "answer_text",
    "expected_of",
    "finish_reason",
    "last_user_text",
    "message_of",
    "refusal_field",
    "tool_calls_of",
]

# The runner's judge route: takes an OpenAI messages list, returns the judge's answer text.
JudgeCall = Callable[[list[dict[str, Any]]], Awaitable[str]]


class GraderError(ValueError):
    """A grader cannot score: unknown kind, bad parameters, a missing reference or judge, an
    embedding model that is not installed, a judge answer that cannot be parsed. The runner
    records it against that (case, grader); it is never a verdict on the model's answer."""


class Embedder(Protocol):
    """Turns texts into L2-normalised vectors, one row per text (shape ``(len(texts), dim)``)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True, slots=True)
class GradeContext:
    """What the runner supplies beyond the case and the response.

    - ``call_judge``: the separately configured judge route (``judge`` and ``pairwise``).
    - ``baseline``: the other response a ``pairwise`` grader compares against (the
      incumbent's answer to the same case).
    - ``embedder``: for ``similarity``; default: the local all-MiniLM-L6-v2, loaded once.
    - ``sandbox``: limits for ``code``; default ``sandbox.Limits()`` overridden by grader params.
    """

    call_judge: JudgeCall | None = None
    baseline: dict[str, Any] | None = None
    embedder: Embedder | None = None
    sandbox: Limits | None = None


def message_of(response: dict[str, Any]) -> dict[str, Any]:
    """The first choice's ``message`` (``{}`` when there is none)."""
    choices = response.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        return {}
    message = choices[0].get("message")
    return message if isinstance(message, dict) else {}


def answer_text(response: dict[str, Any]) -> str:
    """The assistant's text: ``content`` as a string, or its text parts joined; ``""`` if none."""
    content = message_of(response).get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return "".join(str(p) for p in parts)
    return ""


def refusal_field(response: dict[str, Any]) -> str | None:
    """OpenAI's structured-output ``message.refusal`` text, when the provider set one."""
    refusal = message_of(response).get("refusal")
    return refusal if isinstance(refusal, str) and refusal.strip() else None


def finish_reason(response: dict[str, Any]) -> str | None:
    choices = response.get("choices") or []
    if choices and isinstance(choices[0], dict):
        reason = choices[0].get("finish_reason")
        return reason if isinstance(reason, str) else None
    return None


def tool_calls_of(response: dict[str, Any]) -> list[tuple[str, str]]:
    """The tool calls as ``(function name, raw arguments JSON text)`` pairs, in order; includes
    the legacy single ``function_call``."""
    message = message_of(response)
    calls: list[tuple[str, str]] = []
    for call in message.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            arguments = function.get("arguments", "")
            if not isinstance(arguments, str):  # some providers send an object
                arguments = json.dumps(arguments)
            calls.append((str(function.get("name", "")), arguments))
    legacy = message.get("function_call")
    if isinstance(legacy, dict):
        calls.append((str(legacy.get("name", "")), str(legacy.get("arguments", ""))))
    return calls


def last_user_text(case: Case) -> str:
    """The text of the case's last user message (what a judge is shown as "the question")."""
    for message in reversed(case.messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def expected_of(case: Case, spec: GraderSpec, *, required: bool = True) -> Any:
    """``spec.params["expected"]`` if set, else ``case.expected``; ``GraderError`` if both are
    missing and ``required``."""
    expected = spec.params.get("expected", case.expected)
    if expected is None and required:
        raise GraderError(f"grader {spec.kind!r} needs an expected value; case {case.id!r} has none")
    return expected
