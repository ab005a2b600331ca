"""Cutoffs end to end: a provider that starts refusing one region, and an operator's cutoff set
through the CLI while the gateway runs.

Provider ``openx`` (model ``ox-m``) is reached through the ``main`` simulator by every region
except CN, whose traffic ``region_base_urls`` sends through the ``cn`` simulator (standing in
for a regional endpoint or egress). When the ``cn`` simulator answers 403 "Country, region, or
territory not supported", only CN is affected. Provider ``alt`` (model ``alt-m``, ``main``
simulator) is the next deployment of the route.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from relaygate.sim import SimHandle, run_sim_in_thread
from tests.e2e.harness import RunningGateway, run_gateway

REPO = Path(__file__).resolve().parents[2]
ADMIN_KEY = "admin-" + "a" * 30
KEYS = {"CN": "cn-tenant-" + "c" * 30, "EU": "eu-tenant-" + "e" * 30, "US": "us-tenant-" + "u" * 30}
MSG: Any = [{"role": "user", "content": "hello"}]
BLOCKED: dict[str, Any] = {"models": {"ox-m": {"error": {"preset": "region_block_403"}}}}
MAIN: dict[str, Any] = {"models": {"ox-m": {"reply": "from openx"}, "alt-m": {"reply": "from alt"}}}


@pytest.fixture(scope="module")
def sims() -> Iterator[tuple[SimHandle, SimHandle]]:
    with run_sim_in_thread(MAIN) as main, run_sim_in_thread(BLOCKED) as cn:
        yield main, cn


@pytest.fixture
def main_sim(sims: tuple[SimHandle, SimHandle]) -> SimHandle:
    sims[0].set_scenario(MAIN)
    sims[0].reset()
    return sims[0]


@pytest.fixture
def cn_sim(sims: tuple[SimHandle, SimHandle]) -> SimHandle:
    sims[1].set_scenario(BLOCKED)
    sims[1].reset()
    return sims[1]


def config(main: SimHandle, cn: SimHandle, cutoffs: str = "{}") -> str:
    return f"""
providers:
  openx:
    protocol: openai
    base_url: "{main.url}"
    jurisdiction: US
    regions: [US]
    region_base_urls: {{CN: "{cn.url}"}}
  alt: {{protocol: openai, base_url: "{main.url}", jurisdiction: SG, regions: [SG]}}
routes:
  chat:
    deployments:
      - {{provider: openx, model: ox-m}}
      - {{provider: alt, model: alt-m}}
  solo:
    deployments:
      - {{provider: openx, model: ox-m}}
tenants:
  t-cn: {{region: CN, keys: [{{key_env: RG_E2E_KEY_CN}}]}}
  t-eu: {{region: EU, keys: [{{key_env: RG_E2E_KEY_EU}}]}}
  t-us: {{region: US, keys: [{{key_env: RG_E2E_KEY_US}}]}}
retry: {{max_attempts: 2, backoff_base_ms: 1, backoff_max_ms: 5}}
cutoffs: {cutoffs}
auth: {{mode: keys}}
"""


@pytest.fixture
def start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, main_sim: SimHandle, cn_sim: SimHandle
) -> Iterator[Callable[..., RunningGateway]]:
    for region, key in KEYS.items():
        monkeypatch.setenv(f"RG_E2E_KEY_{region}", key)
    monkeypatch.setenv("RELAYGATE_ADMIN_KEY", ADMIN_KEY)
    stack: list[Any] = []

    def run(cutoffs: str = "{}") -> RunningGateway:
        cm = run_gateway(config(main_sim, cn_sim, cutoffs), storage_url=f"sqlite:///{tmp_path}/t.db")
        stack.append(cm)
        return cm.__enter__()

    yield run
    for cm in reversed(stack):
        cm.__exit__(None, None, None)


def count(sim: SimHandle, model: str) -> int:
    return int(sim.stats()["models"].get(model, {}).get("requests", 0))


def chat(sdk: Callable[..., openai.OpenAI], gw: RunningGateway, region: str) -> Any:
    return sdk(gw.base_url, KEYS[region], timeout=20).chat.completions.with_raw_response.create(
        model="chat", messages=MSG
    )


def admin_get(http: httpx.Client, gw: RunningGateway, path: str) -> httpx.Response:
    return http.get(gw.url + path, headers={"authorization": f"Bearer {ADMIN_KEY}"})


def detected_metric(text: str, provider: str, region: str) -> float | None:
    for line in text.splitlines():
        if line.startswith("relaygate_cutoffs_detected_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if labels == {"provider": provider, "region": region}:
                return float(line.rsplit(" ", 1)[1])
    return None


# --- a provider blocks one region ---------------------------------------------------------------


def test_region_block_cuts_off_that_region_only(
    start: Callable[..., RunningGateway],
    main_sim: SimHandle,
    cn_sim: SimHandle,
    e2e_openai: Callable[..., openai.OpenAI],
    e2e_http: httpx.Client,
) -> None:
    gw = start()
    # the first CN request hits the block and is served by the next deployment: no client error
    raw = chat(e2e_openai, gw, "CN")
    assert raw.parse().choices[0].message.content == "from alt"
    assert raw.headers["x-relaygate-deployment"] == "alt/alt-m"
    assert raw.headers["x-relaygate-attempts"] == "2"
    assert count(cn_sim, "ox-m") == 1  # a region block is not retried on the same deployment
    first = gw.ledger_rows(1)[0]
    assert [(a.deployment, a.status, a.error_class) for a in first.attempts] == [
        ("openx/ox-m", 403, "region_blocked"),
        ("alt/alt-m", 200, None),
    ]

    # later CN requests do not touch openx at all (neither endpoint)
    for _ in range(4):
        raw = chat(e2e_openai, gw, "CN")
        assert raw.headers["x-relaygate-deployment"] == "alt/alt-m"
        assert raw.headers["x-relaygate-attempts"] == "1"
        assert raw.headers["x-relaygate-policy"] == "excluded=1;cutoffs=1"
    assert count(cn_sim, "ox-m") == 1 and count(main_sim, "ox-m") == 0

    # EU and US tenants keep being served by openx
    for region in ("EU", "US", "EU"):
        raw = chat(e2e_openai, gw, region)
        assert raw.headers["x-relaygate-deployment"] == "openx/ox-m"
        assert "x-relaygate-policy" not in raw.headers
    assert count(main_sim, "ox-m") == 3

    rows = gw.ledger_rows(8)
    assert len(rows) == 8 and all(r.status == 200 for r in rows)
    cn_rows = [r for r in rows if r.tenant_region == "CN"]
    later = [r for r in cn_rows if r.request_id != first.request_id]
    assert later and all(r.policy is not None for r in later)
    for r in later:
        assert r.policy is not None
        (ex,) = r.policy["excluded"]
        assert (ex["deployment"], ex["code"]) == ("openx/ox-m", "cutoff")
        assert "CN" in ex["message"]

    # audit: one cutoff.detected event for openx:CN, by the gateway
    events = admin_get(e2e_http, gw, "/admin/audit?kind=cutoff.").json()["data"]
    detected = [e for e in events if e["kind"] == "cutoff.detected"]
    assert len(detected) == 1
    assert detected[0]["subject"] == "openx:CN" and detected[0]["actor"] == "gateway"
    assert detected[0]["details"]["source"] == "detected"
    assert "region" in detected[0]["details"]["reason"].lower()
    storage = gw.app.state.storage
    assert [e.kind for e in storage.audit.list(kind="cutoff.")] == ["cutoff.detected"]
    assert storage.audit.verify().ok

    # metrics and health
    metrics = e2e_http.get(gw.url + "/metrics").text
    assert detected_metric(metrics, "openx", "CN") == 1.0
    assert detected_metric(metrics, "openx", "EU") is None
    assert re.search(r"^relaygate_cutoffs_active 1(\.0)?$", metrics, re.M)
    health = e2e_http.get(gw.url + "/healthz").json()
    assert health["cutoffs"] == ["openx:CN"]

    # the admin API lists it as a detected cutoff
    (cut,) = admin_get(e2e_http, gw, "/admin/cutoffs").json()["data"]
    assert (cut["provider"], cut["region"], cut["source"]) == ("openx", "CN", "detected")


def test_concurrent_requests_during_a_new_block_all_succeed(
    start: Callable[..., RunningGateway],
    main_sim: SimHandle,
    cn_sim: SimHandle,
    e2e_openai: Callable[..., openai.OpenAI],
    e2e_http: httpx.Client,
) -> None:
    gw = start()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: chat(e2e_openai, gw, "CN"), range(16)))
    assert [r.headers["x-relaygate-deployment"] for r in results] == ["alt/alt-m"] * 16
    assert 1 <= count(cn_sim, "ox-m") <= 8  # only requests already in flight met the block
    rows = gw.ledger_rows(16)
    assert len(rows) == 16 and all(r.status == 200 and r.error_code is None for r in rows)
    # however many in-flight requests saw the block, the registry holds one cutoff
    assert e2e_http.get(gw.url + "/healthz").json()["cutoffs"] == ["openx:CN"]
    (cut,) = gw.app.state.storage.cutoffs.active()
    assert (cut.provider, cut.region, cut.source) == ("openx", "CN", "detected")


def test_detected_cutoff_survives_a_restart(
    start: Callable[..., RunningGateway],
    main_sim: SimHandle,
    cn_sim: SimHandle,
    e2e_openai: Callable[..., openai.OpenAI],
) -> None:
    gw = start()
    assert chat(e2e_openai, gw, "CN").headers["x-relaygate-deployment"] == "alt/alt-m"
    gw2 = start()  # a second gateway (a replica, or after a restart) on the same database
    raw = chat(e2e_openai, gw2, "CN")
    assert raw.headers["x-relaygate-deployment"] == "alt/alt-m"
    assert raw.headers["x-relaygate-attempts"] == "1"
    assert count(cn_sim, "ox-m") == 1


def test_detected_cutoff_is_reprobed_and_cleared_when_the_region_is_served_again(
    start: Callable[..., RunningGateway],
    main_sim: SimHandle,
    cn_sim: SimHandle,
    e2e_openai: Callable[..., openai.OpenAI],
) -> None:
    gw = start("{poll_interval_s: 0.05, probe_interval_s: 0.2, clear_after_successes: 2}")
    assert chat(e2e_openai, gw, "CN").headers["x-relaygate-deployment"] == "alt/alt-m"
    time.sleep(0.5)  # probes while still blocked keep the cutoff
    assert count(cn_sim, "ox-m") >= 2
    assert chat(e2e_openai, gw, "CN").headers["x-relaygate-deployment"] == "alt/alt-m"
    cn_sim.set_scenario({"models": {"ox-m": {"reply": "openx from CN again"}}})
    deadline = time.monotonic() + 5
    while gw.gateway.cutoffs.view.cutoffs and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not gw.gateway.cutoffs.view.cutoffs
    raw = chat(e2e_openai, gw, "CN")
    assert raw.headers["x-relaygate-deployment"] == "openx/ox-m"
    assert raw.parse().choices[0].message.content == "openx from CN again"
    kinds = [e.kind for e in gw.app.state.storage.audit.list(kind="cutoff.")]
    assert kinds == ["cutoff.detected", "cutoff.clear"]
    assert count(main_sim, "ox-m") == 0  # probes went to the CN endpoint, as CN traffic does


def test_a_route_left_with_no_deployment_fails_cleanly_and_sends_nothing(
    start: Callable[..., RunningGateway],
    main_sim: SimHandle,
    cn_sim: SimHandle,
    e2e_openai: Callable[..., openai.OpenAI],
) -> None:
    gw = start()
    client = e2e_openai(gw.base_url, KEYS["CN"], timeout=20)
    # the request that discovers the block has nowhere else to go: one clean error naming it
    with pytest.raises(openai.APIStatusError) as first:
        client.chat.completions.create(model="solo", messages=MSG)
    assert first.value.status_code == 502
    assert "region_blocked" in first.value.response.json()["error"]["message"]
    # later ones are refused before any upstream call, naming the cutoff
    with pytest.raises(openai.APIStatusError) as later:
        client.chat.completions.create(model="solo", messages=MSG)
    assert later.value.status_code == 503
    err = later.value.response.json()["error"]
    assert err["code"] == "no_allowed_deployment"
    assert "openx/ox-m: cutoff" in err["message"] and "region CN" in err["message"]
    assert later.value.response.headers["x-relaygate-policy"] == "excluded=1;cutoffs=1"
    assert count(cn_sim, "ox-m") == 1 and count(main_sim, "ox-m") == 0
    # other regions still reach it through the solo route
    raw = chat(e2e_openai, gw, "EU")
    assert raw.headers["x-relaygate-deployment"] == "openx/ox-m"


# --- an operator's cutoff through the CLI -------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("relaygate")
    argv = (
        [str(script)]
        if script.is_file()
        else [sys.executable, "-c", "from relaygate.cli.main import main; main()"]
    )
    env = {k: v for k, v in os.environ.items() if k != "RELAYGATE_DB_URL"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    return subprocess.run([*argv, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def _wait_for_deployment(
    sdk: Callable[..., openai.OpenAI], gw: RunningGateway, region: str, want: str, within_s: float
) -> float:
    """Send requests until one is served by ``want``; every request must succeed. Returns the wait."""
    t0 = time.monotonic()
    while True:
        raw = chat(sdk, gw, region)
        if raw.headers["x-relaygate-deployment"] == want:
            return time.monotonic() - t0
        assert time.monotonic() - t0 < within_s, f"still served by {raw.headers['x-relaygate-deployment']}"
        time.sleep(0.05)


def test_cli_cutoff_reaches_a_running_gateway_without_restart(
    start: Callable[..., RunningGateway],
    main_sim: SimHandle,
    cn_sim: SimHandle,
    e2e_openai: Callable[..., openai.OpenAI],
    e2e_http: httpx.Client,
) -> None:
    cn_sim.set_scenario(MAIN)  # no block in this test: the operator decides
    gw = start("{poll_interval_s: 0.2}")
    assert gw.storage_url is not None
    assert chat(e2e_openai, gw, "EU").headers["x-relaygate-deployment"] == "openx/ox-m"

    out = _cli("cutoff", "set", "openx:EU", "--reason", "legal hold", "--db", gw.storage_url)
    assert out.returncode == 0, out.stderr
    assert "openx:EU" in out.stderr
    waited = _wait_for_deployment(e2e_openai, gw, "EU", "alt/alt-m", within_s=2.0)
    assert waited < 2.0
    sent = count(main_sim, "ox-m")
    for _ in range(3):
        raw = chat(e2e_openai, gw, "EU")
        assert raw.headers["x-relaygate-deployment"] == "alt/alt-m"
        assert raw.headers["x-relaygate-attempts"] == "1"
    assert count(main_sim, "ox-m") == sent  # EU no longer reaches openx
    # other regions are untouched by an EU cutoff
    assert chat(e2e_openai, gw, "US").headers["x-relaygate-deployment"] == "openx/ox-m"
    assert e2e_http.get(gw.url + "/healthz").json()["cutoffs"] == ["openx:EU"]

    out = _cli("cutoff", "clear", "openx:EU", "--reason", "hold lifted", "--db", gw.storage_url)
    assert out.returncode == 0, out.stderr
    _wait_for_deployment(e2e_openai, gw, "EU", "openx/ox-m", within_s=2.0)
    assert e2e_http.get(gw.url + "/healthz").json()["cutoffs"] == []

    events = [(e.kind, e.subject) for e in gw.app.state.storage.audit.list(kind="cutoff.")]
    assert events == [("cutoff.set", "openx:EU"), ("cutoff.clear", "openx:EU")]
    assert all(e.actor.startswith("cli:") for e in gw.app.state.storage.audit.list(kind="cutoff."))
    gw.flush_ledger()
    rows = gw.gateway.ledger._sink.list_usage(1000)
    assert rows and all(r.status == 200 for r in rows)  # not one client error throughout


def test_cli_cutoff_for_every_region(
    start: Callable[..., RunningGateway],
    main_sim: SimHandle,
    cn_sim: SimHandle,
    e2e_openai: Callable[..., openai.OpenAI],
) -> None:
    cn_sim.set_scenario(MAIN)
    gw = start("{poll_interval_s: 0.2}")
    assert gw.storage_url is not None
    out = _cli("cutoff", "set", "openx", "--reason", "provider breach", "--db", gw.storage_url)
    assert out.returncode == 0, out.stderr
    for region in ("EU", "US", "CN"):
        _wait_for_deployment(e2e_openai, gw, region, "alt/alt-m", within_s=2.0)
    listed = _cli("cutoff", "list", "--json", "--db", gw.storage_url)
    assert listed.returncode == 0, listed.stderr
    assert '"region": "*"' in listed.stdout
