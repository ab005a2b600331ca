"""Hot reload end to end: ``POST /admin/reload`` on the in-process gateway, and ``SIGHUP`` to a
real ``relaygate serve`` subprocess. A good file takes effect without a restart; a broken one is
rejected with a message naming the problem, the old config keeps serving, and both outcomes are
audit events.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from relaygate.sim import SimHandle, run_sim_in_thread
from tests.e2e.harness import RunningGateway, free_port, run_gateway

REPO = Path(__file__).resolve().parents[2]
ADMIN_KEY = "admin-" + "r" * 30
MSG: Any = [{"role": "user", "content": "hello"}]
SCENARIO: dict[str, Any] = {
    "models": {
        "m1": {"reply": "from m1"},
        "m2": {"reply": "from m2"},
        "slow": {"reply": "slow but sure", "latency_ms": 800},
    }
}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with run_sim_in_thread(SCENARIO) as handle:
        yield handle


def base(sim_url: str, routes: str, extra: str = "") -> str:
    return f"""providers:
  up: {{protocol: openai, base_url: "{sim_url}", jurisdiction: US, regions: [US]}}
routes:
{routes}
auth: {{mode: open}}
{extra}"""


ONE = "  chat: {deployments: [{provider: up, model: m1}]}\n"
TWO = ONE + "  second: {deployments: [{provider: up, model: m2}]}\n"
WITH_SLOW = ONE + "  slowroute: {deployments: [{provider: up, model: slow}]}\n"

# Broken files, each with a fragment the rejection message must contain.
BROKEN: list[Any] = [
    pytest.param(lambda url: base(url, TWO) + "routes: {\n", "not valid YAML", id="yaml-syntax"),
    pytest.param(lambda url: base(url, TWO) + "routs: {}\n", "routs: unknown field", id="unknown-field"),
    pytest.param(
        lambda url: base(url, TWO + "  third: {deployments: [{provider: nope, model: m1}]}\n"),
        "unknown provider 'nope'",
        id="unknown-provider",
    ),
    pytest.param(
        lambda url: base(
            url, TWO, "policy: {rules: [{name: broken-rule, deny: 'provider.jurisdiction =='}]}"
        ),
        "policy.rules.0",
        id="bad-cel-rule",
    ),
    pytest.param(
        lambda url: base(url, TWO, "policy: {rules: [{name: typo, deny: 'provider.jurisdction == \"US\"'}]}"),
        "(typo)",
        id="unknown-fact",
    ),
    pytest.param(
        lambda url: base(url, "  chat: {deployments: []}\n"), "routes.chat.deployments", id="no-deployments"
    ),
    pytest.param(None, "cannot read", id="file-removed"),
]


@pytest.fixture
def reloadable(
    sim: SimHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[RunningGateway, Path]]:
    monkeypatch.setenv("RELAYGATE_ADMIN_KEY", ADMIN_KEY)
    sim.set_scenario(SCENARIO)
    sim.reset()
    path = tmp_path / "relaygate.yaml"
    path.write_text(base(sim.url, ONE), encoding="utf-8")
    with run_gateway(
        path.read_text(encoding="utf-8"), storage_url=f"sqlite:///{tmp_path}/t.db", config_path=str(path)
    ) as gw:
        yield gw, path


def reload(http: httpx.Client, gw: RunningGateway, key: str = ADMIN_KEY) -> httpx.Response:
    return http.post(gw.url + "/admin/reload", headers={"authorization": f"Bearer {key}"})


def models(http: httpx.Client, url: str) -> list[str]:
    return sorted(m["id"] for m in http.get(url + "/v1/models").json()["data"])


def test_reload_adds_a_route(
    reloadable: tuple[RunningGateway, Path],
    e2e_http: httpx.Client,
    e2e_openai: Callable[..., openai.OpenAI],
    sim: SimHandle,
) -> None:
    gw, path = reloadable
    client = e2e_openai(gw.base_url)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="second", messages=MSG)
    path.write_text(base(sim.url, TWO), encoding="utf-8")
    resp = reload(e2e_http, gw)
    assert resp.status_code == 200, resp.text
    assert resp.json()["reloaded"] is True and sorted(resp.json()["routes"]) == ["chat", "second"]
    out = client.chat.completions.create(model="second", messages=MSG)
    assert out.choices[0].message.content == "from m2"
    assert client.chat.completions.create(model="chat", messages=MSG).choices[0].message.content == "from m1"
    assert models(e2e_http, gw.url) == ["chat", "second"]
    (event,) = gw.app.state.storage.audit.list(kind="config.")
    assert (event.kind, event.actor, event.subject) == ("config.reload", "admin-api", str(path))
    assert event.details["routes"] == ["chat", "second"]


def test_reload_changes_policy_at_once(
    reloadable: tuple[RunningGateway, Path],
    e2e_http: httpx.Client,
    e2e_openai: Callable[..., openai.OpenAI],
    sim: SimHandle,
) -> None:
    gw, path = reloadable
    client = e2e_openai(gw.base_url)
    assert client.chat.completions.create(model="chat", messages=MSG).choices
    path.write_text(
        base(sim.url, ONE, "policy: {rules: [{name: no-us, deny: 'provider.jurisdiction == \"US\"'}]}"),
        encoding="utf-8",
    )
    assert reload(e2e_http, gw).status_code == 200
    sim.reset()
    with pytest.raises(openai.PermissionDeniedError) as exc:
        client.chat.completions.create(model="chat", messages=MSG)
    assert exc.value.response.json()["error"]["code"] == "policy_denied"
    assert "no-us" in exc.value.response.json()["error"]["message"]
    assert sim.stats()["total"] == 0


@pytest.mark.parametrize(("broken", "fragment"), BROKEN)
def test_broken_reload_is_rejected_and_the_old_config_keeps_serving(
    reloadable: tuple[RunningGateway, Path],
    e2e_http: httpx.Client,
    e2e_openai: Callable[..., openai.OpenAI],
    sim: SimHandle,
    broken: Callable[[str], str] | None,
    fragment: str,
) -> None:
    gw, path = reloadable
    client = e2e_openai(gw.base_url)
    path.write_text(base(sim.url, TWO), encoding="utf-8")
    assert reload(e2e_http, gw).status_code == 200
    runtime = gw.gateway.runtime

    if broken is None:
        path.unlink()
    else:
        path.write_text(broken(sim.url), encoding="utf-8")
    resp = reload(e2e_http, gw)
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["code"] == "config_rejected"
    assert "old config stays in force" in err["message"]
    assert str(path) in err["message"] and fragment in err["message"], err["message"]

    assert gw.gateway.runtime is runtime  # nothing was swapped, not even partly
    for route, reply in (("chat", "from m1"), ("second", "from m2")):
        assert client.chat.completions.create(model=route, messages=MSG).choices[0].message.content == reply
    assert models(e2e_http, gw.url) == ["chat", "second"]

    events = gw.app.state.storage.audit.list(kind="config.")
    assert [e.kind for e in events] == ["config.reload", "config.reload_rejected"]
    rejected = events[-1]
    assert rejected.actor == "admin-api" and rejected.subject == str(path)
    assert fragment in rejected.details["error"]
    assert gw.app.state.storage.audit.verify().ok


def test_reload_needs_the_admin_key(
    reloadable: tuple[RunningGateway, Path], e2e_http: httpx.Client, sim: SimHandle
) -> None:
    gw, path = reloadable
    path.write_text(base(sim.url, TWO), encoding="utf-8")
    assert e2e_http.post(gw.url + "/admin/reload").status_code == 401
    assert reload(e2e_http, gw, key="wrong-" + "x" * 30).status_code == 401
    assert models(e2e_http, gw.url) == ["chat"]
    assert gw.app.state.storage.audit.list(kind="config.") == []


def test_reload_without_a_config_file_is_a_clean_400(
    sim: SimHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, e2e_http: httpx.Client
) -> None:
    monkeypatch.setenv("RELAYGATE_ADMIN_KEY", ADMIN_KEY)
    with run_gateway(base(sim.url, ONE), storage_url=f"sqlite:///{tmp_path}/t.db") as gw:
        resp = reload(e2e_http, gw)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "no_config_file"


def test_in_flight_request_finishes_across_a_reload_that_removes_its_route(
    reloadable: tuple[RunningGateway, Path],
    e2e_http: httpx.Client,
    e2e_openai: Callable[..., openai.OpenAI],
    sim: SimHandle,
) -> None:
    gw, path = reloadable
    path.write_text(base(sim.url, WITH_SLOW), encoding="utf-8")
    assert reload(e2e_http, gw).status_code == 200
    client = e2e_openai(gw.base_url, timeout=20)
    result: list[Any] = []
    worker = threading.Thread(
        target=lambda: result.append(client.chat.completions.create(model="slowroute", messages=MSG))
    )
    worker.start()
    deadline = time.monotonic() + 5
    while not sim.requests("slow") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sim.requests("slow"), "the slow request never reached the upstream"
    path.write_text(base(sim.url, ONE), encoding="utf-8")
    assert reload(e2e_http, gw).status_code == 200
    with pytest.raises(openai.NotFoundError):  # new requests see the new config at once
        client.chat.completions.create(model="slowroute", messages=MSG)
    worker.join(10)
    assert result and result[0].choices[0].message.content == "slow but sure"


# --- SIGHUP to `relaygate serve` ----------------------------------------------------------------


def _argv() -> list[str]:
    script = Path(sys.executable).with_name("relaygate")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from relaygate.cli.main import main; main()"]


def _wait_until(check: Callable[[], bool], within_s: float, proc: subprocess.Popen[str]) -> None:
    end = time.monotonic() + within_s
    while True:
        assert proc.poll() is None, f"serve exited early: {proc.communicate()}"
        try:
            if check():
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[Path, int], subprocess.Popen[str]]]:
    env = {k: v for k, v in os.environ.items() if k not in ("RELAYGATE_DB_URL", "RELAYGATE_CONFIG")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    env["RELAYGATE_HOME"] = str(tmp_path / "home")
    procs: list[subprocess.Popen[str]] = []

    def start(config: Path, port: int) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [*_argv(), "serve", "--config", str(config), "--port", str(port), "--log-level", "warning"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:  # only our own children, by pid
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def test_sighup_reloads_a_running_serve(
    serve: Callable[[Path, int], subprocess.Popen[str]],
    tmp_path: Path,
    sim: SimHandle,
    e2e_http: httpx.Client,
    e2e_openai: Callable[..., openai.OpenAI],
) -> None:
    sim.set_scenario(SCENARIO)
    path = tmp_path / "serve.yaml"
    path.write_text(base(sim.url, ONE), encoding="utf-8")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = serve(path, port)
    _wait_until(lambda: e2e_http.get(url + "/healthz").status_code == 200, 30, proc)
    assert models(e2e_http, url) == ["chat"]

    path.write_text(base(sim.url, TWO), encoding="utf-8")
    proc.send_signal(signal.SIGHUP)
    _wait_until(lambda: models(e2e_http, url) == ["chat", "second"], 5, proc)
    client = e2e_openai(url + "/v1")
    assert (
        client.chat.completions.create(model="second", messages=MSG).choices[0].message.content == "from m2"
    )

    # a broken file on SIGHUP: rejected, the process keeps serving the last good config
    path.write_text(base(sim.url, TWO) + "routs: {}\n", encoding="utf-8")
    proc.send_signal(signal.SIGHUP)
    db = tmp_path / "home" / "relaygate.db"

    def audit_kinds() -> list[str]:
        conn = sqlite3.connect(db)
        try:
            return [r[0] for r in conn.execute("SELECT kind FROM audit_events ORDER BY id")]
        finally:
            conn.close()

    _wait_until(lambda: "config.reload_rejected" in audit_kinds(), 5, proc)
    assert proc.poll() is None
    assert models(e2e_http, url) == ["chat", "second"]
    assert (
        client.chat.completions.create(model="second", messages=MSG).choices[0].message.content == "from m2"
    )

    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=15)
    assert proc.returncode == 0, stderr
    assert "routs: unknown field" in stderr  # the operator sees why in the log
    assert "Traceback" not in stderr
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute(
            "SELECT kind, actor FROM audit_events WHERE kind LIKE 'config.%' ORDER BY id"
        ).fetchall()
    finally:
        conn.close()
    assert rows == [("config.reload", "signal:SIGHUP"), ("config.reload_rejected", "signal:SIGHUP")]


@pytest.mark.slow
def test_sighup_without_a_config_file_keeps_serving(tmp_path: Path, e2e_http: httpx.Client) -> None:
    """On the embedded default there is no file to re-read: SIGHUP (whose default action ends
    the process) is logged and ignored."""
    env = {k: v for k, v in os.environ.items() if k not in ("RELAYGATE_DB_URL", "RELAYGATE_CONFIG")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    env["RELAYGATE_HOME"] = str(tmp_path / "home")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [*_argv(), "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_until(lambda: e2e_http.get(url + "/healthz").status_code == 200, 60, proc)
        proc.send_signal(signal.SIGHUP)
        _wait_until(lambda: e2e_http.get(url + "/healthz").status_code == 200, 5, proc)
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 0, stderr
    assert "no config file to reload" in stderr
