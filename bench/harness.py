"""relaygate side-by-side benchmark: relaygate against LiteLLM, Portkey and TensorZero, one command.

    bench/run              # full run: every gateway, twice each (about 20 minutes on 2 cores)
    bench/run --smoke      # a few seconds: relaygate and direct only, no peer installs (for CI)
    bench/run --help       # rounds, durations, target selection

Phases (see bench/README.md):
1. prepare (network allowed): wrk from apt if missing, the C mock built with gcc, the peers
   installed at pinned versions into their own folders under $RELAYGATE_BENCH_HOME (default
   ${XDG_CACHE_HOME:-~/.cache}/relaygate-bench), never inside the project. Cached: a second run
   installs nothing. A peer that cannot be installed is reported in the table with the reason.
2. measure: re-executed inside a fresh network namespace that has only loopback (`unshare
   --net`, when running as root), so no gateway can send a byte beyond 127.0.0.1: mock alone
   first, then direct, relaygate and each peer one at a time, each round in the same order.
3. report: Markdown to stdout and bench/results/latest.md (smoke: bench/results/smoke.md), raw
   numbers to the .json beside it. The exit status never depends on the numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# ---- pinned peers -------------------------------------------------------------------------------
LITELLM_VERSION = "1.106.12"  # newest whose `proxy` extra resolves on the registry (see README)
PORTKEY_VERSION = "1.15.2"
PORTKEY_HONO_NODE_SERVER = "1.13.8"  # Portkey issue #1389: >=1.14 breaks its streaming on Node
TENSORZERO_VERSION = "2026.6.0"

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
LUA = BENCH / "wrk" / "chat.lua"
MOCK_SRC = BENCH / "mock" / "mockllm.c"
CLK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def bench_home() -> Path:
    if os.environ.get("RELAYGATE_BENCH_HOME"):
        return Path(os.environ["RELAYGATE_BENCH_HOME"])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "relaygate-bench"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sh(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, text=True, capture_output=True, **kw)


# ---- scenarios ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scenario:
    key: str
    mock: str  # "m0" (0 ms upstream) or "m50" (50 ms to first byte, 10 ms between chunks)
    stream: bool
    conc: int
    tool: str  # "wrk" or "client" (the Python streaming client: TTFB / TTFT)


SCENARIOS = [
    Scenario("ns0_c1", "m0", False, 1, "wrk"),
    Scenario("ns0_c16", "m0", False, 16, "wrk"),
    Scenario("ns0_c64", "m0", False, 64, "wrk"),
    Scenario("st0_c16", "m0", True, 16, "wrk"),
    Scenario("ttft0_c16", "m0", True, 16, "client"),
    Scenario("ns50_c64", "m50", False, 64, "wrk"),
    Scenario("ttft50_c16", "m50", True, 16, "client"),
]
MOCK_TTFB_MS, MOCK_GAP_MS, MOCK_CHUNKS = 50, 10, 8


# ---- process tree accounting --------------------------------------------------------------------
def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def tree_pids(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            fields = _stat_fields(int(d))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(d))
    out, i = [root], 0
    while i < len(out):
        out.extend(children.get(out[i], ()))
        i += 1
    return [p for p in out if _stat_fields(p) is not None]


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of each process, plus cutime + cstime (children it has already reaped)."""
    ticks = 0
    for pid in pids:
        f = _stat_fields(pid)
        if f:
            ticks += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return ticks / CLK


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_KB / 1024
    except OSError:
        return 0.0


class Tree:
    """The gateway's process tree: CPU seconds and RSS (sum and largest process), sampled."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.peak_mb = 0.0
        self.peak_max_proc_mb = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def pids(self) -> list[int]:
        return tree_pids(self.root)

    def cpu(self) -> float:
        return cpu_seconds(self.pids())

    def rss(self) -> tuple[float, float, int]:
        pids = self.pids()
        sizes = [rss_mb(p) for p in pids]
        return sum(sizes), max(sizes, default=0.0), len(pids)

    def wait_quiet(self, max_s: float, window: float = 0.5, share: float = 0.1) -> float:
        """Wait until the tree uses under `share` of one core over `window` seconds; seconds waited."""
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < max_s:
            c0 = self.cpu()
            time.sleep(window)
            if self.cpu() - c0 < share * window:
                break
        return time.perf_counter() - t0

    def start_sampling(self) -> None:
        def loop() -> None:
            while not self._stop.wait(0.1):
                total, biggest, _ = self.rss()
                self.peak_mb = max(self.peak_mb, total)
                self.peak_max_proc_mb = max(self.peak_max_proc_mb, biggest)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def stop_sampling(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()


# ---- targets ------------------------------------------------------------------------------------
@dataclass
class Target:
    key: str
    label: str
    kind: str  # direct | relaygate | litellm | portkey | tensorzero
    workers: int = 1
    version: str = ""
    unavailable: str = ""  # why it cannot run, shown in the table
    home: Path | None = None  # install folder
    secret: str = ""
    base_url: str = ""  # set once started
    mocks: dict[str, str] = field(default_factory=dict)  # m0/m50 -> http://127.0.0.1:P

    # what a request to route m0 / m50 looks like for this target
    def url(self, mock: str) -> str:
        if self.kind == "direct":
            return self.mocks[mock] + "/v1/chat/completions"
        return self.base_url.rstrip("/") + "/chat/completions"

    def model(self, mock: str) -> str:
        if self.kind == "tensorzero":
            return f"tensorzero::model_name::{mock}"
        return mock

    def headers(self, mock: str) -> dict[str, str]:
        if self.kind == "litellm":
            return {"Authorization": f"Bearer {self.secret}"}
        if self.kind == "portkey":
            return {
                "x-portkey-provider": "openai",
                "x-portkey-custom-host": self.mocks[mock] + "/v1",
                "Authorization": "Bearer sk-bench",
            }
        return {}


def relaygate_workers_supported() -> bool:
    exe = REPO / ".venv" / "bin" / "relaygate"
    if not exe.exists():
        return False
    out = sh([str(exe), "serve", "--help"], env={**os.environ, "COLUMNS": "200"})
    return "--workers" in (out.stdout + out.stderr)


def make_targets(args: argparse.Namespace) -> list[Target]:
    home = bench_home() / "peers"
    targets = [
        Target("direct", "direct (mock, no gateway)", "direct"),
        Target("relaygate", "relaygate (1 worker)", "relaygate", version="working tree"),
    ]
    if not args.smoke and relaygate_workers_supported():
        targets.append(
            Target("relaygate_2w", "relaygate (2 workers)", "relaygate", 2, version="working tree")
        )
    if not args.smoke:
        for w in (1, 2):
            targets.append(
                Target(
                    f"litellm_{w}w",
                    f"LiteLLM proxy ({w} worker{'s' if w > 1 else ''})",
                    "litellm",
                    w,
                    LITELLM_VERSION,
                    home=home / f"litellm-{LITELLM_VERSION}",
                )
            )
        targets.append(
            Target(
                "portkey",
                "Portkey gateway (Node)",
                "portkey",
                1,
                PORTKEY_VERSION,
                home=home / f"portkey-{PORTKEY_VERSION}",
            )
        )
        targets.append(
            Target(
                "tensorzero",
                "TensorZero gateway",
                "tensorzero",
                1,
                TENSORZERO_VERSION,
                home=home / f"tensorzero-{TENSORZERO_VERSION}",
            )
        )
    if args.only:
        wanted = set(args.only.split(",")) | {"direct"}
        targets = [t for t in targets if t.key in wanted or t.kind in wanted]
    return targets


# ---- prepare: tools and peer installs -----------------------------------------------------------
def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    log("wrk not found: installing it with apt-get")
    if os.geteuid() == 0:
        r = sh(
            ["apt-get", "install", "-y", "-q", "wrk"], env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        )
        if r.returncode != 0:
            sh(["apt-get", "update", "-q"])
            sh(
                ["apt-get", "install", "-y", "-q", "wrk"],
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            )
    path = shutil.which("wrk")
    if not path:
        sys.exit("bench: wrk is needed (Debian: apt-get install -y wrk)")
    return path


def build_mock() -> Path:
    digest = hashlib.sha256(MOCK_SRC.read_bytes()).hexdigest()[:12]
    out = bench_home() / "bin" / f"mockllm-{digest}"
    if out.exists():
        return out
    cc = shutil.which("gcc") or shutil.which("cc")
    if not cc:
        sys.exit("bench: a C compiler (gcc) is needed to build bench/mock/mockllm.c")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    r = sh([cc, "-O2", "-Wall", "-o", str(tmp), str(MOCK_SRC)])
    if r.returncode != 0:
        sys.exit(f"bench: building the mock failed:\n{r.stderr}")
    tmp.rename(out)
    return out


def _last_error(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("WARNING")]
    errs = [ln for ln in lines if "error" in ln.lower()]
    return ((errs or lines or ["(no output)"])[-1])[:300]


def _marker_ok(home: Path, spec: str) -> bool:
    marker = home / ".bench-installed"
    return marker.exists() and marker.read_text().strip() == spec


def _python_for_peers() -> str:
    for name in ("python3.11", "python3.12", "python3"):
        path = shutil.which(name)
        if path:
            return path
    return getattr(sys, "_base_executable", sys.executable)


def install_python_peer(t: Target, spec: str, check: str) -> None:
    assert t.home
    if _marker_ok(t.home, spec):
        return
    log(f"installing {spec} into {t.home} (once; cached afterwards)")
    t.home.mkdir(parents=True, exist_ok=True)
    py = t.home / "bin" / "python"
    if not py.exists():
        r = sh([_python_for_peers(), "-m", "venv", str(t.home)])
        if r.returncode != 0:
            t.unavailable = f"venv failed: {_last_error(r.stderr)}"
            return
    try:
        r = sh([str(py), "-m", "pip", "install", "-q", spec], timeout=1500)
    except subprocess.TimeoutExpired:
        t.unavailable = f"`pip install {spec}` timed out"
        return
    (t.home / "install.log").write_text(r.stdout + r.stderr)
    if r.returncode != 0:
        t.unavailable = f"`pip install {spec}` failed: {_last_error(r.stdout + r.stderr)}"
        return
    r = sh([str(py), "-c", check])
    if r.returncode != 0:
        t.unavailable = f"installed, but the check failed: {_last_error(r.stderr)}"
        return
    (t.home / ".bench-installed").write_text(spec + "\n")


def install_portkey(t: Target) -> None:
    assert t.home
    spec = f"@portkey-ai/gateway@{PORTKEY_VERSION} @hono/node-server@{PORTKEY_HONO_NODE_SERVER}"
    if _marker_ok(t.home, spec):
        return
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        t.unavailable = "Node.js and npm are not installed"
        return
    log(f"installing {spec} into {t.home} (once; cached afterwards)")
    t.home.mkdir(parents=True, exist_ok=True)
    pkg = {
        "name": "relaygate-bench-portkey",
        "private": True,
        "dependencies": {"@portkey-ai/gateway": PORTKEY_VERSION},
        # Within the package's own range (^1.3.3): @hono/node-server >= 1.14 returns the
        # upstream's immutable Headers and every stream fails with "TypeError: immutable".
        "overrides": {"@hono/node-server": PORTKEY_HONO_NODE_SERVER},
    }
    (t.home / "package.json").write_text(json.dumps(pkg, indent=2) + "\n")
    try:
        # --ignore-scripts: its postinstall runs patch-package, which has no patches to apply
        r = sh(
            [npm, "install", "--ignore-scripts", "--no-audit", "--no-fund", "--omit=dev"],
            cwd=t.home,
            timeout=900,
        )
    except subprocess.TimeoutExpired:
        t.unavailable = "`npm install` timed out"
        return
    (t.home / "install.log").write_text(r.stdout + r.stderr)
    entry = t.home / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    if r.returncode != 0 or not entry.exists():
        t.unavailable = (
            f"`npm install @portkey-ai/gateway@{PORTKEY_VERSION}` failed: {_last_error(r.stdout + r.stderr)}"
        )
        return
    (t.home / ".bench-installed").write_text(spec + "\n")


def prepare_peers(targets: list[Target], no_install: bool) -> None:
    attempted: set[Path] = set()
    for t in targets:
        if t.kind == "relaygate":
            if not (REPO / ".venv" / "bin" / "relaygate").exists():
                t.unavailable = ".venv/bin/relaygate is missing (run scripts/serve or scripts/test once)"
            continue
        if t.kind == "direct":
            continue
        spec_ok = {
            "litellm": f"litellm[proxy]=={LITELLM_VERSION}",
            "tensorzero": f"tensorzero=={TENSORZERO_VERSION}",
            "portkey": f"@portkey-ai/gateway@{PORTKEY_VERSION} @hono/node-server@{PORTKEY_HONO_NODE_SERVER}",
        }[t.kind]
        assert t.home
        if no_install:
            if not _marker_ok(t.home, spec_ok):
                t.unavailable = "not installed (--no-install)"
            continue
        if t.home in attempted:  # LiteLLM with 2 workers shares the 1-worker install
            continue
        attempted.add(t.home)
        if t.kind == "litellm":
            install_python_peer(t, spec_ok, "import litellm.proxy.proxy_server")
        elif t.kind == "tensorzero":
            install_python_peer(t, spec_ok, "import tensorzero; tensorzero._start_http_gateway")
        elif t.kind == "portkey":
            install_portkey(t)
    by_home: dict[Path, str] = {}
    for t in targets:
        if t.home and t.unavailable:
            by_home[t.home] = t.unavailable
    for t in targets:
        if t.home in by_home and not t.unavailable:
            t.unavailable = by_home[t.home]


# ---- load generators ----------------------------------------------------------------------------
def run_wrk(wrk: str, t: Target, sc: Scenario, seconds: int) -> dict[str, Any]:
    env = {
        **os.environ,
        "BENCH_MODEL": t.model(sc.mock),
        "BENCH_STREAM": "1" if sc.stream else "0",
        "BENCH_HEADERS": "|".join(f"{k}: {v}" for k, v in t.headers(sc.mock).items()),
    }
    cmd = [wrk, "-t1", f"-c{sc.conc}", f"-d{seconds}s", "--timeout", "10s", "-s", str(LUA), t.url(sc.mock)]
    try:
        r = sh(cmd, env=env, timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        return {"failed": "wrk did not finish"}
    m = re.search(r"^BENCHJSON (.*)$", r.stdout, re.M)
    if not m:
        return {"failed": f"wrk: {_last_error(r.stdout + r.stderr)}"}
    d = json.loads(m.group(1))
    secs = max(1e-9, d["duration_us"] / 1e6)
    errors = d["err_connect"] + d["err_read"] + d["err_write"] + d["err_status"] + d["err_timeout"]
    ok = d["requests"] - d["err_status"]
    return {
        "requests": d["requests"],
        "ok": ok,
        "rps": ok / secs,
        "seconds": secs,
        "errors": errors,
        "err_status": d["err_status"],
        "p50_ms": d["p50_us"] / 1000,
        "p90_ms": d["p90_us"] / 1000,
        "p99_ms": d["p99_us"] / 1000,
    }


def run_client(t: Target, sc: Scenario, seconds: float, warmup: float) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(BENCH / "stream_client.py"),
        "--url",
        t.url(sc.mock),
        "--model",
        t.model(sc.mock),
        "--headers",
        json.dumps(t.headers(sc.mock)),
        "--concurrency",
        str(sc.conc),
        "--duration",
        str(seconds),
        "--warmup",
        str(warmup),
    ]
    try:
        r = sh(cmd, timeout=seconds + warmup + 90)
    except subprocess.TimeoutExpired:
        return {"failed": "streaming client did not finish"}
    m = re.search(r"^BENCHJSON (.*)$", r.stdout, re.M)
    if not m:
        return {"failed": f"client: {_last_error(r.stdout + r.stderr)}"}
    return dict(json.loads(m.group(1)))


# ---- starting and stopping gateways -------------------------------------------------------------
def write_configs(t: Target, workdir: Path, port: int) -> list[str]:
    """The command line that starts target t on port (configs written under workdir)."""
    m0, m50 = t.mocks["m0"], t.mocks["m50"]
    if t.kind == "relaygate":
        cfg = workdir / "relaygate.yaml"
        cfg.write_text(
            "providers:\n"
            f'  mock0: {{protocol: openai, base_url: "{m0}/v1"}}\n'
            f'  mock50: {{protocol: openai, base_url: "{m50}/v1"}}\n'
            "routes:\n"
            "  m0: {deployments: [{provider: mock0, model: mock-model, price: {input: 1, output: 2}}]}\n"
            "  m50: {deployments: [{provider: mock50, model: mock-model, price: {input: 1, output: 2}}]}\n"
            "auth: {mode: open}\n"
            f'storage: {{url: "sqlite:///{workdir}/relaygate.db"}}\n'
        )
        t.base_url = f"http://127.0.0.1:{port}/v1"
        cmd = [str(REPO / ".venv/bin/relaygate"), "serve", "--config", str(cfg), "--port", str(port)]
        cmd += ["--log-level", "warning"]
        if t.workers > 1:
            cmd += ["--workers", str(t.workers)]
        return cmd
    if t.kind == "litellm":
        assert t.home
        t.secret = "sk-bench-" + secrets.token_hex(24)
        cfg = workdir / "litellm.yaml"
        cfg.write_text(
            "model_list:\n"
            + "".join(
                f"  - model_name: {name}\n"
                "    litellm_params:\n"
                "      model: openai/mock-model\n"
                f"      api_base: {url}/v1\n"
                "      api_key: sk-bench\n"
                for name, url in (("m0", m0), ("m50", m50))
            )
            + "litellm_settings:\n  telemetry: false\n"
            f"general_settings:\n  master_key: {t.secret}\n"
        )
        t.base_url = f"http://127.0.0.1:{port}/v1"
        return [str(t.home / "bin/litellm"), "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port),
                "--num_workers", str(t.workers)]  # fmt: skip
    if t.kind == "portkey":
        assert t.home
        t.base_url = f"http://127.0.0.1:{port}/v1"
        entry = t.home / "node_modules/@portkey-ai/gateway/build/start-server.js"
        return [shutil.which("node") or "node", str(entry), f"--port={port}", "--headless"]
    if t.kind == "tensorzero":
        assert t.home
        cfg = workdir / "tensorzero.toml"
        cfg.write_text(
            "[gateway]\nobservability.enabled = false\ndisable_pseudonymous_usage_analytics = true\n\n"
            + "".join(
                f'[models.{name}]\nrouting = ["mock"]\n\n'
                f"[models.{name}.providers.mock]\n"
                'type = "openai"\nmodel_name = "mock-model"\n'
                f'api_base = "{url}/v1/"\napi_key_location = "none"\n\n'
                for name, url in (("m0", m0), ("m50", m50))
            )
        )
        return [str(t.home / "bin/python"), str(BENCH / "peers/tensorzero_host.py"), str(cfg)]
    raise ValueError(t.kind)


def peer_env(t: Target, workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "LITELLM_", "PORTKEY_"))}
    env["HOME"] = str(workdir)  # nothing a gateway writes lands in the real home
    env["RELAYGATE_HOME"] = str(workdir)
    env.pop("RELAYGATE_CONFIG", None)
    env.pop("RELAYGATE_DB_URL", None)
    if t.kind == "litellm":
        env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR", LITELLM_TELEMETRY="False")
    if t.kind == "portkey":
        env["NODE_ENV"] = "production"
    if t.kind == "tensorzero":
        env["RUST_LOG"] = "warn"
    return env


def probe(t: Target) -> bool:
    body = json.dumps({"model": t.model("m0"), "messages": [{"role": "user", "content": "hi"}]}).encode()
    req = urllib.request.Request(t.url("m0"), data=body, method="POST")
    req.add_header("content-type", "application/json")
    req.add_header("authorization", "Bearer sk-bench")
    for k, v in t.headers("m0").items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=3) as r:
            r.read()
            return r.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


@dataclass
class Running:
    proc: subprocess.Popen[bytes]
    tree: Tree
    startup_s: float
    logfile: Path


def start_target(t: Target, workdir: Path, timeout_s: float) -> Running | str:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = write_configs(t, workdir, port)
    logfile = workdir / "gateway.log"
    out = open(logfile, "wb")
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=workdir,
        env=peer_env(t, workdir),
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = t0 + timeout_s
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            out.close()
            why = _last_error(logfile.read_text(errors="replace"))
            return f"exited with {proc.returncode} at start-up: {why}"
        if t.kind == "tensorzero" and not t.base_url:
            m = re.search(r"^BASE_URL (\S+)", logfile.read_text(errors="replace"), re.M)
            if m:
                t.base_url = m.group(1)
            else:
                time.sleep(0.02)
                continue
        if probe(t):
            return Running(proc, Tree(proc.pid), time.perf_counter() - t0, logfile)
        time.sleep(0.05)
    stop_target(proc)
    out.close()
    return f"no 200 within {timeout_s:.0f} s: {_last_error(logfile.read_text(errors='replace'))}"


def stop_target(proc: subprocess.Popen[bytes]) -> None:
    pids = tree_pids(proc.pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    for pid in pids:  # a worker that left the process group
        if pid != proc.pid and _stat_fields(pid) is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


# ---- the run ------------------------------------------------------------------------------------
@dataclass
class Mock:
    proc: subprocess.Popen[bytes]
    url: str

    def cpu(self) -> float:
        return cpu_seconds([self.proc.pid])


def start_mock(binary: Path, ttfb_ms: int, gap_ms: int) -> Mock:
    port = free_port()
    cmd = [
        str(binary),
        "--port",
        str(port),
        "--ttfb-ms",
        str(ttfb_ms),
        "--gap-ms",
        str(gap_ms),
        "--chunks",
        str(MOCK_CHUNKS),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            with urllib.request.urlopen(url + "/v1/models", timeout=1) as r:
                if r.status == 200:
                    return Mock(proc, url)
        except (urllib.error.URLError, OSError):
            time.sleep(0.02)
    sys.exit("bench: the mock did not start")


def measure_mock(wrk: str, mocks: dict[str, Mock], seconds: int) -> dict[str, Any]:
    direct = Target("mock", "mock", "direct", mocks={k: m.url for k, m in mocks.items()})
    out: dict[str, Any] = {}
    for key, sc in (
        ("ns0_c64", Scenario("x", "m0", False, 64, "wrk")),
        ("st0_c16", Scenario("x", "m0", True, 16, "wrk")),
        ("ns50_c64", Scenario("x", "m50", False, 64, "wrk")),
        ("st50_c16", Scenario("x", "m50", True, 16, "wrk")),
    ):
        mock = mocks[sc.mock]
        c0, w0 = mock.cpu(), time.perf_counter()
        r = run_wrk(wrk, direct, sc, seconds)
        r["mock_cpu_pct"] = 100 * (mock.cpu() - c0) / (time.perf_counter() - w0)
        out[key] = r
    return out


def run_target_round(
    t: Target, rnd: int, args: argparse.Namespace, wrk: str, mocks: dict[str, Mock], rundir: Path
) -> dict[str, Any]:
    res: dict[str, Any] = {"scenarios": {}}
    running: Running | None = None
    if t.kind != "direct":
        got = start_target(t, rundir / f"{t.key}-round{rnd}", args.startup_timeout)
        if isinstance(got, str):
            res["failed"] = got
            log(f"{t.label}: {got}")
            return res
        running = got
        res["startup_s"] = running.startup_s
        time.sleep(args.settle)
        # idle means idle: a second worker may still be importing after the first 200
        res["quiet_after_s"] = args.settle + running.tree.wait_quiet(90)
        total, biggest, nprocs = running.tree.rss()
        res.update(idle_rss_mb=total, idle_rss_max_proc_mb=biggest, processes=nprocs)
        running.tree.start_sampling()
        log(
            f"{t.label} round {rnd}: up in {running.startup_s:.2f} s, {nprocs} process(es), "
            f"idle RSS {total:.0f} MB"
        )
    try:
        for sc in SCENARIOS:
            if sc.tool == "client":
                r = run_client(t, sc, args.client_duration, args.client_warmup)
            else:
                if args.warmup > 0:
                    run_wrk(wrk, t, sc, args.warmup)
                mock = mocks[sc.mock]
                g0 = running.tree.cpu() if running else 0.0
                m0, w0 = mock.cpu(), time.perf_counter()
                r = run_wrk(wrk, t, sc, args.duration)
                wall = time.perf_counter() - w0
                if running and "failed" not in r:
                    used = running.tree.cpu() - g0
                    r["cpu_ms_per_req"] = 1000 * used / max(1, r["requests"])
                    r["gw_cpu_pct"] = 100 * used / wall
                r["mock_cpu_pct"] = 100 * (mock.cpu() - m0) / wall
            res["scenarios"][sc.key] = r
            if running:  # let a gateway finish what the last load left queued before the next one
                r["drain_s"] = running.tree.wait_quiet(20)
            brief = r.get("failed") or (
                f"{r['rps']:.0f} req/s p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms errors {r['errors']}"
                if sc.tool == "wrk"
                else f"{r['streams_per_s']:.0f} streams/s TTFT p50 {r['ttft_p50_ms'] or 0:.2f} ms "
                f"errors {r['errors']}"
            )
            log(f"  {t.key} r{rnd} {sc.key}: {brief}")
    finally:
        if running:
            running.tree.stop_sampling()
            res.update(peak_rss_mb=running.tree.peak_mb, peak_rss_max_proc_mb=running.tree.peak_max_proc_mb)
            if running.proc.poll() is not None:
                res["died"] = f"exited with {running.proc.returncode} during the run"
            stop_target(running.proc)
    return res


def machine_info() -> dict[str, str]:
    info: dict[str, str] = {}
    lscpu = sh(["lscpu"]).stdout if shutil.which("lscpu") else ""
    for key in ("Model name", "CPU(s)", "Thread(s) per core", "Hypervisor vendor", "L3 cache"):
        m = re.search(rf"^{re.escape(key)}:\s*(.+)$", lscpu, re.M)
        if m:
            info[key] = m.group(1).strip()
    info["kernel"] = platform.release()
    info["python"] = platform.python_version()
    with contextlib.suppress(OSError):
        info["memory"] = f"{int(open('/proc/meminfo').readline().split()[1]) / 1024 / 1024:.0f} GiB"
    for name, cmd in (
        ("node", ["node", "--version"]),
        ("wrk", ["wrk", "--version"]),
        ("gcc", ["gcc", "--version"]),
    ):
        if shutil.which(cmd[0]):
            r = sh(cmd)
            info[name] = ((r.stdout or r.stderr).splitlines() or [""])[0].strip()
    with contextlib.suppress(OSError):
        info["os"] = "Debian " + Path("/etc/debian_version").read_text().strip()
    if shutil.which("git"):
        rev = sh(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]).stdout.strip()
        dirty = sh(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "src"]).stdout
        if rev:
            info["relaygate"] = rev + (" + uncommitted changes in src/" if dirty.strip() else "")
    return info


def measure(args: argparse.Namespace, prep: dict[str, Any]) -> dict[str, Any]:
    wrk = prep["wrk"]
    mock_bin = Path(prep["mock"])
    targets = [Target(**{**d, "home": Path(d["home"]) if d["home"] else None}) for d in prep["targets"]]
    rundir = Path(prep["rundir"])
    mocks = {"m0": start_mock(mock_bin, 0, 0), "m50": start_mock(mock_bin, MOCK_TTFB_MS, MOCK_GAP_MS)}
    results: dict[str, Any] = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "settings": {k: v for k, v in vars(args).items() if k not in ("phase", "prep")},
        "machine": machine_info(),
        "netns": prep.get("netns", False),
        "targets": [],
    }
    try:
        log("mock alone (the upstream every gateway shares):")
        results["mock"] = measure_mock(wrk, mocks, args.mock_duration)
        for k, r in results["mock"].items():
            log(
                f"  mock {k}: {r.get('rps', 0):.0f} req/s, p50 {r.get('p50_ms', 0):.3f} ms, "
                f"mock CPU {r['mock_cpu_pct']:.0f}%"
            )
        for t in targets:
            t.mocks = {k: m.url for k, m in mocks.items()}
        per_target: dict[str, list[dict[str, Any]]] = {t.key: [] for t in targets}
        for rnd in range(1, args.rounds + 1):
            for t in targets:
                if t.unavailable:
                    continue
                t.base_url = ""
                log(f"round {rnd}: {t.label}")
                per_target[t.key].append(run_target_round(t, rnd, args, wrk, mocks, rundir))
                time.sleep(0.5)
        for t in targets:
            results["targets"].append(
                {
                    "key": t.key,
                    "label": t.label,
                    "kind": t.kind,
                    "workers": t.workers,
                    "version": t.version,
                    "unavailable": t.unavailable,
                    "rounds": per_target[t.key],
                }
            )
    finally:
        for m in mocks.values():
            m.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                m.proc.wait(timeout=5)
    results["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return results


# ---- main ---------------------------------------------------------------------------------------
def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="bench/run",
        description="Side-by-side benchmark of relaygate, LiteLLM, Portkey and TensorZero on loopback.",
    )
    ap.add_argument(
        "--smoke", action="store_true", help="a few seconds, relaygate and direct only, no peer installs"
    )
    ap.add_argument("--rounds", type=int, default=None, help="runs of every gateway (default 2; smoke 1)")
    ap.add_argument(
        "--duration", type=int, default=None, help="seconds per wrk measurement (default 8; smoke 1)"
    )
    ap.add_argument(
        "--warmup", type=int, default=None, help="seconds of wrk warm-up, discarded (default 2; smoke 0)"
    )
    ap.add_argument(
        "--client-duration", type=float, default=None, help="seconds per streaming-client run (default 5)"
    )
    ap.add_argument(
        "--client-warmup", type=float, default=None, help="streaming-client warm-up seconds (default 1)"
    )
    ap.add_argument(
        "--mock-duration", type=int, default=None, help="seconds per mock-alone measurement (default 3)"
    )
    ap.add_argument(
        "--settle", type=float, default=None, help="seconds after start-up before idle RSS (default 2)"
    )
    ap.add_argument(
        "--startup-timeout", type=float, default=180.0, help="seconds a gateway gets to answer 200"
    )
    ap.add_argument("--only", default="", help="comma-separated target keys or kinds, e.g. relaygate,portkey")
    ap.add_argument(
        "--no-install", action="store_true", help="install nothing; peers not yet installed are skipped"
    )
    ap.add_argument("--no-netns", action="store_true", help="measure without the private network namespace")
    ap.add_argument(
        "--out", default="", help="report path (default bench/results/latest.md; smoke: smoke.md)"
    )
    ap.add_argument("--phase", default="all", help=argparse.SUPPRESS)
    ap.add_argument("--prep", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    full = {"rounds": 2, "duration": 8, "warmup": 2, "client_duration": 5.0, "client_warmup": 1.0,
            "mock_duration": 3, "settle": 2.0}  # fmt: skip
    smoke = {"rounds": 1, "duration": 1, "warmup": 0, "client_duration": 1.0, "client_warmup": 0.3,
             "mock_duration": 1, "settle": 0.5}  # fmt: skip
    for k, v in (smoke if args.smoke else full).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if not args.out:
        args.out = str(BENCH / "results" / ("smoke.md" if args.smoke else "latest.md"))
    return args


def netns_prefix() -> list[str] | None:
    """`unshare --net` with loopback up, when we may; None otherwise."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return None
    r = sh(["unshare", "--net", "--", "ip", "link", "set", "lo", "up"])
    return ["unshare", "--net", "--"] if r.returncode == 0 else None


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    from report import render  # bench/report.py

    if args.phase == "measure":
        prep = json.loads(Path(args.prep).read_text())
        if prep.get("netns"):
            sh(["ip", "link", "set", "lo", "up"])
        results = measure(args, prep)
        Path(prep["results"]).write_text(json.dumps(results, indent=1))
        return 0

    t_start = time.perf_counter()
    wrk = ensure_wrk()
    mock = build_mock()
    targets = make_targets(args)
    prepare_peers(targets, args.no_install or args.smoke)
    rundir = bench_home() / "runs" / time.strftime("%Y%m%d-%H%M%S")
    rundir.mkdir(parents=True, exist_ok=True)
    runs = sorted((bench_home() / "runs").iterdir())
    for old in runs[:-5]:  # keep the logs of the last five runs
        shutil.rmtree(old, ignore_errors=True)
    prefix = None if args.no_netns else netns_prefix()
    prep = {
        "wrk": wrk,
        "mock": str(mock),
        "rundir": str(rundir),
        "results": str(rundir / "results.json"),
        "netns": prefix is not None,
        "targets": [
            {k: (str(v) if isinstance(v, Path) else v) for k, v in t.__dict__.items() if k not in ("mocks",)}
            for t in targets
        ],
    }
    prep_file = rundir / "prep.json"
    prep_file.write_text(json.dumps(prep, indent=1))
    log(f"logs and configs: {rundir}")
    if prefix is None and not args.no_netns:
        log("no private network namespace (needs root and unshare): measuring on the host's loopback")
    cmd = [
        *(prefix or []),
        sys.executable,
        str(Path(__file__).resolve()),
        *argv,
        "--phase",
        "measure",
        "--prep",
        str(prep_file),
    ]
    rc = subprocess.run(cmd).returncode
    if rc != 0 or not Path(prep["results"]).exists():
        log(f"the measurement phase failed (exit {rc}); logs in {rundir}")
        return 1
    results = json.loads(Path(prep["results"]).read_text())
    results["wall_s"] = time.perf_counter() - t_start
    md = render(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(md)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    print(md)
    log(f"report: {out} (raw numbers: {out.with_suffix('.json')}); {results['wall_s'] / 60:.1f} min in all")
    if args.smoke:  # the harness must work; numbers never decide the exit status
        rg = next((t for t in results["targets"] if t["key"] == "relaygate"), None)
        rounds = rg["rounds"] if rg else []
        broken = (
            not rounds
            or any("failed" in r for r in rounds)
            or any(
                "failed" in s or (s.get("ok", s.get("streams", 0)) == 0)
                for r in rounds
                for s in r["scenarios"].values()
            )
        )
        if broken:
            log("smoke: relaygate did not start or a scenario got no successful response")
            return 1
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH))
    sys.exit(main(sys.argv[1:]))
