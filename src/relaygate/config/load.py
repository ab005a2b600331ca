"""Load ``relaygate.yaml`` into a validated, frozen ``Config``, or fail with one line.

Errors name the file, the line (from the YAML node's position) and the field path, e.g.
``relaygate.yaml:7: routes.chat.deployments.0.price.input: Input should be a valid number``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from relaygate.config.schema import Config
from relaygate.errors import ConfigError

__all__ = ["default_config", "load_config", "load_config_text"]

_PATH_PREFIX = re.compile(r"^(?:Value error, )?([A-Za-z0-9_.:/@-]+(?:\.[A-Za-z0-9_:/@-]+)+): (.*)$", re.S)


def default_config() -> Config:
    """The embedded default: one route ``local`` (alias ``smollm2-135m``) served by the local
    model, open auth on 127.0.0.1, SQLite storage under ``$RELAYGATE_HOME``."""
    return Config.model_validate(
        {
            "providers": {"local": {"protocol": "local"}},
            "routes": {
                "local": {"deployments": [{"provider": "local", "model": "smollm2-135m"}]},
                "smollm2-135m": {"deployments": [{"provider": "local", "model": "smollm2-135m"}]},
            },
            "auth": {"mode": "open"},
        }
    )


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a config file.

    Raises ``ConfigError`` (one line: file, line, field path, reason) when the file is
    missing, is not YAML, or does not match the schema.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(p), "<file>", f"cannot read: {exc}") from exc
    return load_config_text(text, str(p))


def load_config_text(text: str, filename: str = "<string>") -> Config:
    """Validate YAML text. See ``load_config``."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(filename, "<yaml>", f"not valid YAML: {problem}", line) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(filename, "<root>", "the file must hold a mapping (key: value)", 1)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(x) for x in err["loc"]]
        msg = str(err["msg"])
        m = _PATH_PREFIX.match(msg)
        if not loc and m:
            loc, msg = m.group(1).split("."), m.group(2)
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check spelling; see README 'Configuration')"
        field = ".".join(loc) or "<root>"
        more = len(exc.errors()) - 1
        if more:
            msg += f" (and {more} more error{'s' if more > 1 else ''})"
        raise ConfigError(filename, field, msg, _line_of(root, loc)) from exc


def _line_of(node: Any, loc: list[str]) -> int | None:
    """1-based line of the deepest YAML node that ``loc`` reaches (None if unknown)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if str(k.value) == part), None)
            if nxt is None:
                key = next((k for k, _ in node.value if str(k.value) == part), None)
                return key.start_mark.line + 1 if key is not None else line
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
        else:
            break
        line = node.start_mark.line + 1
    return line
