"""Upstream answers caused by the request itself, through the real gateway and the sim.

A deployment that cannot take the input (llama.cpp answers an image sent to a text-only model
with HTTP 500 "image input is not supported"), a prompt too long for every context window, or
a client error must: move on to the next deployment without a retry, never count toward a
circuit breaker, and, when no deployment can serve the request, answer a 400 naming the field
(``context_length_exceeded`` for length) rather than a 5xx the SDKs would retry.
Bodies are the ones llama.cpp's server sends (tests/fixtures/llamacpp/).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import orjson
import pytest

from relaygate.sim import SimHandle, run_sim_in_thread
from tests.e2e.harness import RunningGateway, run_gateway

LLAMACPP = Path(__file__).parent.parent / "fixtures" / "llamacpp"
IMAGE_500 = orjson.loads((LLAMACPP / "error_image_unsupported.json").read_bytes())
AUDIO_500 = orjson.loads((LLAMACPP / "error_audio_unsupported.json").read_bytes())
CONTEXT_400 = orjson.loads((LLAMACPP / "error_context_size.json").read_bytes())
PNG = "data:image/png;base64,iVBORw0KGgo="
IMAGE_MSG: Any = [
    {"role": "system", "content": "Be brief."},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": PNG}},
        ],
    },
]
AUDIO_MSG: Any = [
    {
        "role": "user",
        "content": [{"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}],
    }
]
MSG: Any = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with run_sim_in_thread({}) as handle:
        yield handle


@pytest.fixture
def gw_factory(sim: SimHandle, tmp_path: Path) -> Iterator[Any]:
    stack: list[Any] = []

    def start(routes: str, scenario: dict[str, Any]) -> RunningGateway:
        sim.set_scenario({"models": scenario})
        sim.reset()
        config = f"""
providers:
  p1: {{protocol: openai, base_url: "{sim.url}"}}
  p2: {{protocol: openai, base_url: "{sim.url}"}}
routes:
{routes}
retry: {{max_attempts: 3, backoff_base_ms: 10, backoff_max_ms: 50, max_wait_ms: 500}}
breaker: {{failure_threshold: 3, cooldown_s: 30}}
auth: {{mode: open}}
"""
        cm = run_gateway(config, storage_url=f"sqlite:///{tmp_path}/t.db")
        stack.append(cm)
        return cm.__enter__()

    yield start
    for cm in reversed(stack):
        cm.__exit__(None, None, None)


SOLO = "  solo:\n    deployments:\n      - {provider: p1, model: text-only}\n"
PAIR = """  pair:
    deployments:
      - {provider: p1, model: text-only}
      - {provider: p2, model: vision}
"""


def client(gw: RunningGateway, retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key="sk-test", max_retries=retries, timeout=20)


def count(sim: SimHandle, model: str) -> int:
    return int(sim.stats()["models"].get(model, {}).get("requests", 0))


def answer(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"status": status, "body": body}


def test_unsupported_image_is_a_400_naming_the_part_without_retry(gw_factory: Any, sim: SimHandle) -> None:
    gw = gw_factory(SOLO, {"text-only": answer(500, IMAGE_500)})
    with pytest.raises(openai.BadRequestError) as exc:
        client(gw, retries=2).chat.completions.create(model="solo", messages=IMAGE_MSG)
    err = exc.value.response.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert err["param"] == "messages[1].content[1].type"
    assert err["code"] == "unsupported_value"
    assert (
        "messages[1].content[1].type" in err["message"] and "image input is not supported" in err["message"]
    )
    assert count(sim, "text-only") == 1  # neither retried by the gateway nor by the SDK


def test_unsupported_audio_names_the_audio_part(gw_factory: Any) -> None:
    gw = gw_factory(SOLO, {"text-only": answer(500, AUDIO_500)})
    with pytest.raises(openai.BadRequestError) as exc:
        client(gw).chat.completions.create(model="solo", messages=AUDIO_MSG)
    assert exc.value.response.json()["error"]["param"] == "messages[0].content[0].type"


def test_unsupported_input_moves_on_to_a_deployment_that_can(gw_factory: Any, sim: SimHandle) -> None:
    gw = gw_factory(PAIR, {"text-only": answer(500, IMAGE_500), "vision": {"reply": "a cat"}})
    raw = client(gw).chat.completions.with_raw_response.create(model="pair", messages=IMAGE_MSG)
    assert raw.parse().choices[0].message.content == "a cat"
    assert raw.headers["x-relaygate-deployment"] == "p2/vision"
    assert count(sim, "text-only") == 1


@pytest.mark.parametrize(
    ("status", "body"),
    [(500, IMAGE_500), (400, CONTEXT_400), (400, {"error": {"message": "Invalid 'foo'", "type": "x"}})],
    ids=["unsupported", "context_length", "client_error"],
)
def test_request_caused_failures_never_open_the_breaker(
    gw_factory: Any, sim: SimHandle, status: int, body: dict[str, Any]
) -> None:
    gw = gw_factory(SOLO, {"text-only": answer(status, body)})
    c = client(gw)
    for _ in range(10):  # threshold 3
        with pytest.raises(openai.BadRequestError):
            c.chat.completions.create(model="solo", messages=IMAGE_MSG)
    assert count(sim, "text-only") == 10  # one upstream call each: no retries
    assert gw.gateway.runtime.router.breakers.get("p1/text-only").state == "closed"
    sim.set_scenario({"models": {"text-only": {"reply": "still here"}}})
    assert c.chat.completions.create(model="solo", messages=MSG).choices[0].message.content == "still here"


def test_context_length_everywhere_is_openai_context_length_exceeded(gw_factory: Any, sim: SimHandle) -> None:
    gw = gw_factory(
        PAIR, {"text-only": answer(400, CONTEXT_400), "vision": {"error": {"preset": "context_length"}}}
    )
    with pytest.raises(openai.BadRequestError) as exc:
        client(gw, retries=2).chat.completions.create(model="pair", messages=MSG)
    err = exc.value.response.json()["error"]
    assert (err["type"], err["param"], err["code"]) == (
        "invalid_request_error",
        "messages",
        "context_length_exceeded",
    )
    assert "p1/text-only" in err["message"] and "p2/vision" in err["message"]
    assert count(sim, "text-only") == 1 and count(sim, "vision") == 1  # the SDK did not retry a 400


def test_context_length_and_unsupported_mix_is_context_length_exceeded(gw_factory: Any) -> None:
    gw = gw_factory(PAIR, {"text-only": answer(500, IMAGE_500), "vision": answer(400, CONTEXT_400)})
    with pytest.raises(openai.BadRequestError) as exc:
        client(gw).chat.completions.create(model="pair", messages=IMAGE_MSG)
    err = exc.value.response.json()["error"]
    assert err["code"] == "context_length_exceeded"
    assert "unsupported" in err["message"] and "context_length" in err["message"]  # every cause kept


def test_a_server_error_among_the_causes_stays_5xx(gw_factory: Any) -> None:
    """p2 could serve it once it is back: 503, not the client's 400."""
    gw = gw_factory(PAIR, {"text-only": answer(500, IMAGE_500), "vision": {"error": {"status": 500}}})
    with pytest.raises(openai.APIStatusError) as exc:
        client(gw).chat.completions.create(model="pair", messages=IMAGE_MSG)
    assert exc.value.status_code == 503


def test_messages_image_on_text_only_route_is_anthropic_400_naming_the_block(
    gw_factory: Any, sim: SimHandle
) -> None:
    gw = gw_factory(SOLO, {"text-only": answer(500, IMAGE_500)})
    c = anthropic.Anthropic(base_url=gw.url, api_key="sk-test", max_retries=2, timeout=20)
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    with pytest.raises(anthropic.BadRequestError) as exc:
        c.messages.create(
            model="solo",
            max_tokens=8,
            system="Be brief.",
            messages=[{"role": "user", "content": [{"type": "text", "text": "what?"}, image]}],  # type: ignore[list-item]
        )
    body = exc.value.response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "messages[0].content[1].type" in body["error"]["message"]  # the client's own indexes
    assert count(sim, "text-only") == 1
    assert gw.gateway.runtime.router.breakers.get("p1/text-only").failures == 0
