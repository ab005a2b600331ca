"""The ``code`` grader and its sandbox: misbehaving HumanEval-style answers fail their own case
with the right reason, and nothing else breaks (this process lives on, other cases pass)."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from relaygate.evals import sandbox
from relaygate.evals.graders import GradeContext, GraderError, grade
from relaygate.evals.graders_code import build_program, extract_code
from relaygate.evals.model import Case, GraderSpec, Score
from relaygate.evals.sandbox import Limits, network_isolation, run_python

PROMPT = 'def add(a: int, b: int) -> int:\n    """Return a + b.\n    >>> add(2, 3)\n    5\n    """\n'
TEST = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"
CASE = Case(
    id="HumanEval/add",
    messages=[{"role": "user", "content": PROMPT}],
    meta={"prompt": PROMPT, "test": TEST, "entry_point": "add"},
)
FAST = GradeContext(sandbox=Limits(timeout_s=3.0, cpu_s=1, memory_mb=256))
GOOD = "```python\ndef add(a: int, b: int) -> int:\n    return a + b\n```"


def chat(text: str) -> dict[str, Any]:
    return {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]
    }


def body(code: str) -> str:
    """An answer that does ``code`` inside the function, then answers correctly."""
    indented = "".join(f"    {line}\n" for line in code.splitlines())
    return f"```python\ndef add(a, b):\n{indented}    return a + b\n```"


async def code_score(answer: str, ctx: GradeContext = FAST) -> Score:
    return await grade(CASE, chat(answer), GraderSpec("code"), ctx=ctx)


async def test_a_correct_answer_passes() -> None:
    result = await code_score(GOOD)
    assert result == Score("code", 1.0, passed=True, detail="passed")


async def test_a_wrong_answer_fails_its_tests() -> None:
    result = await code_score("```python\ndef add(a, b):\n    return a - b\n```")
    assert result.passed is False and result.detail.startswith("failed")


async def test_a_bare_body_continues_the_prompt() -> None:
    assert (await code_score("    return a + b\n")).passed


async def test_network_is_refused() -> None:
    result = await code_score(body("import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)"))
    assert result.passed is False and result.detail.startswith("network"), result.detail


async def test_network_refusal_counts_even_when_the_code_swallows_it() -> None:
    result = await code_score(body("import socket\ntry:\n    socket.socket()\nexcept Exception:\n    pass"))
    assert result.passed is False and result.detail.startswith("network"), result.detail


async def test_writing_outside_the_work_dir_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"
    result = await code_score(body(f"open({str(target)!r}, 'w').write('pwned')"))
    assert result.passed is False and result.detail.startswith("filesystem"), result.detail
    assert not target.exists()
    # writes inside the work dir are fine
    assert (
        await code_score(
            body("open('scratch.txt', 'w').write('ok')\nimport os\nos.makedirs('d', exist_ok=True)")
        )
    ).passed


@pytest.mark.parametrize(
    "write",
    [
        "import pathlib\npathlib.Path(T).write_text('x')",
        "import os\nos.open(T, os.O_WRONLY | os.O_CREAT)",
        "import os\nopen('a', 'w').close()\nos.rename(src='a', dst=T)",
        "import shutil\nopen('a', 'w').close()\nshutil.copy('a', T)",
        "import os\nos.symlink(T, 'link')",
        "import os, pathlib\nos.chdir(pathlib.Path(T).parent)",
    ],
)
async def test_every_way_of_writing_outside_is_refused(tmp_path: Path, write: str) -> None:
    target = tmp_path / "escaped.txt"
    result = await code_score(body(f"T = {str(target)!r}\n{write}"))
    assert result.passed is False and result.detail.startswith("filesystem"), result.detail
    assert not target.exists()


async def test_an_endless_loop_times_out() -> None:
    result = await code_score(body("while True:\n    pass"))
    assert result.passed is False and result.detail.startswith("timeout"), result.detail


async def test_sleeping_forever_hits_the_wall_clock() -> None:
    ctx = GradeContext(sandbox=Limits(timeout_s=1.0, cpu_s=5))
    result = await code_score(body("import time\ntime.sleep(60)"), ctx)
    assert result.passed is False and result.detail.startswith("timeout"), result.detail


async def test_allocating_too_much_memory_fails() -> None:
    result = await code_score(body("x = bytearray(4 * 1024 ** 3)"))
    assert result.passed is False and result.detail.startswith("memory"), result.detail


async def test_spawning_or_signalling_processes_is_refused() -> None:
    spawn = await code_score(body("import subprocess\nsubprocess.run(['true'])"))
    kill = await code_score(body(f"import os, signal\nos.kill({os.getpid()}, signal.SIGKILL)"))
    assert spawn.detail.startswith("process") and kill.detail.startswith("process")


async def test_exiting_early_is_not_a_pass() -> None:
    for code in ("import sys\nsys.exit(0)", "import os\nos._exit(0)"):
        result = await code_score(body(code))
        assert result.passed is False and result.detail.startswith("error"), result.detail


async def test_bad_cases_fail_alone_while_good_ones_pass_concurrently(tmp_path: Path) -> None:
    answers = {
        "good-1": GOOD,
        "network": body("import socket\nsocket.socket().connect(('1.1.1.1', 80))"),
        "escape": body(f"open({str(tmp_path / 'x')!r}, 'w')"),
        "loop": body("while True:\n    pass"),
        "memory": body("x = [0] * (10 ** 10)"),
        "good-2": "    return b + a\n",
    }
    results = await asyncio.gather(*(code_score(a) for a in answers.values()))
    outcome = {name: r.detail.split(":")[0] for name, r in zip(answers, results, strict=True)}
    assert outcome == {
        "good-1": "passed",
        "network": "network",
        "escape": "filesystem",
        "loop": "timeout",
        "memory": "memory",
        "good-2": "passed",
    }
    assert (await code_score(GOOD)).passed  # and the sandbox still works afterwards


def test_without_a_network_namespace_the_prelude_still_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "network_isolation", lambda: ())
    result = run_python(
        "import socket\nsocket.create_connection(('127.0.0.1', 9))", limits=Limits(timeout_s=5)
    )
    assert (result.reason, result.isolation) == ("network", "prelude")
    ok = run_python("import asyncio, ssl, urllib.request\nprint('imports fine')", limits=Limits(timeout_s=5))
    assert ok.passed and ok.stdout_tail == "imports fine"


def test_the_network_namespace_stops_a_prelude_bypass() -> None:
    """The prelude is only Python: the original socket class is still reachable. In the
    child's own network namespace even that cannot reach this machine's loopback."""
    if not network_isolation():
        pytest.skip("no network namespace here (unshare missing or user namespaces disabled)")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    code = (
        "import socket\nraw = socket.socket.__mro__[2]\n"
        f"s = raw(socket.AF_INET, socket.SOCK_STREAM)\ns.settimeout(2)\ns.connect(('127.0.0.1', {port}))\n"
    )
    result = run_python(code, limits=Limits(timeout_s=5))
    server.setblocking(False)
    with pytest.raises(BlockingIOError):  # nothing reached the listen queue
        server.accept()
    server.close()
    assert result.isolation == "netns"
    assert not result.passed and "unreachable" in result.stderr_tail.lower()


def test_output_is_bounded_by_the_file_size_limit() -> None:
    result = run_python(
        "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", limits=Limits(fsize_mb=1)
    )
    assert result.reason == "filesystem" and len(result.stdout_tail) <= 2000


def test_printed_output_comes_back() -> None:
    result = run_python("print('hello')\nimport sys\nprint('warn', file=sys.stderr)")
    assert result.passed and result.stdout_tail == "hello" and result.stderr_tail.strip() == "warn"


def test_extract_code_prefers_the_block_defining_the_entry_point() -> None:
    text = (
        "Usage:\n```python\nprint(add(1, 2))\n```\n"
        "Solution:\n```python\ndef add(a, b):\n    return a + b\n```"
    )
    assert extract_code(text, "add") == "def add(a, b):\n    return a + b\n"
    assert extract_code("```js\nx\n```\n```\ny\n```") == "y\n"
    assert extract_code("no fences") == "no fences"
    program = build_program(CASE.meta, GOOD)
    assert program.startswith(PROMPT) and program.rstrip().endswith("check(add)")


async def test_a_case_without_test_code_is_a_grader_error() -> None:
    bare = Case(id="x", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(GraderError, match="lacks meta"):
        await grade(bare, chat(GOOD), GraderSpec("code"))


async def test_grader_params_override_the_limits() -> None:
    result = await grade(
        CASE, chat(body("while True:\n    pass")), GraderSpec("code", {"timeout_s": 1, "cpu_s": 1})
    )
    assert result.detail.startswith("timeout")
