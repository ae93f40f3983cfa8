"""Cost of the code-interpreter sandbox, against a plain ``python3 -c pass`` in the same run.

1. Baseline: ``subprocess`` running the sandbox interpreter with ``-c pass`` (no sandbox).
2. One-shot sandbox: the same command under prlimit + bubblewrap + seccomp (the probe's path).
3. Cold start: the first call of a new session with no pool, spawn to first reply (a ``pass``
   cell), through ``CodeInterpreter.call``. Target: under 3x the baseline. 1-3 are sampled
   in turn, so machine load hits them alike.
4. Warm round trip: a ``pass`` cell on the session's live worker. Target: under 5 ms.
5. A numpy cell on a warm worker; a cell that draws a figure and returns it as a PNG artifact.
6. First call of a session that takes a pre-warmed worker (numpy, pandas, matplotlib imported).

Medians and p90 over ``--runs`` samples. Prints a table and writes
``bench/results/sandbox.json``. Needs bubblewrap and Debian's python3 with numpy, pandas,
matplotlib and seccomp. ``--quick`` runs fewer samples.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agentic.tools import ToolContext, ToolResult
from agentic.tools.code_interpreter import CodeInterpreter, SandboxConfig
from agentic.tools.code_interpreter.sandbox import plan_for, run_once
from agentic.types import ToolCall

NUMPY_CELL = "import numpy as np\nnp.random.default_rng(0).standard_normal((200, 200)).mean()"
PLOT_CELL = "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.title('bench')"
Row = dict[str, Any]


def _stats(samples: list[float]) -> tuple[float, float]:
    """Median and p90 in milliseconds."""
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1e3, p90 * 1e3


def _ctx(session: str) -> ToolContext[Any]:
    call = ToolCall(tool_name="code_interpreter")
    return ToolContext(deps=None, session_id=session, turn_id="bench", call=call)


async def _call(tool: CodeInterpreter, session: str, code: str) -> ToolResult:
    result = await tool.call({"code": code}, _ctx(session))
    assert isinstance(result.content, str)
    assert result.content.startswith("completed"), result.content
    return result


async def _clock(step: Awaitable[object]) -> float:
    """Seconds ``step`` takes (a coroutine does nothing until awaited)."""
    start = time.perf_counter()
    await step
    return time.perf_counter() - start


async def _timed(n: int, step: Callable[[int], Awaitable[object]]) -> list[float]:
    samples = []
    for i in range(n):
        start = time.perf_counter()
        await step(i)
        samples.append(time.perf_counter() - start)
    return samples


def _plain(python: str) -> None:
    subprocess.run([python, "-I", "-c", "pass"], env={}, check=True)


def _oneshot(config: SandboxConfig) -> None:
    done = run_once(config, plan_for(config), "pass")
    assert done.returncode == 0, done.stderr


async def bench_starts(n: int) -> dict[str, list[float]]:
    """Plain subprocess, one-shot sandbox and worker cold start, interleaved sample by sample
    so that all three see the same machine load (the ratios are what matter)."""
    config = SandboxConfig(pool_size=0)
    tool = CodeInterpreter(config)
    out: dict[str, list[float]] = {"plain": [], "oneshot": [], "cold": []}
    try:
        for i in range(n):
            out["plain"].append(await _clock(asyncio.to_thread(_plain, config.python)))
            out["oneshot"].append(await _clock(asyncio.to_thread(_oneshot, config)))
            out["cold"].append(await _clock(_call(tool, f"cold{i}", "pass")))
            await tool.close_session(f"cold{i}")
        return out
    finally:
        await tool.aclose()


async def bench_warm(n: int) -> dict[str, list[float]]:
    """Warm round trips, numpy and plot cells on one session's worker."""
    tool = CodeInterpreter(SandboxConfig(pool_size=0))
    try:
        out = {}
        await _call(tool, "warm", "pass")
        out["warm"] = await _timed(n * 10, lambda i: _call(tool, "warm", "pass"))
        await _call(tool, "warm", NUMPY_CELL)  # the import, once
        out["numpy"] = await _timed(n * 5, lambda i: _call(tool, "warm", NUMPY_CELL))
        await _call(tool, "warm", PLOT_CELL)

        async def plot(i: int) -> None:
            result = await _call(tool, "warm", PLOT_CELL)
            assert result.artifacts[0].data.startswith(b"\x89PNG")

        out["plot"] = await _timed(n, plot)
        return out
    finally:
        await tool.aclose()


async def _until_pooled(tool: CodeInterpreter, within: float = 60.0) -> None:
    """Wait for the background refill to have a warm worker ready."""
    for _ in range(int(within / 0.01)):
        if any(w.session_id is None for w in tool.workers()):
            return
        await asyncio.sleep(0.01)
    raise RuntimeError("the pool did not warm a worker in time")


async def bench_prewarmed(n: int) -> list[float]:
    """A new session's first call on a pooled worker that imported the scientific stack."""
    tool = CodeInterpreter(SandboxConfig(pool_size=1))
    samples = []
    try:
        await tool.start()
        for i in range(n):
            await _until_pooled(tool)
            start = time.perf_counter()
            await _call(tool, f"pre{i}", NUMPY_CELL)
            samples.append(time.perf_counter() - start)
            await tool.close_session(f"pre{i}")
        return samples
    finally:
        await tool.aclose()


def _rows(samples: dict[str, list[float]]) -> list[Row]:
    base, _ = _stats(samples["plain"])
    labels = [
        ("plain", "python3 -c pass, plain subprocess (baseline)", ""),
        ("oneshot", "python3 -c pass, one-shot sandbox", ""),
        ("cold", "cold start: new session, spawn to first reply", "< 3x baseline"),
        ("warm", "warm round trip: 'pass' cell", "< 5 ms"),
        ("numpy", "warm numpy cell (200x200 normal, mean)", ""),
        ("plot", "warm plot cell with its PNG artifact", ""),
        ("prewarmed", "new session on a pre-warmed worker, numpy cell", ""),
    ]
    rows = []
    for key, name, target in labels:
        median, p90 = _stats(samples[key])
        met = {"cold": median < 3 * base, "warm": median < 5.0}.get(key)
        rows.append(
            {
                "name": name,
                "median_ms": median,
                "p90_ms": p90,
                "ratio": median / base,
                "n": len(samples[key]),
                "target": target,
                "met": met,
            }
        )
    return rows


def _print(rows: list[Row]) -> None:
    width = max(len(r["name"]) for r in rows)
    print(
        f"{'measurement':{width}}  {'median ms':>9}  {'p90 ms':>8}  {'ratio':>6}  {'n':>4}  target"
    )
    print("-" * (width + 55))
    for r in rows:
        verdict = {True: " (met)", False: " (MISSED)", None: ""}[r["met"]]
        print(
            f"{r['name']:{width}}  {r['median_ms']:9.2f}  {r['p90_ms']:8.2f}  {r['ratio']:6.2f}"
            f"  {r['n']:4d}  {r['target']}{verdict}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run)")
    parser.add_argument("--runs", type=int, default=0, help="samples per spawn measurement")
    args = parser.parse_args(argv)
    n = args.runs or (10 if args.quick else 40)
    samples = asyncio.run(bench_starts(n))
    samples |= asyncio.run(bench_warm(n))
    samples["prewarmed"] = asyncio.run(bench_prewarmed(3 if args.quick else 8))
    rows = _rows(samples)
    _print(rows)
    out = Path(__file__).parent / "results" / "sandbox.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
