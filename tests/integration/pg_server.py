"""A throwaway PostgreSQL server on loopback for the tests (Debian's postgresql package)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def pg_bin() -> Path | None:
    """The directory of initdb / pg_ctl, if PostgreSQL is installed."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a fresh cluster; yields its connection URL. initdb refuses root, so as root the
    cluster runs as the ``postgres`` user the package creates."""
    bindir = pg_bin()
    assert bindir is not None, "PostgreSQL is not installed (apt-get install postgresql)"
    root = Path(tempfile.mkdtemp(prefix="agentic-pg-"))
    data, port = root / "data", _free_port()
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    run = [*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "agentic", "--auth=trust"]
    subprocess.run(run, check=True, capture_output=True)
    opts = f"-h 127.0.0.1 -p {port} -k {root}"
    ctl = [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-w"]
    subprocess.run([*ctl, "-l", str(root / "log"), "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://agentic@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*ctl, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
