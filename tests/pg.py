"""A throw-away schema on the real PostgreSQL server, for every test that needs one."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

__all__ = ["PG_URL", "pg_schema"]

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@contextlib.contextmanager
def pg_schema(prefix: str = "rg_test") -> Iterator[str]:
    """A fresh, empty schema as a SQLAlchemy URL (``search_path`` set to it), dropped afterwards;
    skips the test when the server is not reachable."""
    pytest.importorskip("psycopg")
    schema = f"{prefix}_{secrets.token_hex(4)}"
    admin = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {str(exc).splitlines()[0]}")
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
