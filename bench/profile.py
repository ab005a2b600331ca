"""Measure (and optionally profile) relaygate alone against the C mock: one scenario, wrk, py-spy.

    .venv/bin/python bench/profile.py --conc 1 --seconds 10             # req/s, p50/p90/p99, CPU-ms/req
    .venv/bin/python bench/profile.py --conc 16 --svg bench/flamegraphs/x.svg   # plus a py-spy flame graph
    .venv/bin/python bench/profile.py --mock-ms 50 --conc 64 --repeat 3

The quick loop for hot-path work: the same mock, wrk script and gateway config as `bench/run`,
but one gateway and one scenario, repeated ``--repeat`` times with the gateway's CPU time per
request from /proc. With ``--svg`` py-spy (`pip install py-spy`) samples the gateway during the
measured run (``--gil``: only samples holding the GIL, i.e. where CPU goes). Numbers are only
comparable within one machine state: on a shared machine compare CPU-ms/request and runs made
back to back.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import harness  # noqa: E402


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench/profile.py", description=__doc__.splitlines()[0])
    ap.add_argument("--conc", type=int, default=1)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--mock-ms", type=int, default=0, help="0 or 50 (50 ms to first byte, 10 ms gaps)")
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--svg", default="", help="write a py-spy flame graph of the (last) measured run")
    ap.add_argument("--spy-args", default="--gil --rate 250", help="extra py-spy record arguments")
    args = ap.parse_args(argv)
    wrk = harness.ensure_wrk()
    mock_bin = harness.build_mock()
    mocks = {
        "m0": harness.start_mock(mock_bin, 0, 0),
        "m50": harness.start_mock(mock_bin, harness.MOCK_TTFB_MS, harness.MOCK_GAP_MS),
    }
    key = "m50" if args.mock_ms else "m0"
    sc = harness.Scenario("profile", key, args.stream, args.conc, "wrk")
    t = harness.Target("relaygate", "relaygate", "relaygate", args.workers)
    t.mocks = {k: m.url for k, m in mocks.items()}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            running = harness.start_target(t, Path(tmp), 120)
            if isinstance(running, str):
                print(f"relaygate did not start: {running}", file=sys.stderr)
                return 1
            try:
                time.sleep(1)
                for i in range(args.repeat):
                    if args.warmup:
                        harness.run_wrk(wrk, t, sc, args.warmup)
                    running.tree.wait_quiet(10)
                    spy = None
                    if args.svg and i == args.repeat - 1:
                        exe = shutil.which("py-spy") or str(harness.REPO / ".venv/bin/py-spy")
                        spy_cmd = [exe, "record", "-p", str(running.proc.pid), "-o", args.svg, "-d",
                                   str(args.seconds), "--nonblocking", *args.spy_args.split()]  # fmt: skip
                        spy = subprocess.Popen(
                            spy_cmd,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE,
                        )
                        time.sleep(0.5)
                    c0 = running.tree.cpu()
                    r = harness.run_wrk(wrk, t, sc, args.seconds)
                    used = running.tree.cpu() - c0
                    if spy is not None:
                        _, err = spy.communicate(timeout=120)
                        if spy.returncode:
                            print(f"py-spy failed: {err.decode(errors='replace')[-400:]}", file=sys.stderr)
                    if "failed" in r:
                        print(r["failed"], file=sys.stderr)
                        return 1
                    print(
                        f"run {i + 1}: {r['rps']:.0f} req/s  p50 {r['p50_ms']:.3f}  p90 {r['p90_ms']:.3f}  "
                        f"p99 {r['p99_ms']:.3f} ms  CPU {1000 * used / max(1, r['requests']):.3f} ms/req  "
                        f"errors {r['errors']}",
                        flush=True,
                    )
            finally:
                harness.stop_target(running.proc)
    finally:
        for m in mocks.values():
            m.proc.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
