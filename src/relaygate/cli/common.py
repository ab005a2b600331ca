"""What every storage-backed command shares: the ``--db`` option, stderr, the audit actor,
and opening a store with database errors turned into one line and exit code 1."""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, TypeVar

import sqlalchemy as sa
import typer
from rich.console import Console

from relaygate.ledger.db import StorageError
from relaygate.ledger.migrate import open_database

__all__ = ["DbOption", "cli_actor", "open_store", "stderr"]

T = TypeVar("T")

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="database URL; default: $RELAYGATE_DB_URL, else $RELAYGATE_HOME/relaygate.db"),
]


def stderr() -> Console:
    return Console(stderr=True, highlight=False)


def cli_actor() -> str:
    """``cli:<login name>`` for audit events (``cli:unknown`` when the OS cannot say)."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # getpass raises OSError (or KeyError on some systems) without a login name
        return "cli:unknown"


@contextmanager
def open_store(db: str | None, factory: Callable[[sa.Engine], T]) -> Iterator[T]:
    """Open (and migrate) the database and build a store on it; a storage failure becomes a
    one-line error and exit 1."""
    try:
        engine = open_database(db)
    except StorageError as exc:
        stderr().print(f"[red]database error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(1) from None
    try:
        yield factory(engine)
    except StorageError as exc:
        stderr().print(f"[red]database error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
