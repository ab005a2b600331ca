"""``relaygate keys`` through typer's CliRunner: stdout carries results only, stderr messages."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from relaygate.cli.keys import app
from relaygate.ledger.key_store import KeyStore
from relaygate.ledger.migrate import open_database


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("RELAYGATE_DB_URL", raising=False)
    monkeypatch.setenv("RELAYGATE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "160")
    return tmp_path / "home"


def run(*args: str) -> object:
    return CliRunner().invoke(app, list(args))


def lookup(url: str, plaintext: str) -> object:
    engine = open_database(url)
    try:
        return KeyStore(engine).lookup(plaintext)
    finally:
        engine.dispose()


def test_create_prints_only_the_key_on_stdout(home: Path) -> None:
    result = CliRunner().invoke(app, ["create", "--tenant", "acme", "--region", "EU", "--new-tenant"])
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"rg-[A-Za-z0-9_-]{43}\n", result.stdout)
    assert "acme" in result.stderr and "only once" in result.stderr
    plaintext = result.stdout.strip()
    assert (home / "relaygate.db").exists()  # $RELAYGATE_HOME created on first use
    info = lookup(f"sqlite:///{home / 'relaygate.db'}", plaintext)
    assert info is not None and info.tenant == "acme" and info.region == "EU"  # type: ignore[attr-defined]


def test_list_shows_prefix_never_the_key_and_revoke(home: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["create", "--tenant", "acme", "--new-tenant"]).stdout.strip()
    second = runner.invoke(
        app, ["create", "--tenant", "beta", "--region", "US", "--new-tenant"]
    ).stdout.strip()

    listed = runner.invoke(app, ["list"])
    assert listed.exit_code == 0
    ids = re.findall(r"key_[0-9a-f]{8}", listed.stdout)
    assert len(ids) == 2
    assert first[:8] in listed.stdout and second[:8] in listed.stdout
    assert first not in listed.stdout and second not in listed.stdout
    assert first[8:20] not in listed.stdout
    assert "acme" in listed.stdout and "beta" in listed.stdout and "US" in listed.stdout

    only_beta = runner.invoke(app, ["list", "--tenant", "beta"])
    assert "beta" in only_beta.stdout and "acme" not in only_beta.stdout

    acme_id = re.findall(r"key_[0-9a-f]{8}", runner.invoke(app, ["list", "--tenant", "acme"]).stdout)[0]
    revoked = runner.invoke(app, ["revoke", acme_id])
    assert revoked.exit_code == 0 and revoked.stdout == ""
    assert acme_id in revoked.stderr
    assert "revoked" in runner.invoke(app, ["list", "--tenant", "acme"]).stdout
    assert lookup(f"sqlite:///{home / 'relaygate.db'}", first) is None

    again = runner.invoke(app, ["revoke", acme_id])
    assert again.exit_code == 1
    assert "no active key" in again.stderr


def test_db_option_and_env_url(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = f"sqlite:///{tmp_path / 'explicit.db'}"
    key = run("create", "--tenant", "acme", "--new-tenant", "--db", explicit).stdout.strip()  # type: ignore[attr-defined]
    assert lookup(explicit, key) is not None
    assert not (home / "relaygate.db").exists()

    from_env = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("RELAYGATE_DB_URL", from_env)
    key = run("create", "--tenant", "beta", "--new-tenant").stdout.strip()  # type: ignore[attr-defined]
    assert lookup(from_env, key) is not None


def test_usage_errors(home: Path) -> None:
    missing = CliRunner().invoke(app, ["create"])
    assert missing.exit_code == 2
    bad = CliRunner().invoke(app, ["create", "--tenant", " padded", "--new-tenant"])
    assert bad.exit_code == 2 and bad.stdout == ""
    open_database(f"sqlite:///{home / 'relaygate.db'}").dispose()
    empty = CliRunner().invoke(app, ["list"])
    assert empty.exit_code == 0 and "no keys" in empty.stderr


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///{tmp}/not-a-dir/x.db",  # parent is a file
        "nonsense://nowhere",  # no such dialect
        "postgresql+psycopg://postgres@127.0.0.1:1/x?connect_timeout=2",  # nothing listens on port 1
    ],
)
def test_unusable_database_is_a_one_line_error(home: Path, tmp_path: Path, url: str) -> None:
    if url.startswith("postgresql"):
        pytest.importorskip("psycopg")
    (tmp_path / "not-a-dir").write_text("file")
    result = CliRunner().invoke(app, ["list", "--db", url.format(tmp=tmp_path)])
    assert result.exit_code == 4, result.output
    assert "database error" in result.stderr
    assert result.stdout == ""


def _config(tmp_path: Path, tenants: str = "acme: {region: EU}") -> str:
    path = tmp_path / "relaygate.yaml"
    path.write_text(f"storage: {{url: 'sqlite:///{tmp_path / 'cfg.db'}'}}\ntenants: {{{tenants}}}\n")
    return str(path)


@pytest.mark.parametrize("region", ["Mars", "XX", "Europe", "us-east-1"])
def test_create_rejects_a_region_that_is_not_iso_or_a_group(home: Path, region: str) -> None:
    result = CliRunner().invoke(app, ["create", "--tenant", "acme", "--new-tenant", "--region", region])
    assert result.exit_code == 2, result.output
    assert "--region" in result.stderr and "ISO 3166-1 alpha-2" in result.stderr
    assert result.stdout == "" and not (home / "relaygate.db").exists()


def test_create_refuses_a_tenant_nobody_knows(home: Path, tmp_path: Path) -> None:
    """A typo must not mint a key for a new tenant outside the real tenant's budget and policy."""
    cfg = _config(tmp_path, "acme: {region: EU}, beta: {}")
    result = CliRunner().invoke(app, ["create", "--tenant", "acmee", "--config", cfg])
    assert result.exit_code == 2, result.output
    assert "unknown tenant 'acmee'" in result.stderr and "acme, beta" in result.stderr
    assert "--new-tenant" in result.stderr and result.stdout == ""
    assert "acmee" not in CliRunner().invoke(app, ["list", "--config", cfg]).stdout

    no_config = CliRunner().invoke(app, ["create", "--tenant", "ghost"])
    assert no_config.exit_code == 2 and "unknown tenant 'ghost'" in no_config.stderr
    assert "no config" in no_config.stderr


def test_create_accepts_config_database_and_explicitly_new_tenants(home: Path, tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    from_config = CliRunner().invoke(app, ["create", "--tenant", "acme", "--config", cfg])
    assert from_config.exit_code == 0, from_config.output
    new = CliRunner().invoke(app, ["create", "--tenant", "newco", "--new-tenant", "--region", "us"])
    assert new.exit_code == 0, new.output
    # newco is now a database tenant: no flag needed, and it is named among the known ones
    again = CliRunner().invoke(app, ["create", "--tenant", "newco"])
    assert again.exit_code == 0, again.output
    typo = CliRunner().invoke(app, ["create", "--tenant", "newc0"])
    assert typo.exit_code == 2 and "known: newco" in typo.stderr
    listed = CliRunner().invoke(app, ["list"]).stdout
    assert listed.count("newco") == 2 and "US" in listed


@pytest.mark.parametrize("command", [["list"], ["revoke", "key_00000000"]])
def test_read_commands_do_not_create_a_missing_database(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "nonexistent" / "x.db"
    result = CliRunner().invoke(app, [*command, "--db", f"sqlite:///{path}"])
    assert result.exit_code == 4, result.output
    assert f"no database at {path}" in result.stderr
    assert not path.parent.exists()


@pytest.mark.parametrize(
    ("url", "module"),
    [
        ("postgresql+psycopg://u@127.0.0.1:1/x", "psycopg"),
        ("postgresql+psycopg2://u@127.0.0.1:1/x", "psycopg2"),
    ],
)
def test_a_missing_database_driver_names_the_fix(
    home: Path, monkeypatch: pytest.MonkeyPatch, url: str, module: str
) -> None:
    """Not a ModuleNotFoundError traceback with exit 1: one line, exit 4, how to install it."""
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    result = CliRunner().invoke(app, ["list", "--db", url])
    assert result.exit_code == 4, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    line = " ".join(result.stderr.split())
    assert "database error" in line and f"'{module}'" in line
    assert "pip install 'relaygate[postgres]'" in line
