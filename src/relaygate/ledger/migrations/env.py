"""Alembic environment for the relaygate ledger schema; configured in code, no alembic.ini.

``relaygate.ledger.migrate`` passes an open connection in ``config.attributes["connection"]``
(online mode). Offline mode (``--sql``) renders the DDL for the URL in ``sqlalchemy.url``.
"""

from __future__ import annotations

from alembic import context

from relaygate.ledger.schema import metadata


def _run_offline() -> None:
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("relaygate migrations run through relaygate.ledger.migrate.migrate(url)")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    _run_offline()
else:
    _run_online()
