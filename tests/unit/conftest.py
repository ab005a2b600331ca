"""Database fixtures shared by the storage tests: each test gets a fresh, empty database,
a temp SQLite file or a throw-away schema on the real PostgreSQL server (skipped if unreachable)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from relaygate.ledger.migrate import open_database
from tests.pg import pg_schema


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, empty database URL: a temp SQLite file, or a throw-away PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'relaygate.db'}"
        return
    with pg_schema() as url:
        yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    """``db_url`` opened and migrated to head."""
    eng = open_database(db_url)
    yield eng
    eng.dispose()
