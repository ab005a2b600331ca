"""The one module that talks to the CEL library: compile, check and evaluate rule conditions.

Library: ``common-expression-language`` (PyPI; Python bindings of the Rust ``cel`` crate). It is
imported lazily, at the first compile, because its package ``__init__`` also loads its CLI
(typer, rich, prompt_toolkit: ~0.25 s). Foreign exceptions are turned into ``ExpressionError``
(compile time) or an ``Outcome`` (run time) here and nowhere else.

Variables a condition may use (CEL spec: https://github.com/google/cel-spec/blob/master/doc/langdef.md):

- ``provider``: ``name``, ``jurisdiction``, ``regions``, ``data_retention_days``,
  ``trains_on_inputs``, ``tags``. Unknown facts are *absent*, so reading one is an error
  (``has(provider.x)`` tests for presence).
- ``deployment``: ``id``, ``model``.
- ``request``: ``tenant``, ``tenant_region`` (absent when the tenant has none), ``data_class``, ``route``.
- ``groups``: constant region groups, ``groups.EU`` (the 27 member states + ``EU``) and
  ``groups.EEA`` (EU + IS, LI, NO + ``EEA``). Members: https://european-union.europa.eu/principles-countries-history/eu-countries_en
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FIELDS",
    "GROUPS",
    "Expression",
    "ExpressionError",
    "Outcome",
    "compile_expression",
    "evaluate",
    "new_context",
]

_EU = (
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE",
    "IT", "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "EU",
)  # fmt: skip
GROUPS: Mapping[str, tuple[str, ...]] = {"EU": _EU, "EEA": (*_EU, "IS", "LI", "NO", "EEA")}

FIELDS: Mapping[str, frozenset[str]] = {
    "provider": frozenset(
        {"name", "jurisdiction", "regions", "data_retention_days", "trains_on_inputs", "tags"}
    ),
    "deployment": frozenset({"id", "model"}),
    "request": frozenset({"tenant", "tenant_region", "data_class", "route"}),
    "groups": frozenset(GROUPS),
}
# Named functions the bundled interpreter implements (probed against common-expression-language
# 0.10 / cel 0.14); operators show up as ``_+_``, ``@in``, ``!_`` and are always allowed.
_FUNCTIONS = frozenset(
    {"size", "contains", "startsWith", "endsWith", "matches", "int", "uint", "double", "string",
     "bytes", "type", "timestamp", "duration", "dyn"}
)  # fmt: skip
_MACROS = r"(?:all|exists|exists_one|map|filter)"
_BOUND = re.compile(r"\.\s*" + _MACROS + r"\s*\(\s*([A-Za-z_]\w*)\s*,")
_FIELD_USE = re.compile(r"\b(provider|deployment|request|groups)\s*\.\s*([A-Za-z_]\w*)\b(?!\s*\()")
_STRING = re.compile(
    r'[rRbB]{0,2}(?:"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\'|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\')'
)
_PARSE_PREFIX = re.compile(r"^Failed to parse expression .*?: (?:ERROR: )?(?:<input>:)?")


class ExpressionError(ValueError):
    """A condition does not compile or fails a static check; the message is one line."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """Result of one evaluation: ``value`` is a bool, or ``None`` with ``unknown`` (a fact path
    such as ``provider.trains_on_inputs``) or ``error`` saying why it could not be decided."""

    value: bool | None
    unknown: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled condition. ``uses_groups`` tells the caller whether to bind ``groups``."""

    source: str
    program: Any
    uses_groups: bool


def _cel() -> Any:
    import cel  # lazy: see module docstring

    return cel


def compile_expression(source: str) -> Expression:
    """Compile ``source`` and check it statically.

    Checks: syntax; every free variable is one of ``provider``/``deployment``/``request``/``groups``;
    every ``x.field`` on them is a known field; every named function exists; a dry run on a
    fully known sample evaluates to a bool. Raises ``ExpressionError`` with a one-line reason.
    """
    cel = _cel()
    try:
        program = cel.compile(source)
    except (ValueError, RuntimeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ExpressionError("syntax error: " + _PARSE_PREFIX.sub("", first)) from exc
    code = _STRING.sub('""', source)
    bound = set(_BOUND.findall(code))
    for name in sorted(set(program.variables()) - bound):
        if name not in FIELDS:
            known = ", ".join(FIELDS)
            raise ExpressionError(f"unknown variable {name!r} (known: {known})")
    for var, fld in _FIELD_USE.findall(code):
        if var not in bound and fld not in FIELDS[var]:
            known = ", ".join(sorted(FIELDS[var]))
            raise ExpressionError(f"unknown field {var}.{fld} (known: {known})")
    for fn in program.functions():
        if fn[:1].isalpha() and fn not in _FUNCTIONS:
            raise ExpressionError(f"unknown function {fn!r}")
    expr = Expression(source=source, program=program, uses_groups="groups" in program.variables())
    outcome = evaluate(expr, new_context(_SAMPLE, with_groups=True))
    if outcome.value is None and outcome.error and outcome.error.startswith("not a bool"):
        raise ExpressionError(
            f"the condition must be a bool, but it is {outcome.error[len('not a bool: ') :]}"
        )
    return expr


def new_context(variables: Mapping[str, Any], *, with_groups: bool) -> Any:
    """Build a reusable CEL context from plain maps (converting once costs ~50 us; reusing is cheap)."""
    values = dict(variables)
    if with_groups:
        values["groups"] = {k: list(v) for k, v in GROUPS.items()}
    return _cel().Context(values)


def evaluate(expr: Expression, context: Any) -> Outcome:
    """Evaluate against a context from ``new_context``. Never raises: failures become an ``Outcome``.

    A missing map key (an unknown fact) is reported as ``unknown="provider.<key>"`` (or
    ``request.tenant_region``); anything else, including a non-bool result, as ``error``.
    """
    try:
        value = expr.program.execute(context)
    except KeyError as exc:
        key = str(exc.args[0]) if exc.args else "?"
        return Outcome(None, unknown=_fact_path(key))
    except Exception as exc:  # the library raises RuntimeError/TypeError/ValueError; all fail closed
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return Outcome(None, error=msg)
    if isinstance(value, bool):
        return Outcome(value)
    return Outcome(None, error=f"not a bool: {type(value).__name__} {value!r}"[:200])


def _fact_path(key: str) -> str:
    for var in ("provider", "request", "deployment"):
        if key in FIELDS[var]:
            return f"{var}.{key}"
    return key


_SAMPLE: Mapping[str, Any] = {
    "provider": {
        "name": "sample",
        "jurisdiction": "US",
        "regions": ["US"],
        "data_retention_days": 30,
        "trains_on_inputs": False,
        "tags": ["sample"],
    },
    "deployment": {"id": "sample/model", "model": "model"},
    "request": {"tenant": "t", "tenant_region": "US", "data_class": "internal", "route": "r"},
}
