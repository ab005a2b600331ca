"""What every ``relaygate eval`` command shares: the ``--config``, ``--db`` and ``--format``
options, the exit codes, and error messages on standard error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = [
    "EXIT_BAD_ARGS",
    "EXIT_CODES",
    "EXIT_INTERRUPTED",
    "EXIT_STORAGE",
    "FORMATS",
    "ConfigOpt",
    "DbOpt",
    "FormatOpt",
    "check_format",
    "err",
    "fail",
]

EXIT_CODES = {"PASS": 0, "FAIL": 1, "INCONCLUSIVE": 3}
EXIT_BAD_ARGS, EXIT_STORAGE, EXIT_INTERRUPTED = 2, 4, 130
FORMATS = ("table", "json")

err = Console(stderr=True, highlight=False)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="relaygate.yaml; default: $RELAYGATE_CONFIG, else the embedded default"
    ),
]
DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db", help="database URL; default: the config's storage.url, $RELAYGATE_DB_URL, else SQLite"
    ),
]
FormatOpt = Annotated[str, typer.Option("--format", help="table or json")]


def fail(message: str, code: int = EXIT_BAD_ARGS) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", soft_wrap=True)
    return typer.Exit(code)


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise typer.BadParameter(f"{fmt!r} is not one of {', '.join(FORMATS)}", param_hint="'--format'")
