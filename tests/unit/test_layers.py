"""The layering rule of ARCHITECTURE.md: ``api/`` and ``cli/`` are edges; nothing below them imports
them. ``app.py`` (the ASGI factory that wires the routes) is the one composer allowed to.

Read from the source with ``ast`` (imports inside functions count too), so the test needs nothing
importable and names the offending line.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "relaygate"
EDGES = ("relaygate.api", "relaygate.cli")
COMPOSERS = {"app.py"}


def _imports(path: Path) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
    return out


def test_nothing_below_the_edges_imports_api_or_cli() -> None:
    offences = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.parts[0] in ("api", "cli") or str(rel) in COMPOSERS:
            continue
        for line, module in _imports(path):
            if module.startswith(EDGES):
                offences.append(f"{rel}:{line} imports {module}")
    assert offences == []


def test_rate_limit_headers_are_a_protocol_module() -> None:
    assert (SRC / "protocols" / "ratelimit_headers.py").is_file()
    assert not (SRC / "api" / "ratelimit_headers.py").exists()
