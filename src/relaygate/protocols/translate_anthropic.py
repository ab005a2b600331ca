"""Translation between OpenAI Chat Completions and Anthropic Messages: the one import point.

Inside the gateway everything is OpenAI-shaped; these pure functions translate at the edges.

Inbound (an Anthropic SDK client -> the gateway), in ``translate_anthropic_in``:
``anthropic_request_to_openai``, ``openai_response_to_anthropic``, and the stream translator
``OpenAIToAnthropicStream``.
Outbound (the gateway -> an Anthropic-protocol upstream), in ``translate_anthropic_out``:
``openai_request_to_anthropic``, ``anthropic_response_to_openai``, and ``AnthropicToOpenAIStream``.
Both stream translators live in ``translate_anthropic_stream``; the shared stop-reason, usage
and error maps in ``protocols.anthropic``.
"""

from __future__ import annotations

from relaygate.protocols.translate_anthropic_in import (
    anthropic_request_to_openai,
    openai_response_to_anthropic,
)
from relaygate.protocols.translate_anthropic_out import (
    anthropic_response_to_openai,
    openai_request_to_anthropic,
)
from relaygate.protocols.translate_anthropic_stream import AnthropicToOpenAIStream, OpenAIToAnthropicStream

__all__ = [
    "AnthropicToOpenAIStream",
    "OpenAIToAnthropicStream",
    "anthropic_request_to_openai",
    "anthropic_response_to_openai",
    "openai_request_to_anthropic",
    "openai_response_to_anthropic",
]
