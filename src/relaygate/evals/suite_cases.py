"""Building a ``Case`` from one raw case of a suite file: keys checked, suite defaults merged,
a ``prompt`` template rendered with the case's ``variables`` (``{name}`` fields only, each
field with a variable and each variable used) or ``messages`` checked, tools checked as OpenAI
function tools. Errors are ``SuiteError`` s naming the file, the line and the field.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping
from typing import Any

from relaygate.evals.graders import GraderError
from relaygate.evals.graders_json import check_schema
from relaygate.evals.model import Case
from relaygate.evals.suite_yaml import Reader, plain

__all__ = ["case_from", "defaults_from", "render_template"]

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


def _messages(r: Reader, raw: Mapping[str, Any], where: str, system: str | None) -> list[dict[str, Any]]:
    has_messages, has_prompt = "messages" in raw, "prompt" in raw
    if has_messages == has_prompt:
        raise r.error("needs exactly one of 'messages' or 'prompt'", where, raw)
    variables = raw.get("variables")
    if variables is not None and not isinstance(variables, dict):
        raise r.error("must be a mapping", f"{where}.variables", raw, "variables")
    if variables is not None and not has_prompt:
        raise r.error("'variables' needs a 'prompt' template", f"{where}.variables", raw, "variables")
    if has_prompt:
        variables = dict(plain(variables or {}))
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
    out = [dict(plain(m)) for m in messages]
    if system is not None:
        if not isinstance(system, str):
            raise r.error("must be a string", f"{where}.system", raw, "system")
        if out[0]["role"] == "system":
            raise r.error("both 'system' and a system message", f"{where}.system", raw, "system")
        out.insert(0, {"role": "system", "content": system})
    return out


def _tools(r: Reader, raw: Mapping[str, Any], where: str) -> list[dict[str, Any]] | None:
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
    return list(plain(tools))


def case_from(r: Reader, raw: Any, where: str, defaults: Mapping[str, Any]) -> Case:
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
        expected=plain(raw.get("expected")),
        tools=_tools(r, raw, where),
        params=params,
        tags={k: str(v) for k, v in tags.items()},
        graders=r.graders(raw.get("graders"), f"{where}.graders", raw, "graders"),
        meta=r.mapping(raw.get("meta"), f"{where}.meta", raw, "meta"),
    )


def defaults_from(r: Reader, raw: Any) -> dict[str, Any]:
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
