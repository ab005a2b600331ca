"""Database location and engines for the ledger, keys and audit log (SQLAlchemy Core, sync).

One URL picks the backend: SQLite (the embedded default, a WAL file under ``$RELAYGATE_HOME``)
or PostgreSQL (``postgresql+psycopg://...``) for several replicas. The async gateway drives these
sync engines from worker threads (``asyncio.to_thread``). SQLAlchemy exceptions become
``StorageError`` here, in ``transaction()``, and nowhere else.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

__all__ = [
    "DB_URL_ENV",
    "HOME_ENV",
    "StorageError",
    "create_db_engine",
    "default_db_url",
    "resolve_db_url",
    "transaction",
]

DB_URL_ENV = "RELAYGATE_DB_URL"
HOME_ENV = "RELAYGATE_HOME"
_DEFAULT_HOME = "~/.relaygate"
_DB_FILE = "relaygate.db"
# Execution option read by the SQLite "begin" hook: take the write lock when the transaction starts.
_BEGIN_IMMEDIATE = "relaygate_begin_immediate"


class StorageError(Exception):
    """A database operation failed; the SQLAlchemy exception is ``__cause__``.

    ``transient`` is True when the same statement may succeed later (connection lost, database
    locked, table missing during a migration) and False when the database refused the data itself
    (constraint violation, value out of range, a value the driver cannot bind). ``conflict`` marks
    a unique/foreign-key/not-null violation (an ``IntegrityError``).
    """

    def __init__(self, message: str, *, transient: bool, conflict: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
        self.conflict = conflict

    @classmethod
    def from_sqlalchemy(cls, exc: sa_exc.SQLAlchemyError) -> StorageError:
        """Classify ``exc``; the caller raises the result ``from exc``."""
        conflict = isinstance(exc, sa_exc.IntegrityError)
        refused = conflict or isinstance(exc, sa_exc.DataError)
        # A StatementError that is not a DBAPIError failed while binding parameters in Python.
        bind_failure = isinstance(exc, sa_exc.StatementError) and not isinstance(exc, sa_exc.DBAPIError)
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return cls(message, transient=not (refused or bind_failure), conflict=conflict)


def default_db_url(environ: Mapping[str, str] | None = None) -> str:
    """The database URL when none is given: ``$RELAYGATE_DB_URL``, else
    ``sqlite:///$RELAYGATE_HOME/relaygate.db`` (``RELAYGATE_HOME`` defaults to ``~/.relaygate``).

    ``environ`` defaults to ``os.environ``. Pure: the directory is created by ``create_db_engine``.
    """
    env = os.environ if environ is None else environ
    url = env.get(DB_URL_ENV, "").strip()
    if url:
        return url
    home = Path(env.get(HOME_ENV, "").strip() or _DEFAULT_HOME).expanduser().absolute()
    return f"sqlite:///{home / _DB_FILE}"


def resolve_db_url(explicit: str | None, environ: Mapping[str, str] | None = None) -> str:
    """``explicit`` (a ``--db`` option, a config value) if given, else ``default_db_url()``."""
    return explicit if explicit else default_db_url(environ)


def create_db_engine(
    url: str, *, busy_timeout_ms: int = 5000, echo: bool = False, create: bool = True
) -> sa.Engine:
    """A sync engine for ``url``; the caller owns it and calls ``dispose()``.

    SQLite files: the parent directory is created (``create=False``: a missing file is an error
    and nothing is created, so a read-only command with a mistyped path cannot answer from a new,
    empty database), and every connection gets ``journal_mode=WAL``
    (readers never block the writer), ``synchronous=NORMAL`` (durable at checkpoints, safe with
    WAL), ``foreign_keys=ON`` and ``busy_timeout=busy_timeout_ms`` (wait for a competing writer
    instead of failing at once). pysqlite's own transaction handling is switched off and
    SQLAlchemy emits BEGIN itself (the recipe in SQLAlchemy's pysqlite dialect docs), so DDL is
    transactional and ``transaction(write=True)`` can take the write lock up front.
    Other backends get ``pool_pre_ping`` so a restarted server costs one failed check, not an error.
    Raises ``StorageError`` for a malformed URL, a missing driver, an uncreatable directory, a
    missing file with ``create=False`` or in-memory SQLite (connecting happens later, on first use).
    """
    try:
        parsed = sa.make_url(url)
        if parsed.get_backend_name() != "sqlite":
            return sa.create_engine(parsed, echo=echo, pool_pre_ping=True)
        engine = sa.create_engine(parsed, echo=echo)
    except sa_exc.SQLAlchemyError as exc:  # malformed URL, unknown dialect
        raise StorageError(f"cannot use database URL: {exc}", transient=False) from exc
    except ImportError as exc:  # the dialect imports its DBAPI module when the engine is created
        raise StorageError(_missing_driver(parsed, exc), transient=False) from exc
    database = parsed.database or ""
    if database in ("", ":memory:"):
        # Each pooled connection (one per worker thread) would get its own empty database.
        engine.dispose()
        raise StorageError(
            "in-memory SQLite is not supported; use a file (tests: a temp file)", transient=False
        )
    if not database.startswith("file:"):
        path = Path(database)
        if not create and not path.is_file():
            engine.dispose()
            raise StorageError(f"no database at {path.absolute()}", transient=False)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            engine.dispose()
            raise StorageError(f"cannot create {path.parent}: {exc}", transient=False) from exc
    _install_sqlite_hooks(engine, busy_timeout_ms)
    return engine


def _missing_driver(url: sa.URL, exc: ImportError) -> str:
    """One line naming the missing module and how to install it."""
    module = exc.name or str(exc)
    if url.get_backend_name() == "postgresql":
        if url.get_driver_name() == "psycopg":
            fix = "pip install 'relaygate[postgres]'"
        else:
            fix = "use a postgresql+psycopg:// URL after pip install 'relaygate[postgres]'"
    else:
        fix = f"install the Python driver for {url.drivername}"
    return f"database driver {module!r} for {url.drivername} is not installed: {fix}"


def _install_sqlite_hooks(engine: sa.Engine, busy_timeout_ms: int) -> None:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # autocommit in the driver; BEGIN comes from on_begin
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    def on_begin(conn: sa.Connection) -> None:
        immediate = conn.get_execution_options().get(_BEGIN_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    sa.event.listen(engine, "connect", on_connect)
    sa.event.listen(engine, "begin", on_begin)


@contextmanager
def transaction(engine: sa.Engine, *, write: bool = False) -> Iterator[sa.Connection]:
    """One transaction: commits when the block ends, rolls back if it raises.

    ``write=True`` on SQLite starts with ``BEGIN IMMEDIATE``: the write lock is taken (waiting up
    to busy_timeout) before the first read, so a read-then-write transaction cannot fail with
    SQLITE_BUSY when another writer commits in between. Raises ``StorageError`` for any
    SQLAlchemy error.
    """
    try:
        with engine.connect() as conn:
            if write:
                conn.execution_options(**{_BEGIN_IMMEDIATE: True})
            with conn.begin():
                yield conn
    except sa_exc.SQLAlchemyError as exc:
        raise StorageError.from_sqlalchemy(exc) from exc
