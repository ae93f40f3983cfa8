"""The shipped examples run end to end against the scripted loopback vLLM server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quickstart_runs_a_tool_round_trip() -> None:
    env = {k: v for k, v in os.environ.items() if k != "VLLM_BASE_URL"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "tool call: brave_search({'query': 'tallest llama breed'})" in out
    assert "[end_of_message," in out
    assert "answer: The tallest llama breed is the Classic llama" in out
