"""Adapter for OpenAI Chat Completions compatible upstreams.

Covers OpenAI, DeepSeek, Qwen (DashScope compatible mode), Moonshot, Zhipu, vLLM, Ollama,
llama.cpp server and ``relaygate sim``: ``POST {base_url}/chat/completions`` with
``Authorization: Bearer <key>`` (https://platform.openai.com/docs/api-reference/chat/create).
Same-protocol requests pass through: only the top-level ``model`` value is rewritten (and
``stream_options.include_usage`` added when the ledger needs usage on a stream).
"""

from __future__ import annotations

import logging

import orjson

from relaygate.config.schema import DeploymentConfig, OpenAIProvider, Timeouts
from relaygate.protocols.openai import ChatRequest, rewrite_model, with_stream_usage
from relaygate.providers.errors import classify_http_error
from relaygate.providers.profiles import apply_profile, get_profile
from relaygate.providers.translated import credential_headers
from relaygate.providers.transport import Transport, UpstreamResponse

__all__ = ["OpenAICompatProvider"]

log = logging.getLogger("relaygate.providers")


class OpenAICompatProvider:
    """One OpenAI-compatible account. ``base_url`` ends before ``/chat/completions``."""

    def __init__(self, name: str, config: OpenAIProvider, *, base_url: str | None = None) -> None:
        self.name = name
        self.config = config
        self.base_url = base_url or config.base_url
        self.transport = Transport(config.timeouts, config.max_connections)
        self._regional = {k.upper(): v.rstrip("/") for k, v in config.region_base_urls.items()}
        self._headers = {"content-type": "application/json", **config.headers}
        self.profile = get_profile(config.profile) if config.profile else None
        self._headers.update(credential_headers(name, config.api_key_env, "authorization", "Bearer "))

    @property
    def timeouts(self) -> Timeouts:
        """This provider's upstream timeouts (milliseconds)."""
        return self.transport.timeouts

    async def start(self) -> None:
        await self.transport.start()

    async def close(self) -> None:
        await self.transport.close()

    def build_body(self, deployment: DeploymentConfig, request: ChatRequest, *, stream_usage: bool) -> bytes:
        """The upstream body: the client's bytes with the model rewritten (pure).

        With a ``profile`` the request is checked against it first (``InvalidRequestError`` for
        a documented range or support violation); the body is re-serialised only when the
        profile renames or removes something.
        """
        body = request.body
        if self.profile is not None:
            changed = apply_profile(self.profile, deployment.model, request.data or orjson.loads(body))
            if changed is not None:
                body = orjson.dumps({**changed, "model": deployment.model})
        if body is request.body and request.model != deployment.model:
            body = rewrite_model(body, deployment.model)
        if request.stream and stream_usage and self.config.stream_usage and not request.include_usage:
            body = with_stream_usage(body, "stream_options" in request.data)
        return body

    async def chat(
        self,
        deployment: DeploymentConfig,
        request: ChatRequest,
        *,
        stream_usage: bool,
        region: str | None = None,
    ) -> UpstreamResponse:
        body = self.build_body(deployment, request, stream_usage=stream_usage)
        base = (
            self._regional.get(region.upper(), self.base_url) if region and self._regional else self.base_url
        )
        resp = await self.transport.post(f"{base}/chat/completions", self._headers, body)
        if resp.status < 300:
            return resp
        try:
            err_body = await resp.read(1024 * 1024)
        finally:
            resp.release()
        raise classify_http_error(resp.status, resp.headers, err_body)
