"""SandboxConfig: safe defaults from the measured design, and clear errors for bad values."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from agentic.errors import ConfigError
from agentic.tools.code_interpreter import SandboxConfig


def test_defaults_follow_the_reference_design() -> None:
    cfg = SandboxConfig()
    assert cfg.python == "/usr/bin/python3"
    assert (cfg.timeout, cfg.kill_grace, cfg.hard_timeout) == (10.0, 2.0, 12.0)
    assert cfg.memory_bytes == 2 * 1024**3
    assert (cfg.max_processes, cfg.max_open_files) == (64, 256)
    assert cfg.max_file_bytes == 64 * 1024**2
    assert (cfg.work_bytes, cfg.tmp_bytes, cfg.shm_bytes) == (256 << 20, 64 << 20, 16 << 20)
    assert (cfg.max_output_chars, cfg.max_artifacts, cfg.max_artifact_bytes) == (
        65536,
        16,
        10 << 20,
    )
    assert (cfg.idle_ttl, cfg.max_lifetime) == (600.0, 3600.0)
    assert "pandas" in cfg.preload


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"timeout": 0}, "timeout must be a positive number of seconds"),
        ({"kill_grace": -1}, "kill_grace must be a positive"),
        ({"idle_ttl": float("inf")}, "idle_ttl must be a positive"),
        ({"start_timeout": "10"}, "start_timeout must be a positive"),
        ({"memory_bytes": 0}, "memory_bytes must be a positive integer"),
        ({"max_processes": 1.5}, "max_processes must be a positive integer"),
        ({"max_output_chars": True}, "max_output_chars must be a positive integer"),
        ({"max_output_chars": 2 * 1024 * 1024}, "max_output_chars must be at most 1048576"),
        ({"pool_size": -1}, "pool_size must be an integer >= 0"),
        ({"max_artifacts": -2}, "max_artifacts must be an integer >= 0"),
        ({"python": "python3"}, "must be an absolute path"),
        ({"python": "/usr/../root/python3"}, "must be an absolute path"),
        ({"python": "/opt/venv/bin/python"}, "add its installation directory to ro_binds"),
        ({"ro_binds": ("relative",)}, "must be an absolute directory"),
        ({"ro_binds": ("/",)}, "must be an absolute directory"),
        ({"pool_size": 4, "max_workers": 4}, "must be below max_workers"),
        ({"uid_range": (10, 5)}, "uid_range must be (start, stop)"),
        ({"uid_range": (200_000, 200_004)}, "at least max_workers uids"),
    ],
)
def test_bad_values_are_config_errors(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SandboxConfig(**change)


def test_an_interpreter_in_an_extra_bind_is_accepted() -> None:
    cfg = SandboxConfig(python="/opt/venv/bin/python", ro_binds=("/opt/venv",), pool_size=0)
    assert cfg.python == "/opt/venv/bin/python"


def test_the_probe_key_covers_what_decides_the_launch() -> None:
    base = SandboxConfig()
    assert base.launch_key() == SandboxConfig(timeout=3, pool_size=0).launch_key()
    assert base.launch_key() != SandboxConfig(bwrap="/opt/bwrap").launch_key()
    assert base.launch_key() != dataclasses.replace(base, memory_bytes=1 << 30).launch_key()
    assert base.launch_key() != dataclasses.replace(base, uid_range=(300_000, 300_100)).launch_key()
