"""``relaygate eval``: run a suite against routes, decide whether a candidate can replace the
incumbent, write the reports, publish a run's quality to a route's deployments
(``cli/eval_publish.py``), import public suites, replay captured traffic (from a JSONL file,
or, as the top-level ``relaygate replay``, the payloads the ledger captured).

Tables and JSON go to standard output, progress and messages to standard error. ``run`` and
``compare`` print the decision first (one verdict per candidate, then each metric with its
confidence intervals), then the per-target evidence, and write report.json, junit.xml,
report.html and manifest.json (SHA-256 of the others). Exit codes of ``run``, ``compare`` and
``verdict``: 0 PASS (or no verdict asked for), 1 FAIL, 2 bad argument, suite or
config, 3 INCONCLUSIVE, 4 database error, 130 interrupted (resume with ``--run-id``).

This module builds the ``typer`` group; the commands live in ``eval_run`` (run, verdict,
compare), ``eval_report`` (report, and the tables the others print), ``eval_import``,
``eval_replay`` (replay, and ``replay_ledger`` for ``relaygate replay``) and ``eval_publish``;
their shared options and exit codes in ``eval_options``.
"""

from __future__ import annotations

import typer

from relaygate.cli.eval_import import import_cmd
from relaygate.cli.eval_publish import publish
from relaygate.cli.eval_replay import replay_cmd, replay_ledger
from relaygate.cli.eval_report import report_cmd
from relaygate.cli.eval_run import compare_cmd, run, verdict_cmd

__all__ = ["app", "replay_ledger"]

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.command("run")(run)
app.command("verdict")(verdict_cmd)
app.command("report")(report_cmd)
app.command("compare")(compare_cmd)
app.command("import")(import_cmd)
app.command("replay")(replay_cmd)
app.command("publish")(publish)
