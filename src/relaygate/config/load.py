"""Load ``relaygate.yaml`` into a validated, frozen ``Config``, or fail with one line.

Errors name the file, the line (from the YAML node's position) and the field path, e.g.
``relaygate.yaml:7: routes.chat.deployments.0.price.input: Input should be a valid number``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from relaygate.config.schema import Config, RefError
from relaygate.errors import ConfigError

__all__ = ["default_config", "load_config", "load_config_text"]


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
    dup = _duplicate_key(root)
    if dup is not None:
        path, line = dup
        raise ConfigError(filename, path, "duplicate key (YAML would silently keep the last one)", line)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc: list[str | int] = list(err["loc"])
        msg = str(err["msg"])
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, RefError):
            loc, msg = list(cause.loc), str(cause)
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check spelling; see README 'Configuration')"
        path, line = _locate(root, loc)
        more = len(exc.errors()) - 1
        if more:
            msg += f" (and {more} more error{'s' if more > 1 else ''})"
        raise ConfigError(filename, path, msg, line) from exc
    check_semantics(config, filename, root)
    return config


def check_semantics(config: Config, filename: str = "<config>", root: Any = None) -> None:
    """Checks that need more than the schema: each virtual key belongs to one tenant, provider
    catalog names exist and policy rules compile.

    Raises ``ConfigError`` naming the field (``policy.rules.3``) and its line.
    """
    from relaygate.policy import PolicyError, catalog_entry, compile_policy

    _check_unique_keys(config, filename, root)

    for name, provider in config.providers.items():
        if provider.catalog is not None:
            try:
                catalog_entry(provider.catalog)
            except ValueError as exc:
                path, line = _locate(root, ["providers", name, "catalog"])
                raise ConfigError(filename, path, str(exc), line) from exc
    try:
        compile_policy(config.policy)
    except PolicyError as exc:
        path, line = _locate(root, ["policy", "rules", exc.index])
        raise ConfigError(filename, path, f"({exc.name}) {exc.message}", line) from exc


def _check_unique_keys(config: Config, filename: str, root: Any) -> None:
    """One key (the same ``key_env`` or ``key_sha256``) on two tenants would make the tenant of a
    request depend on lookup order: a budget or policy could apply to the wrong tenant."""
    seen: dict[tuple[str, str], str] = {}
    for tname, tenant in config.tenants.items():
        for i, key in enumerate(tenant.keys):
            field = "key_env" if key.key_env is not None else "key_sha256"
            value = str(getattr(key, field))
            where = f"tenants.{tname}.keys.{i}"
            first = seen.setdefault((field, value), where)
            if first != where:
                path, line = _locate(root, ["tenants", tname, "keys", i, field])
                raise ConfigError(filename, path, f"{field} {value!r} is already used by {first}", line)


def _key(node: yaml.MappingNode, part: str | int) -> tuple[Any, Any] | None:
    return next(((k, v) for k, v in node.value if str(k.value) == str(part)), None)


def _locate(node: Any, loc: list[str | int]) -> tuple[str, int | None]:
    """Field path (dotted) and 1-based line for a pydantic ``loc``.

    Parts that are not keys in the YAML (the discriminator tag pydantic inserts for a
    tagged union, e.g. ``providers.openai.<openai>.base_url``) are dropped; the line is the
    key's line (where a typo is), not its value's.
    """
    parts: list[str] = []
    line = node.start_mark.line + 1 if node is not None else None
    for i, part in enumerate(loc):
        if isinstance(node, yaml.MappingNode):
            kv = _key(node, part)
            if kv is None:
                if i + 1 < len(loc) and _key(node, loc[i + 1]) is not None:
                    continue  # a union tag: not in the file
                parts.append(str(part))
                node = None
                continue
            parts.append(str(part))
            line, node = kv[0].start_mark.line + 1, kv[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            parts.append(str(part))
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            parts.append(str(part))
            node = None
    return ".".join(parts) or "<root>", line


def _duplicate_key(node: Any, path: str = "") -> tuple[str, int] | None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for k, v in node.value:
            key = str(k.value)
            where = f"{path}.{key}" if path else key
            if key in seen:
                return where, k.start_mark.line + 1
            seen.add(key)
            found = _duplicate_key(v, where)
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            found = _duplicate_key(v, f"{path}.{i}")
            if found:
                return found
    return None
