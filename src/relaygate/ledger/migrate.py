"""Run the ledger's Alembic migrations in code (no ``alembic.ini`` on disk).

``open_database()`` is what the CLI and the gateway call: resolve the URL, upgrade the schema to
head, hand back an engine. How to add a revision: ``migrations/README.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from relaygate.ledger.db import StorageError, create_db_engine, resolve_db_url

if TYPE_CHECKING:
    from alembic.config import Config

# Alembic is imported inside the functions: only start-up and the CLI need it, while every
# importer of ``relaygate.ledger`` (anything using records.py) would otherwise pay ~0.2 s for it.

__all__ = [
    "alembic_config",
    "autogenerate_revision",
    "head_revision",
    "migrate",
    "open_database",
    "upgrade_engine",
]

SCRIPT_LOCATION = "relaygate.ledger:migrations"
# Arbitrary constant key for pg_advisory_xact_lock: replicas starting together migrate one at a time.
_PG_MIGRATION_LOCK = 0x7267_6C65_6467_0001


def alembic_config(url: str | None = None) -> Config:
    """An Alembic ``Config`` pointing at the packaged ``migrations/`` directory.

    ``url`` only matters for offline (``--sql``) runs; online runs get a connection instead.
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest revision id shipped in the package, e.g. ``"0001"``."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package always ships revisions
        raise RuntimeError("no ledger migrations found")
    return head


def upgrade_engine(engine: sa.Engine) -> None:
    """Upgrade the database behind ``engine`` to head, in one transaction.

    SQLite: ``BEGIN IMMEDIATE`` serialises concurrent upgraders (a second process waits, then
    finds the schema at head). PostgreSQL: a transaction-scoped advisory lock does the same.
    Raises ``StorageError`` if the database refuses.
    """
    from alembic import command

    config = alembic_config()
    try:
        with engine.connect() as conn:
            conn.execution_options(relaygate_begin_immediate=True)
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
    except sa_exc.SQLAlchemyError as exc:
        raise StorageError.from_sqlalchemy(exc) from exc


def migrate(url: str) -> None:
    """Upgrade the database at ``url`` to the head revision (creating tables on first use).

    Idempotent and safe to call at every start. Raises ``StorageError``.
    """
    engine = create_db_engine(url)
    try:
        upgrade_engine(engine)
    finally:
        engine.dispose()


def open_database(url: str | None = None, *, create: bool = True) -> sa.Engine:
    """Resolve ``url`` (``None``: ``$RELAYGATE_DB_URL`` or the SQLite file under
    ``$RELAYGATE_HOME``), upgrade it to head and return an engine the caller must ``dispose()``.
    ``create=False`` (read-only commands): a missing SQLite file raises ``StorageError``
    ("no database at PATH") instead of being created. Raises ``StorageError``.
    """
    engine = create_db_engine(resolve_db_url(url), create=create)
    try:
        upgrade_engine(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def autogenerate_revision(url: str, message: str, rev_id: str) -> None:
    """Developer tool: write ``migrations/versions/<rev_id>_*.py`` from the difference between
    the database at ``url`` (upgraded to head first) and ``schema.py``. Review the result by hand.
    """
    from alembic import command

    engine = create_db_engine(url)
    try:
        upgrade_engine(engine)
        config = alembic_config(url)
        with engine.connect() as conn:
            config.attributes["connection"] = conn
            command.revision(config, message=message, autogenerate=True, rev_id=rev_id)
    finally:
        engine.dispose()
