"""What every storage-backed command shares: the ``--db`` and ``--config`` options, stderr, the
audit actor, and opening a store with database errors turned into one line and exit code 4.

Exit codes of every command (the one table; the README's "Exit codes" says the same): 0 done,
1 the command's own negative answer or failure (no such key or cutoff, a broken audit chain, an
evaluation FAIL; serve and sim: the port is in use or the server did not start), 2 bad arguments
or config (an unknown tenant, provider or region), 3 the command's warning state (drill: a route
left with nothing; eval: INCONCLUSIVE), 4 database error (including "no database at PATH" for a
command that only reads, and a missing database driver).
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, TypeVar

import sqlalchemy as sa
import typer
from rich.console import Console
from rich.markup import escape

from relaygate.config import load_config
from relaygate.config.schema import Config
from relaygate.errors import ConfigError
from relaygate.ledger.db import StorageError
from relaygate.ledger.migrate import open_database

__all__ = [
    "EXIT_STORAGE",
    "ConfigPathOption",
    "DbOption",
    "cli_actor",
    "open_store",
    "resolve_config",
    "resolve_db",
    "stderr",
    "storage_exit",
]

T = TypeVar("T")

EXIT_STORAGE = 4

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="database URL; default: the config's storage.url, else $RELAYGATE_DB_URL, "
        "else $RELAYGATE_HOME/relaygate.db",
    ),
]
ConfigPathOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="relaygate.yaml whose storage.url to use; default: $RELAYGATE_CONFIG",
    ),
]


def stderr() -> Console:
    return Console(stderr=True, highlight=False)


def cli_actor() -> str:
    """``cli:<login name>`` for audit events (``cli:unknown`` when the OS cannot say)."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # getpass raises OSError (or KeyError on some systems) without a login name
        return "cli:unknown"


def resolve_config(config: Path | None) -> Config | None:
    """The config of ``--config``, else of ``$RELAYGATE_CONFIG``, else None. A bad config file
    exits 2 naming file, line and field."""
    path = config or (Path(os.environ["RELAYGATE_CONFIG"]) if os.environ.get("RELAYGATE_CONFIG") else None)
    if path is None:
        return None
    try:
        return load_config(path)
    except ConfigError as exc:
        stderr().print(f"[red]config error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(2) from None


def resolve_db(db: str | None, config: Path | None = None) -> str | None:
    """The database URL a command uses: ``--db``, else the ``storage.url`` of ``--config`` (or of
    ``$RELAYGATE_CONFIG``), else None (``open_database`` then takes ``$RELAYGATE_DB_URL`` or the
    SQLite file under ``$RELAYGATE_HOME``), so the CLI and ``relaygate serve`` with the same config
    always read the same database. A bad config file exits 2 naming file, line and field."""
    if db:
        return db
    cfg = resolve_config(config)
    return cfg.storage.url if cfg is not None else None


def storage_exit(exc: StorageError) -> typer.Exit:
    """Print a database error as one line and return the exit (code 4) to raise."""
    stderr().print(f"[red]database error:[/red] {escape(str(exc))}", soft_wrap=True)
    return typer.Exit(EXIT_STORAGE)


@contextmanager
def open_store(
    db: str | None, factory: Callable[[sa.Engine], T], config: Path | None = None, *, create: bool = False
) -> Iterator[T]:
    """Open (and migrate) the database chosen by ``resolve_db`` and build a store on it; a
    storage failure becomes a one-line error and exit 4. Only commands that write new rows pass
    ``create=True``: for the others a missing SQLite file is "no database at PATH" (exit 4), never
    a new empty database whose emptiness would read as an all-clear."""
    try:
        engine = open_database(resolve_db(db, config), create=create)
    except StorageError as exc:
        raise storage_exit(exc) from None
    try:
        yield factory(engine)
    except StorageError as exc:
        raise storage_exit(exc) from None
    finally:
        engine.dispose()
