"""What shields add to a turn's latency, with Llama Guard on its own loopback server.

The agent's model answers after 300 ms (first token) and then streams a three-sentence answer;
Llama Guard 3 8B answers ``safe`` after 40 ms. Rows: no shields; input shield only; output
shield only (whole answer, and every sentence); input + output. The input shield runs while the
first inference streams (its tokens held until the verdict), so it should cost almost nothing:
target, the input shield adds under 10% to the turn. The output shield cannot overlap a whole
answer (it judges the finished text), so it adds one guard call; checked per sentence, the checks
overlap the stream and only the last one is added.

Sequential turns, each in a new session; medians and p90 of the turn's wall time as the caller
sees it (``session.run``). Both loopback servers run in this process on their own threads.
Prints a table and writes ``bench/results/shields.json``; ``--quick`` runs fewer turns.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agentic.agent import Agent, AgentConfig, PersistenceConfig
from agentic.config import Settings
from agentic.inference.vllm_server import VLLMServer
from agentic.shields import LlamaGuard
from agentic.testing import Reply, VLLMTestServer

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
GUARD = "meta-llama/Llama-Guard-3-8B"
MODEL_LATENCY, GUARD_LATENCY, TOKEN_DELAY = 0.300, 0.040, 0.002
ANSWER = "The weather in Paris is sunny. It is 25 degrees. Enjoy your walk by the Seine!"
TARGET_INPUT_OVERHEAD = 0.10
ROWS: dict[str, dict[str, Any]] = {
    "none": {},
    "input": {"input_shields": ["llama_guard"]},
    "output": {"output_shields": ["llama_guard"]},
    "output, per sentence": {"output_shields": ["llama_guard"], "output_shield_chunk": 1},
    "input + output": {"input_shields": ["llama_guard"], "output_shields": ["llama_guard"]},
    "input + output, per sentence": {
        "input_shields": ["llama_guard"],
        "output_shields": ["llama_guard"],
        "output_shield_chunk": 1,
    },
}


@dataclass
class Row:
    shields: str
    turns: int
    median_ms: float
    p90_ms: float
    added_ms: float = 0.0
    ratio: float = 1.0
    guard_calls_per_turn: float = 0.0


def _p90(samples: list[float]) -> float:
    return sorted(samples)[max(int(len(samples) * 0.9) - 1, 0)]


async def _measure(
    name: str, config: dict[str, Any], turns: int, main: VLLMTestServer, guard: VLLMTestServer
) -> Row:
    async with (
        VLLMServer(main.base_url, max_retries=0) as backend,
        VLLMServer(guard.base_url, max_retries=0) as guard_backend,
    ):
        shield = LlamaGuard(guard_backend, GUARD)
        cfg = AgentConfig(model=MODEL, persistence=PersistenceConfig(backend="memory"), **config)
        with tempfile.TemporaryDirectory() as home:
            settings = Settings(home=Path(home))
            async with Agent(cfg, backend=backend, shields=[shield], settings=settings) as agent:
                await (await agent.create_session()).run("warm up")  # budget, connections
                calls_before = len(guard.requests)
                samples: list[float] = []
                for _ in range(turns):
                    session = await agent.create_session()
                    started = time.perf_counter()
                    turn = await session.run("What is the weather in Paris?")
                    samples.append(time.perf_counter() - started)
                    if turn.output_text != ANSWER:
                        raise RuntimeError(f"unexpected answer: {turn.output_text!r}")
    calls = (len(guard.requests) - calls_before) / turns
    return Row(
        name,
        turns,
        statistics.median(samples) * 1e3,
        _p90(samples) * 1e3,
        guard_calls_per_turn=calls,
    )


def run(turns: int) -> list[Row]:
    """Every row against the same two servers."""
    answer = Reply(ANSWER + "<|eot_id|>", token_delay=TOKEN_DELAY)
    with (
        VLLMTestServer(lambda request: answer, models=[MODEL], latency=MODEL_LATENCY) as main,
        VLLMTestServer(
            lambda request: "\n\nsafe<|eot_id|>", models=[GUARD], latency=GUARD_LATENCY
        ) as guard,
    ):
        rows = [asyncio.run(_measure(n, c, turns, main, guard)) for n, c in ROWS.items()]
    base = rows[0].median_ms
    for row in rows:
        row.added_ms = row.median_ms - base
        row.ratio = row.median_ms / base
    return rows


def _print(rows: list[Row]) -> None:
    print(
        f"model {MODEL_LATENCY * 1e3:g} ms to first token + {len(ANSWER.split())} words at "
        f"{TOKEN_DELAY * 1e3:g} ms/token; Llama Guard {GUARD_LATENCY * 1e3:g} ms; "
        f"{rows[0].turns} turns per row; load average {os.getloadavg()[0]:.2f}\n"
    )
    head = (
        f"{'shields':<30}{'median ms':>10}{'p90 ms':>9}{'added ms':>10}{'ratio':>8}"
        f"{'guard/turn':>12}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r.shields:<30}{r.median_ms:>10.1f}{r.p90_ms:>9.1f}{r.added_ms:>10.1f}"
            f"{r.ratio:>8.3f}{r.guard_calls_per_turn:>12.1f}"
        )
    by_name = {r.shields: r for r in rows}
    overhead = by_name["input"].ratio - 1
    verdict = "met" if overhead < TARGET_INPUT_OVERHEAD else "MISSED"
    print(
        f"\ninput shield adds {overhead:.1%} (target < {TARGET_INPUT_OVERHEAD:.0%}): {verdict}; "
        f"run before the inference it would add {GUARD_LATENCY * 1e3 / rows[0].median_ms:.0%}"
        " or more"
    )


def _write(rows: list[Row], quick: bool) -> Path:
    out = Path(__file__).parent / "results" / "shields.json"
    out.parent.mkdir(exist_ok=True)
    meta = {
        "quick": quick,
        "model_latency_s": MODEL_LATENCY,
        "guard_latency_s": GUARD_LATENCY,
        "token_delay_s": TOKEN_DELAY,
        "answer": ANSWER,
        "target_input_overhead": TARGET_INPUT_OVERHEAD,
        "cpus": os.cpu_count(),
        "load_average_end": os.getloadavg()[0],
        "python": sys.version.split()[0],
    }
    out.write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=1))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer turns (a smoke run)")
    parser.add_argument("--turns", type=int, default=None, help="turns per row (default 40)")
    args = parser.parse_args(argv)
    turns = args.turns or (8 if args.quick else 40)
    rows = run(turns)
    _print(rows)
    print(f"\nwrote {_write(rows, args.quick)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
