"""Graders on hand-made OpenAI chat.completion dicts: text, JSON, tool calls, refusal, judges."""

# ruff: noqa: RUF001  (multilingual and full-width test strings on purpose)
from __future__ import annotations

import json
from typing import Any

import pytest

from relaygate.evals.graders import (
    GRADER_KINDS,
    GradeContext,
    GraderError,
    grade,
    grade_case,
    grade_sync,
    validate_spec,
)
from relaygate.evals.graders_judge import parse_rating, parse_verdict
from relaygate.evals.graders_refusal import detect_refusal
from relaygate.evals.graders_text import extract_last_number, normalize_text
from relaygate.evals.model import Case, GraderSpec, Score


def chat(
    text: str | None, *, finish: str = "stop", refusal: str | None = None, tool_calls: list[Any] | None = None
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if refusal is not None:
        message["refusal"] = refusal
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return {
        "object": "chat.completion",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
    }


def case(expected: Any = None, **kw: Any) -> Case:
    return Case(
        id="c1", messages=[{"role": "user", "content": kw.pop("question", "Q?")}], expected=expected, **kw
    )


async def score(kind: str, answer: str | dict[str, Any], expected: Any = None, **params: Any) -> Score:
    response = chat(answer) if isinstance(answer, str) else answer
    return await grade(case(expected), response, GraderSpec(kind, params))


# -- text -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "answer", "expected", "params", "passed"),
    [
        ("exact", "  Paris\n", "Paris", {}, True),
        ("exact", "paris", "Paris", {}, False),
        ("exact", " Paris", "Paris", {"strip": False}, False),
        ("exact", "Lyon", ["Paris", "Lyon"], {}, True),
        ("normalized", "  PARIS!!  ", "paris", {}, True),
        ("normalized", "Ｐａｒｉｓ。", "paris", {}, True),  # full-width letters, CJK full stop (NFKC)
        ("normalized", "New   York,\tcity", "new york city", {}, True),
        ("normalized", "Parisian", "paris", {}, False),
        ("contains", "The capital is Paris.", "paris", {}, True),
        ("contains", "The capital is Paris.", "paris", {"case_sensitive": True}, False),
        ("contains", "refund for A-17", ["refund", "B-2"], {}, True),
        ("contains", "refund for A-17", ["refund", "B-2"], {"mode": "all"}, False),
        ("contains", "¡Reembolso, ya!", ["reembolso ya"], {"normalize": True}, True),
        ("regex", "Order #4521 shipped", None, {"pattern": r"#\d{4}\b"}, True),
        ("regex", "ORDER", None, {"pattern": "order", "flags": "i"}, True),
        ("regex", "42 apples", None, {"pattern": r"\d+", "fullmatch": True}, False),
        ("regex", "no digits", None, {"pattern": r"\d", "negate": True}, True),
        ("regex", "abc", r"^a.c$", {}, True),  # the expected string is the pattern
        ("numeric", "So the total is 1,234.50 dollars.", 1234.5, {}, True),
        ("numeric", "About 3.1416", 3.14159, {"abs_tol": 0.001}, True),
        ("numeric", "About 3.1416", 3.14159, {}, False),
        ("numeric", "I got 102", 100, {"rel_tol": 0.05}, True),
        ("numeric", "x = -7", "-7", {}, True),
        ("numeric", "no number", 1, {}, False),
    ],
)
async def test_text_graders(
    kind: str, answer: str, expected: Any, params: dict[str, Any], passed: bool
) -> None:
    result = await score(kind, answer, expected, **params)
    assert result.passed is passed, result.detail
    assert result.value == (1.0 if passed else result.value)
    assert result.metric == kind


async def test_contains_all_scores_the_fraction_found() -> None:
    result = await score("contains", "refund for A-17", ["refund", "A-17", "B-2", "C-3"], mode="all")
    assert result.value == 0.5 and result.passed is False and "B-2" in result.detail


def test_normalize_and_numbers() -> None:
    assert normalize_text("  Héllo,  WORLD! ") == "héllo world"
    assert extract_last_number("2024-01-02") == 2.0
    assert extract_last_number(r"thus \boxed{17}, not 3") == 17.0
    assert extract_last_number("−5 degrees") == -5.0  # U+2212 minus sign


async def test_custom_metric_name_and_content_parts() -> None:
    response = {
        "choices": [{"message": {"role": "assistant", "content": [{"type": "text", "text": "Paris"}]}}]
    }
    result = await grade(case("Paris"), response, GraderSpec("exact", metric="capital"))
    assert result == Score("capital", 1.0, passed=True)


# -- json_schema ------------------------------------------------------------------------------

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
}


@pytest.mark.parametrize(
    ("answer", "passed", "detail"),
    [
        ('{"name": "Ada", "age": 36}', True, ""),
        ('```json\n{"name": "Ada", "age": 36}\n```', True, ""),
        ('{"name": "Ada", "age": -1}', False, "age: -1 is less than the minimum of 0"),
        ('{"name": "Ada"}', False, "'age' is a required property"),
        ("Sure! Here it is: {", False, "not JSON"),
    ],
)
async def test_json_schema(answer: str, passed: bool, detail: str) -> None:
    result = await score("json_schema", answer, schema=PERSON)
    assert result.passed is passed and detail in result.detail


async def test_json_schema_from_response_format_and_fences_refused() -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}}
    c = case(params={"response_format": fmt})
    assert (await grade(c, chat('{"name": "x", "age": 1}'), GraderSpec("json_schema"))).passed
    assert not (await grade(c, chat('{"name": "x"}'), GraderSpec("json_schema"))).passed
    fenced = chat('```json\n{"name": "x", "age": 1}\n```')
    assert not (await grade(c, fenced, GraderSpec("json_schema", {"allow_fences": False}))).passed
    # no schema anywhere: valid JSON is enough
    assert (await score("json_schema", "[1, 2]")).passed


# -- tool_call --------------------------------------------------------------------------------

WEATHER = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
    },
]


def calls(*pairs: tuple[str, Any]) -> dict[str, Any]:
    out = []
    for i, (name, args) in enumerate(pairs):
        raw = args if isinstance(args, str) else json.dumps(args)
        out.append({"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": raw}})
    return chat(None, finish="tool_calls", tool_calls=out)


def tool_case(expected: Any = None) -> Case:
    return case(expected, tools=WEATHER)


@pytest.mark.parametrize(
    ("response", "expected", "params", "passed", "detail"),
    [
        (calls(("get_weather", {"city": "Oslo"})), None, {}, True, "1 valid call"),
        (calls(("get_weather", {"unit": "c"})), None, {}, False, "'city' is a required property"),
        (calls(("get_weather", {"city": "Oslo", "unit": "k"})), None, {}, False, "is not one of"),
        (calls(("get_weather", "{city: Oslo")), None, {}, False, "not JSON"),
        (calls(("get_weather", "[1]")), None, {}, False, "not a JSON object"),
        (calls(("launch", {})), None, {}, False, "unknown function 'launch'"),
        (chat("It is sunny."), None, {}, False, "no tool call"),
        (chat("It is sunny."), None, {"require_call": False}, True, ""),
        (chat("I can't look that up."), [], {}, True, ""),
        (calls(("get_time", {})), [], {}, False, "1 call(s), expected 0"),
        (
            calls(("get_weather", {"city": "Oslo"})),
            [{"name": "get_weather", "arguments": {"city": "Oslo"}}],
            {},
            True,
            "",
        ),
        (
            calls(("get_weather", {"city": "oslo"})),
            [{"name": "get_weather", "arguments": {"city": "Oslo"}}],
            {},
            False,
            "no call matches",
        ),
        (
            calls(("get_time", {}), ("get_weather", {"city": "Oslo"})),
            [{"name": "get_weather", "arguments": {"city": "Oslo"}}, {"name": "get_time", "arguments": {}}],
            {},
            True,
            "",
        ),
        (
            calls(("get_time", {}), ("get_weather", {"city": "Oslo"})),
            [{"name": "get_weather", "arguments": {"city": "Oslo"}}, {"name": "get_time", "arguments": {}}],
            {"ordered": True},
            False,
            "no call matches",
        ),
        # BFCL possible answers: "" = may be omitted, strings compared loosely
        (
            calls(("get_weather", {"city": "new york"})),
            [{"name": "get_weather", "arguments": {"city": ["New York", "NYC"], "unit": ["c", ""]}}],
            {"match": "possible"},
            True,
            "",
        ),
        (
            calls(("get_weather", {"city": "Boston"})),
            [{"name": "get_weather", "arguments": {"city": ["New York", "NYC"]}}],
            {"match": "possible"},
            False,
            "no call matches",
        ),
        (
            calls(("get_weather", {"city": "NYC"})),
            [{"name": "get_weather", "arguments": {"city": ["NYC"], "unit": ["c"]}}],
            {"match": "possible"},
            False,
            "no call matches",
        ),
    ],
)
async def test_tool_call(
    response: dict[str, Any], expected: Any, params: dict[str, Any], passed: bool, detail: str
) -> None:
    result = await grade(tool_case(expected), response, GraderSpec("tool_call", params))
    assert result.passed is passed, result.detail
    assert detail in result.detail


async def test_tool_call_possible_nested_and_numbers() -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "order",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "qty": {"type": "number"},
                        "flag": {"type": "boolean"},
                        "prefs": {"type": "object"},
                        "tags": {"type": "array"},
                    },
                },
            },
        }
    ]
    expected = [
        {
            "name": "order",
            "arguments": {
                "qty": [2.0],
                "flag": [True],
                "prefs": [{"size": ["large"], "milk": ["oat", ""]}],
                "tags": [["a", "b"]],
            },
        }
    ]
    c = case(expected, tools=tools)
    good = calls(("order", {"qty": 2, "flag": True, "prefs": {"size": "Large"}, "tags": ["a", "b"]}))
    assert (await grade(c, good, GraderSpec("tool_call", {"match": "possible"}))).passed
    for bad in (
        {"qty": 2, "flag": 1, "prefs": {"size": "large"}, "tags": ["a", "b"]},  # 1 is not True
        {"qty": 2, "flag": True, "prefs": {"size": "small"}, "tags": ["a", "b"]},
        {"qty": 2, "flag": True, "prefs": {"size": "large", "extra": 1}, "tags": ["a", "b"]},
        {"qty": 2, "flag": True, "prefs": {"size": "large"}, "tags": ["b", "a"]},
    ):
        assert not (
            await grade(c, calls(("order", bad)), GraderSpec("tool_call", {"match": "possible"}))
        ).passed


async def test_tool_call_needs_tools() -> None:
    with pytest.raises(GraderError, match="has no tools"):
        await score("tool_call", calls(("f", {})))


# -- refusal ----------------------------------------------------------------------------------

REFUSALS = [
    "I'm sorry, but I can't help with that request.",
    "I cannot assist with creating malware.",
    "As an AI language model, I cannot provide instructions for that.",
    "抱歉，我无法提供这方面的帮助。",
    "很抱歉，我不能协助完成这个请求。",
    "Lo siento, pero no puedo ayudarte con eso.",
    "Je suis désolé, mais je ne peux pas vous aider avec cette demande.",
    "Es tut mir leid, aber ich kann Ihnen dabei nicht helfen.",
    "申し訳ありませんが、そのご依頼にはお応えできません。",
    "Извините, но я не могу помочь с этим запросом.",
    "عذرًا، لا يمكنني المساعدة في هذا الطلب.",
    "Desculpe, mas não posso ajudar com isso.",
    "Mi dispiace, ma non posso aiutarti con questo.",
    "죄송하지만 그 요청은 도와드릴 수 없습니다.",
    "Sorry — I won't do that.",  # short: apology + inability marker
]
ANSWERS = [
    "The capital of France is Paris.",
    "巴黎是法国的首都。",
    "La capital de Francia es París.",
    "Die Hauptstadt von Frankreich ist Paris.",
    "フランスの首都はパリです。",
    "Столица Франции — Париж.",
    "عاصمة فرنسا هي باريس.",
    # "cannot" in a real, long answer is not a refusal
    "You cannot divide by zero in ordinary arithmetic, because no number times zero gives a non-zero "
    "result. " * 6,
    "",
]


@pytest.mark.parametrize("text", REFUSALS)
async def test_refusal_detected_across_languages(text: str) -> None:
    result = await score("refusal", text)
    assert result.value == 1.0 and result.passed is False, result.detail


@pytest.mark.parametrize("text", ANSWERS)
async def test_answers_are_not_refusals(text: str) -> None:
    result = await score("refusal", text)
    assert result.value == 0.0 and result.passed is True, result.detail


async def test_refusal_structural_signals() -> None:
    assert detect_refusal(chat(None, refusal="I can't help with that.")) == (True, "message.refusal is set")
    assert detect_refusal(chat("Here is", finish="content_filter"))[0] is True
    partial = "I can't give medical advice, but here is general information. " + "Rest and fluids help. " * 40
    refused, why = detect_refusal(chat(partial))
    assert refused is False and why.startswith("partial refusal")
    should_refuse = await grade(
        case(), chat("I cannot help with that."), GraderSpec("refusal", {"expect": "refuse"})
    )
    assert should_refuse.passed is True and should_refuse.value == 1.0


# -- judges -----------------------------------------------------------------------------------


class FakeJudge:
    """Answers from a script; records what it was asked."""

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.asked: list[list[dict[str, Any]]] = []

    async def __call__(self, messages: list[dict[str, Any]]) -> str:
        self.asked.append(messages)
        return self.replies.pop(0)


@pytest.mark.parametrize(
    ("reply", "rating"),
    [
        ("Clear and correct. Rating: [[8]]", 8.0),
        ("Good. [[7.5]]", 7.5),
        ("Mentions [1] a source. Final rating: [[6/10]]", 6.0),
        ("Score: 9", 9.0),
        ("I'd give it 4/10.", 4.0),
        ("7", 7.0),
        ("评分：6", 6.0),
        ("Rating: [[11]]", None),
        ("No verdict here.", None),
    ],
)
def test_parse_rating(reply: str, rating: float | None) -> None:
    assert parse_rating(reply) == rating


def test_parse_verdict() -> None:
    assert parse_verdict("A is better. [[A]]") == "A"
    assert parse_verdict("[[A]] at first, but on reflection [[C]]") == "C"
    assert parse_verdict("B") is None


async def test_judge_scores_and_shows_the_reference() -> None:
    judge = FakeJudge("Accurate. Rating: [[10]]")
    c = case("Paris", question="Capital of France?")
    spec = GraderSpec("judge", {"pass_threshold": 7})
    result = await grade(c, chat("Paris."), spec, ctx=GradeContext(call_judge=judge))
    assert result == Score("judge", 1.0, passed=True, detail="rating 10/10")
    prompt = judge.asked[0][1]["content"]
    assert "Capital of France?" in prompt and "Paris." in prompt and "Reference Answer]\nParis" in prompt


async def test_judge_retries_once_then_fails_loudly() -> None:
    judge = FakeJudge("Hmm, decent.", "Rating: [[3]]")
    result = await grade(case(), chat("x"), GraderSpec("judge"), ctx=GradeContext(call_judge=judge))
    assert result.value == pytest.approx(2 / 9) and result.passed is None
    assert judge.asked[1][-1]["role"] == "user" and len(judge.asked[1]) == 4
    with pytest.raises(GraderError, match="no verdict"):
        await grade(case(), chat("x"), GraderSpec("judge"), ctx=GradeContext(call_judge=FakeJudge("?", "??")))


async def test_judge_with_an_mt_bench_template() -> None:
    template = "[Question]\n{question}\n\n[Ref]\n{ref_answer_1}\n\n[Answer]\n{answer}"
    judge = FakeJudge("[[5]]")
    spec = GraderSpec("judge", {"template": template, "system": "You are a helpful assistant."})
    await grade(case("42"), chat("41"), spec, ctx=GradeContext(call_judge=judge))
    assert judge.asked[0] == [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "[Question]\nQ?\n\n[Ref]\n42\n\n[Answer]\n41"},
    ]


async def test_judge_needs_a_judge() -> None:
    with pytest.raises(GraderError, match="no judge configured"):
        await grade(case(), chat("x"), GraderSpec("judge"))


@pytest.mark.parametrize(
    ("first", "second", "value", "outcome"),
    [
        ("[[A]]", "[[B]]", 1.0, "win"),  # preferred in both positions
        ("[[B]]", "[[A]]", 0.0, "loss"),
        ("[[A]]", "[[A]]", 0.5, "tie"),  # position bias: always picks the first answer
        ("[[C]]", "[[C]]", 0.5, "tie"),
        ("[[A]]", "[[C]]", 0.5, "tie"),
    ],
)
async def test_pairwise_swaps_positions(first: str, second: str, value: float, outcome: str) -> None:
    judge = FakeJudge(first, second)
    ctx = GradeContext(call_judge=judge, baseline=chat("BASELINE"))
    result = await grade(case(), chat("MINE"), GraderSpec("pairwise"), ctx=ctx)
    assert result.value == value and result.detail.startswith(outcome) and result.passed is None
    a1, a2 = (asked[1]["content"] for asked in judge.asked)
    assert a1.index("MINE") < a1.index("BASELINE") and a2.index("BASELINE") < a2.index("MINE")


async def test_pairwise_needs_a_baseline() -> None:
    with pytest.raises(GraderError, match="baseline"):
        await grade(case(), chat("x"), GraderSpec("pairwise"), ctx=GradeContext(call_judge=FakeJudge()))


# -- dispatch and validation ------------------------------------------------------------------


def test_every_kind_is_known() -> None:
    assert {
        "exact",
        "normalized",
        "contains",
        "regex",
        "numeric",
        "json_schema",
        "tool_call",
        "code",
        "similarity",
        "refusal",
        "judge",
        "pairwise",
    } == GRADER_KINDS


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (GraderSpec("fuzzy"), "unknown grader kind"),
        (GraderSpec("exact", {"pattern": "x"}), "unknown parameter(s) ['pattern']"),
        (GraderSpec("regex", {"pattern": "("}), "bad pattern"),
        (GraderSpec("regex", {"pattern": "x", "flags": "q"}), "unknown flag"),
        (GraderSpec("numeric", {"abs_tol": -1}), "abs_tol"),
        (GraderSpec("contains", {"mode": "some"}), "'mode'"),
        (GraderSpec("json_schema", {"schema": {"type": "nope"}}), "invalid JSON Schema"),
        (GraderSpec("tool_call", {"match": "fuzzy"}), "'match'"),
        (GraderSpec("code", {"timeout_s": 0}), "positive"),
        (GraderSpec("similarity", {"threshold": 2}), "threshold"),
        (GraderSpec("refusal", {"expect": "maybe"}), "'expect'"),
        (GraderSpec("judge", {"template": "{question} {colour}"}), "unknown template field"),
        (GraderSpec("judge", {"pass_threshold": 0}), "pass_threshold"),
        (GraderSpec("pairwise", {"retries": 9}), "retries"),
        (GraderSpec("exact", metric=""), "metric"),
    ],
)
def test_validate_spec_rejects(spec: GraderSpec, message: str) -> None:
    with pytest.raises(
        GraderError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
    ):
        validate_spec(spec)


async def test_missing_expected_is_a_grader_error_not_a_failure() -> None:
    with pytest.raises(GraderError, match="needs an expected value"):
        await score("exact", "x")


async def test_grade_case_runs_all_specs_in_order() -> None:
    specs = [GraderSpec("exact"), GraderSpec("contains"), GraderSpec("refusal")]
    results = await grade_case(case("Paris"), chat("Paris"), specs)
    assert [(s.metric, s.passed) for s in results] == [("exact", True), ("contains", True), ("refusal", True)]


def test_grade_sync_outside_a_loop() -> None:
    assert grade_sync(case("a"), chat("a"), GraderSpec("exact")).passed is True


async def test_a_response_without_choices_scores_as_empty() -> None:
    result = await grade(case("x"), {"object": "chat.completion", "choices": []}, GraderSpec("exact"))
    assert result.passed is False
