"""Markdown report of a bench/run results.json (also: `python bench/report.py results.json`)."""

from __future__ import annotations

import json
import statistics
import sys
from typing import Any

from harness import MOCK_CHUNKS, MOCK_GAP_MS, MOCK_TTFB_MS


def _vals(target: dict[str, Any], scenario: str, metric: str) -> list[float]:
    out = []
    for rnd in target["rounds"]:
        s = rnd.get("scenarios", {}).get(scenario)
        if s and "failed" not in s and s.get(metric) is not None:
            out.append(float(s[metric]))
    return out


def _mean(target: dict[str, Any] | None, scenario: str, metric: str) -> float | None:
    if target is None:
        return None
    v = _vals(target, scenario, metric)
    return statistics.fmean(v) if v else None


def _meta(target: dict[str, Any], key: str) -> list[float]:
    return [float(r[key]) for r in target["rounds"] if r.get(key) is not None]


def _spread(target: dict[str, Any], scenario: str, metric: str) -> str:
    v = _vals(target, scenario, metric)
    if len(v) < 2 or not statistics.fmean(v):
        return ""
    return f"±{50 * (max(v) - min(v)) / statistics.fmean(v):.0f}%"


def _errors(target: dict[str, Any], scenario: str) -> str:
    total, failed = 0, []
    for rnd in target["rounds"]:
        s = rnd.get("scenarios", {}).get(scenario)
        if s is None:
            continue
        if "failed" in s:
            failed.append(s["failed"])
        else:
            total += int(s.get("errors", 0))
    if failed:
        return f"{total} + failed: {failed[0][:60]}"
    return str(total)


def f(x: float | None, digits: int = 2) -> str:
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "-"
    return f"{a / b:.2f}x"


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _status(t: dict[str, Any]) -> str | None:
    if t["unavailable"]:
        return f"not run: {t['unavailable']}"
    if not t["rounds"]:
        return "not run"
    fails = [r["failed"] for r in t["rounds"] if "failed" in r]
    if len(fails) == len(t["rounds"]):
        return f"did not start: {fails[0]}"
    return None


def _label(t: dict[str, Any]) -> str:
    v = f" {t['version']}" if t["version"] and t["version"] != "working tree" else ""
    return f"{t['label']}{v}"


def render(res: dict[str, Any]) -> str:
    targets = res["targets"]
    by = {t["key"]: t for t in targets}
    direct, rg = by.get("direct"), by.get("relaygate")
    runnable = [t for t in targets if _status(t) is None]
    not_run = [t for t in targets if _status(t) is not None]
    st = res["settings"]
    L: list[str] = []
    L.append(f"# relaygate side-by-side benchmark ({res['started'][:10]})")
    L.append("")
    m = res["machine"]
    L.append(
        f"Machine: {m.get('Model name', '?')}, {m.get('CPU(s)', '?')} vCPU "
        f"({m.get('Hypervisor vendor', 'bare metal')} "
        f"guest), {m.get('memory', '?')} RAM, kernel {m.get('kernel', '?')}, {m.get('os', '')}; Python "
        f"{m.get('python')}, Node {m.get('node', '-')}, {m.get('wrk', 'wrk').split(' Copyright')[0]}."
        + (f" relaygate: {m['relaygate']}." if m.get("relaygate") else "")
    )
    L.append(
        f"Settings: {st['rounds']} round(s), every gateway started fresh each round; "
        f"wrk {st['duration']} s per "
        f"point after {st['warmup']} s warm-up, 1 thread; streaming client {st['client_duration']:g} s after "
        f"{st['client_warmup']:g} s; load generator, mock and gateway share the same "
        f"{m.get('CPU(s)', '?')} cores; "
        + (
            "measured inside a private network namespace (loopback only)."
            if res.get("netns")
            else "host loopback."
        )
        + f" Wall time {res.get('wall_s', 0) / 60:.1f} min."
    )
    L.append(
        "Numbers are the mean of the rounds; ± is half the spread between rounds. *added* = gateway minus "
        "direct-to-mock at the same concurrency, same run. *relaygate ÷ this* compares relaygate (1 worker) "
        "with that row (above 1: relaygate is ahead)."
    )
    L.append("")
    mk = res.get("mock", {})
    if mk:
        ideal50 = 64 / (MOCK_TTFB_MS / 1000)
        ideal50s = 16 / ((MOCK_TTFB_MS + MOCK_CHUNKS * MOCK_GAP_MS) / 1000)
        mock_cpu = [
            s.get("mock_cpu_pct", 0)
            for t in targets
            if t["kind"] != "direct"
            for r in t["rounds"]
            for s in r.get("scenarios", {}).values()
            if "mock_cpu_pct" in s
        ]
        L.append(
            "**Mock upstream alone** (C, epoll, one thread; `bench/mock/mockllm.c`): 0 ms variant "
            f"{f(mk['ns0_c64'].get('rps'))} req/s at c64 (p50 {f(mk['ns0_c64'].get('p50_ms'), 3)} ms), "
            f"{f(mk['st0_c16'].get('rps'))} streams/s at c16; 50 ms variant "
            f"({MOCK_TTFB_MS} ms to first byte, {MOCK_GAP_MS} ms between {MOCK_CHUNKS} content chunks) "
            f"{f(mk['ns50_c64'].get('rps'))} req/s at c64 "
            f"(ideal {ideal50:.0f}), {f(mk['st50_c16'].get('rps'))} streams/s at c16 (ideal {ideal50s:.0f}). "
            + (
                f"While the gateways were measured the mock used at most {max(mock_cpu):.0f}% of one core."
                if mock_cpu
                else ""
            )
        )
        L.append("")

    def rows_for(scenario: str, cols: Any) -> None:
        for t in runnable:
            L.append("| " + " | ".join([_label(t), *cols(t, scenario)]) + " |")

    # -- non-streaming, 0 ms
    L.append("## Non-streaming, 0 ms upstream")
    L.append("")
    L.append(
        "| gateway | conc | req/s | ± | p50 ms | p90 ms | p99 ms | added p50 ms | added p99 ms | CPU-ms/req "
        "| errors | relaygate ÷ this |"
    )
    L.append("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for conc in (1, 16, 64):
        sc = f"ns0_c{conc}"
        for t in runnable:
            rps = _mean(t, sc, "rps")
            L.append(
                "| "
                + " | ".join(
                    [
                        _label(t),
                        str(conc),
                        f(rps),
                        _spread(t, sc, "rps"),
                        f(_mean(t, sc, "p50_ms")),
                        f(_mean(t, sc, "p90_ms")),
                        f(_mean(t, sc, "p99_ms")),
                        "" if t is direct else f(_diff(_mean(t, sc, "p50_ms"), _mean(direct, sc, "p50_ms"))),
                        "" if t is direct else f(_diff(_mean(t, sc, "p99_ms"), _mean(direct, sc, "p99_ms"))),
                        f(_mean(t, sc, "cpu_ms_per_req")),
                        _errors(t, sc),
                        "" if t is rg else ratio(_mean(rg, sc, "rps"), rps),
                    ]
                )
                + " |"
            )
    L.append("")

    # -- streaming, 0 ms
    L.append("## Streaming, concurrency 16, 0 ms upstream")
    L.append("")
    L.append(
        "streams/s and whole-stream latency from wrk; TTFB (headers in) and TTFT (first content token) "
        "from the Python streaming client, whose own CPU competes with the gateway's, so read *added* "
        "and the ratios."
    )
    L.append("")
    L.append(
        "| gateway | streams/s | ± | stream p50 ms | stream p99 ms | TTFB p50 ms | TTFT p50 ms | TTFT p99 ms "
        "| TTFT added p50 | TTFT added p99 | CPU-ms/stream | errors | relaygate ÷ this |"
    )
    L.append("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for t in runnable:
        sps = _mean(t, "st0_c16", "rps")
        ttft50, ttft99 = _mean(t, "ttft0_c16", "ttft_p50_ms"), _mean(t, "ttft0_c16", "ttft_p99_ms")
        errs = _errors(t, "st0_c16")
        cerr = _errors(t, "ttft0_c16")
        L.append(
            "| "
            + " | ".join(
                [
                    _label(t),
                    f(sps),
                    _spread(t, "st0_c16", "rps"),
                    f(_mean(t, "st0_c16", "p50_ms")),
                    f(_mean(t, "st0_c16", "p99_ms")),
                    f(_mean(t, "ttft0_c16", "ttfb_p50_ms")),
                    f(ttft50),
                    f(ttft99),
                    "" if t is direct else f(_diff(ttft50, _mean(direct, "ttft0_c16", "ttft_p50_ms"))),
                    "" if t is direct else f(_diff(ttft99, _mean(direct, "ttft0_c16", "ttft_p99_ms"))),
                    f(_mean(t, "st0_c16", "cpu_ms_per_req")),
                    errs if cerr == "0" else f"{errs} (client {cerr})",
                    "" if t is rg else ratio(_mean(rg, "st0_c16", "rps"), sps),
                ]
            )
            + " |"
        )
    L.append("")

    # -- streaming, 50 ms
    L.append(
        f"## Streaming, concurrency 16, {MOCK_TTFB_MS} ms upstream "
        f"({MOCK_GAP_MS} ms between chunks; Python client)"
    )
    L.append("")
    L.append(
        "| gateway | streams/s | TTFB p50 ms | TTFT p50 ms | TTFT p90 ms | TTFT p99 ms | TTFT added p50 "
        "| TTFT added p99 | stream p50 ms | errors |"
    )
    L.append("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for t in runnable:
        sc = "ttft50_c16"
        ttft50, ttft99 = _mean(t, sc, "ttft_p50_ms"), _mean(t, sc, "ttft_p99_ms")
        L.append(
            "| "
            + " | ".join(
                [
                    _label(t),
                    f(_mean(t, sc, "streams_per_s")),
                    f(_mean(t, sc, "ttfb_p50_ms")),
                    f(ttft50),
                    f(_mean(t, sc, "ttft_p90_ms")),
                    f(ttft99),
                    "" if t is direct else f(_diff(ttft50, _mean(direct, sc, "ttft_p50_ms"))),
                    "" if t is direct else f(_diff(ttft99, _mean(direct, sc, "ttft_p99_ms"))),
                    f(_mean(t, sc, "total_p50_ms")),
                    _errors(t, sc),
                ]
            )
            + " |"
        )
    L.append("")

    # -- 50 ms non-streaming c64
    L.append(f"## Non-streaming, concurrency 64, {MOCK_TTFB_MS} ms upstream (the model is the bottleneck)")
    L.append("")
    L.append(
        "| gateway | req/s | ± | % of direct | p50 ms | p99 ms | added p50 ms | CPU-ms/req | errors "
        "| relaygate ÷ this |"
    )
    L.append("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    d50 = _mean(direct, "ns50_c64", "rps")
    for t in runnable:
        sc = "ns50_c64"
        rps = _mean(t, sc, "rps")
        L.append(
            "| "
            + " | ".join(
                [
                    _label(t),
                    f(rps),
                    _spread(t, sc, "rps"),
                    f"{100 * rps / d50:.1f}%" if rps and d50 else "-",
                    f(_mean(t, sc, "p50_ms")),
                    f(_mean(t, sc, "p99_ms")),
                    "" if t is direct else f(_diff(_mean(t, sc, "p50_ms"), _mean(direct, sc, "p50_ms"))),
                    f(_mean(t, sc, "cpu_ms_per_req")),
                    _errors(t, sc),
                    "" if t is rg else ratio(_mean(rg, sc, "rps"), rps),
                ]
            )
            + " |"
        )
    L.append("")

    # -- resources
    L.append("## Resources")
    L.append("")
    L.append(
        "RSS summed over the gateway's process tree (largest single process in brackets); idle = after "
        f"start-up, {st['settle']:g} s, and then until the tree used under 10% of a core for 0.5 s, "
        "before any load; peak = highest 100 ms sample during the run. Start-up "
        "= process start to the first 200 on a chat completion through the gateway. CPU = utime + stime of "
        "the whole tree (workers included) during the c16 0 ms run, per request and as a share of one core."
    )
    L.append("")
    L.append(
        "| gateway | processes | start-up s | idle RSS MB | peak RSS MB | CPU-ms/req c16 | CPU % at c16 "
        "| this ÷ relaygate (CPU-ms/req) |"
    )
    L.append("|---|--:|--:|--:|--:|--:|--:|--:|")
    rg_cpu = _mean(rg, "ns0_c16", "cpu_ms_per_req")
    for t in runnable:
        if t is direct:
            continue
        idle = _meta(t, "idle_rss_mb")
        idle_max = _meta(t, "idle_rss_max_proc_mb")
        peak = _meta(t, "peak_rss_mb")
        peak_max = _meta(t, "peak_rss_max_proc_mb")
        starts = _meta(t, "startup_s")
        procs = _meta(t, "processes")
        cpu = _mean(t, "ns0_c16", "cpu_ms_per_req")
        L.append(
            "| "
            + " | ".join(
                [
                    _label(t),
                    f"{max(procs):.0f}" if procs else "-",
                    " / ".join(f"{s:.2f}" for s in starts) or "-",
                    f"{statistics.fmean(idle):.0f} ({statistics.fmean(idle_max):.0f})" if idle else "-",
                    f"{max(peak):.0f} ({max(peak_max):.0f})" if peak else "-",
                    f(cpu),
                    f(_mean(t, "ns0_c16", "gw_cpu_pct"), 0),
                    "" if t is rg else ratio(cpu, rg_cpu),
                ]
            )
            + " |"
        )
    L.append("")

    # -- targets
    rg_variants = [t for t in runnable if t["kind"] == "relaygate"]
    if rg_variants:
        L.append("## relaygate against the issue's targets (informational; never gates CI)")
        L.append("")
        L.append("| target | goal | " + " | ".join(_label(t) for t in rg_variants) + " |")
        L.append("|---|---|" + "--:|" * len(rg_variants))

        def peer(key: str) -> dict[str, Any] | None:
            t = by.get(key)
            return t if t and _status(t) is None else None

        def verdict(value: float | None, goal: float, higher_is_better: bool, fmt: str) -> str:
            if value is None:
                return "-"
            ok = value >= goal if higher_is_better else value <= goal
            return fmt.format(value) + (" ✅" if ok else " ❌")

        # (what, goal, compared with, how: ratio | diff | pct, scenario, metric, threshold, higher is better)
        checks = [
            ("c16 0 ms req/s vs Portkey", "≥ 2x", "portkey", "ratio", "ns0_c16", "rps", 2.0, True),
            ("c16 0 ms req/s vs LiteLLM (2 workers)", "≥ 10x", "litellm_2w", "ratio", "ns0_c16", "rps", 10.0,
             True),
            ("c16 0 ms req/s vs TensorZero", "≥ 0.5x (aim)", "tensorzero", "ratio", "ns0_c16", "rps", 0.5,
             True),
            ("c1 added latency p50", "≤ 0.5 ms", "direct", "diff", "ns0_c1", "p50_ms", 0.5, False),
            ("c1 added latency p99", "≤ 2 ms", "direct", "diff", "ns0_c1", "p99_ms", 2.0, False),
            ("streaming c16 TTFT added p50, 50 ms upstream", "≤ 1 ms", "direct", "diff", "ttft50_c16",
             "ttft_p50_ms", 1.0, False),
            ("streaming c16 TTFT added p50, 0 ms upstream (saturated)", "≤ 1 ms", "direct", "diff",
             "ttft0_c16",
             "ttft_p50_ms", 1.0, False),
            ("streaming c16 streams/s vs Portkey", "≥ 2x", "portkey", "ratio", "st0_c16", "rps", 2.0, True),
            ("50 ms upstream c64 req/s, share of direct", "≥ 95%", "direct", "pct", "ns50_c64", "rps", 95.0,
             True),
        ]  # fmt: skip
        how = {"ratio": (_r, "{:.2f}x"), "diff": (_d, "{:.2f} ms"), "pct": (_pct, "{:.1f}%")}
        for name, goal, pkey, kind, sc, metric, thr, hib in checks:
            p = peer(pkey)
            fn, fmt = how[kind]
            cells = [verdict(fn(t, p, sc, metric) if p else None, thr, hib, fmt) for t in rg_variants]
            if p is None:
                cells = [f"- ({pkey} not run)" for _ in rg_variants]
            L.append(f"| {name} | {goal} | " + " | ".join(cells) + " |")
        cells = []
        for t in rg_variants:
            idle = _meta(t, "idle_rss_max_proc_mb")
            cells.append(verdict(max(idle) if idle else None, 100.0, False, "{:.0f} MB"))
        L.append("| idle RSS per worker (largest process) | ≤ 100 MB | " + " | ".join(cells) + " |")
        L.append("")

    if not_run:
        L.append("## Not measured")
        L.append("")
        for t in not_run:
            L.append(f"- {_label(t)}: {_status(t)}")
        L.append("")
    partial = []
    for t in runnable:
        for i, r in enumerate(t["rounds"], 1):
            if "failed" in r:
                partial.append(f"- {_label(t)}, round {i}: {r['failed']}")
            if "died" in r:
                partial.append(f"- {_label(t)}, round {i}: {r['died']}")
    if partial:
        L.append("## Incidents")
        L.append("")
        L.extend(partial)
        L.append("")
    return "\n".join(L)


def _r(t: dict[str, Any], p: dict[str, Any], sc: str, metric: str) -> float | None:
    a, b = _mean(t, sc, metric), _mean(p, sc, metric)
    return a / b if a and b else None


def _d(t: dict[str, Any], p: dict[str, Any], sc: str, metric: str) -> float | None:
    return _diff(_mean(t, sc, metric), _mean(p, sc, metric))


def _pct(t: dict[str, Any], p: dict[str, Any], sc: str, metric: str) -> float | None:
    a, b = _mean(t, sc, metric), _mean(p, sc, metric)
    return 100 * a / b if a and b else None


if __name__ == "__main__":
    print(render(json.loads(open(sys.argv[1]).read())))
