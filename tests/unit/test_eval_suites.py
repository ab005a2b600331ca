"""Suite files: YAML and JSONL loading, templates, strict validation with locations, round trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relaygate.evals.model import GraderSpec, Margin
from relaygate.evals.suite_cases import render_template
from relaygate.evals.suite_dump import dump_suite
from relaygate.evals.suite_yaml import SuiteError
from relaygate.evals.suites import load_suite

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "evals" / "suites"


def write(tmp_path: Path, text: str, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path) -> SuiteError:
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    return info.value


def test_yaml_suite_loads_every_case_feature() -> None:
    suite = load_suite(FIXTURES / "smoke.yaml")
    assert suite.name == "smoke"
    assert suite.graders == (GraderSpec("normalized"),)
    assert suite.margins == (Margin("normalized", 0.05), Margin("latency_p95", 250.0, "lower"))
    by_id = {c.id: c for c in suite.cases}
    assert by_id["capital-fr"].messages == [
        {"role": "user", "content": "What is the capital of France? Answer with one word."}
    ]
    # defaults merge under the case's own params and tags
    assert by_id["capital-fr"].params == {"max_tokens": 64, "temperature": 0}
    assert by_id["capital-fr"].tags == {"lang": "en", "task": "geography"}
    # the system template shares the prompt's variables
    assert by_id["add"].messages[0] == {"role": "system", "content": "You are a calculator for children."}
    assert by_id["add"].expected == 5 and by_id["add"].graders == (GraderSpec("numeric"),)
    assert by_id["greet-zh"].tags["lang"] == "zh"
    assert by_id["weather-tool"].tools is not None
    assert by_id["weather-tool"].graders == (GraderSpec("tool_call", metric="tool_ok"),)
    assert by_id["weather-tool"].params["tool_choice"] == "auto"
    assert by_id["json-person"].graders[0].params["schema"]["required"] == ["name", "age"]


def test_jsonl_suite_takes_its_header_from_suite_yaml() -> None:
    suite = load_suite(FIXTURES / "jsonl" / "cases.jsonl")
    assert suite.name == "faq-jsonl"
    assert [c.id for c in suite.cases] == ["refund", "hours", "reembolso"]
    assert suite.cases[0].messages[0]["content"] == "How do I get a refund for order A-17?"
    assert suite.cases[2].params == {"max_tokens": 128}
    assert suite.graders == (GraderSpec("contains", {"mode": "all"}),)


def test_jsonl_without_header_gets_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, '{"id": 1, "prompt": "hi"}\n', "mini.jsonl")
    suite = load_suite(path)
    assert suite.name == "mini" and suite.alpha == 0.05 and suite.power == 0.8
    assert suite.cases[0].id == "1"


@pytest.mark.parametrize("suffix", [".yaml", ".jsonl"])
def test_dump_then_load_gives_the_same_suite(tmp_path: Path, suffix: str) -> None:
    suite = load_suite(FIXTURES / "smoke.yaml")
    out = tmp_path / f"copy{suffix}"
    dump_suite(suite, out)
    assert load_suite(out) == suite
    if suffix == ".jsonl":
        assert (tmp_path / "copy.suite.yaml").is_file()


def test_dump_keeps_an_empty_expected_list(tmp_path: Path) -> None:
    text = """
cases:
  - id: irrelevant
    messages: [{role: user, content: hi}]
    tools: [{type: function, function: {name: f, parameters: {type: object}}}]
    expected: []
"""
    suite = load_suite(write(tmp_path, text))
    dump_suite(suite, tmp_path / "out.yaml")
    assert load_suite(tmp_path / "out.yaml").cases[0].expected == []


def test_multiline_strings_dump_as_blocks(tmp_path: Path) -> None:
    suite = load_suite(write(tmp_path, 'cases: [{id: a, prompt: "line one\\nline two"}]'))
    dump_suite(suite, tmp_path / "out.yaml")
    assert "content: |-\n" in (tmp_path / "out.yaml").read_text()


def test_yaml_1_1_surprises_stay_strings(tmp_path: Path) -> None:
    text = (
        "cases:\n  - id: a\n    prompt: hi\n    expected: no\n    tags: {lang: no, day: 2024-01-02}\n"
        "    params: {stream: false, logprobs: True}\n"
    )
    case = load_suite(write(tmp_path, text)).cases[0]
    assert case.expected == "no"
    assert case.tags == {"lang": "no", "day": "2024-01-02"}
    assert case.params == {"stream": False, "logprobs": True}
    dump_suite(load_suite(write(tmp_path, text)), tmp_path / "out.yaml")
    assert load_suite(tmp_path / "out.yaml").cases[0] == case


def test_render_template_fills_plain_fields_only() -> None:
    assert render_template("{a} + {b!r} = {c:>3}", {"a": 1, "b": "x", "c": 7}) == (
        "1 + 'x' =   7",
        {"a", "b", "c"},
    )
    assert render_template("{{literal}} {a}", {"a": 1})[0] == "{literal} 1"
    with pytest.raises(ValueError, match="not a plain name"):
        render_template("{a.__class__}", {"a": 1})
    with pytest.raises(ValueError, match="not a plain name"):
        render_template("{a[0]}", {"a": [1]})
    with pytest.raises(ValueError, match="no variable"):
        render_template("{missing}", {})
    with pytest.raises(ValueError, match="nested"):
        render_template("{a:{w}}", {"a": 1, "w": 3})


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        ("cases:\n  - id: a\n    prompt: hi\n    colour: red\n", 4, "cases[0]", "unknown key(s) ['colour']"),
        ("cases:\n  - id: a\n", 2, "cases[0] (id 'a')", "exactly one of 'messages' or 'prompt'"),
        (
            "cases:\n  - id: a\n    prompt: hi\n    messages: [{role: user, content: x}]\n",
            2,
            "cases[0] (id 'a')",
            "exactly one",
        ),
        ("cases:\n  - prompt: hi\n", 2, "cases[0].id", "needs an 'id'"),
        (
            "cases:\n  - id: a\n    prompt: 'Hi {name}'\n",
            3,
            "cases[0] (id 'a').prompt",
            "template field {name} has no variable",
        ),
        (
            "cases:\n  - id: a\n    prompt: 'Hi {name}'\n    variables: {name: x, extra: y}\n",
            4,
            "cases[0] (id 'a').variables",
            "['extra'] not used",
        ),
        (
            "cases:\n  - id: a\n    prompt: hi\n    graders: [exact, fuzzy]\n",
            4,
            "cases[0] (id 'a').graders[1]",
            "unknown grader kind 'fuzzy'",
        ),
        (
            "cases:\n  - id: a\n    prompt: hi\n    graders:\n"
            "      - {kind: regex, params: {pattern: '('}}\n",
            5,
            "cases[0] (id 'a').graders[0]",
            "bad pattern",
        ),
        (
            "cases:\n  - id: a\n    prompt: hi\n    graders:\n"
            "      - {kind: numeric, params: {tolerance: 1}}\n",
            5,
            "cases[0] (id 'a').graders[0]",
            "unknown parameter(s) ['tolerance']",
        ),
        (
            "cases:\n  - id: a\n    messages:\n      - {role: robot, content: x}\n",
            4,
            "cases[0] (id 'a').messages[0]",
            "needs a 'role'",
        ),
        (
            "cases:\n  - id: a\n    prompt: hi\n    params: {model: gpt-x}\n",
            4,
            "cases[0] (id 'a').params",
            "['model'] cannot be request params",
        ),
        (
            "cases:\n  - id: a\n    prompt: hi\n"
            "    tools: [{type: function, function: {name: f, parameters: {type: 7}}}]\n",
            4,
            "cases[0] (id 'a').tools[0]",
            "invalid JSON Schema",
        ),
        (
            "cases:\n  - {id: a, prompt: hi}\n  - {id: a, prompt: ho}\n",
            3,
            "id",
            "duplicate case id (first on line 2)",
        ),
        ("alpha: 1.5\ncases:\n  - {id: a, prompt: hi}\n", 1, "alpha", "strictly between 0.0 and 1.0"),
        (
            "margins:\n  - {metric: m, delta: -1}\ncases:\n  - {id: a, prompt: hi}\n",
            2,
            "margins[0]",
            "'delta' must be >= 0",
        ),
        (
            "source: {name: x, version: '1', license: MIT}\ncases:\n  - {id: a, prompt: hi}\n",
            1,
            "source",
            "spelled 'licence'",
        ),
        ("name: a\nname: b\ncases: []\n", 2, "", "duplicate key 'name' (first on line 1)"),
        ("cases: [\n", 2, "", "expected"),
        ("name: x\n", 1, "cases", "needs a non-empty list"),
    ],
)
def test_yaml_errors_name_file_line_and_field(
    tmp_path: Path, text: str, line: int, field: str, message: str
) -> None:
    err = error_of(write(tmp_path, text))
    assert err.path.endswith("suite.yaml")
    assert err.line == line, str(err)
    assert err.field == field, str(err)
    assert message in err.message, str(err)
    assert str(err).startswith(f"{err.path}:{line}: ")


def test_jsonl_errors_name_the_line_number(tmp_path: Path) -> None:
    path = write(tmp_path, '{"id": "a", "prompt": "x"}\n\n{"id": "b", "prompt": "{y}"}\n', "c.jsonl")
    err = error_of(path)
    assert (err.line, err.field) == (3, "case (id 'b').prompt")
    path = write(tmp_path, '{"id": "a", "prompt": "x"}\nnot json\n', "d.jsonl")
    err = error_of(path)
    assert err.line == 2 and "not JSON" in err.message
    path = write(tmp_path, '{"id": "a", "prompt": "x"}\n{"id": "a", "prompt": "y"}\n', "e.jsonl")
    assert error_of(path).line == 2


def test_jsonl_header_may_not_hold_cases(tmp_path: Path) -> None:
    write(tmp_path, "cases: []\n", "suite.yaml")
    err = error_of(write(tmp_path, json.dumps({"id": "a", "prompt": "x"}) + "\n", "c.jsonl"))
    assert err.path.endswith("suite.yaml") and err.field == "cases"


def test_system_and_a_system_message_conflict(tmp_path: Path) -> None:
    text = (
        "cases:\n  - id: a\n    system: s\n"
        "    messages: [{role: system, content: t}, {role: user, content: u}]\n"
    )
    assert "both 'system' and a system message" in error_of(write(tmp_path, text)).message


def test_default_system_yields_to_a_case_system_message(tmp_path: Path) -> None:
    text = (
        "defaults: {system: default}\ncases:\n"
        "  - id: a\n    messages: [{role: system, content: own}, {role: user, content: u}]\n"
        "  - id: b\n    messages: [{role: user, content: u}]\n"
    )
    suite = load_suite(write(tmp_path, text))
    assert suite.cases[0].messages[0]["content"] == "own"
    assert suite.cases[1].messages[0] == {"role": "system", "content": "default"}


def test_other_suffixes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match=r"\.yaml, \.yml or \.jsonl"):
        load_suite(write(tmp_path, "{}", "suite.json"))


def test_shipped_example_suite_loads() -> None:
    """README points users at examples/suite.yaml as the suite format: it must stay valid."""
    from pathlib import Path

    from relaygate.evals.suites import load_suite

    suite = load_suite(Path(__file__).resolve().parents[2] / "examples" / "suite.yaml")
    assert [c.id for c in suite.cases] == ["capital-fr", "add", "weather-tool", "json-person"]
    assert {m.metric for m in suite.margins} == {"normalized", "latency_p95"}
