"""Turn one parsed Chat Completions request and its resolved ``Plan`` into the ``Answer`` to send.

Pure: validation of the few request fields the simulator reads, max-token truncation, tool calls and
the deterministic usage counts. Rejections are OpenAI-shaped 400 bodies.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from relaygate.sim.presets import error_body
from relaygate.sim.scenario import Plan
from relaygate.sim.wire import Answer, count_prompt_tokens, count_words, new_id, split_words, usage_block

__all__ = ["BadRequest", "build_answer", "check_request", "parse_body", "wants_usage_chunk"]


class BadRequest(Exception):
    """A request the simulator refuses with 400; ``body`` is the OpenAI error object."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.body = error_body(message, "invalid_request_error", code, param)


def parse_body(raw: bytes) -> dict[str, Any]:
    """Parse a request body into a JSON object, else raise BadRequest (as OpenAI does for bad JSON)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(
            "We could not parse the JSON body of your request. The OpenAI API expects a JSON payload, "
            "but what was sent was not valid JSON."
        ) from exc
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


def check_request(body: dict[str, Any]) -> str:
    """Validate the fields the simulator reads; return the model name. Raises BadRequest."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("you must provide a model parameter", "model", "missing_required_parameter")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("Missing required parameter: 'messages'.", "messages", "missing_required_parameter")
    for name in ("max_completion_tokens", "max_tokens"):
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise BadRequest(
                f"Invalid '{name}': expected an integer >= 1, got {value!r}.", name, "integer_below_min_value"
            )
    return model


def wants_usage_chunk(body: dict[str, Any]) -> bool:
    """True when a stream request sets ``stream_options.include_usage``."""
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _wants_tools(body: dict[str, Any]) -> bool:
    return bool(body.get("tools")) and body.get("tool_choice") != "none"


def build_answer(body: dict[str, Any], model: str, plan: Plan, *, now: float | None = None) -> Answer:
    """The answer to a validated request ``body`` for ``model`` under ``plan``.

    Text: the plan's reply split into word chunks, truncated to ``max_completion_tokens`` (else
    ``max_tokens``) words with finish_reason "length". Tools: when the request offers tools (and
    tool_choice is not "none") and the plan has ``tool_call`` (or ``tool_calls``), those function
    calls with finish_reason "tool_calls". Usage: ``count_prompt_tokens`` and the words sent,
    unless overridden.
    """
    created = int(time.time() if now is None else now)
    prompt_tokens = count_prompt_tokens(body["messages"])
    tool_calls: list[tuple[str, str, str]] = []
    if plan.calls and _wants_tools(body):
        for spec in plan.calls:
            args = spec.arguments
            arguments = args if isinstance(args, str) else orjson.dumps(args).decode()
            tool_calls.append((new_id("call_"), spec.name, arguments))
        chunks: list[str] = []
        completion_tokens = sum(max(1, count_words(a)) for _, _, a in tool_calls)
        finish = "tool_calls"
    else:
        chunks = split_words(plan.reply)
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        finish = "stop"
        if isinstance(limit, int) and limit < count_words(plan.reply):
            chunks = chunks[:limit]
            chunks[-1] = chunks[-1].rstrip()
            finish = "length"
        completion_tokens = count_words("".join(chunks))
    if plan.usage is not None:
        if plan.usage.prompt_tokens is not None:
            prompt_tokens = plan.usage.prompt_tokens
        if plan.usage.completion_tokens is not None:
            completion_tokens = plan.usage.completion_tokens
    return Answer(
        id=new_id("chatcmpl-"),
        created=created,
        model=model,
        chunks=tuple(chunks),
        tool_calls=tuple(tool_calls),
        finish_reason=finish,
        usage=usage_block(prompt_tokens, completion_tokens),
    )
