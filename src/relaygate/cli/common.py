"""What every storage-backed command shares: the ``--db`` and ``--config`` options, stderr, the
audit actor, and opening a store with database errors turned into one line and exit code 4.

Exit codes of every storage-backed command: 0 done, 1 the command's own negative answer (no such
key or cutoff, a broken audit chain, an evaluation FAIL), 2 bad arguments or config, 3 the
command's warning state (drill: a route left with nothing; eval: INCONCLUSIVE), 4 database error.
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

from relaygate.config import load_config
from relaygate.errors import ConfigError
from relaygate.ledger.db import StorageError
from relaygate.ledger.migrate import open_database

__all__ = [
    "EXIT_STORAGE",
    "ConfigPathOption",
    "DbOption",
    "cli_actor",
    "open_store",
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


def resolve_db(db: str | None, config: Path | None = None) -> str | None:
    """The database URL a command uses: ``--db``, else the ``storage.url`` of ``--config`` (or of
    ``$RELAYGATE_CONFIG``), else None (``open_database`` then takes ``$RELAYGATE_DB_URL`` or the
    SQLite file under ``$RELAYGATE_HOME``), so the CLI and ``relaygate serve`` with the same config
    always read the same database. A bad config file exits 2 naming file, line and field."""
    if db:
        return db
    path = config or (Path(os.environ["RELAYGATE_CONFIG"]) if os.environ.get("RELAYGATE_CONFIG") else None)
    if path is None:
        return None
    try:
        return load_config(path).storage.url
    except ConfigError as exc:
        stderr().print(f"[red]config error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from None


def storage_exit(exc: StorageError) -> typer.Exit:
    """Print a database error as one line and return the exit (code 4) to raise."""
    stderr().print(f"[red]database error:[/red] {exc}", soft_wrap=True)
    return typer.Exit(EXIT_STORAGE)


@contextmanager
def open_store(db: str | None, factory: Callable[[sa.Engine], T], config: Path | None = None) -> Iterator[T]:
    """Open (and migrate) the database chosen by ``resolve_db`` and build a store on it; a
    storage failure becomes a one-line error and exit 4."""
    try:
        engine = open_database(resolve_db(db, config))
    except StorageError as exc:
        raise storage_exit(exc) from None
    try:
        yield factory(engine)
    except StorageError as exc:
        raise storage_exit(exc) from None
    finally:
        engine.dispose()
