"""``relaygate eval compare`` on runs stored in a database: the decision first, then the evidence,
the four report files (with a SHA-256 manifest that matches them), and the exit code of the worst
verdict (0 PASS, 1 FAIL, 2 bad arguments, 3 INCONCLUSIVE)."""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from relaygate.cli.main import app
from relaygate.evals.model import Case, GraderSpec, Margin, Suite
from relaygate.evals.store import EvalStore
from relaygate.ledger.migrate import open_database
from tests.unit.test_eval_report import results

REPORTS = ["junit.xml", "manifest.json", "report.html", "report.json"]


def _lang(i: int) -> str:
    return "en" if i % 2 else "fr"


@pytest.fixture
def db(tmp_path: Path) -> str:
    """Run ``three`` (60 cases, tagged lang=en/fr): ``inc``; ``good`` equal to it; ``bad`` failing
    every other case. Run ``few`` (6 cases): ``cand`` fails two, so nothing is decided."""
    url = f"sqlite:///{tmp_path / 'evals.db'}"
    engine = open_database(url)
    store = EvalStore(engine)
    plan = {"three": (60, {"inc": 0, "good": 0, "bad": 2}), "few": (6, {"inc": 0, "cand": 3})}
    for run_id, (n, targets) in plan.items():
        cases = tuple(
            Case(f"c{i:02d}", [{"role": "user", "content": f"q{i}"}], tags={"lang": _lang(i)})
            for i in range(n)
        )
        margins = (Margin("contains", 0.1),)
        suite = Suite(run_id, cases, graders=(GraderSpec("contains"),), margins=margins)
        store.open_run(run_id, suite, list(targets))
        for target, fail_every in targets.items():
            for r in results(target, n, fail_every):
                store.save_result(run_id, r, tags={"lang": _lang(int(r.case_id[1:]))})
        store.set_status(run_id, "complete")
    engine.dispose()
    return url


def compare(db: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["eval", "compare", "--db", db, *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.stdout, result.stderr


def test_pass_writes_reports_and_prints_the_verdict_first(db: str, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    code, stdout, stderr = compare(
        db, "--run-id", "three", "--incumbent", "inc", "--candidate", "good", "--out", str(out)
    )
    assert code == 0, stdout + stderr
    assert sorted(p.name for p in out.iterdir()) == REPORTS
    verdict_at, evidence_at = stdout.index("good vs inc"), stdout.index("suite three, run three")
    assert verdict_at < evidence_at and "PASS" in stdout[verdict_at:evidence_at]
    assert "[" in stdout[verdict_at:evidence_at]  # confidence intervals beside each figure
    assert "overall: PASS" in stderr and str(out) in stderr.replace("\n", "")
    manifest = json.loads((out / "manifest.json").read_text("utf-8"))
    assert manifest["algorithm"] == "sha256"
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    doc = json.loads((out / "report.json").read_text("utf-8"))
    assert doc["overall"] == "PASS" and doc["incumbent"] == "inc" and set(doc["verdicts"]) == {"good"}
    html = (out / "report.html").read_text("utf-8")
    assert html.index("PASS") < html.index("inc")  # the decision before the evidence


def test_two_candidates_exit_with_the_worst_verdict(db: str, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    args = ["--run-id", "three", "--incumbent", "inc", "--candidate", "good", "--candidate", "bad"]
    code, stdout, _ = compare(db, *args, "--out", str(out), "--format", "json")
    assert code == 1
    doc = json.loads(stdout)
    assert doc["overall"] == "FAIL" and doc["incumbent"] == "inc"
    assert {k: v["status"] for k, v in doc["verdicts"].items()} == {"good": "PASS", "bad": "FAIL"}
    metric = doc["verdicts"]["bad"]["metrics"][0]
    assert metric["metric"] == "contains" and metric["diff"]["hi"] < -0.1  # the whole CI below -delta
    assert doc["targets"]["bad"]["pass_rates"]["contains"] == 0.5
    assert sorted(doc["reports"]) == REPORTS and all(Path(p).is_file() for p in doc["reports"].values())
    root = ET.parse(out / "junit.xml").getroot()
    failed = [tc.get("name") for tc in root.iter("testcase") if tc.get("classname") == "verdict.bad"]
    assert failed == ["contains", "overall"]
    assert all(
        tc.find("failure") is not None for tc in root.iter("testcase") if tc.get("classname") == "verdict.bad"
    )
    code_table, table, _ = compare(db, *args, "--out", str(tmp_path / "rep2"))
    assert code_table == 1 and table.index("good vs inc") < table.index("bad vs inc") < table.index("suite")


def test_inconclusive_reports_n_more(db: str, tmp_path: Path) -> None:
    args = ["--run-id", "few", "--incumbent", "inc", "--candidate", "cand", "--out", str(tmp_path / "r")]
    code, stdout, _ = compare(db, *args, "--format", "json")
    assert code == 3
    v = json.loads(stdout)["verdicts"]["cand"]
    assert v["status"] == "INCONCLUSIVE" and v["n_more"] is not None and v["n_more"] > 0
    code_table, _, stderr = compare(db, *args)
    assert code_table == 3 and f"about {v['n_more']} more cases" in stderr


def test_segments_by_tag(db: str, tmp_path: Path) -> None:
    code, stdout, _ = compare(
        db,
        *("--run-id", "three", "--incumbent", "inc", "--candidate", "bad"),
        *("--segment-by", "lang", "--format", "json", "--out", str(tmp_path / "r")),
    )
    assert code == 1
    segments = json.loads(stdout)["verdicts"]["bad"]["segments"]
    assert [(s["key"], s["value"], s["n_cases"]) for s in segments] == [
        ("lang", "en", 30),
        ("lang", "fr", 30),
    ]


def test_default_out_folder(db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, _ = compare(db, "--run-id", "three", "--incumbent", "inc", "--candidate", "good")
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "eval-reports" / "three").iterdir()) == REPORTS


@pytest.mark.parametrize(
    "extra",
    [
        ["--run-id", "nope", "--incumbent", "inc", "--candidate", "good"],  # no such run
        ["--run-id", "three", "--incumbent", "inc", "--candidate", "other"],  # not a target
        ["--run-id", "three", "--incumbent", "other", "--candidate", "good"],
        ["--run-id", "three", "--incumbent", "inc", "--candidate", "inc"],  # itself
        ["--run-id", "three", "--incumbent", "inc", "--candidate", "good", "--format", "xml"],
        ["--run-id", "three", "--incumbent", "inc"],  # no candidate
    ],
)
def test_bad_arguments_exit_2(db: str, tmp_path: Path, extra: list[str]) -> None:
    out = tmp_path / "rep"
    code, stdout, stderr = compare(db, *extra, "--out", str(out))
    assert code == 2, stdout + stderr
    assert not out.exists()  # nothing written for a comparison that could not be made
