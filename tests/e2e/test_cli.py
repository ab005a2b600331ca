"""The ``relaygate`` command line, run for real in a subprocess: check-config, keys, usage,
serve (started, answering, stopped by SIGINT) and sim.

Results belong on stdout and messages on stderr, so each test checks both streams.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from relaygate.ledger import UsageStore, open_database
from relaygate.sim import SimHandle
from tests.e2e.harness import free_port, run_gateway

REPO = Path(__file__).resolve().parents[2]
MSG: Any = [{"role": "user", "content": "hi"}]


def _argv() -> list[str]:
    """The installed console script when there is one, else the same entry point via -c."""
    script = Path(sys.executable).with_name("relaygate")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "from relaygate.cli.main import main; main()"]


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RELAYGATE_DB_URL", "RELAYGATE_CONFIG")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    env["RELAYGATE_HOME"] = str(tmp_path / "home")
    return env


@pytest.fixture
def cli(cli_env: dict[str, str], tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*_argv(), *args],
            env=cli_env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def _good_config(sim_url: str) -> str:
    return f"""# a working config
providers:
  up:
    protocol: openai
    base_url: "{sim_url}"
routes:
  chat:
    deployments:
      - provider: up
        model: m1
        price: {{input: 1.0, output: 2.0}}
auth: {{mode: keys}}
tenants:
  acme: {{region: EU, allowed_routes: [chat]}}
"""


# --- check-config ---------------------------------------------------------------------------


def test_check_config_accepts_a_good_file(cli: Any, tmp_path: Path) -> None:
    path = _write(tmp_path, "good.yaml", _good_config("http://127.0.0.1:9/v1"))
    out = cli("check-config", "--config", path)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""
    said = " ".join(out.stderr.split())  # rich wraps this message at the console width
    assert "ok: " in said and "1 providers, 1 routes, 1 deployments, 1 tenants" in said
    # what is valid but will not work as meant is said as a warning, before the verdict
    assert "RELAYGATE_ADMIN_KEY is not set" in said and said.index("warning:") < said.index("ok: ")


_BASE = """providers:
  up:
    protocol: openai
    base_url: "http://127.0.0.1:9/v1"
routes:
  chat:
    deployments:
      - provider: up
        model: m1
"""

# (id, file text, line, field path, reason fragment)
BAD_CONFIGS = [
    (
        "unknown_provider_field",
        _BASE.replace(
            '    base_url: "http://127.0.0.1:9/v1"\n', '    base_url: "http://127.0.0.1:9/v1"\n    bogus: 1\n'
        ),
        5,
        "providers.up.bogus",
        "unknown field",
    ),
    (
        "unknown_deployment_field",
        _BASE + "        wieght: 2\n",
        10,
        "routes.chat.deployments.0.wieght",
        "unknown field",
    ),
    ("unknown_top_level_field", _BASE + "routs: {}\n", 10, "routs", "unknown field"),
    (
        "wrong_type",
        _BASE + "        price: {input: cheap}\n",
        10,
        "routes.chat.deployments.0.price.input",
        "valid number",
    ),
    (
        "unknown_provider",
        _BASE.replace("- provider: up", "- provider: upp"),
        8,
        "routes.chat.deployments.0.provider",
        "unknown provider 'upp'",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "field", "reason"), [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS]
)
def test_check_config_names_file_line_field_and_reason(
    cli: Any, tmp_path: Path, text: str, line: int, field: str, reason: str
) -> None:
    path = _write(tmp_path, "bad.yaml", text)
    out = cli("check-config", "--config", path)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert f"{path}:{line}: {field}: " in lines[0], lines[0]
    assert reason in lines[0]


def test_check_config_bad_yaml_and_missing_file(cli: Any, tmp_path: Path) -> None:
    path = _write(tmp_path, "broken.yaml", 'providers:\n  up: {protocol: openai, base_url: "x"\nroutes: {}\n')
    out = cli("check-config", "--config", path)
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert re.search(re.escape(path) + r":\d+: .*not valid YAML", line), line
    missing = str(tmp_path / "nope.yaml")
    out = cli("check-config", "--config", missing)
    assert out.returncode == 2
    (line,) = out.stderr.strip().splitlines()
    assert missing in line


# --- keys and usage -------------------------------------------------------------------------


def test_keys_create_prints_only_the_key_and_list_never_shows_it(cli: Any) -> None:
    out = cli("keys", "create", "--tenant", "acme", "--region", "EU", "--new-tenant")
    assert out.returncode == 0, out.stderr
    assert out.stdout.endswith("\n")
    lines = out.stdout.splitlines()
    assert len(lines) == 1, out.stdout
    key = lines[0]
    assert re.fullmatch(r"rg-[A-Za-z0-9_-]{43}", key), key
    m = re.search(r"created (key_[0-9a-f]+) for tenant acme", out.stderr)
    assert m, out.stderr
    assert key not in out.stderr
    key_id = m.group(1)

    listed = cli("keys", "list")
    assert listed.returncode == 0, listed.stderr
    assert key_id in listed.stdout
    assert "acme" in listed.stdout and "EU" in listed.stdout
    assert key not in listed.stdout + listed.stderr
    assert key[8:20] not in listed.stdout  # not even a long prefix


def test_usage_by_tenant_after_a_gateway_run(
    cli: Any,
    cli_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    e2e_sim: SimHandle,
    tmp_path: Path,
    e2e_openai: Callable[..., openai.OpenAI],
) -> None:
    key = cli("keys", "create", "--tenant", "acme", "--region", "EU", "--new-tenant").stdout.strip()
    assert key.startswith("rg-")
    # the gateway finds the same database through RELAYGATE_HOME, as `relaygate serve` would
    monkeypatch.setenv("RELAYGATE_HOME", cli_env["RELAYGATE_HOME"])
    monkeypatch.delenv("RELAYGATE_DB_URL", raising=False)
    with run_gateway(_good_config(e2e_sim.url)) as gw:
        client = e2e_openai(gw.base_url, key)
        for _ in range(3):
            client.chat.completions.create(model="chat", messages=MSG)
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="chat", messages=MSG, temperature="hot")
        with pytest.raises(openai.AuthenticationError):
            e2e_openai(gw.base_url, "rg-" + "z" * 43).chat.completions.create(model="chat", messages=MSG)
        gw.flush_ledger()
    assert e2e_sim.stats()["total"] == 3

    out = cli("usage", "--since", "1h", "--by", "tenant")
    assert out.returncode == 0, out.stderr
    rows = {cells[0]: cells[1:] for cells in _table_rows(out.stdout)}
    assert rows["acme"][:2] == ["4", "1"]  # requests, errors
    assert rows["(none)"][:2] == ["1", "1"]  # the unauthenticated request has no tenant
    assert "total: 5 requests, 2 errors" in out.stdout

    by_route = cli("usage", "--since", "1h", "--by", "route")
    assert by_route.returncode == 0, by_route.stderr
    routes = {cells[0]: cells[1:] for cells in _table_rows(by_route.stdout)}
    assert routes["chat"][:2] == ["3", "0"]


def _table_rows(text: str) -> list[list[str]]:
    """Body rows of a rich box table: cells split on the vertical bar."""
    rows = []
    for line in text.splitlines():
        if line.startswith("│"):
            rows.append([c.strip() for c in line.strip("│").split("│")])
    return rows


# --- serve and sim --------------------------------------------------------------------------


def _wait_for(url: str, deadline_s: float, proc: subprocess.Popen[str]) -> httpx.Response:
    end = time.monotonic() + deadline_s
    while True:
        assert proc.poll() is None, f"exited early: {proc.communicate()}"
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            if time.monotonic() > end:
                raise
            time.sleep(0.1)


@pytest.fixture
def popen(cli_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [*_argv(), *args],
            env=cli_env,
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


def test_serve_answers_and_stops_on_sigint(popen: Any, tmp_path: Path, e2e_sim: SimHandle) -> None:
    config = _write(tmp_path, "good.yaml", _good_config(e2e_sim.url).replace("mode: keys", "mode: open"))
    port = free_port()
    proc = popen("serve", "--config", config, "--port", str(port))
    health = _wait_for(f"http://127.0.0.1:{port}/healthz", 30, proc)
    assert health.status_code == 200
    assert health.json()["providers"] == {"up": {"status": "ok"}}
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="placeholder", max_retries=0)
    out = client.chat.completions.create(model="chat", messages=MSG)
    assert out.choices[0].message.content == "hello there"
    client.close()

    stopped_at = time.monotonic()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=15)
    assert proc.returncode == 0, stderr
    assert time.monotonic() - stopped_at < 5
    assert f"OpenAI base URL: http://127.0.0.1:{port}/v1" in stderr
    assert "Traceback" not in stderr
    assert stdout == ""
    # the ledger row of that request was flushed to the database under RELAYGATE_HOME before exit
    engine = open_database(f"sqlite:///{tmp_path / 'home' / 'relaygate.db'}")
    try:
        (row,) = UsageStore(engine).list_usage(10)
    finally:
        engine.dispose()
    assert (row.status, row.route, row.tenant) == (200, "chat", "default")


def test_serve_with_a_bad_config_exits_2(popen: Any, tmp_path: Path) -> None:
    config = _write(tmp_path, "bad.yaml", _BASE + "routs: {}\n")
    proc = popen("serve", "--config", config, "--port", str(free_port()))
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert f"{config}:10: routs: unknown field" in stderr


def test_sim_command_serves_a_scenario_file(popen: Any, tmp_path: Path) -> None:
    scenario = _write(tmp_path, "scenario.yaml", 'models:\n  gpt-x:\n    reply: "hi from the file"\n')
    port = free_port()
    proc = popen("sim", "--port", str(port), "--scenario", scenario)
    _wait_for(f"http://127.0.0.1:{port}/v1/models", 30, proc)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-sim", max_retries=0)
    out = client.chat.completions.create(model="gpt-x", messages=MSG)
    assert out.choices[0].message.content == "hi from the file"
    client.close()
    # SIGTERM (SIGINT may be ignored when the test runner itself runs in the background)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0, stderr
    assert f"listening on http://127.0.0.1:{port}/v1" in stderr


# --- listening -----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["serve", "sim"])
def test_a_busy_port_is_one_line_and_exit_1(cli: Any, tmp_path: Path, command: str) -> None:
    """Not a traceback (sim) nor uvicorn's exit 3 (serve), which the CLI keeps for warnings."""
    config = _write(tmp_path, "relaygate.yaml", "auth: {mode: open}\n")
    args = ["--config", config] if command == "serve" else []
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = cli(command, *args, "--host", "127.0.0.1", "--port", str(port), timeout=30)
    assert out.returncode == 1, out.stderr
    assert f"port {port} is in use" in out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""
