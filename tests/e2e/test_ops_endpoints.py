"""Operations surface end to end: ``/healthz``, ``/metrics`` (Prometheus text) and the
``x-relaygate-*`` / ``x-request-id`` response headers on successes, failovers and errors.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import RunningGateway, run_gateway

MSG: Any = [{"role": "user", "content": "hi"}]


@dataclass
class Ops:
    gw: RunningGateway
    http: httpx.Client
    sdk: openai.OpenAI

    def chat(self, model: str, **fields: Any) -> httpx.Response:
        return self.http.post(
            self.gw.base_url + "/chat/completions", json={"model": model, "messages": MSG, **fields}
        )

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """``{(sample name, sorted labels): value}`` from ``GET /metrics``."""
        resp = self.http.get(self.gw.url + "/metrics")
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/plain")
        out = {}
        for family in text_string_to_metric_families(resp.text):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def row(self, request_id: str) -> Any:
        """The ledger row of ``request_id``. A stream's row is recorded just after its last byte
        is sent, so the client can finish first: wait for it (bounded)."""
        deadline = time.monotonic() + 5
        while True:
            self.gw.flush_ledger()
            for r in self.gw.gateway.ledger._sink.list_usage(1000):
                if r.request_id == request_id:
                    return r
            assert time.monotonic() < deadline, f"no ledger row for {request_id}"
            time.sleep(0.02)


@pytest.fixture
def ops(
    e2e_config: Callable[..., str],
    e2e_db_url: str,
    e2e_http: httpx.Client,
    e2e_openai: Callable[..., openai.OpenAI],
) -> Iterator[Ops]:
    with run_gateway(e2e_config(), storage_url=e2e_db_url) as gw:
        yield Ops(gw, e2e_http, e2e_openai(gw.base_url))


def _labels(**kw: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(kw.items()))


# --- /healthz -------------------------------------------------------------------------------


def test_healthz_reports_ok_and_providers(ops: Ops) -> None:
    resp = ops.http.get(ops.gw.url + "/healthz")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["status"] == "ok"
    assert body["providers"] == {"up": {"status": "ok"}}
    assert set(body["ledger"]) >= {"pending", "written", "write_errors", "dropped"}
    assert body["ledger"]["dropped"] == 0


def test_healthz_shows_breakers_and_ledger_progress(ops: Ops) -> None:
    assert ops.chat("chat").status_code == 200
    ops.gw.flush_ledger()
    body = ops.http.get(ops.gw.url + "/healthz").json()
    assert body["circuit_breakers"]["up/m1"] == "closed"
    assert body["ledger"]["written"] == 1
    assert body["ledger"]["pending"] == 0


def test_healthz_wrong_method_is_405(ops: Ops) -> None:
    resp = ops.http.post(ops.gw.url + "/healthz")
    assert resp.status_code == 405
    assert set(resp.json()["error"]) == {"message", "type", "param", "code"}


# --- /metrics -------------------------------------------------------------------------------


def test_metrics_count_requests_by_route_and_status(ops: Ops) -> None:
    assert ops.chat("chat").status_code == 200
    assert ops.chat("chat").status_code == 200
    assert ops.chat("chat", temperature="hot").status_code == 400
    assert ops.chat("nope").status_code == 404
    assert ops.chat("bad").status_code == 400  # the upstream's own 400, relayed
    m = ops.metrics()
    assert m[("relaygate_requests_total", _labels(route="chat", status="200"))] == 2
    # a body rejected while parsing has no route yet
    assert m[("relaygate_requests_total", _labels(route="", status="400"))] == 1
    # an unknown model is counted under route="" (client strings never become label values)
    assert m[("relaygate_requests_total", _labels(route="", status="404"))] >= 1
    assert m[("relaygate_requests_total", _labels(route="bad", status="400"))] == 1
    assert m[("relaygate_upstream_attempts_total", _labels(deployment="up/m1", outcome="ok"))] == 2
    assert (
        m[("relaygate_upstream_attempts_total", _labels(deployment="up/up400", outcome="client_error"))] == 1
    )
    assert m[("relaygate_request_duration_seconds_count", _labels(route="chat"))] == 2
    # tokens and cost of the served deployment (sim: 4 prompt + 2 completion tokens per call)
    assert m[("relaygate_tokens_total", _labels(deployment="up/m1", kind="prompt"))] == 8
    assert m[("relaygate_tokens_total", _labels(deployment="up/m1", kind="completion"))] == 4
    assert m[("relaygate_cost_usd_total", _labels(deployment="up/m1"))] == pytest.approx(
        (8 * 1.0 + 4 * 2.0) / 1e6
    )


def test_metrics_count_failed_and_retried_attempts(ops: Ops) -> None:
    assert ops.chat("failover").status_code == 200
    assert ops.chat("down").status_code == 503
    m = ops.metrics()
    assert (
        m[("relaygate_upstream_attempts_total", _labels(deployment="up/up503", outcome="server_error"))] == 4
    )
    assert m[("relaygate_upstream_attempts_total", _labels(deployment="up/m1", outcome="ok"))] == 1
    assert m[("relaygate_requests_total", _labels(route="failover", status="200"))] == 1
    assert m[("relaygate_requests_total", _labels(route="down", status="503"))] == 1
    assert m[("relaygate_circuit_breaker_open", _labels(deployment="up/up503"))] == 0  # 4 < threshold 5


def test_metrics_count_streams_and_ledger_gauges(ops: Ops) -> None:
    sdk = ops.sdk.chat.completions.with_streaming_response
    with sdk.create(model="chat", messages=MSG, stream=True) as r:
        assert "".join(c.choices[0].delta.content or "" for c in r.parse() if c.choices) == "hello there"
    ops.row(r.headers["x-request-id"])  # recorded (and written) once the stream is finalised
    m = ops.metrics()
    assert m[("relaygate_requests_total", _labels(route="chat", status="200"))] == 1
    assert m[("relaygate_time_to_first_token_seconds_count", _labels(route="chat"))] == 1
    assert m[("relaygate_ledger_written_rows", ())] == 1
    assert m[("relaygate_ledger_dropped_rows", ())] == 0


# --- response headers -----------------------------------------------------------------------


def test_success_headers_name_the_deployment(ops: Ops) -> None:
    raw = ops.sdk.chat.completions.with_raw_response.create(model="chat", messages=MSG)
    h = raw.headers
    assert h["x-relaygate-deployment"] == "up/m1"
    assert h["x-relaygate-provider"] == "up"
    assert h["x-relaygate-attempts"] == "1"
    rid = h["x-request-id"]
    assert rid
    row = ops.row(rid)  # the header names the ledger row
    assert (row.status, row.served_deployment, row.served_provider) == (200, "up/m1", "up")


def test_stream_headers_name_the_deployment(ops: Ops) -> None:
    with ops.sdk.chat.completions.with_streaming_response.create(
        model="second", messages=MSG, stream=True
    ) as resp:
        h = resp.headers
        assert h["content-type"].startswith("text/event-stream")
        text = "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices)
    assert text == "second deployment"
    assert (h["x-relaygate-deployment"], h["x-relaygate-provider"], h["x-relaygate-attempts"]) == (
        "up/m2",
        "up",
        "1",
    )
    assert ops.row(h["x-request-id"]).served_deployment == "up/m2"


def test_failover_headers_count_every_attempt(ops: Ops) -> None:
    resp = ops.chat("failover")
    assert resp.status_code == 200
    # two tries on the overloaded deployment (retry.max_attempts 2), then the next one
    assert resp.headers["x-relaygate-attempts"] == "3"
    assert resp.headers["x-relaygate-deployment"] == "up/m1"
    row = ops.row(resp.headers["x-request-id"])
    assert [(a.deployment, a.error_class) for a in row.attempts] == [
        ("up/up503", "server_error"),
        ("up/up503", "server_error"),
        ("up/m1", None),
    ]


@pytest.mark.parametrize(
    ("model", "fields", "status", "attempts"),
    [
        ("chat", {"temperature": "hot"}, 400, "0"),
        ("nope", {}, 404, "0"),
        ("down", {}, 503, "2"),
        ("bad", {}, 400, "1"),
    ],
    ids=["bad_param", "unknown_model", "all_failed", "relayed_upstream_400"],
)
def test_error_headers_carry_request_id_and_attempts(
    ops: Ops, model: str, fields: dict[str, Any], status: int, attempts: str
) -> None:
    resp = ops.chat(model, **fields)
    assert resp.status_code == status
    assert set(resp.json()["error"]) == {"message", "type", "param", "code"}
    assert resp.headers["x-relaygate-attempts"] == attempts
    row = ops.row(resp.headers["x-request-id"])
    assert row.status == status
    assert len(row.attempts) == int(attempts)
    if model != "bad":  # nothing was served (the relayed case is checked below)
        assert "x-relaygate-deployment" not in resp.headers


def test_request_ids_are_unique(ops: Ops) -> None:
    ids = {ops.chat("chat").headers["x-request-id"] for _ in range(5)}
    ids |= {ops.chat("nope").headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 10


def test_relayed_upstream_error_names_the_deployment(ops: Ops) -> None:
    """The upstream's own 4xx, relayed unchanged, still says which deployment answered."""
    resp = ops.chat("bad")
    assert resp.status_code == 400
    assert resp.headers.get("x-relaygate-deployment") == "up/up400"
    assert resp.headers.get("x-relaygate-provider") == "up"


@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/nope"), ("GET", "/v1/chat/completions")])
def test_router_errors_carry_a_request_id(ops: Ops, method: str, path: str) -> None:
    """404 (unknown URL) and 405 answers carry x-request-id like every chat response."""
    resp = ops.http.request(method, ops.gw.url + path)
    assert resp.status_code in (404, 405)
    assert resp.headers.get("x-request-id")


def test_unknown_models_do_not_create_metric_series(ops: Ops) -> None:
    for i in range(20):
        assert ops.chat(f"no-such-model-{i}").status_code == 404
    assert ops.chat("Z" * 50_000).status_code == 404
    routes = {dict(labels)["route"] for (name, labels) in ops.metrics() if name == "relaygate_requests_total"}
    configured = {"chat", "second", "bad", "down", "failover"}
    assert len(routes - configured) <= 1, sorted(r[:40] for r in routes)
    assert len(ops.http.get(ops.gw.url + "/metrics").content) < 100_000
