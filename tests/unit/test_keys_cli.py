"""``relaygate keys`` through typer's CliRunner: stdout carries results only, stderr messages."""

from __future__ import annotations

import re
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
    result = CliRunner().invoke(app, ["create", "--tenant", "acme", "--region", "EU"])
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"rg-[A-Za-z0-9_-]{43}\n", result.stdout)
    assert "acme" in result.stderr and "only once" in result.stderr
    plaintext = result.stdout.strip()
    assert (home / "relaygate.db").exists()  # $RELAYGATE_HOME created on first use
    info = lookup(f"sqlite:///{home / 'relaygate.db'}", plaintext)
    assert info is not None and info.tenant == "acme" and info.region == "EU"  # type: ignore[attr-defined]


def test_list_shows_prefix_never_the_key_and_revoke(home: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["create", "--tenant", "acme"]).stdout.strip()
    second = runner.invoke(app, ["create", "--tenant", "beta", "--region", "US"]).stdout.strip()

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
    key = run("create", "--tenant", "acme", "--db", explicit).stdout.strip()  # type: ignore[attr-defined]
    assert lookup(explicit, key) is not None
    assert not (home / "relaygate.db").exists()

    from_env = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("RELAYGATE_DB_URL", from_env)
    key = run("create", "--tenant", "beta").stdout.strip()  # type: ignore[attr-defined]
    assert lookup(from_env, key) is not None


def test_usage_errors(home: Path) -> None:
    missing = CliRunner().invoke(app, ["create"])
    assert missing.exit_code == 2
    bad = CliRunner().invoke(app, ["create", "--tenant", " padded"])
    assert bad.exit_code == 2 and bad.stdout == ""
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
