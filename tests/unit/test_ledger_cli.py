"""``relaygate usage`` through typer's CliRunner, and its duration parser."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from relaygate.cli.usage import parse_duration, usage
from relaygate.ledger.migrate import open_database
from relaygate.ledger.records import UsageRecord
from relaygate.ledger.usage_store import UsageStore


@pytest.fixture
def app() -> typer.Typer:
    cli = typer.Typer()
    cli.command("usage")(usage)
    cli.command("version")(lambda: None)  # two commands, so `usage` is a subcommand as in main.py
    return cli


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("RELAYGATE_DB_URL", raising=False)
    monkeypatch.setenv("RELAYGATE_HOME", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "200")
    url = f"sqlite:///{tmp_path / 'relaygate.db'}"
    now = datetime.now(UTC)

    def row(
        i: int, tenant: str, route: str, dep: str | None, status: int = 200, age_h: float = 0.1
    ) -> UsageRecord:
        return UsageRecord(
            request_id=f"r{i}",
            ts=now - timedelta(hours=age_h),
            endpoint="/v1/chat/completions",
            status=status,
            tenant=tenant,
            route=route,
            served_deployment=dep,
            prompt_tokens=1000 if dep else None,
            completion_tokens=250 if dep else None,
            cost_usd=0.125 if dep else None,
            latency_ms=200.0,
        )

    engine = open_database(url)
    try:
        UsageStore(engine).insert_usage(
            [
                row(1, "acme", "gpt-4o", "openai-gpt-4o"),
                row(2, "acme", "gpt-4o", "azure-gpt-4o"),
                row(3, "acme", "claude", None, status=503),
                row(4, "globex", "claude", "anthropic-sonnet"),
                row(5, "globex", "claude", "anthropic-sonnet", age_h=30),
            ]
        )
    finally:
        engine.dispose()
    return url


def table_rows(stdout: str) -> dict[str, list[str]]:
    """First cell -> the other cells of each body row of a rich table."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 7 and cells[1].replace(",", "").isdigit():
            rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("1h", timedelta(hours=1)),
        ("2d", timedelta(days=2)),
        ("1w", timedelta(weeks=1)),
        ("90s", timedelta(seconds=90)),
        ("1h30m", timedelta(minutes=90)),
        (" 2H ", timedelta(hours=2)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "h", "1", "1x", "-1h", "0m", "1.5h", "1 h", "1h-"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_usage_by_tenant(app: typer.Typer, db_url: str) -> None:
    result = CliRunner().invoke(app, ["usage", "--since", "1h", "--by", "tenant"])
    assert result.exit_code == 0, result.output
    rows = table_rows(result.stdout)
    # requests, errors, prompt tokens, completion tokens, cost USD, avg latency ms
    assert rows["acme"] == ["3", "1", "2,000", "500", "0.250000", "200"]
    assert rows["globex"] == ["1", "0", "1,000", "250", "0.125000", "200"]
    assert (
        "total: 4 requests, 1 errors, 3,000 prompt tokens, 750 completion tokens, 0.375000 USD"
        in result.stdout
    )


def test_usage_by_route_and_deployment_and_window(app: typer.Typer, db_url: str) -> None:
    runner = CliRunner()
    by_route = table_rows(runner.invoke(app, ["usage", "--by", "route", "--db", db_url]).stdout)
    assert {k: v[0] for k, v in by_route.items()} == {"gpt-4o": "2", "claude": "2"}
    by_dep = table_rows(runner.invoke(app, ["usage", "--by", "deployment"]).stdout)
    assert {k: v[0] for k, v in by_dep.items()} == {
        "openai-gpt-4o": "1",
        "azure-gpt-4o": "1",
        "anthropic-sonnet": "1",
        "(none)": "1",
    }
    two_days = table_rows(runner.invoke(app, ["usage", "--since", "2d"]).stdout)
    assert two_days["globex"][0] == "2"


def test_usage_empty_window(app: typer.Typer, db_url: str) -> None:
    result = CliRunner().invoke(app, ["usage", "--since", "1s"])
    assert result.exit_code == 0
    assert "no requests" in result.stderr
    assert "total: 0 requests" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--by", "model"], "--by"), (["--since", "yesterday"], "--since"), (["--since", "0h"], "--since")],
)
def test_usage_bad_options_exit_2(app: typer.Typer, db_url: str, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["usage", *args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stdout == ""


def test_usage_on_a_missing_database_exits_4_and_creates_nothing(app: typer.Typer, tmp_path: Path) -> None:
    """A mistyped path must not answer "no requests" from a new, empty database."""
    path = tmp_path / "nonexistent" / "dir" / "x.db"
    result = CliRunner().invoke(app, ["usage", "--db", f"sqlite:///{path}"])
    assert result.exit_code == 4, result.output
    assert f"no database at {path}" in result.stderr and result.stdout == ""
    assert not path.parent.exists()
