"""Eval reports from a synthetic run with real verdicts: JSON, JUnit XML (parsed back), the
self-contained HTML page (rendered in headless Chromium: no console errors, the verdict shows),
and the SHA-256 manifest."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from relaygate.evals.model import CaseResult, Score
from relaygate.evals.report import build_junit, compute_verdicts, target_figures, verdict_dicts, write_reports
from relaygate.evals.store import RunSummary

MARGINS = [
    {"metric": "contains", "delta": 0.1, "better": "higher"},
    {"metric": "latency_p95", "delta": 500.0, "better": "lower"},
]
EVIL = "<script>alert('x')</script> & \x01 bell"


def results(target: str, n: int, fail_every: int = 0, error_at: int | None = None) -> list[CaseResult]:
    out = []
    for i in range(n):
        if i == error_at:
            out.append(CaseResult(f"c{i:02d}", target, None, error="UpstreamError: boom"))
            continue
        ok = not (fail_every and i % fail_every == 0)
        score = Score("contains", float(ok), passed=ok, detail="" if ok else "missing 'hello'")
        out.append(
            CaseResult(
                f"c{i:02d}",
                target,
                EVIL if i == 2 else f"answer {i}",
                [score],
                latency_ms=200.0 + 3 * i,
                prompt_tokens=10,
                completion_tokens=5,
                cost_usd=0.0001 * (1 + i % 3),
                refused=False,
                served_by=f"{target}-dep",
            )
        )
    return out


def summary(n: int = 60, fail_every: int = 0, targets: tuple[str, ...] = ("inc", "cand")) -> RunSummary:
    rs = results("inc", n) + (results("cand", n, fail_every, error_at=5) if "cand" in targets else [])
    tags = {f"c{i:02d}": {"lang": "en" if i % 2 else "fr"} for i in range(n + 2)}  # 2 never sent
    return RunSummary(
        "run-1",
        "tiny",
        list(targets),
        rs,
        cached={("c00", "inc")},
        tags=tags,
        meta={"margins": MARGINS, "alpha": 0.05, "power": 0.8},
        spent_usd=0.01,
        cost_ceiling_usd=0.01,
        stopped_by_ceiling=True,
        not_sent=4,
        status="cost_ceiling",
    )


def test_figures_per_target() -> None:
    fig = target_figures(summary(fail_every=4))
    assert fig["inc"]["answered"] == 60 and fig["inc"]["cache_hits"] == 1
    assert fig["cand"]["errors"] == 1 and fig["cand"]["answered"] == 59
    assert fig["inc"]["pass_rates"]["contains"] == 1.0
    assert fig["cand"]["pass_rates"]["contains"] == pytest.approx(44 / 59)
    assert fig["inc"]["latency_ms_p95"] == pytest.approx(200 + 3 * 59 * 0.95)


def test_verdicts_pass_fail_with_segments() -> None:
    good = verdict_dicts(compute_verdicts(summary(), "inc", ["cand"]))["cand"]
    bad = verdict_dicts(compute_verdicts(summary(fail_every=2), "inc", ["cand"]))["cand"]
    assert good["status"] == "PASS" and bad["status"] == "FAIL"
    assert {s["value"] for s in good["segments"]} == {"en", "fr"}  # auto: the tag most cases carry
    assert [m["metric"] for m in good["metrics"]] == ["contains", "latency_p95"]
    with pytest.raises(ValueError, match="not a target"):
        compute_verdicts(summary(), "inc", ["nope"])
    with pytest.raises(ValueError, match="no margins"):
        compute_verdicts(RunSummary("r", "s", ["inc", "cand"], []), "inc", ["cand"])


def test_junit_is_valid_xml_with_a_testcase_per_case_and_target() -> None:
    s = summary(fail_every=2)
    verdicts = compute_verdicts(s, "inc", ["cand"])
    root = ET.fromstring(build_junit(s, verdicts, "inc"))
    assert root.tag == "testsuites"
    suites = {el.get("name"): el for el in root.iter("testsuite")}
    assert set(suites) == {"tiny/inc", "tiny/cand", "tiny/verdict/cand vs inc"}
    cand = suites["tiny/cand"]
    assert len(cand.findall("testcase")) == 62  # 60 results + 2 never sent
    assert cand.get("tests") == "62" and cand.get("errors") == "1" and cand.get("skipped") == "2"
    assert cand.get("failures") == str(len(cand.findall("testcase/failure"))) == "30"  # the even ids
    failure = cand.find("testcase[@name='c02']/failure")
    assert failure is not None and "contains failed" in (failure.get("message") or "")
    assert cand.find("testcase[@name='c05']/error") is not None
    evil = suites["tiny/inc"].find("testcase[@name='c02']/system-out")
    assert evil is not None and evil.text is not None and "<script>" in evil.text and "\x01" not in evil.text
    verdict_cases = {tc.get("name"): tc for tc in suites["tiny/verdict/cand vs inc"].findall("testcase")}
    assert set(verdict_cases) == {"contains", "latency_p95", "overall"}
    assert verdict_cases["contains"].find("failure") is not None
    assert verdict_cases["overall"].find("failure") is not None
    assert int(root.get("tests") or 0) == 60 + 2 + 62 + 3


def test_write_reports_json_and_manifest(tmp_path: Path) -> None:
    s = summary()
    paths = write_reports(tmp_path / "out", s, compute_verdicts(s, "inc", ["cand"]), "inc")
    assert set(paths) == {"report.json", "junit.xml", "report.html", "manifest.json"}
    doc = json.loads(paths["report.json"].read_text("utf-8"))
    assert doc["overall"] == "PASS" and doc["verdicts"]["cand"]["status"] == "PASS"
    assert len(doc["summary"]["results"]) == 120 and doc["summary"]["stopped_by_ceiling"] is True
    assert doc["summary"]["results"][0]["cached"] is True
    manifest = json.loads(paths["manifest.json"].read_text("utf-8"))
    for name in ("report.json", "junit.xml", "report.html"):
        assert manifest["files"][name] == hashlib.sha256(paths[name].read_bytes()).hexdigest()


def test_html_is_self_contained_and_escapes_outputs(tmp_path: Path) -> None:
    s = summary(fail_every=2)
    page = write_reports(tmp_path, s, compute_verdicts(s, "inc", ["cand"]), "inc")["report.html"]
    text = page.read_text("utf-8")
    assert "<script" not in text.lower().replace("&lt;script", "")  # no scripts, outputs escaped
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert not re.search(r"""(src|href)\s*=|url\(|@import""", text)  # nothing fetched
    assert text.index('id="verdict"') < text.index('id="targets"') < text.index('id="plots"')
    for section in ("segments", "worst", "run"):
        assert f'id="{section}"' in text
    assert text.count("<svg") >= 4  # differences, score distribution, latency CDF, cost per case


def test_html_without_a_verdict(tmp_path: Path) -> None:
    page = write_reports(tmp_path, summary(targets=("inc",)), {}, "inc")["report.html"]
    assert "No verdict" in page.read_text("utf-8")


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("chromium is not installed (Debian: apt-get install -y chromium)")


def render(page: Path, tmp_path: Path) -> tuple[str, str]:
    """The DOM after load and Chromium's log (console messages appear as ``:CONSOLE`` lines)."""
    proc = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            f"--user-data-dir={tmp_path / 'chrome-profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr


def test_html_opens_in_headless_chromium_without_console_errors(tmp_path: Path) -> None:
    s = summary(fail_every=2)
    page = write_reports(tmp_path / "r", s, compute_verdicts(s, "inc", ["cand"]), "inc")["report.html"]
    dom, log = render(page, tmp_path)
    assert [line for line in log.splitlines() if ":CONSOLE" in line] == []
    assert 'class="badge FAIL"' in dom and "as a replacement for" in dom
    assert "Paired differences" in dom and "<svg" in dom
