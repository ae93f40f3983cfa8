"""The bubblewrap command line, the uid slots, and the probe that gates the tool."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentic.errors import ConfigError
from agentic.tools.code_interpreter import CodeInterpreter, SandboxConfig
from agentic.tools.code_interpreter.sandbox import (
    PROBE_OK,
    WORKER_PATH,
    LaunchPlan,
    UidPool,
    _Fds,
    bwrap_args,
    plan_for,
    prlimit_args,
    run_once,
    spawner,
)
from agentic.tools.code_interpreter.seccomp import compile_filter

CFG = SandboxConfig()
FDS = _Fds(seccomp=11, passwd=12, group=13)


def args_after(args: list[str], flag: str) -> list[list[str]]:
    """The values following each occurrence of ``flag``."""
    return [args[i + 1 : i + 3] for i, a in enumerate(args) if a == flag]


def test_every_namespace_is_unshared_and_nothing_is_shared_back() -> None:
    args = bwrap_args(CFG, "/usr/bin/bwrap", "/pkg/worker.py", FDS)
    assert args[0] == "/usr/bin/bwrap"
    for flag in ("--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
                 "--new-session", "--clearenv"):  # fmt: skip
        assert flag in args
    assert not [a for a in args if a.startswith("--share")]
    assert args_after(args, "--cap-drop") == [["ALL", "--clearenv"]]
    assert args_after(args, "--uid")[0][0] == "65534"


def test_the_filesystem_is_an_allow_list() -> None:
    args = bwrap_args(CFG, "bwrap", "/pkg/worker.py", FDS)
    assert args_after(args, "--ro-bind") == [["/usr", "/usr"], ["/pkg/worker.py", WORKER_PATH]]
    assert all(src.startswith("/etc/") for src, _ in args_after(args, "--ro-bind-try"))
    assert "--bind" not in args  # nothing of the host is writable
    for secret in ("/home", "/root", "/run", "/var", "/sys", "/etc/shadow", "/tmp/.X11-unix"):
        assert secret not in args
    tmpfs = [args[i - 1] + " " + args[i + 1] for i, a in enumerate(args) if a == "--tmpfs"]
    assert tmpfs == [
        f"{CFG.shm_bytes} /dev/shm",
        f"{CFG.tmp_bytes} /tmp",
        f"{CFG.work_bytes} /work",
    ]
    assert args_after(args, "--ro-bind-data") == [["12", "/etc/passwd"], ["13", "/etc/group"]]


def test_the_environment_is_rebuilt_from_nothing() -> None:
    args = bwrap_args(CFG, "bwrap", "/w.py", FDS)
    env = {k: v for k, v in args_after(args, "--setenv")}
    assert env["HOME"] == "/work"
    assert env["MPLBACKEND"] == "Agg"
    assert env["MALLOC_ARENA_MAX"] == "2"
    assert not [k for k in env if "KEY" in k or "TOKEN" in k]


def test_order_remount_then_seccomp_then_the_command() -> None:
    args = bwrap_args(CFG, "bwrap", "/w.py", FDS)
    assert args[-5:] == ["--remount-ro", "/", "--seccomp", "11", "--"]
    assert args.index("--chdir") < args.index("--remount-ro")
    assert max(i for i, a in enumerate(args) if a in ("--tmpfs", "--ro-bind")) < args.index(
        "--remount-ro"
    )


def test_extra_read_only_binds() -> None:
    cfg = SandboxConfig(python="/opt/venv/bin/python", ro_binds=("/opt/venv",), pool_size=0)
    args = bwrap_args(cfg, "bwrap", "/w.py", FDS)
    assert ["/opt/venv", "/opt/venv"] in args_after(args, "--ro-bind")


def test_prlimit_sets_every_limit_and_nproc_only_with_a_dedicated_uid() -> None:
    cfg = SandboxConfig(cpu_seconds=30, memory_bytes=1 << 30, max_processes=16)
    args = prlimit_args(cfg, "/usr/bin/prlimit", as_root=True)
    assert args == [
        "/usr/bin/prlimit",
        "--cpu=30:35",
        f"--as={1 << 30}",
        f"--fsize={cfg.max_file_bytes}",
        "--nofile=256",
        "--core=0",
        "--nproc=16",
        "--",
    ]
    assert "--nproc=16" not in prlimit_args(cfg, "prlimit", as_root=False)


def test_uid_slots_are_unique_until_released() -> None:
    pool = UidPool()
    uids = {pool.acquire((500, 510)) for _ in range(10)}
    assert uids == set(range(500, 510))
    with pytest.raises(ConfigError, match="no free sandbox uid"):
        pool.acquire((500, 510))
    pool.release(505)
    pool.release(None)
    assert pool.acquire((500, 510)) == 505


def test_the_probe_runs_a_real_sandbox_once_per_process() -> None:
    plan = plan_for(CFG)
    assert plan is plan_for(SandboxConfig(timeout=1, pool_size=0))  # same launch: cached
    assert plan.as_root is (os.geteuid() == 0)
    assert plan.worker.endswith("code_interpreter/worker.py")
    assert len(plan.bpf) % 8 == 0  # whole BPF instructions
    done = run_once(CFG, plan, "import os; print(os.getuid(), os.getcwd(), sorted(os.environ))")
    assert done.returncode == 0
    out = done.stdout.decode()
    assert out.startswith("65534 /work ['HOME', 'LANG', 'MALLOC_ARENA_MAX', 'MKL_NUM_THREADS'")
    assert PROBE_OK == "agentic-sandbox-ok"


def test_run_once_kills_a_cell_that_overruns() -> None:
    done = run_once(CFG, plan_for(CFG), "import time; print('start', flush=True); time.sleep(30)",
                    timeout=0.5)  # fmt: skip
    assert done.returncode == -9
    assert done.stdout == b"start\n"


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory the sandbox's unprivileged uid can enter (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="agentic-ci-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def _script(path: Path, body: str) -> str:
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def test_missing_bubblewrap_says_how_to_install_it() -> None:
    with pytest.raises(ConfigError, match="apt-get install bubblewrap"):
        CodeInterpreter(SandboxConfig(bwrap="/nonexistent/bwrap"))


def test_a_bubblewrap_that_fails_says_why_and_what_to_check(public_dir: Path) -> None:
    fake = _script(
        public_dir / "bwrap", "echo 'bwrap: No permissions to create new namespace' >&2\nexit 1"
    )
    with pytest.raises(ConfigError) as info:
        CodeInterpreter(SandboxConfig(bwrap=fake))
    message = str(info.value)
    assert "bwrap exited 1: bwrap: No permissions to create new namespace" in message
    assert "unprivileged user namespaces" in message
    assert "never run without the sandbox" in message
    with pytest.raises(ConfigError):  # the failure is cached too
        plan_for(SandboxConfig(bwrap=fake, pool_size=0))


def test_a_sandbox_without_the_filter_is_refused(public_dir: Path) -> None:
    # a "bwrap" that runs the command without any sandbox: the probe sees no seccomp filter
    fake = _script(public_dir / "bwrap", 'while [ "$1" != "--" ]; do shift; done; shift; exec "$@"')
    with pytest.raises(ConfigError, match="seccomp filter not active"):
        CodeInterpreter(SandboxConfig(bwrap=fake))


def test_missing_prlimit_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="apt-get install util-linux"):
        CodeInterpreter(SandboxConfig(prlimit="/nonexistent/prlimit"))


def test_a_missing_interpreter_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="does not exist or is not executable"):
        CodeInterpreter(SandboxConfig(python="/usr/bin/python3-nonexistent"))


def test_a_pyenv_style_shim_is_refused(tmp_path: Path) -> None:
    shim = _script(tmp_path / "python3", 'exec pyenv exec python3 "$@"')
    with pytest.raises(ConfigError, match="pyenv shim"):
        CodeInterpreter(SandboxConfig(python=shim, ro_binds=(str(tmp_path),)))


def test_an_interpreter_without_seccomp_says_which_package_to_install() -> None:
    # this venv's interpreter has no seccomp binding (Debian ships it as python3-seccomp)
    with pytest.raises(ConfigError, match="apt-get install python3-seccomp"):
        compile_filter(sys.executable)


def test_an_interpreter_that_cannot_run_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot run"):
        compile_filter(str(tmp_path / "nothing"))
    broken = _script(tmp_path / "py", "echo broken >&2; exit 2")
    with pytest.raises(ConfigError, match="compiling the sandbox's seccomp filter failed: broken"):
        compile_filter(broken)


def test_a_plan_is_plain_data() -> None:
    plan = LaunchPlan(bwrap="b", prlimit="p", worker="w", bpf=b"", as_root=False)
    assert plan.bwrap == "b"


@pytest.mark.skipif(os.geteuid() != 0, reason="uids are only switched when running as root")
def test_uids_the_kernel_cannot_map_point_at_uid_range() -> None:
    with pytest.raises(ConfigError) as info:
        CodeInterpreter(SandboxConfig(uid_range=(2**32 - 33, 2**32 - 1), max_workers=8))
    assert "setting up uid map" in str(info.value)
    assert "SandboxConfig.uid_range (4294967263, 4294967295)" in str(info.value)


def test_a_forked_process_gets_its_own_spawner_thread() -> None:
    parent = spawner()
    assert spawner() is parent
    pid = os.fork()
    if pid == 0:  # the child: the parent's spawner thread does not exist here
        child = spawner()
        ok = child is not parent and child.submit(os.getpid).result(timeout=5) == os.getpid()
        os._exit(0 if ok else 1)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
