"""The seam between routing and providers: a provider sends one chat request upstream.

A provider returns an ``UpstreamResponse`` with a 2xx status or raises an ``UpstreamError``
already classified (``providers/errors.py``). Routing never sees HTTP details.
"""

from __future__ import annotations

from typing import Protocol

from relaygate.config.schema import DeploymentConfig, Timeouts
from relaygate.protocols.openai import ChatRequest
from relaygate.providers.transport import UpstreamResponse

__all__ = ["Provider"]


class Provider(Protocol):
    name: str

    @property
    def timeouts(self) -> Timeouts:
        """The provider's upstream timeouts (milliseconds; routing applies ``first_token_ms``)."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def chat(
        self,
        deployment: DeploymentConfig,
        request: ChatRequest,
        *,
        stream_usage: bool,
        region: str | None = None,
    ) -> UpstreamResponse:
        """Send a Chat Completions request for ``deployment``.

        ``stream_usage``: ask the upstream for a final usage chunk on a stream. ``region``: the
        tenant region the request comes from (selects a regional endpoint when configured).
        Raises ``UpstreamError`` (any non-2xx, classified) or its timeout/connection subclasses.
        """
        ...
