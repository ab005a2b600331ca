"""Writing a ``Suite`` back to a file that ``load_suite`` reads as the same suite: YAML (block
scalars for multi-line strings) or JSONL plus its ``<stem>.suite.yaml`` header.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from relaygate.evals.model import Case, GraderSpec, Suite
from relaygate.evals.suite_yaml import SuiteError

__all__ = ["dump_suite"]


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
