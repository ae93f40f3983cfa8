"""SandboxConfig: the knobs of the code-interpreter sandbox, checked when it is built.

Defaults follow the measured design (tools_and_sandbox reference, §B.5): a 10 s soft limit per
cell with a 2 s grace before the hard kill, 2 GiB of address space, 64 processes, 64 MiB per
file, size-capped tmpfs mounts, 64 KiB of output for the model, 16 files of 10 MiB per call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import PurePosixPath
from typing import Final

from agentic.errors import ConfigError

__all__ = ["SandboxConfig"]

KIB: Final = 1024
MIB: Final = 1024 * KIB
GIB: Final = 1024 * MIB

DEFAULT_PRELOAD: Final = ("numpy", "pandas", "matplotlib", "matplotlib.pyplot")
_LAUNCH_FIELDS: Final = frozenset(
    {
        *("python", "bwrap", "prlimit", "ro_binds", "uid_range"),
        *("cpu_seconds", "memory_bytes", "max_processes", "max_file_bytes", "max_open_files"),
        *("work_bytes", "tmp_bytes", "shm_bytes"),
    }
)
"""The fields that change how a sandbox starts (and so whether it can)."""
_MAX_OUTPUT_CHARS: Final = 1024 * 1024
_POSITIVE_SECONDS: Final = ("timeout", "kill_grace", "start_timeout", "idle_ttl", "max_lifetime")
_POSITIVE_INTS: Final = (
    "cpu_seconds",
    "memory_bytes",
    "max_processes",
    "max_file_bytes",
    "max_open_files",
    "work_bytes",
    "tmp_bytes",
    "shm_bytes",
    "max_workers",
    "max_output_chars",
    "max_artifact_bytes",
    "max_document_bytes",
)


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """Limits, pool and paths of the sandbox. Every field has a safe default.

    ``python`` must be an interpreter inside the bound trees (``/usr`` or ``ro_binds``), such as
    Debian's ``/usr/bin/python3`` with python3-numpy/pandas/matplotlib; never a pyenv shim.
    """

    python: str = "/usr/bin/python3"
    """The interpreter that runs in the sandbox (and compiles the seccomp filter)."""
    bwrap: str = "bwrap"
    """The bubblewrap binary: a name looked up on PATH, or a path."""
    prlimit: str = "prlimit"
    """util-linux prlimit, which applies the rlimits before bubblewrap starts."""
    ro_binds: tuple[str, ...] = ()
    """Extra host directories bound read-only at the same path (a dedicated venv, say)."""

    timeout: float = 10.0
    """Seconds a cell may run before it is interrupted (its variables survive)."""
    kill_grace: float = 2.0
    """Seconds past ``timeout`` before the whole sandbox is killed (its state is lost)."""
    start_timeout: float = 30.0
    """Seconds a new worker may take to start and import ``preload``."""

    cpu_seconds: int = 300
    """CPU seconds a worker may use over its life (RLIMIT_CPU)."""
    memory_bytes: int = 2 * GIB
    """Address space per process (RLIMIT_AS)."""
    max_processes: int = 64
    """Processes and threads (RLIMIT_NPROC, on a dedicated host uid when running as root)."""
    max_file_bytes: int = 64 * MIB
    """Largest file a cell may write (RLIMIT_FSIZE)."""
    max_open_files: int = 256
    """RLIMIT_NOFILE."""
    work_bytes: int = 256 * MIB
    """Size of the ``/work`` tmpfs (inputs, outputs, the cell's files)."""
    tmp_bytes: int = 64 * MIB
    """Size of the ``/tmp`` tmpfs (also holds the captured output of a cell)."""
    shm_bytes: int = 16 * MIB
    """Size of the ``/dev/shm`` tmpfs."""

    pool_size: int = 2
    """Workers kept started with ``preload`` imported, ready for new sessions (0: none)."""
    preload: tuple[str, ...] = DEFAULT_PRELOAD
    """Modules the pooled workers import before they are handed out."""
    max_workers: int = 32
    """Live workers at most (pool included); the least recently used idle one is evicted."""
    idle_ttl: float = 600.0
    """Seconds a session's worker may sit unused before it is stopped."""
    max_lifetime: float = 3600.0
    """Seconds a worker may live; then the next call starts a fresh one."""
    uid_range: tuple[int, int] = (200_000, 265_536)
    """Host uids ``[start, stop)`` given one per worker when the host runs as root."""

    max_output_chars: int = 64 * KIB
    """Characters of stdout+stderr the model gets per call; the rest is cut with a marker."""
    max_artifact_bytes: int = 10 * MIB
    """Largest figure or output file returned as an artifact."""
    max_artifacts: int = 16
    """Figures and output files returned per call at most."""
    max_document_bytes: int = 32 * MIB
    """Largest attached document copied into ``/work``."""

    def __post_init__(self) -> None:
        for name in _POSITIVE_SECONDS:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"SandboxConfig.{name} must be a positive number of seconds")
        for name in _POSITIVE_INTS:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"SandboxConfig.{name} must be a positive integer")
        for name in ("pool_size", "max_artifacts"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"SandboxConfig.{name} must be an integer >= 0")
        if self.max_output_chars > _MAX_OUTPUT_CHARS:
            raise ConfigError(
                f"SandboxConfig.max_output_chars must be at most {_MAX_OUTPUT_CHARS} (1 MiB): "
                "the model reads it, and it travels in one protocol frame"
            )
        self._check_paths()
        self._check_pool()

    def _check_paths(self) -> None:
        for bind in self.ro_binds:
            path = PurePosixPath(bind)
            if not path.is_absolute() or ".." in path.parts or str(path) == "/":
                raise ConfigError(
                    f"SandboxConfig.ro_binds: {bind!r} must be an absolute directory below /"
                )
        python = PurePosixPath(self.python)
        if not python.is_absolute() or ".." in python.parts:
            raise ConfigError(
                f"SandboxConfig.python must be an absolute path, got {self.python!r} "
                "(for example /usr/bin/python3)"
            )
        roots = [PurePosixPath("/usr"), *(PurePosixPath(b) for b in self.ro_binds)]
        if not any(python.is_relative_to(root) for root in roots):
            raise ConfigError(
                f"SandboxConfig.python {self.python!r} is not inside the sandbox: use an "
                "interpreter under /usr (apt-get install python3), or add its installation "
                "directory to ro_binds"
            )

    def _check_pool(self) -> None:
        start, stop = self.uid_range
        if not 0 < start < stop:
            raise ConfigError("SandboxConfig.uid_range must be (start, stop) with 0 < start < stop")
        if self.pool_size >= self.max_workers:
            raise ConfigError(
                f"SandboxConfig.pool_size ({self.pool_size}) must be below max_workers "
                f"({self.max_workers}), or no session could get a worker"
            )
        if self.max_workers > stop - start:
            raise ConfigError("SandboxConfig.uid_range must hold at least max_workers uids")

    @property
    def hard_timeout(self) -> float:
        """Seconds after which a running cell's sandbox is killed."""
        return self.timeout + self.kill_grace

    def launch_key(self) -> tuple[object, ...]:
        """The fields that decide whether the sandbox can start (the probe is cached on it)."""
        return tuple(getattr(self, f.name) for f in fields(self) if f.name in _LAUNCH_FIELDS)
