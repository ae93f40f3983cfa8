"""The seccomp filter, loaded by real bubblewrap: what it refuses, and what it must allow.

Each probe runs twice, with the filter and with an allow-all filter, so the refusals are shown
to come from the filter itself and not from some other layer of the sandbox.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from agentic.tools.code_interpreter import SandboxConfig
from agentic.tools.code_interpreter.sandbox import plan_for, run_once
from agentic.tools.code_interpreter.seccomp import DENY_RULES, compile_filter

CFG = SandboxConfig()
PROBES = r"""
import ctypes, errno, json, os, socket, subprocess, termios
libc = ctypes.CDLL(None, use_errno=True)

def rc(result):
    return "ok" if result >= 0 else errno.errorcode[ctypes.get_errno()]

def sock(family, kind=socket.SOCK_STREAM):
    try:
        socket.socket(family, kind).close()
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]

def unix_pair():
    a, b = socket.socketpair(socket.AF_UNIX)
    a.sendall(b"ping")
    return b.recv(4).decode()

def chmod(mode):
    open("/tmp/f", "w").close()
    try:
        os.chmod("/tmp/f", mode)
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]

def traceme():
    # in a child: a traced process would stop on its next signal
    pid = os.fork()
    if pid == 0:
        os._exit(0 if libc.ptrace(0, 0, 0, 0) >= 0 else ctypes.get_errno())
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    return "ok" if code == 0 else errno.errorcode[code]

def fork():
    pid = os.fork()
    if pid == 0:
        os._exit(7)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

import numpy
out = {
    "ptrace": traceme(),
    "unshare_user": rc(libc.unshare(0x10000000)),
    "clone3": rc(libc.syscall(435, 0, 0)),
    "inet": sock(socket.AF_INET),
    "inet6": sock(socket.AF_INET6),
    "netlink": sock(socket.AF_NETLINK, socket.SOCK_RAW),
    "unix": sock(socket.AF_UNIX),
    "unix_pair": unix_pair(),
    "tiocsti": rc(libc.ioctl(1, termios.TIOCSTI, b"x")),
    "tiocsti_high_bits": rc(libc.ioctl(1, ctypes.c_ulong(0x100000000 | termios.TIOCSTI), b"x")),
    "chmod_setuid": chmod(0o4755),
    "chmod_setgid": chmod(0o2755),
    "chmod_plain": chmod(0o755),
    "fork": fork(),
    "subprocess": subprocess.run(["/usr/bin/true"]).returncode,
    "numpy": int(numpy.arange(10).sum()),
}
print(json.dumps(out))
"""


def probe(bpf: bytes) -> dict[str, Any]:
    plan = dataclasses.replace(plan_for(CFG), bpf=bpf)
    done = run_once(CFG, plan, PROBES)
    assert done.returncode == 0, done.stderr.decode()
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture(scope="module")
def filtered() -> dict[str, Any]:
    return probe(plan_for(CFG).bpf)


@pytest.fixture(scope="module")
def unfiltered() -> dict[str, Any]:
    return probe(compile_filter(CFG.python, rules=()))


@pytest.mark.parametrize(
    ("name", "refused", "without_filter"),
    [
        ("ptrace", "EPERM", "ok"),
        ("unshare_user", "EPERM", "ENOSPC"),  # --disable-userns alone says ENOSPC
        ("clone3", "ENOSYS", "EINVAL"),  # ENOSYS so glibc falls back to checkable clone()
        ("inet", "EAFNOSUPPORT", "ok"),
        ("inet6", "EAFNOSUPPORT", "ok"),
        ("netlink", "EAFNOSUPPORT", "ok"),
        ("tiocsti", "EPERM", "ENOTTY"),
        ("tiocsti_high_bits", "EPERM", "ENOTTY"),
        ("chmod_setuid", "EPERM", "ok"),
        ("chmod_setgid", "EPERM", "ok"),
    ],
)
def test_the_filter_refuses(
    name: str,
    refused: str,
    without_filter: str,
    filtered: dict[str, Any],
    unfiltered: dict[str, Any],
) -> None:
    assert filtered[name] == refused
    assert unfiltered[name] == without_filter


def test_the_filter_allows_what_notebooks_need(filtered: dict[str, Any]) -> None:
    assert filtered["unix"] == "ok"
    assert filtered["unix_pair"] == "ping"
    assert filtered["chmod_plain"] == "ok"
    assert filtered["fork"] == 7
    assert filtered["subprocess"] == 0
    assert filtered["numpy"] == 45


def test_the_deny_list_covers_the_reference_design() -> None:
    names = {r.syscall for r in DENY_RULES}
    for required in ("ptrace", "keyctl", "bpf", "io_uring_setup", "userfaultfd", "mount",
                     "unshare", "setns", "perf_event_open", "open_by_handle_at", "clone3",
                     "clone", "socket", "ioctl", "chmod", "fchmod", "fchmodat"):  # fmt: skip
        assert required in names
    clone_flags = {r.args[0][2] for r in DENY_RULES if r.syscall == "clone"}
    assert 0x10000000 in clone_flags  # CLONE_NEWUSER
