"""relaygate soak: a long run at a steady rate, watching memory, file descriptors and errors.

    bench/soak                      # 10 minutes (600 s) at 200 req/s, half of them streams
    bench/soak --duration 120 --rate 100
    bench/soak --smoke              # about 8 seconds: the soak still works (CI)
    bench/soak --write-doc          # also put the result table into docs/performance.md

Starts the C mock (`bench/mock/mockllm.c`) with `--fail-every 20` (5% of upstream answers fail
on purpose: a 500, or for streams alternately a 500 and a stream cut after two events) and one
`relaygate serve` with a SQLite ledger. Retries are off and the breaker threshold is high, so each
injected failure reaches the client exactly once and can be counted against the mock's own tally.
An open-loop client (asyncio + aiohttp in this process) sends requests at a fixed rate, streaming
and non-streaming mixed; a thread samples the gateway's RSS, open fds and threads every few
seconds. After the run the gateway is stopped (it flushes its ledger) and the ledger's row count
is compared with the requests sent.

Reported: RSS growth after warm-up (median of the first minute after warm-up against the median
of the last minute; target < 5%), fd growth over the same windows (target 0), errors the clients
saw against the failures the mock injected (target: no other error), ledger rows against
requests. The exit status never depends on the numbers (`--smoke` exits 1 only when no request
succeeded).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import harness  # noqa: E402  (bench/harness.py: mock build, process-tree accounting)

DOC = BENCH.parent / "docs" / "performance.md"
DOC_START, DOC_END = "<!-- soak:start -->", "<!-- soak:end -->"
BODY = (
    '{"model":"soak","messages":[{"role":"user","content":"hello there, how are you? #%d"}],'
    '"max_tokens":32%s}'
)


@dataclass
class Tally:
    """What the clients saw. ``injected_*`` are failures of the kinds the mock injects."""

    sent: int = 0
    ok: int = 0
    ok_stream: int = 0
    injected_http: int = 0  # 502 whose body names the upstream's server error
    injected_stream_cut: int = 0  # 200 stream that ended with an SSE error event
    other: dict[str, int] = field(default_factory=dict)  # anything else, by kind
    skipped_late: int = 0  # the client could not keep the rate (too many in flight)
    latencies_ms: list[float] = field(default_factory=list)

    def other_error(self, kind: str) -> None:
        self.other[kind] = self.other.get(kind, 0) + 1


@dataclass
class Sample:
    t: float  # seconds since the load started
    rss_mb: float
    fds: int
    threads: int
    cpu_s: float
    sent: int


def proc_counts(pids: list[int]) -> tuple[int, int]:
    """(open fds, threads) summed over ``pids``."""
    fds = threads = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fds += len(os.listdir(f"/proc/{pid}/fd"))
        with contextlib.suppress(OSError, ValueError, IndexError):
            threads += int(harness._stat_fields(pid)[17])  # type: ignore[index]
    return fds, threads


class Sampler(threading.Thread):
    def __init__(self, tree: harness.Tree, every_s: float, tally: Tally, t0: float) -> None:
        super().__init__(daemon=True)
        self.tree, self.every_s, self.tally, self.t0 = tree, every_s, tally, t0
        self.samples: list[Sample] = []
        self._stop_event = threading.Event()

    def sample(self) -> None:
        pids = self.tree.pids()
        rss = sum(harness.rss_mb(p) for p in pids)
        fds, threads = proc_counts(pids)
        self.samples.append(
            Sample(
                time.perf_counter() - self.t0, rss, fds, threads, harness.cpu_seconds(pids), self.tally.sent
            )
        )

    def run(self) -> None:
        self.sample()
        while not self._stop_event.wait(self.every_s):
            self.sample()

    def stop(self) -> None:
        self._stop_event.set()
        self.join()
        self.sample()


# ---- the load -----------------------------------------------------------------------------------
async def one_request(session: aiohttp.ClientSession, url: str, n: int, stream: bool, tally: Tally) -> None:
    body = BODY % (n, ',"stream":true' if stream else "")
    t0 = time.perf_counter()
    try:
        async with session.post(url, data=body) as r:
            data = await r.read()
            if r.status == 200 and not stream:
                if b'"choices"' in data:
                    tally.ok += 1
                else:
                    tally.other_error("200 without choices")
            elif r.status == 200:
                if b'data: {"error"' in data:  # the gateway's in-band error event
                    tally.injected_stream_cut += 1
                elif data.rstrip().endswith(b"data: [DONE]") and b'"content"' in data:
                    tally.ok += 1
                    tally.ok_stream += 1
                else:
                    tally.other_error("stream without [DONE] or error event")
            elif r.status in (502, 503) and b"server_error" in data:
                tally.injected_http += 1
            else:
                tally.other_error(f"HTTP {r.status}: {data[:120]!r}")
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        tally.other_error(f"client {type(exc).__name__}")
    tally.latencies_ms.append((time.perf_counter() - t0) * 1000)


async def drive(url: str, rate: float, seconds: float, stream_share: float, tally: Tally) -> None:
    """Send at ``rate`` requests/s for ``seconds`` (open loop: the schedule never waits for
    answers; a request that would exceed 512 in flight is counted in ``skipped_late``)."""
    rng = random.Random(6)
    timeout = aiohttp.ClientTimeout(total=30)
    conn = aiohttp.TCPConnector(limit=128)
    async with aiohttp.ClientSession(
        connector=conn, timeout=timeout, headers={"content-type": "application/json"}
    ) as session:
        tasks: set[asyncio.Task[None]] = set()
        loop = asyncio.get_running_loop()
        start = loop.time()
        period = 1.0 / rate
        n = 0
        while True:
            due = start + n * period
            if due - start >= seconds:
                break
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            n += 1
            if len(tasks) >= 512:
                tally.skipped_late += 1
                continue
            tally.sent += 1
            task = asyncio.create_task(one_request(session, url, n, rng.random() < stream_share, tally))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=60)


# ---- gateway and mock ---------------------------------------------------------------------------
def gateway_config(mock_url: str, db: Path) -> str:
    # No retries and a breaker that never opens: every injected failure is seen exactly once.
    return (
        "providers:\n"
        f'  mock: {{protocol: openai, base_url: "{mock_url}/v1"}}\n'
        "routes:\n"
        "  soak:\n"
        "    deployments: [{provider: mock, model: mock-model, price: {input: 1, output: 2}}]\n"
        "    retry: {max_attempts: 1}\n"
        "breaker: {failure_threshold: 1000000}\n"
        "auth: {mode: open}\n"
        f'storage: {{url: "sqlite:///{db}"}}\n'
    )


def wait_http(url: str, timeout_s: float) -> bool:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    return False


def mock_stats(url: str) -> dict[str, int]:
    with urllib.request.urlopen(url + "/stats", timeout=5) as r:
        return dict(json.loads(r.read()))


def ledger_counts(db: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(db)) as c:
        rows = c.execute("SELECT count(*), sum(status != 200), sum(complete = 0) FROM usage").fetchone()
    return {"rows": rows[0] or 0, "non_200": rows[1] or 0, "incomplete": rows[2] or 0}


def log_problems(path: Path) -> list[str]:
    lines = path.read_text(errors="replace").splitlines()
    return [ln for ln in lines if "Traceback" in ln or " ERROR " in ln or "CRITICAL" in ln][:20]


# ---- analysis -----------------------------------------------------------------------------------
def window(samples: list[Sample], lo: float, hi: float) -> list[Sample]:
    return [s for s in samples if lo <= s.t <= hi]


def analyse(samples: list[Sample], warmup_s: float, duration_s: float, win_s: float) -> dict[str, Any]:
    first = window(samples, warmup_s, warmup_s + win_s) or samples[-1:]
    last = window(samples, duration_s - win_s, duration_s + 1) or samples[-1:]
    after = window(samples, warmup_s, duration_s + 1) or samples[-1:]
    rss0 = statistics.median(s.rss_mb for s in first)
    rss1 = statistics.median(s.rss_mb for s in last)
    fd0 = statistics.median(s.fds for s in first)
    fd1 = statistics.median(s.fds for s in last)
    xs = [s.t / 60 for s in after]
    slope = 0.0
    if len(after) >= 3 and max(xs) > min(xs):
        slope = statistics.linear_regression(xs, [s.rss_mb for s in after]).slope
    return {
        "rss_start_mb": samples[0].rss_mb,
        "rss_after_warmup_mb": rss0,
        "rss_end_mb": rss1,
        "rss_max_after_warmup_mb": max(s.rss_mb for s in after),
        "rss_growth_pct": 100 * (rss1 - rss0) / rss0 if rss0 else 0.0,
        "rss_slope_mb_per_min": slope,
        "fds_after_warmup": fd0,
        "fds_end": fd1,
        "fds_max_after_warmup": max(s.fds for s in after),
        "fd_growth": fd1 - fd0,
        "threads_end": last[-1].threads,
        "threads_max": max(s.threads for s in samples),
    }


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else 0.0


def render(res: dict[str, Any]) -> str:
    a, t, led = res["analysis"], res["tally"], res["ledger"]
    injected = res["injected"]
    seen = t["injected_http"] + t["injected_stream_cut"]
    other = sum(t["other"].values()) + abs(seen - injected["total"])
    ok = "✅"
    bad = "❌"
    lines = [
        f"Soak of {res['started']}: {res['duration_s']:.0f} s at {res['rate']:.0f} req/s "
        f"({100 * res['stream_share']:.0f}% streams), upstream failing every {res['fail_every']}th "
        f"request; warm-up {res['warmup_s']:.0f} s, RSS/fd sampled every {res['sample_every_s']:g} s, "
        f"windows of {res['window_s']:g} s; relaygate {res['relaygate']}.",
        "",
        "| measure | value | target |",
        "|---|--:|---|",
        f"| requests sent / answered 200 (streams) | {t['sent']:,} / {t['ok']:,} ({t['ok_stream']:,}) | |",
        f"| client latency p50 / p99 / max ms | {res['lat_p50_ms']:.2f} / {res['lat_p99_ms']:.2f} / "
        f"{res['lat_max_ms']:.1f} | |",
        f"| gateway CPU-ms per request | {res['cpu_ms_per_req']:.2f} | |",
        f"| RSS at start / after warm-up / at the end MB | {a['rss_start_mb']:.1f} / "
        f"{a['rss_after_warmup_mb']:.1f} / {a['rss_end_mb']:.1f} | |",
        f"| **RSS growth after warm-up** (max {a['rss_max_after_warmup_mb']:.1f} MB; trend "
        f"{a['rss_slope_mb_per_min']:+.3f} MB/min) | **{a['rss_growth_pct']:+.2f}%** | < 5% "
        f"{ok if a['rss_growth_pct'] < 5 else bad} |",
        f"| **open fds** after warm-up / at the end (max) | {a['fds_after_warmup']:.0f} / {a['fds_end']:.0f} "
        f"({a['fds_max_after_warmup']}) | growth 0 {ok if a['fd_growth'] <= 0 else bad} |",
        f"| threads at the end (max) | {a['threads_end']} ({a['threads_max']}) | |",
        f"| failures injected by the mock (500 / cut streams) | {injected['total']:,} "
        f"({injected['failed_500']:,} / {injected['cut_streams']:,}) | 5% |",
        f"| injected failures seen by clients (502 / SSE error event) | {seen:,} "
        f"({t['injected_http']:,} / {t['injected_stream_cut']:,}) | all of them |",
        f"| **other errors** | **{other}** {json.dumps(t['other']) if t['other'] else ''} | 0 "
        f"{ok if other == 0 else bad} |",
        f"| ledger rows / requests sent (rows with status ≠ 200; incomplete streams) | {led['rows']:,} / "
        f"{t['sent']:,} ({led['non_200']:,}; {led['incomplete']:,}) | equal "
        f"{ok if led['rows'] == t['sent'] else bad} |",
        f"| errors in the gateway log | {len(res['log_problems'])} | 0 "
        f"{ok if not res['log_problems'] else bad} |",
    ]
    if t["skipped_late"]:
        lines.append(f"| requests the client could not send on time (skipped) | {t['skipped_late']:,} | 0 |")
    return "\n".join(lines) + "\n"


def write_doc(md: str) -> None:
    text = DOC.read_text()
    if DOC_START not in text or DOC_END not in text:
        print(f"soak: {DOC} has no {DOC_START} ... {DOC_END} section; not written", file=sys.stderr)
        return
    head, rest = text.split(DOC_START, 1)
    _, tail = rest.split(DOC_END, 1)
    DOC.write_text(head + DOC_START + "\n" + md + DOC_END + tail)


# ---- main ---------------------------------------------------------------------------------------
def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="bench/soak", description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=None, help="seconds of load (default 600; smoke 6)")
    ap.add_argument("--rate", type=float, default=None, help="requests per second (default 200; smoke 50)")
    ap.add_argument("--stream-share", type=float, default=0.5, help="share of streaming requests")
    ap.add_argument("--fail-every", type=int, default=20, help="the mock fails every Nth request (20: 5%%)")
    ap.add_argument("--warmup", type=float, default=None, help="seconds before RSS is compared (default 60)")
    ap.add_argument("--window", type=float, default=None, help="seconds per RSS/fd window (default 60)")
    ap.add_argument("--sample-every", type=float, default=None, help="seconds between samples (default 5)")
    ap.add_argument("--ttfb-ms", type=int, default=5, help="mock time to first byte")
    ap.add_argument("--gap-ms", type=int, default=2, help="mock gap between SSE events")
    ap.add_argument("--workers", type=int, default=1, help="relaygate serve --workers")
    ap.add_argument("--smoke", action="store_true", help="a few seconds; exit 1 only if nothing succeeded")
    ap.add_argument("--write-doc", action="store_true", help=f"replace the soak section of {DOC.name}")
    ap.add_argument("--out", default="", help="report (default bench/results/soak.md; smoke: soak-smoke.md)")
    args = ap.parse_args(argv)
    defaults = (
        {"duration": 6.0, "rate": 50.0, "warmup": 2.0, "window": 2.0, "sample_every": 0.5}
        if args.smoke
        else {"duration": 600.0, "rate": 200.0, "warmup": 60.0, "window": 60.0, "sample_every": 5.0}
    )
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if not args.out:
        args.out = str(BENCH / "results" / ("soak-smoke.md" if args.smoke else "soak.md"))
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    mock_bin = harness.build_mock()
    rundir = harness.bench_home() / "soak" / time.strftime("%Y%m%d-%H%M%S")
    rundir.mkdir(parents=True, exist_ok=True)
    mport, gport = harness.free_port(), harness.free_port()
    mock_url, gw_url = f"http://127.0.0.1:{mport}", f"http://127.0.0.1:{gport}"
    mock_cmd = [str(mock_bin), "--port", str(mport), "--ttfb-ms", str(args.ttfb_ms), "--gap-ms",
                str(args.gap_ms), "--chunks", "8", "--fail-every", str(args.fail_every)]  # fmt: skip
    mock = subprocess.Popen(
        mock_cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    db = rundir / "relaygate.db"
    cfg = rundir / "relaygate.yaml"
    cfg.write_text(gateway_config(mock_url, db))
    gwlog = rundir / "gateway.log"
    cmd = [str(harness.REPO / ".venv/bin/relaygate"), "serve", "--config", str(cfg), "--port", str(gport)]
    cmd += ["--log-level", "warning"] + (["--workers", str(args.workers)] if args.workers > 1 else [])
    target = harness.Target("relaygate", "relaygate", "relaygate")
    gw: subprocess.Popen[bytes] | None = None
    try:
        if not wait_http(mock_url + "/v1/models", 10):
            print("soak: the mock did not start", file=sys.stderr)
            return 1
        with open(gwlog, "wb") as logf:
            gw = subprocess.Popen(
                cmd, cwd=rundir, env=harness.peer_env(target, rundir), stdout=logf, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        if not wait_http(gw_url + "/v1/models", 120):
            print(f"soak: relaygate did not start; see {gwlog}", file=sys.stderr)
            return 1
        stats0 = mock_stats(mock_url)
        tree = harness.Tree(gw.pid)
        tally = Tally()
        harness.log(
            f"soak: {args.duration:.0f} s at {args.rate:.0f} req/s, {100 * args.stream_share:.0f}% streams, "
            f"upstream fails every {args.fail_every}th; logs in {rundir}"
        )
        t0 = time.perf_counter()
        sampler = Sampler(tree, args.sample_every, tally, t0)
        sampler.start()
        cpu0 = tree.cpu()
        try:
            import uvloop

            runner: Any = uvloop.run
        except ImportError:  # pragma: no cover
            runner = asyncio.run
        runner(drive(gw_url + "/v1/chat/completions", args.rate, args.duration, args.stream_share, tally))
        cpu_used = tree.cpu() - cpu0
        sampler.stop()
        stats1 = mock_stats(mock_url)
        alive = gw.poll() is None
        harness.stop_target(gw)  # SIGTERM: the ledger writer flushes before exit
        gw = None
        injected = {k: stats1[k] - stats0[k] for k in ("failed_500", "cut_streams")}
        injected["total"] = injected["failed_500"] + injected["cut_streams"]
        problems = log_problems(gwlog)
        if not alive:
            problems.insert(0, "relaygate exited during the soak")
        res: dict[str, Any] = {
            "started": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "duration_s": args.duration,
            "rate": args.rate,
            "stream_share": args.stream_share,
            "fail_every": args.fail_every,
            "warmup_s": args.warmup,
            "window_s": args.window,
            "sample_every_s": args.sample_every,
            "relaygate": harness.machine_info().get("relaygate", "?"),
            "tally": {k: v for k, v in vars(tally).items() if k != "latencies_ms"},
            "lat_p50_ms": pct(tally.latencies_ms, 50),
            "lat_p99_ms": pct(tally.latencies_ms, 99),
            "lat_max_ms": max(tally.latencies_ms, default=0.0),
            "cpu_ms_per_req": 1000 * cpu_used / max(1, tally.sent),
            "injected": injected,
            "ledger": ledger_counts(db),
            "log_problems": problems,
            "analysis": analyse(sampler.samples, args.warmup, args.duration, args.window),
            "samples": [vars(s) for s in sampler.samples],
        }
    finally:
        if gw is not None:
            harness.stop_target(gw)
        mock.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            mock.wait(timeout=5)
    md = render(res)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(md)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    print(md)
    for line in res["log_problems"]:
        print(f"  gateway log: {line}", file=sys.stderr)
    if args.write_doc and not args.smoke:
        write_doc(md)
    if args.smoke and tally.ok == 0:
        print("soak smoke: no request succeeded", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
