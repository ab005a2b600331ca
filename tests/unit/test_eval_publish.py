"""Publishing eval quality: ``QualityStore`` round trips on SQLite and PostgreSQL, ``plan_publish``
ties run targets to deployments by ``served_by``, and ``relaygate eval publish`` writes what the
gateway then reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from relaygate.cli.main import app
from relaygate.config import load_config_text
from relaygate.config.quality_schema import PublishedQuality, QualityScore
from relaygate.evals.model import Case, CaseResult, GraderSpec, Margin, Suite
from relaygate.evals.publish import plan_publish, served_deployment
from relaygate.evals.report import compute_verdicts
from relaygate.evals.store import EvalStore, RunSummary
from relaygate.ledger.audit import AuditLog
from relaygate.ledger.migrate import open_database
from relaygate.ledger.quality_store import QualityStore
from relaygate.routing.quality import with_quality
from relaygate.routing.strategies import cheapest_non_inferior
from tests.unit.test_eval_report import results

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
CONFIG = """
providers: {up: {protocol: openai, base_url: "http://127.0.0.1:9/v1"}}
routes:
  chat:
    strategy: cheapest_non_inferior
    deployments:
      - {provider: up, model: big, id: inc-dep, price: {input: 3, output: 15}}
      - {provider: up, model: small, id: cand-dep, price: {input: 0.1, output: 0.4}}
      - {provider: up, model: other, id: other-dep}
  elsewhere: {deployments: [{provider: up, model: x}]}
"""


def score(verdict: str = "PASS", **kw: object) -> QualityScore:
    base = {"metric": "contains", "mean": 0.9, "ci_low": 0.8, "ci_high": 0.95, "n": 60}
    return QualityScore.model_validate({**base, "verdict": verdict, "incumbent": "inc-dep", **kw})


def test_store_round_trip_replaces_by_key_and_audits(engine: sa.Engine) -> None:
    store = QualityStore(engine, clock=lambda: T0)
    first = [
        PublishedQuality("chat", "cand-dep", "mt", score("FAIL", run_id="r1")),
        PublishedQuality("chat", "inc-dep", "mt", score("INCUMBENT", run_id="r1", ci_low=None, ci_high=None)),
        PublishedQuality("other", "cand-dep", "mt", score(run_id="r1")),
    ]
    stored = store.publish(first, actor="test")
    assert all(r.score.published_at == T0 for r in stored)
    assert store.all() == sorted(stored, key=lambda r: (r.route, r.deployment, r.suite))
    later = datetime(2026, 11, 30, tzinfo=UTC)
    store.publish(
        [PublishedQuality("chat", "cand-dep", "mt", score(run_id="r2", published_at=later))], actor="t"
    )
    chat = store.all("chat")
    assert [(r.deployment, r.score.verdict, r.score.run_id) for r in chat] == [
        ("cand-dep", "PASS", "r2"),
        ("inc-dep", "INCUMBENT", "r1"),
    ]
    assert chat[0].score.published_at == later and chat[1].score.ci_low is None
    assert chat[0].score == score(run_id="r2", published_at=later)  # every field survives the trip
    events = AuditLog(engine).list(kind="quality.")
    assert [e.kind for e in events] == ["quality.publish", "quality.publish"]
    assert events[0].subject == "chat,other" and events[0].details["run_ids"] == ["r1"]
    assert AuditLog(engine).verify().ok
    assert store.delete("chat", "inc-dep") == 1 and [r.deployment for r in store.all("chat")] == ["cand-dep"]
    assert store.publish([], actor="t") == []


def stored_run(store: EvalStore, run_id: str, fail_every: int = 0, n: int = 60) -> RunSummary:
    cases = tuple(Case(f"c{i:02d}", [{"role": "user", "content": f"q{i}"}]) for i in range(n))
    suite = Suite("smoke", cases, graders=(GraderSpec("contains"),), margins=(Margin("contains", 0.1),))
    store.open_run(run_id, suite, ["inc", "cand"])
    for r in results("inc", n) + results("cand", n, fail_every):
        store.save_result(run_id, r)
    summary = store.load_summary(run_id)
    assert summary is not None
    return summary


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    engine = open_database(url)
    stored_run(EvalStore(engine), "pass")
    stored_run(EvalStore(engine), "fail", fail_every=2)
    engine.dispose()
    return url


def test_plan_publish_ties_targets_to_deployments(db: str) -> None:
    cfg = load_config_text(CONFIG, "c.yaml")
    engine = open_database(db)
    try:
        summary = EvalStore(engine).load_summary("pass")
    finally:
        engine.dispose()
    assert summary is not None
    verdicts = compute_verdicts(summary, "inc", ["cand"], segments_by=None)
    plan = plan_publish(summary, "chat", cfg.routes["chat"], verdicts, now=T0)
    assert (plan.suite, plan.metric, plan.incumbent, plan.notes) == ("smoke", "contains", "inc-dep", [])
    got = {r.deployment: r.score for r in plan.records}
    assert got["inc-dep"].verdict == "INCUMBENT" and got["cand-dep"].verdict == "PASS"
    m = verdicts["cand"].metrics[0]
    assert (got["cand-dep"].mean, got["cand-dep"].ci_low, got["cand-dep"].n) == (
        m.candidate.mean,
        m.candidate.lo,
        m.candidate.n,
    )
    assert got["cand-dep"].run_id == "pass" and got["cand-dep"].incumbent == "inc-dep"
    # Published and merged, the cheaper candidate leads the route.
    merged = with_quality(cfg, plan.records)
    assert cheapest_non_inferior(merged.routes["chat"]).chosen == "cand-dep"

    with pytest.raises(ValueError, match="not a deployment of route elsewhere"):
        plan_publish(summary, "elsewhere", cfg.routes["elsewhere"], verdicts)
    with pytest.raises(ValueError, match="no scores for metric 'judge'"):
        plan_publish(summary, "chat", cfg.routes["chat"], verdicts, metric="judge")
    swapped = cfg.routes["chat"].model_copy(update={"incumbent": "other-dep"})
    assert "ignores these verdicts" in plan_publish(summary, "chat", swapped, verdicts).notes[0]


def test_a_target_that_failed_over_is_not_published() -> None:
    mixed = results("cand", 4)
    mixed[1].served_by = "other-dep"
    dep, why = served_deployment(mixed)
    assert dep is None and "several deployments" in why and "cand-dep x3" in why
    assert served_deployment([CaseResult("c", "t", None, error="boom")]) == (None, "no answered case")


def publish(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["eval", "publish", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.stdout, result.stderr


def test_cli_publish_dry_run_then_write(db: str, tmp_path: Path) -> None:
    config = tmp_path / "relaygate.yaml"
    config.write_text(CONFIG, "utf-8")
    common = ["--route", "chat", "--config", str(config), "--db", db]
    code, out, err = publish("pass", *common, "--dry-run", "--format", "json")
    assert code == 0, err
    assert {(r["deployment"], r["verdict"]) for r in json.loads(out)} == {
        ("inc-dep", "INCUMBENT"),
        ("cand-dep", "PASS"),
    }
    engine = open_database(db)
    try:
        assert QualityStore(engine).all() == []
        code, out, err = publish("fail", *common, "--suite", "smoke-v2")
        assert code == 0, err
        assert "cand-dep" in out and "FAIL" in out and "POST /admin/reload" in err
        rows = QualityStore(engine).all("chat")
        assert {(r.deployment, r.suite, r.score.verdict) for r in rows} == {
            ("inc-dep", "smoke-v2", "INCUMBENT"),
            ("cand-dep", "smoke-v2", "FAIL"),
        }
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["nope", "--route", "chat"], "no eval run 'nope'"),
        (["pass", "--route", "elsewhere"], "not a deployment of route elsewhere"),
        (["pass", "--route", "missing"], "unknown route 'missing'"),
    ],
)
def test_cli_publish_refuses(db: str, tmp_path: Path, args: list[str], fragment: str) -> None:
    config = tmp_path / "relaygate.yaml"
    config.write_text(CONFIG, "utf-8")
    code, out, err = publish(*args, "--config", str(config), "--db", db)
    assert code == 2 and fragment in " ".join((out + err).split()), out + err


DRILL_CONFIG = """
providers:
  big: {protocol: openai, base_url: "http://127.0.0.1:9/v1"}
  mid: {protocol: openai, base_url: "http://127.0.0.1:9/v1"}
  small: {protocol: openai, base_url: "http://127.0.0.1:9/v1"}
routes:
  chat:
    strategy: cheapest_non_inferior
    deployments:
      - {provider: big, model: m, id: inc-dep, price: {input: 3, output: 15}}
      - {provider: mid, model: m, id: mid-dep, price: {input: 1, output: 2}}
      - {provider: small, model: m, id: cand-dep, price: {input: 0.1, output: 0.4}}
auth: {mode: open}
"""


def test_drill_uses_and_shows_published_quality(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cut off the incumbent's provider: a priority reading would send its traffic to ``mid-dep``
    (next in config order); with ``cand-dep`` published non-inferior, the drill, like the
    gateway, picks the cheaper ``cand-dep``, and lists the published quality."""
    from relaygate.ledger.records import UsageRecord
    from relaygate.ledger.usage_store import UsageStore

    monkeypatch.setenv("COLUMNS", "250")
    config = tmp_path / "relaygate.yaml"
    config.write_text(DRILL_CONFIG, "utf-8")
    url = f"sqlite:///{tmp_path / 'd.db'}"
    engine = open_database(url)
    try:
        row = UsageRecord(request_id="r1", ts=datetime.now(UTC), endpoint="/v1/chat/completions", status=200)
        row.route, row.served_deployment, row.served_provider = "chat", "inc-dep", "big"
        row.prompt_tokens, row.completion_tokens = 1000, 1000
        UsageStore(engine).insert_usage([row])

        def drill(*extra: str) -> tuple[int, str]:
            args = ["drill", "--cutoff", "big", "--config", str(config), "--db", url, *extra]
            result = CliRunner().invoke(app, args)
            return result.exit_code, result.stdout

        code, out = drill("--format", "json")
        assert code == 0 and json.loads(out)["groups"][0]["replacement"] == "mid-dep"  # fail closed
        assert "quality" not in json.loads(out)
        QualityStore(engine).publish([PublishedQuality("chat", "cand-dep", "mt", score())], actor="t")
    finally:
        engine.dispose()
    code, out = drill("--format", "json")
    doc = json.loads(out)
    (group,) = doc["groups"]
    assert (
        group["replacement"] == "cand-dep" and "non-inferior to inc-dep on mt" in group["replacement_reason"]
    )
    assert group["new_usd_per_1m"] == pytest.approx(0.25)  # (1000 * 0.1 + 1000 * 0.4) / 2000
    assert [(q["deployment"], q["suite"], q["verdict"]) for q in doc["quality"]] == [
        ("cand-dep", "mt", "PASS")
    ]
    code, out = drill()
    assert code == 0 and "eval quality per deployment" in out and "0.900 [0.800, 0.950]" in out
