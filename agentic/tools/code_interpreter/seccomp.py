"""The seccomp deny-list of the sandbox, compiled to BPF with libseccomp's Python binding.

The rules are data here; :func:`compile_filter` hands them to a short script run by the
sandbox's own interpreter (Debian's ``/usr/bin/python3`` with python3-seccomp), which writes the
BPF program bubblewrap loads with ``--seccomp FD``. Default ALLOW: the rules refuse what a
notebook never needs (tracing, namespaces, mounts, keyrings, io_uring, non-Unix sockets,
terminal injection, setuid bits), following the reference design (§B.5).
"""

from __future__ import annotations

import errno
import json
import subprocess
from dataclasses import dataclass
from typing import Final, Literal

from agentic.errors import ConfigError

__all__ = ["DENY_RULES", "Rule", "compile_filter"]

Op = Literal["eq", "ne", "masked_eq"]

CLONE_NAMESPACE_FLAGS: Final = {
    "CLONE_NEWTIME": 0x00000080,
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}
AF_UNIX: Final = 1
TIOCSTI: Final = 0x5412
TIOCLINUX: Final = 0x541C
S_ISUID: Final = 0o4000
S_ISGID: Final = 0o2000
_U32: Final = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class Rule:
    """Refuse ``syscall`` with ``errno`` when every ``(arg index, op, value[, mask])`` holds.

    ``number`` is used when the interpreter's libseccomp does not know the name; only for
    syscalls newer than Linux 5.1, whose numbers are the same on every architecture.
    """

    syscall: str
    errno: int = errno.EPERM
    args: tuple[tuple[int, Op, int, int], ...] = ()
    number: int | None = None


def _mode_rules(syscall: str, mode_arg: int, number: int | None = None) -> list[Rule]:
    return [
        Rule(syscall, args=((mode_arg, "masked_eq", bit, bit),), number=number)
        for bit in (S_ISUID, S_ISGID)
    ]


_TRACING: Final = ("ptrace", "process_vm_readv", "process_vm_writev")
_NAMESPACES: Final = ("unshare", "setns")
_MOUNTS: Final = ("mount", "umount2", "pivot_root", "chroot", "mount_setattr", "move_mount")
_NEW_MOUNT_API: Final = ("open_tree", "fsopen", "fsmount", "fsconfig", "fspick")
_KERNEL_APIS: Final = ("keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd")
_IO_URING: Final = ("io_uring_setup", "io_uring_enter", "io_uring_register")
_MODULES: Final = ("kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module")
_HANDLES: Final = ("open_by_handle_at", "name_to_handle_at", "fanotify_init")
_ADMIN: Final = ("swapon", "swapoff", "reboot", "syslog", "acct", "quotactl", "lookup_dcookie")
_TTY: Final = ("vhangup",)
_DENIED: Final = (
    *_TRACING, *_NAMESPACES, *_MOUNTS, *_NEW_MOUNT_API, *_KERNEL_APIS,
    *_IO_URING, *_MODULES, *_HANDLES, *_ADMIN, *_TTY,
)  # fmt: skip

DENY_RULES: Final[tuple[Rule, ...]] = (
    *(Rule(name) for name in _DENIED),
    Rule("open_tree_attr", number=467),
    # glibc falls back to clone() when clone3 says ENOSYS; clone's flags can be checked
    Rule("clone3", errno=errno.ENOSYS),
    *(Rule("clone", args=((0, "masked_eq", f, f),)) for f in CLONE_NAMESPACE_FLAGS.values()),
    Rule("socket", errno=errno.EAFNOSUPPORT, args=((0, "ne", AF_UNIX, 0),)),
    # the ioctl request is compared on its low 32 bits (CVE-2019-10063)
    *(Rule("ioctl", args=((1, "masked_eq", _U32, cmd),)) for cmd in (TIOCSTI, TIOCLINUX)),
    *_mode_rules("chmod", 1),
    *_mode_rules("fchmod", 1),
    *_mode_rules("fchmodat", 2),
    *_mode_rules("fchmodat2", 2, number=452),
)

# Runs in the sandbox's interpreter (outside the sandbox): rules as JSON on stdin, BPF on
# stdout. Kept tiny and stdlib + seccomp only.
_COMPILER: Final = """
import json, os, sys
try:
    import seccomp
except ImportError:
    sys.stderr.write("NO_SECCOMP_MODULE")
    sys.exit(3)
OPS = {"eq": seccomp.EQ, "ne": seccomp.NE, "masked_eq": seccomp.MASKED_EQ}
f = seccomp.SyscallFilter(seccomp.ALLOW)
for r in json.load(sys.stdin):
    call = r["syscall"]
    try:
        known = seccomp.resolve_syscall(seccomp.Arch.NATIVE, call) >= 0
    except ValueError:
        known = False
    if not known:
        if r["number"] is None:
            continue
        call = r["number"]
    args = []
    for index, op, a, b in r["args"]:
        args.append(seccomp.Arg(index, OPS[op], b, a) if op == "masked_eq" else
                    seccomp.Arg(index, OPS[op], a))
    f.add_rule(seccomp.ERRNO(r["errno"]), call, *args)
out = os.fdopen(sys.stdout.fileno(), "wb", closefd=False)
f.export_bpf(out)
out.flush()
"""


def _rules_json(rules: tuple[Rule, ...]) -> bytes:
    return json.dumps(
        [
            {"syscall": r.syscall, "errno": r.errno, "args": r.args, "number": r.number}
            for r in rules
        ]
    ).encode()


def compile_filter(python: str, rules: tuple[Rule, ...] = DENY_RULES) -> bytes:
    """The BPF program for ``rules``, compiled by ``python`` (which needs python3-seccomp).

    Raises ConfigError, saying how to fix it, when the interpreter or its binding is missing.
    """
    try:
        done = subprocess.run(
            [python, "-I", "-c", _COMPILER],
            input=_rules_json(rules),
            capture_output=True,
            env={},
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(
            f"cannot run {python!r} to compile the sandbox's seccomp filter ({exc}); set "
            "SandboxConfig.python to an interpreter such as /usr/bin/python3"
        ) from exc
    if done.returncode == 3 and b"NO_SECCOMP_MODULE" in done.stderr:
        raise ConfigError(
            f"{python} has no seccomp module, which the code-interpreter sandbox needs for its "
            "syscall filter: apt-get install python3-seccomp (Debian/Ubuntu) or "
            "dnf install python3-libseccomp (Fedora)"
        )
    if done.returncode != 0 or not done.stdout or len(done.stdout) % 8:
        detail = done.stderr.decode(errors="replace").strip()[-500:]
        raise ConfigError(f"compiling the sandbox's seccomp filter failed: {detail or 'no output'}")
    return done.stdout
