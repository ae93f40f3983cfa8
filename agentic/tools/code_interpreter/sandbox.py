"""Launching the sandbox: the bubblewrap command line, the probe, and starting a worker.

The flags are the measured design of the tools_and_sandbox reference (§B.5): every namespace
unshared (user, PID, network, IPC, UTS, cgroup), no nested user namespaces, a new session,
``--die-with-parent``, an empty environment, ``/usr`` read-only and nothing else of the host,
size-capped tmpfs mounts for ``/work``, ``/tmp`` and ``/dev/shm``, and the seccomp filter of
:mod:`.seccomp`. ``prlimit`` sets the rlimits before bubblewrap starts; as root every worker
runs as its own unprivileged host uid, so RLIMIT_NPROC counts only that worker's processes.
No ``preexec_fn`` anywhere: it is unsafe in a threaded server.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from agentic.errors import ConfigError
from agentic.tools.code_interpreter.config import SandboxConfig
from agentic.tools.code_interpreter.seccomp import compile_filter

__all__ = [
    "LaunchPlan",
    "bwrap_args",
    "plan_for",
    "prlimit_args",
    "run_once",
    "spawner",
    "start_worker",
]

WORKER_PATH: Final = "/opt/sbx/worker.py"
SANDBOX_UID: Final = 65534
PASSWD: Final = b"sandbox:x:65534:65534:sandbox:/work:/usr/sbin/nologin\n"
GROUP: Final = b"sandbox:x:65534:\n"
PROBE_OK: Final = "agentic-sandbox-ok"
_PROBE_CODE: Final = f"""
import errno, os, socket
try:
    socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    print("seccomp filter not active")
except OSError as e:
    ok = e.errno == errno.EAFNOSUPPORT and os.getuid() == {SANDBOX_UID}
    print({PROBE_OK!r} if ok else "unexpected sandbox: uid %d, %s" % (os.getuid(), e))
"""
_ENV: Final = (
    ("PATH", "/usr/bin:/bin"),
    ("HOME", "/work"),
    ("TMPDIR", "/tmp"),
    ("LANG", "C.UTF-8"),
    ("MPLBACKEND", "Agg"),
    ("MPLCONFIGDIR", "/tmp/mpl"),
    ("OPENBLAS_NUM_THREADS", "1"),
    ("OMP_NUM_THREADS", "1"),
    ("MKL_NUM_THREADS", "1"),
    ("MALLOC_ARENA_MAX", "2"),
    ("PYTHONDONTWRITEBYTECODE", "1"),
    ("PYTHONUNBUFFERED", "1"),
)
_ETC: Final = ("alternatives", "ld.so.cache", "localtime", "fonts", "matplotlibrc")


@dataclass(frozen=True, slots=True)
class LaunchPlan:
    """What the probe found: the binaries to run and the compiled seccomp filter."""

    bwrap: str
    prlimit: str
    worker: str
    """Host path of worker.py, bound read-only at /opt/sbx/worker.py."""
    bpf: bytes
    as_root: bool
    """Whether workers run as dedicated host uids (the host process is root)."""


@dataclass(frozen=True, slots=True)
class _Fds:
    seccomp: int
    passwd: int
    group: int


def prlimit_args(config: SandboxConfig, prlimit: str, *, as_root: bool) -> list[str]:
    """``prlimit`` with the rlimits; NPROC only with a dedicated uid (it counts per uid)."""
    args = [
        prlimit,
        f"--cpu={config.cpu_seconds}:{config.cpu_seconds + 5}",
        f"--as={config.memory_bytes}",
        f"--fsize={config.max_file_bytes}",
        f"--nofile={config.max_open_files}",
        "--core=0",
    ]
    if as_root:
        args.append(f"--nproc={config.max_processes}")
    return [*args, "--"]


def bwrap_args(config: SandboxConfig, bwrap: str, worker: str, fds: _Fds) -> list[str]:
    """The bubblewrap command line up to the ``--`` before the sandboxed command."""
    args = [
        bwrap,
        "--unshare-all", "--unshare-user", "--disable-userns",
        "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", "sandbox",
        "--die-with-parent", "--new-session", "--cap-drop", "ALL",
        "--clearenv",
    ]  # fmt: skip
    for key, value in _ENV:
        args += ["--setenv", key, value]
    args += ["--ro-bind", "/usr", "/usr"]
    for link in ("bin", "sbin", "lib", "lib64"):
        args += ["--symlink", f"usr/{link}", f"/{link}"]
    for name in _ETC:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for extra in config.ro_binds:
        args += ["--ro-bind", extra, extra]
    args += [
        "--ro-bind-data", str(fds.passwd), "/etc/passwd",
        "--ro-bind-data", str(fds.group), "/etc/group",
        "--proc", "/proc", "--dev", "/dev",
        "--size", str(config.shm_bytes), "--tmpfs", "/dev/shm",
        "--size", str(config.tmp_bytes), "--tmpfs", "/tmp",
        "--size", str(config.work_bytes), "--tmpfs", "/work",
        "--ro-bind", worker, WORKER_PATH,
        "--chdir", "/work",
        "--remount-ro", "/",
        "--seccomp", str(fds.seccomp),
        "--",
    ]  # fmt: skip
    return args


def _data_pipe(data: bytes) -> int:
    """A pipe's read end that yields ``data`` then EOF (bubblewrap reads these fds)."""
    read, write = os.pipe()
    try:
        os.write(write, data)
    finally:
        os.close(write)
    return read


@contextmanager
def _launch_fds(plan: LaunchPlan) -> Iterator[_Fds]:
    """Fresh fds with the filter and the passwd/group files, closed once the child has them."""
    opened: list[int] = []
    try:
        for data in (plan.bpf, PASSWD, GROUP):
            opened.append(_data_pipe(data))
        yield _Fds(*opened)
    finally:
        for fd in opened:
            os.close(fd)


def _command(config: SandboxConfig, plan: LaunchPlan, fds: _Fds, inner: Sequence[str]) -> list[str]:
    return [
        *prlimit_args(config, plan.prlimit, as_root=plan.as_root),
        *bwrap_args(config, plan.bwrap, plan.worker, fds),
        *inner,
    ]


class UidPool:
    """Host uids handed out one per live sandbox, process-wide (threads and loops share it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._used: set[int] = set()

    def acquire(self, uid_range: tuple[int, int]) -> int:
        """A uid from ``[start, stop)`` that no live sandbox of this process uses."""
        start, stop = uid_range
        with self._lock:
            for _ in range(64):  # random, so two processes on one host rarely collide
                uid = random.randrange(start, stop)
                if uid not in self._used:
                    break
            else:
                free = (u for u in range(start, stop) if u not in self._used)
                uid = next(free, -1)
                if uid < 0:
                    raise ConfigError(f"no free sandbox uid left in {uid_range}")
            self._used.add(uid)
            return uid

    def release(self, uid: int | None) -> None:
        """Give ``uid`` back once its sandbox has exited."""
        if uid is not None:
            with self._lock:
                self._used.discard(uid)


UIDS: Final = UidPool()


def _spawn(
    config: SandboxConfig,
    plan: LaunchPlan,
    uid: int | None,
    inner: Sequence[str],
    keep: tuple[int, ...] = (),
    stdout: int = subprocess.PIPE,
) -> subprocess.Popen[bytes]:
    """Start ``inner`` in a fresh sandbox as ``uid``, its own process group, empty env."""
    with _launch_fds(plan) as fds:
        return subprocess.Popen(
            _command(config, plan, fds, inner),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.PIPE,
            env={},
            process_group=0,
            pass_fds=(fds.seccomp, fds.passwd, fds.group, *keep),
            user=uid,
            group=uid,
            extra_groups=None if uid is None else [],
        )


def run_once(
    config: SandboxConfig, plan: LaunchPlan, code: str, *, timeout: float = 30.0
) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -I -c code`` in a fresh sandbox and wait for it (stdout/stderr captured)."""
    uid = UIDS.acquire(config.uid_range) if plan.as_root else None
    try:
        proc = _spawn(config, plan, uid, [config.python, "-I", "-c", code])
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _killpg(proc.pid)
            out, err = proc.communicate()
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    finally:
        UIDS.release(uid)


_spawner_lock = threading.Lock()
_spawners: dict[int, ThreadPoolExecutor] = {}


def spawner() -> ThreadPoolExecutor:
    """The one thread of this process that forks workers.

    bubblewrap's ``--die-with-parent`` follows the *thread* that forked it (PR_SET_PDEATHSIG),
    so it must be a thread that lives as long as the process: not a pool thread that may exit,
    nor the caller's event-loop thread. Keyed by pid, so a forked child gets its own.
    """
    with _spawner_lock:
        pid = os.getpid()
        if pid not in _spawners:
            _spawners.clear()
            _spawners[pid] = ThreadPoolExecutor(1, thread_name_prefix="agentic-sandbox-spawner")
        return _spawners[pid]


def start_worker(
    config: SandboxConfig, plan: LaunchPlan, uid: int | None, preload: Sequence[str]
) -> tuple[subprocess.Popen[bytes], socket.socket]:
    """Start a worker sandbox (blocking: run it on :func:`spawner`); the process and the host
    end of its channel. Its stderr pipe says why a launch failed."""
    host, inner = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        worker = [config.python, "-I", WORKER_PATH, str(inner.fileno()), ",".join(preload)]
        proc = _spawn(config, plan, uid, worker, (inner.fileno(),), subprocess.DEVNULL)
    except BaseException:
        host.close()
        raise
    finally:
        inner.close()
    host.setblocking(False)
    return proc, host


def _killpg(pgid: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def kill_tree(pgid: int) -> None:
    """SIGKILL the launcher's process group; the PID namespace takes everything inside along."""
    _killpg(pgid)


# --- the probe ------------------------------------------------------------------------------

_probe_lock = threading.Lock()
_probes: dict[tuple[object, ...], LaunchPlan | ConfigError] = {}


def plan_for(config: SandboxConfig) -> LaunchPlan:
    """The launch plan for ``config``, probed once per process: ConfigError if no sandbox.

    The probe finds bubblewrap and prlimit, compiles the seccomp filter and runs a tiny
    sandboxed ``python3 -c`` with the real flags, checking that the filter is active.
    """
    key = (*config.launch_key(), os.geteuid())
    with _probe_lock:
        found = _probes.get(key)
        if found is None:
            try:
                found = _probe(config)
            except ConfigError as exc:
                found = exc
            _probes[key] = found
    if isinstance(found, ConfigError):
        raise found
    return found


def _which(binary: str, what: str, fix: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise ConfigError(f"the code interpreter needs {what} ({binary!r} not found): {fix}")
    return path


def _check_python(python: str) -> None:
    path = Path(python)
    if not os.access(path, os.X_OK) or not path.is_file():
        raise ConfigError(
            f"the sandbox interpreter {python!r} does not exist or is not executable: "
            "apt-get install python3 python3-numpy python3-pandas python3-matplotlib, "
            "or set SandboxConfig.python"
        )
    with path.open("rb") as f:
        if f.read(2) == b"#!":
            raise ConfigError(
                f"the sandbox interpreter {python!r} is a script (a pyenv shim?), which "
                "cannot run in the sandbox: point SandboxConfig.python at a real interpreter "
                "such as /usr/bin/python3"
            )


def _probe(config: SandboxConfig) -> LaunchPlan:
    bwrap = _which(
        config.bwrap, "bubblewrap", "apt-get install bubblewrap (or dnf install bubblewrap)"
    )
    prlimit = _which(config.prlimit, "prlimit", "apt-get install util-linux")
    _check_python(config.python)
    worker = Path(__file__).with_name("worker.py")
    plan = LaunchPlan(
        bwrap=bwrap,
        prlimit=prlimit,
        worker=str(worker),
        bpf=compile_filter(config.python),
        as_root=os.geteuid() == 0,
    )
    try:
        done = run_once(config, plan, _PROBE_CODE)
    except (OSError, subprocess.SubprocessError) as exc:  # e.g. setuid to an unmapped uid
        raise ConfigError(
            f"cannot start the code-interpreter sandbox: {exc}. As root, each sandbox runs as a "
            f"host uid from SandboxConfig.uid_range {config.uid_range}; in a container, pick "
            "a range its user namespace maps"
        ) from exc
    out = done.stdout.decode(errors="replace").strip()
    if done.returncode != 0 or out != PROBE_OK:
        detail = (done.stderr.decode(errors="replace").strip() or out)[-600:]
        uids = (
            f" As root, each sandbox runs as a host uid from SandboxConfig.uid_range "
            f"{config.uid_range}: the range must be uids the kernel can map."
            if plan.as_root
            else ""
        )
        raise ConfigError(
            f"the code-interpreter sandbox does not work here (bwrap exited {done.returncode}: "
            f"{detail or 'no output'}). It needs unprivileged user namespaces "
            "(sysctl kernel.unprivileged_userns_clone=1 and user.max_user_namespaces > 0; "
            "on Ubuntu 23.10+ an AppArmor profile that allows bwrap to create them) and a "
            f"container runtime that allows them (Docker's default seccomp profile does not).{uids}"
            " Code is never run without the sandbox."
        )
    return plan
