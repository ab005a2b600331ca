"""Same-protocol pass-through for ``/v1/messages`` on an Anthropic upstream (pure parts).

The client's Messages body goes upstream byte for byte except the top-level ``model`` value
(STYLE rule 4), so every Anthropic-only field survives: ``cache_control``
(https://docs.anthropic.com/en/docs/build-with-claude/prompt-caching), ``thinking`` and thinking
blocks in history (https://docs.anthropic.com/en/docs/build-with-claude/extended-thinking),
documents, citations, ``top_k``, ``service_tier``, ``metadata``. The answer comes back as the
upstream sent it; this module only reads what the ledger needs from it: ``usage`` (input,
output, cache creation and cache read tokens) and ``stop_reason``, from a Message or from the
stream events ``message_start`` / ``message_delta``
(https://docs.anthropic.com/en/docs/build-with-claude/streaming).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import orjson

from relaygate.errors import ErrorClass, UpstreamError
from relaygate.protocols.anthropic import ERROR_STATUS, finish_reason_for, usage_to_openai
from relaygate.protocols.openai import Usage, rewrite_model, usage_from
from relaygate.protocols.sse import SSEEvent
from relaygate.providers.anthropic import classify_anthropic_error

__all__ = [
    "FORWARDED_HEADERS",
    "EventKind",
    "NativeStreamWatch",
    "forwarded_headers",
    "native_body",
    "native_usage",
]

# Client request headers relayed to an Anthropic upstream: beta opt-ins change what the API
# accepts and answers (https://docs.anthropic.com/en/api/beta-headers). ``anthropic-version``
# stays the provider's configured one: the gateway speaks that version to its upstream.
FORWARDED_HEADERS = ("anthropic-beta",)


def native_body(raw: bytes, upstream_model: str) -> bytes:
    """``raw`` (a Messages body ``validate_request`` accepted) with only the top-level ``model``
    value replaced; the byte scanner of ``protocols.openai.rewrite_model`` is format-agnostic
    (it finds the top-level ``"model"`` string of any JSON object)."""
    return rewrite_model(raw, upstream_model)


def forwarded_headers(headers: Any) -> dict[str, str]:
    """The ``FORWARDED_HEADERS`` present in the client's request ``headers`` (a mapping)."""
    out: dict[str, str] = {}
    for name in FORWARDED_HEADERS:
        value = headers.get(name)
        if value:
            out[name] = value
    return out


def native_usage(usage: object) -> Usage | None:
    """Anthropic ``usage`` -> the ledger's ``Usage``: prompt tokens are input + cache creation +
    cache read (Anthropic's ``input_tokens`` excludes both), ``cached_tokens`` the cache reads."""
    if not isinstance(usage, dict):
        return None
    return usage_from(usage_to_openai(usage))


class EventKind(Enum):
    OTHER = "other"  # message_start, ping, content_block_stop, unknown future events
    CONTENT = "content"  # content_block_delta, or a block start that already carries content
    FINISH = "finish"  # message_delta (stop_reason, final usage)
    DONE = "done"  # message_stop
    ERROR = "error"  # an in-band error event


@dataclass(slots=True)
class NativeStreamWatch:
    """Reads a relayed Anthropic event stream without changing it: usage, stop reason, whether
    content began (the commit point for failover) and whether ``message_stop`` arrived."""

    raw_usage: dict[str, Any] = field(default_factory=dict)  # Anthropic's counts, as sent
    stop_reason: str | None = None
    content_seen: bool = False
    done: bool = False
    error: UpstreamError | None = None

    def inspect(self, ev: SSEEvent) -> EventKind:
        """Classify one event and take its facts. A malformed event is an ``ERROR`` whose
        ``error`` is a ``malformed`` ``UpstreamError``."""
        if ev.data is None:
            return EventKind.OTHER
        try:
            data = orjson.loads(ev.data)
        except orjson.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            self.error = UpstreamError(
                "Anthropic sent a malformed stream event",
                error_class=ErrorClass.MALFORMED,
                upstream_status=200,
                upstream_body=ev.data[:2000],
            )
            return EventKind.ERROR
        kind = data.get("type") or ev.event
        if kind == "error":
            err = data.get("error")
            status = ERROR_STATUS.get(str(err.get("type")), 500) if isinstance(err, dict) else 500
            self.error = classify_anthropic_error(status, {}, ev.data)
            return EventKind.ERROR
        if kind == "message_start":
            msg = data.get("message")
            if isinstance(msg, dict) and isinstance(msg.get("usage"), dict):
                self.raw_usage.update(msg["usage"])
            return EventKind.OTHER
        if kind == "content_block_delta" or (kind == "content_block_start" and _has_content(data)):
            self.content_seen = True
            return EventKind.CONTENT
        if kind == "message_delta":
            delta = data.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason") is not None:
                self.stop_reason = str(delta["stop_reason"])
            if isinstance(data.get("usage"), dict):  # cumulative counts (streaming docs)
                self.raw_usage.update({k: v for k, v in data["usage"].items() if v is not None})
            return EventKind.FINISH
        if kind == "message_stop":
            self.done = True
            return EventKind.DONE
        return EventKind.OTHER

    @property
    def usage(self) -> Usage | None:
        """Tokens in the ledger's terms (what ``StreamWatch.usage`` gives for translated streams)."""
        return native_usage(self.raw_usage) if self.raw_usage else None

    @property
    def complete(self) -> bool:
        """The stream ended with ``message_stop``."""
        return self.done

    @property
    def finish_reason(self) -> str | None:
        """The stop reason in the ledger's (OpenAI) vocabulary, as translated requests record it."""
        return finish_reason_for(self.stop_reason)


def _has_content(data: dict[str, Any]) -> bool:
    """Whether a ``content_block_start`` already carries content: text and thinking blocks
    start empty (their deltas follow), a tool_use (name, id) or redacted_thinking block does not.
    Committing only then keeps a stream cut right after the block opened a failover."""
    block = data.get("content_block")
    if not isinstance(block, dict):
        return False
    kind = block.get("type")
    if kind == "text":
        return bool(block.get("text"))
    if kind == "thinking":
        return bool(block.get("thinking"))
    return True
