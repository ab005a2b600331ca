"""``relaygate audit list|verify`` through typer's CliRunner."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner, Result

from relaygate.cli.audit import app
from relaygate.cli.main import app as main_app
from relaygate.ledger.audit import AuditLog
from relaygate.ledger.migrate import open_database


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[sa.Engine]:
    """The default database ($RELAYGATE_HOME) with five events, two of them three hours old."""
    monkeypatch.delenv("RELAYGATE_DB_URL", raising=False)
    monkeypatch.setenv("RELAYGATE_HOME", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "250")
    eng = open_database(f"sqlite:///{tmp_path / 'relaygate.db'}")
    now = datetime.now(UTC)
    times = iter([now - timedelta(hours=3), now - timedelta(hours=3), now, now, now])
    log = AuditLog(eng, clock=lambda: next(times))
    log.append("key.create", "cli:alice", "key_00000001", {"tenant": "acme"})
    log.append("config.reload", "gateway", "relaygate.yaml", {"routes": 3})
    log.append("cutoff.set", "cli:alice", "openai:CN", {"reason": "export rules"})
    log.append("cutoff.detected", "gateway", "gemini:EU", {"reason": "HTTP 451"})
    log.append("key.revoke", "admin-api", "key_00000001", {})
    yield eng
    eng.dispose()


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def ids(stdout: str) -> list[int]:
    return [int(line.split("│")[1]) for line in stdout.splitlines() if line.startswith("│")]


def test_list_all_and_filters(engine: sa.Engine) -> None:
    result = run("list")
    assert result.exit_code == 0, result.output
    assert ids(result.stdout) == [1, 2, 3, 4, 5]
    assert "export rules" in result.stdout and "cli:alice" in result.stdout
    assert ids(run("list", "--kind", "cutoff.").stdout) == [3, 4]
    assert ids(run("list", "--kind", "key").stdout) == [1, 5]
    assert ids(run("list", "--since", "1h").stdout) == [3, 4, 5]
    assert ids(run("list", "--since", "1h", "--kind", "key.").stdout) == [5]
    assert ids(run("list", "--limit", "2").stdout) == [4, 5]


def test_list_json(engine: sa.Engine) -> None:
    events = json.loads(run("list", "--json", "--kind", "cutoff.detected").stdout)
    assert len(events) == 1
    event = events[0]
    assert (event["id"], event["kind"], event["actor"], event["subject"]) == (
        4,
        "cutoff.detected",
        "gateway",
        "gemini:EU",
    )
    assert event["details"] == {"reason": "HTTP 451"} and len(event["hash"]) == 64
    assert event["prev_hash"] == AuditLog(engine).list()[2].hash


def test_list_nothing_and_bad_since(engine: sa.Engine) -> None:
    empty = run("list", "--kind", "tenant.")
    assert empty.exit_code == 0 and empty.stdout == "" and "no audit events" in empty.stderr
    bad = run("list", "--since", "yesterday")
    assert bad.exit_code == 2 and "--since" in bad.stderr


def test_verify_ok(engine: sa.Engine) -> None:
    result = run("verify")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "ok: 5 events" in result.stderr
    assert AuditLog(engine).list()[-1].hash in result.stderr


def test_verify_empty_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    open_database(url).dispose()
    result = run("verify", "--db", url)
    assert result.exit_code == 0 and "ok: 0 events" in result.stderr


@pytest.mark.parametrize("command", [["verify"], ["list"]])
def test_a_missing_database_is_an_error_not_an_empty_chain(tmp_path: Path, command: list[str]) -> None:
    """A mistyped --db must not create a database and answer "ok: 0 events" (a false all-clear)."""
    path = tmp_path / "nonexistent" / "dir" / "x.db"
    result = run(*command, "--db", f"sqlite:///{path}")
    assert result.exit_code == 4, result.output
    assert f"no database at {path}" in result.stderr and "ok" not in result.stderr
    assert not path.parent.exists()


@pytest.mark.parametrize(
    ("statement", "bad_id", "word"),
    [
        ('UPDATE audit_events SET details = \'{"tenant": "globex"}\' WHERE id = 1', 1, "edited"),
        ("DELETE FROM audit_events WHERE id = 3", 3, "missing"),
        ("UPDATE audit_events SET id = 99 WHERE id = 2", 2, "missing"),
    ],
)
def test_verify_names_the_first_bad_event(engine: sa.Engine, statement: str, bad_id: int, word: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(statement))
    result = run("verify")
    assert result.exit_code == 1
    assert f"broken at event {bad_id}" in result.stderr and word in result.stderr
    assert result.stdout == ""


def test_verify_detects_swapped_events(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_events SET id = 100 WHERE id = 2"))
        conn.execute(sa.text("UPDATE audit_events SET id = 2 WHERE id = 4"))
        conn.execute(sa.text("UPDATE audit_events SET id = 4 WHERE id = 100"))
    result = run("verify")
    assert result.exit_code == 1 and "broken at event 2" in result.stderr


def test_registered_in_main_app(engine: sa.Engine) -> None:
    result = CliRunner().invoke(main_app, ["audit", "verify"])
    assert result.exit_code == 0 and "ok: 5 events" in result.stderr
