"""``relaygate cutoff`` through typer's CliRunner: tables/JSON on stdout, messages on stderr."""

from __future__ import annotations

import getpass
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from relaygate.cli.common import cli_actor
from relaygate.cli.cutoff import app, parse_target
from relaygate.cli.main import app as main_app
from relaygate.ledger.audit import AuditLog
from relaygate.ledger.cutoff_store import CutoffStore
from relaygate.ledger.migrate import open_database


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("RELAYGATE_DB_URL", raising=False)
    monkeypatch.delenv("RELAYGATE_CONFIG", raising=False)
    monkeypatch.setenv("RELAYGATE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path / "home"


PROVIDERS = "providers:\n  openai: {protocol: openai, base_url: 'http://127.0.0.1:9/v1'}\n"


def url(home: Path) -> str:
    return f"sqlite:///{home / 'relaygate.db'}"


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("openai:cn", ("openai", "CN")),
        ("openai", ("openai", "*")),
        ("x:*", ("x", "*")),
    ],
)
def test_parse_target(text: str, expected: tuple[str, str]) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize(
    "text", [":CN", "", "openai:C N", "openai:a:b", "openai:", "openai: ", "openai:Narnia", "openai:XX"]
)
def test_parse_target_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_target(text)


def test_parse_target_lenient_for_clearing_old_rows() -> None:
    assert parse_target("openai:narnia", strict=False) == ("openai", "NARNIA")


def test_set_list_clear(home: Path) -> None:
    result = run("set", "openai:cn", "--reason", "export rules")
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and "openai:CN" in result.stderr and "export rules" in result.stderr
    assert run("set", "deepseek", "--reason", "tenant contract", "--expires", "2h").exit_code == 0

    listed = run("list")
    assert listed.exit_code == 0
    lines = listed.stdout.splitlines()
    assert any(
        "openai" in line and "CN" in line and "export rules" in line and "active" in line for line in lines
    )
    assert any("deepseek" in line and "*" in line for line in lines)

    engine = open_database(url(home))
    try:
        store = CutoffStore(engine)
        (deepseek,) = [c for c in store.active() if c.provider == "deepseek"]
        assert deepseek.expires_at is not None
        assert timedelta(minutes=119) < deepseek.expires_at - datetime.now(UTC) <= timedelta(hours=2)
        assert deepseek.created_by == f"cli:{getpass.getuser()}"
        version = store.version()
    finally:
        engine.dispose()

    cleared = run("clear", "openai:CN", "--reason", "lifted")
    assert cleared.exit_code == 0 and cleared.stdout == "" and "cleared openai:CN" in cleared.stderr
    assert "openai" not in run("list").stdout
    history = run("list", "--all").stdout
    assert "openai" in history and "cleared" in history

    again = run("clear", "openai:CN")
    assert again.exit_code == 1 and "no active cutoff for openai:CN" in again.stderr

    engine = open_database(url(home))
    try:
        assert CutoffStore(engine).version() == version + 1
        events = AuditLog(engine).list()
        assert [e.kind for e in events] == ["cutoff.set", "cutoff.set", "cutoff.clear"]
        assert {e.actor for e in events} == {cli_actor()}
        assert events[-1].details["clear_reason"] == "lifted"
    finally:
        engine.dispose()


def test_list_json(home: Path) -> None:
    run("set", "gemini:EU", "--reason", "r")
    run("set", "gemini:US", "--reason", "r2")
    run("clear", "gemini:US")
    active = json.loads(run("list", "--json").stdout)
    assert [(c["provider"], c["region"], c["source"]) for c in active] == [("gemini", "EU", "operator")]
    assert active[0]["cleared_at"] is None and active[0]["created_at"].endswith("+00:00")
    every = json.loads(run("list", "--all", "--json").stdout)
    assert [c["region"] for c in every] == ["US", "EU"]
    assert every[0]["cleared_by"] == cli_actor()


def test_empty_list(home: Path) -> None:
    open_database(url(home)).dispose()
    result = run("list")
    assert result.exit_code == 0 and result.stdout == "" and "no cutoffs" in result.stderr
    assert json.loads(run("list", "--json").stdout) == []


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["set", "openai:C N", "--reason", "r"], "PROVIDER[:REGION]"),
        (["set", ":CN", "--reason", "r"], "PROVIDER[:REGION]"),
        (["set", "openai", "--reason", " "], "--reason"),
        (["set", "openai", "--reason", "r", "--expires", "soon"], "--expires"),
        (["set", "openai"], "--reason"),
        (["clear", "openai:!!"], "PROVIDER[:REGION]"),
    ],
)
def test_bad_arguments_exit_2(home: Path, args: list[str], hint: str) -> None:
    result = run(*args)
    assert result.exit_code == 2
    assert hint in result.stderr and result.stdout == ""


def test_db_option(home: Path, tmp_path: Path) -> None:
    explicit = f"sqlite:///{tmp_path / 'explicit.db'}"
    assert run("set", "openai:CN", "--reason", "r", "--db", explicit).exit_code == 0
    assert not (home / "relaygate.db").exists()
    assert "openai" in run("list", "--db", explicit).stdout


def test_config_storage_url_is_the_default_database(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--config`` (or $RELAYGATE_CONFIG) points the CLI at the database ``serve`` uses;
    ``--db`` still wins."""
    shared = tmp_path / "shared.db"
    cfg = tmp_path / "relaygate.yaml"
    cfg.write_text(f"storage:\n  url: sqlite:///{shared}\n{PROVIDERS}")
    assert run("set", "openai:CN", "--reason", "r", "--config", str(cfg)).exit_code == 0
    assert shared.exists() and not (home / "relaygate.db").exists()
    monkeypatch.setenv("RELAYGATE_CONFIG", str(cfg))
    assert "openai" in run("list").stdout
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert "openai" not in run("list", "--db", other).stdout


def test_bad_config_exits_2_naming_the_field(home: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "relaygate.yaml"
    cfg.write_text("storage:\n  uri: sqlite://\n")
    result = run("list", "--config", str(cfg))
    assert result.exit_code == 2 and "config error" in result.stderr
    assert "relaygate.yaml:2" in result.stderr and "uri" in result.stderr


def test_database_failure_exits_4(home: Path) -> None:
    result = run("list", "--db", "nonsense://x")
    assert result.exit_code == 4 and "database error" in result.stderr


def test_registered_in_main_app(home: Path) -> None:
    result = CliRunner().invoke(main_app, ["cutoff", "set", "openai:CN", "--reason", "r"])
    assert result.exit_code == 0, result.output
    assert "openai" in CliRunner().invoke(main_app, ["cutoff", "list"]).stdout


def test_actor_falls_back_when_the_login_name_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_user() -> str:
        raise OSError("no login name")

    monkeypatch.setattr(getpass, "getuser", no_user)
    assert cli_actor() == "cli:unknown"


def test_unreachable_redis_still_sets_and_clears_and_says_when_replicas_see_it(
    home: Path, tmp_path: Path
) -> None:
    """The database is the source of truth: a Redis outage is a warning on stderr, exit 0."""
    db = tmp_path / "shared.db"
    cfg = tmp_path / "relaygate.yaml"
    cfg.write_text(
        f"storage: {{url: 'sqlite:///{db}'}}\n"
        "cutoffs: {poll_interval_s: 7}\n"
        "state: {backend: redis, redis_url: 'redis://127.0.0.1:9/0', connect_timeout_ms: 200}\n" + PROVIDERS
    )
    for args in (["set", "openai:CN", "--reason", "r"], ["clear", "openai:CN"]):
        result = run(*args, "--config", str(cfg))
        assert result.exit_code == 0, result.output
        assert "could not notify the replicas" in result.stderr
        assert "next database poll" in result.stderr and "7 s" in result.stderr
    engine = open_database(f"sqlite:///{db}")
    try:
        (row,) = CutoffStore(engine).history()
        assert row.cleared_at is not None
    finally:
        engine.dispose()


def test_memory_state_config_publishes_nothing(home: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "relaygate.yaml"
    cfg.write_text(f"storage: {{url: 'sqlite:///{tmp_path / 's.db'}'}}\n{PROVIDERS}")
    result = run("set", "openai:CN", "--reason", "r", "--config", str(cfg))
    assert result.exit_code == 0 and "Redis" not in result.stderr


@pytest.mark.parametrize("region", ["Narnia", "XX", "Europe", "us-east-1"])
def test_set_rejects_a_region_that_is_not_iso_or_a_group(home: Path, region: str) -> None:
    """A stored typo (NARNIA) would cut nothing off, silently."""
    result = run("set", f"openai:{region}", "--reason", "r")
    assert result.exit_code == 2, result.output
    assert "ISO 3166-1 alpha-2" in result.stderr and result.stdout == ""
    assert not (home / "relaygate.db").exists()


def test_set_refuses_a_provider_the_config_does_not_define(home: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "relaygate.yaml"
    cfg.write_text(
        f"storage: {{url: 'sqlite:///{tmp_path / 's.db'}'}}\n{PROVIDERS}"
        "  deepseek: {protocol: openai, base_url: 'http://127.0.0.1:9/v1'}\n"
    )
    result = run("set", "nosuchprov:CN", "--reason", "r", "--config", str(cfg))
    assert result.exit_code == 2, result.output
    text = " ".join(result.stderr.split())
    assert "unknown provider 'nosuchprov'" in text and "deepseek, openai" in text
    assert not (tmp_path / "s.db").exists()
    assert run("set", "deepseek:CN", "--reason", "r", "--config", str(cfg)).exit_code == 0


def test_set_without_a_config_warns_that_the_provider_is_unchecked(home: Path) -> None:
    result = run("set", "nosuchprov:CN", "--reason", "r")
    assert result.exit_code == 0, result.output
    text = " ".join(result.stderr.split())
    assert "warning" in text and "'nosuchprov' is not checked" in text


@pytest.mark.parametrize("command", [["list"], ["list", "--all", "--json"], ["clear", "openai:CN"]])
def test_read_commands_do_not_create_a_missing_database(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "nonexistent" / "x.db"
    result = run(*command, "--db", f"sqlite:///{path}")
    assert result.exit_code == 4, result.output
    assert f"no database at {path}" in result.stderr and result.stdout == ""
    assert not path.parent.exists()


def test_clear_still_lifts_a_row_stored_before_regions_were_checked(home: Path) -> None:
    engine = open_database(url(home))
    try:
        CutoffStore(engine).set("openai", "NARNIA", "old typo", "operator", None, actor="cli:x")
    finally:
        engine.dispose()
    result = run("clear", "openai:narnia")
    assert result.exit_code == 0, result.output
    assert json.loads(run("list", "--json").stdout) == []
