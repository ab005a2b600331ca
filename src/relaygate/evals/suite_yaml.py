"""Reading suite files with error locations: a YAML loader that keeps the line of every mapping,
key and list item (YAML 1.2 scalars: only true/false are booleans, dates stay strings),
``SuiteError`` (``file:line: field: message``), and ``Reader``, the field checks that raise it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from relaygate.evals.graders import GraderError, validate_spec
from relaygate.evals.model import GraderSpec

__all__ = ["Reader", "SuiteError", "line_of", "plain", "read_yaml"]


class SuiteError(ValueError):
    """A suite file is malformed. ``path``, ``line`` (1-based, None if unknown) and ``field``
    (e.g. ``cases[2].prompt``) locate it; ``str()`` reads ``file:line: field: message``."""

    def __init__(self, message: str, *, path: Path | str, line: int | None = None, field: str = "") -> None:
        self.path, self.line, self.field, self.message = str(path), line, field, message
        where = f"{self.path}:{line}" if line else self.path
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")


class _Map(dict[Any, Any]):
    """A YAML mapping that remembers its line and each key's line."""

    line: int | None = None
    lines: dict[Any, int]


class _Seq(list[Any]):
    line: int | None = None
    lines: list[int]


class _Loader(yaml.SafeLoader):
    pass


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    out = _Map()
    out.line, out.lines = node.start_mark.line + 1, {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first on line {out.lines[key]})", key_node.start_mark
            )
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = key_node.start_mark.line + 1
    return out


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> _Seq:
    out = _Seq(loader.construct_object(child, deep=True) for child in node.value)
    out.line, out.lines = node.start_mark.line + 1, [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_seq)
# YAML 1.2 scalars: "no", "on", "yes" stay strings (expected answers, ``lang: no``) and dates
# stay strings (suites are also written as JSON); only true/false are booleans.
_BOOL, _TIMESTAMP = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag not in (_BOOL, _TIMESTAMP)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def plain(value: Any) -> Any:
    """Line-tracking containers to plain dicts and lists (for the model and for dumping)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def line_of(obj: Any, key: Any = None, default: int | None = None) -> int | None:
    if key is not None and isinstance(obj, _Map) and key in obj.lines:
        return obj.lines[key]
    if isinstance(obj, _Seq) and isinstance(key, int) and key < len(obj.lines):
        return obj.lines[key]
    return getattr(obj, "line", None) or default


class Reader:
    """Validation with error locations for one file (and, for JSONL, one line)."""

    def __init__(self, path: Path, line: int | None = None) -> None:
        self.path, self.line = path, line

    def error(self, message: str, field: str = "", obj: Any = None, key: Any = None) -> SuiteError:
        return SuiteError(message, path=self.path, line=line_of(obj, key, self.line), field=field)

    def keys(self, obj: Any, allowed: frozenset[str], field: str) -> Mapping[str, Any]:
        if not isinstance(obj, dict):
            raise self.error(f"must be a mapping, not {type(obj).__name__}", field, obj)
        unknown = sorted(str(k) for k in obj if k not in allowed)
        if unknown:
            key = next(k for k in obj if k not in allowed)
            hint = " (spelled 'licence')" if unknown == ["license"] else ""
            raise self.error(f"unknown key(s) {unknown}{hint}; allowed: {sorted(allowed)}", field, obj, key)
        return obj

    def mapping(self, obj: Any, field: str, parent: Any, key: str) -> dict[str, Any]:
        if obj is None:
            return {}
        if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
            raise self.error("must be a mapping with string keys", field, parent, key)
        return dict(plain(obj))

    def number(self, obj: Any, field: str, parent: Any, key: str, low: float, high: float) -> float:
        if not isinstance(obj, int | float) or isinstance(obj, bool) or not low < obj < high:
            raise self.error(f"must be a number strictly between {low} and {high}", field, parent, key)
        return float(obj)

    def graders(self, obj: Any, field: str, parent: Any, key: str) -> tuple[GraderSpec, ...]:
        if obj is None:
            return ()
        if not isinstance(obj, list):
            raise self.error("must be a list of grader specs", field, parent, key)
        specs = []
        for i, item in enumerate(obj):
            where = f"{field}[{i}]"
            if isinstance(item, str):
                spec = GraderSpec(item)
            else:
                raw = self.keys(item, frozenset({"kind", "params", "metric"}), where)
                if not isinstance(raw.get("kind"), str):
                    raise self.error("needs 'kind' (a string)", where, item)
                spec = GraderSpec(
                    raw["kind"], self.mapping(raw.get("params"), where, item, "params"), raw.get("metric")
                )
            try:
                validate_spec(spec)
            except GraderError as exc:
                raise self.error(str(exc), where, obj, i) from exc
            specs.append(spec)
        return tuple(specs)


def read_yaml(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise SuiteError(str(exc.problem or exc), path=path, line=mark.line + 1 if mark else None) from exc
    except yaml.YAMLError as exc:
        raise SuiteError(f"not YAML: {exc}", path=path) from exc
