"""The code interpreter through full agent turns over the loopback vLLM server, real sandbox."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sysconfig
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from agent_helpers import LLAMA31, agent_on, prompts, step_types
from sandbox_helpers import live_pids, wait_gone

import agentic
from agentic.agent import ToolExecutionStep, Turn
from agentic.testing import VLLMTestServer
from agentic.tools.code_interpreter import CodeInterpreter, SandboxConfig
from agentic.types import Document

IPYTHON = "<|start_header_id|>ipython<|end_header_id|>\n\n"
PRIME_CODE = """def nth_prime(n):
    count, k = 0, 1
    while count < n:
        k += 1
        if all(k % d for d in range(2, int(k ** 0.5) + 1)):
            count += 1
    return k

print(nth_prime(100))"""
CSV = "month,sales,returns\nJan,120,4\nFeb,95,2\nMar,143,7\nApr,160,5\n"
SUMMARY_CODE = """import pandas as pd
import matplotlib.pyplot as plt
df = pd.read_csv("data.csv")
best = df.loc[df["sales"].idxmax(), "month"]
print("rows:", len(df), "total sales:", df["sales"].sum(), "best:", best)
df.plot(x="month", y="sales", kind="bar", title="Sales by month")
plt.show()"""


def code_call(code: str) -> str:
    """What Llama 3.1 emits to run ``code``: raw Python after the tag, ended by eom."""
    return f"<|python_tag|>{code}<|eom_id|>"


def tool_step(turn: Turn) -> ToolExecutionStep:
    (step,) = [s for s in turn.steps if isinstance(s, ToolExecutionStep)]
    return step


def tool_text(turn: Turn) -> str:
    content = tool_step(turn).tool_responses[0].content
    assert isinstance(content, str)
    return content


async def until_pooled(tool: CodeInterpreter) -> None:
    """Wait until the background refill has a pre-warmed worker ready."""
    for _ in range(1500):
        if any(w.session_id is None for w in tool.workers()):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the pool never warmed a worker")


@pytest.fixture
async def interpreter() -> AsyncIterator[CodeInterpreter]:
    tool = CodeInterpreter(SandboxConfig(pool_size=0, timeout=20))
    try:
        yield tool
    finally:
        await tool.aclose()


async def test_hundredth_prime_is_computed_in_the_sandbox(
    tmp_path: Path, interpreter: CodeInterpreter
) -> None:
    script = [code_call(PRIME_CODE), "The 100th prime is 541.<|eot_id|>"]
    with VLLMTestServer(script, models=[LLAMA31]) as server:
        async with agent_on(server, tmp_path, tools=[interpreter]) as agent:
            turn = await (await agent.create_session()).run("What is the 100th prime? Use code.")
    assert step_types(turn) == ["inference", "tool_execution", "inference"]
    assert tool_step(turn).tool_calls[0].arguments == {"code": PRIME_CODE}
    first, second = prompts(server)
    assert "Environment: ipython" in first
    assert second.endswith(
        f"<|python_tag|>{PRIME_CODE}<|eom_id|>{IPYTHON}completed\n[stdout]541\n[/stdout]"
        "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert turn.output_text == "The 100th prime is 541."


async def test_attached_csv_is_summarised_and_plotted(tmp_path: Path) -> None:
    script = [code_call(SUMMARY_CODE), "March and April sold best; see the chart.<|eot_id|>"]
    doc = Document(content=CSV, name="data.csv", mime_type="text/csv")
    tool = CodeInterpreter(SandboxConfig(pool_size=1, timeout=30))
    try:
        with VLLMTestServer(script, models=[LLAMA31]) as server:
            async with agent_on(server, tmp_path, tools=[tool]) as agent:
                session = await agent.create_session()  # the agent opened: the pool warms
                await until_pooled(tool)
                turn = await session.run("Summarise data.csv", documents=[doc])
                (worker,) = [w for w in tool.workers() if w.session_id == session.id]
                assert worker.preloaded  # the session got the worker with pandas imported
    finally:
        await tool.aclose()
    text = tool_text(turn)
    assert text.startswith("completed\n[stdout]rows: 4 total sales: 518 best: Apr\n[/stdout]")
    assert text.endswith("Files: figure_1.png")
    response = tool_step(turn).tool_responses[0]
    assert [(a.name, a.mime_type) for a in response.artifacts] == [("figure_1.png", "image/png")]
    png = response.artifacts[0].data
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 5000  # a rendered bar chart, not an empty canvas
    assert turn.artifacts == response.artifacts
    last_prompt = prompts(server)[-1]
    assert f"{IPYTHON}{text}<|eot_id|>" in last_prompt
    assert "iVBORw0KGgo" not in last_prompt  # the PNG's bytes never reach the model


async def test_state_survives_within_a_session_but_not_across_sessions(
    tmp_path: Path, interpreter: CodeInterpreter
) -> None:
    script = [
        code_call("secret = 6 * 7"),
        "Stored.<|eot_id|>",
        code_call("print(secret)"),
        "It is 42.<|eot_id|>",
        code_call("print(secret)"),
        "Nothing here.<|eot_id|>",
    ]
    with VLLMTestServer(script, models=[LLAMA31]) as server:
        async with agent_on(server, tmp_path, tools=[interpreter]) as agent:
            first = await agent.create_session()
            await first.run("Remember 42")
            again = await first.run("What did you store?")
            other = await (await agent.create_session()).run("What did you store?")
    assert tool_text(again) == "completed\n[stdout]42\n[/stdout]"
    isolated = tool_text(other)
    assert isolated.startswith("failed\n[stderr]Traceback")
    assert "NameError: name 'secret' is not defined" in isolated
    assert len({w.session_id for w in interpreter.workers()}) == 2


async def test_killed_worker_means_the_next_call_says_state_was_reset(
    tmp_path: Path, interpreter: CodeInterpreter
) -> None:
    script = [
        code_call("x = 1"),
        "Done.<|eot_id|>",
        code_call("print(x)"),
        "x is gone.<|eot_id|>",
    ]
    with VLLMTestServer(script, models=[LLAMA31]) as server:
        async with agent_on(server, tmp_path, tools=[interpreter]) as agent:
            session = await agent.create_session()
            await session.run("Set x")
            (worker,) = interpreter.workers()
            assert worker.uid is not None
            os.killpg(worker.pid, signal.SIGKILL)
            assert await wait_gone(worker.uid)
            turn = await session.run("Print x")
    text = tool_text(turn)
    assert text.startswith("failed\n[stderr]Traceback")
    assert "NameError: name 'x' is not defined" in text
    assert text.endswith(
        "Note: state was reset (the interpreter was killed by SIGKILL): variables, imports and "
        "files from earlier calls are gone."
    )
    assert f"{IPYTHON}{text}<|eot_id|>" in prompts(server)[-1]


async def test_deleting_a_session_kills_its_worker(tmp_path: Path) -> None:
    script = [code_call("import os; print(os.getpid())"), "It runs as pid 2.<|eot_id|>"]
    with VLLMTestServer(script, models=[LLAMA31]) as server:
        # named in the config: the agent builds the tool itself (no arguments) and closes it
        async with agent_on(server, tmp_path, tools=["code_interpreter"]) as agent:
            session = await agent.create_session()
            turn = await session.run("Which pid?")
            (tool,) = agent.core.owned_tools
            assert isinstance(tool, CodeInterpreter)
            (worker,) = [w for w in tool.workers() if w.session_id == session.id]
            assert worker.uid is not None
            assert live_pids(worker.uid)
            await agent.delete_session(session.id)
            assert [w for w in tool.workers() if w.session_id == session.id] == []
            assert await wait_gone(worker.uid)
            pooled = [w.uid for w in tool.workers() if w.uid is not None]
        assert all([await wait_gone(uid) for uid in pooled])  # the agent closed what it built
    assert tool_text(turn) == "completed\n[stdout]2\n[/stdout]"  # PID namespace: pid 2


NON_ROOT_SCRIPT = """
import asyncio, os
from agentic.tools import ToolContext
from agentic.tools.code_interpreter import CodeInterpreter, SandboxConfig
from agentic.types import ToolCall

async def main():
    tool = CodeInterpreter(SandboxConfig(pool_size=0))
    call = ToolCall(tool_name="code_interpreter")
    ctx = ToolContext(deps=None, session_id="s", turn_id="t", call=call)
    for code in ("import os; x = os.getuid()", "print('inside', x)"):
        print((await tool.call({"code": code}, ctx)).content)
    print("uids", [w.uid for w in tool.workers()])
    await tool.aclose()

print("host euid", os.geteuid())
asyncio.run(main())
"""


def readable_by_others(path: Path) -> bool:
    """Whether another user can read ``path`` (every parent searchable, the path readable)."""
    return all(p.stat().st_mode & stat.S_IXOTH for p in path.parents) and bool(
        path.stat().st_mode & stat.S_IROTH
    )


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="not root: every other test already runs so")
def test_without_root_the_sandbox_uses_an_unprivileged_user_namespace() -> None:
    repo = Path(agentic.__file__).resolve().parents[1]
    site = Path(sysconfig.get_paths()["purelib"])
    if not (readable_by_others(repo / "agentic") and readable_by_others(site)):
        pytest.skip("the checkout or the venv is not readable by other users")
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    done = subprocess.run(
        [*as_nobody, "/usr/bin/python3", "-c", NON_ROOT_SCRIPT],
        env={"PYTHONPATH": f"{repo}:{site}", "PATH": "/usr/bin:/bin", "HOME": "/tmp"},
        cwd="/tmp",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "host euid 65534",
        "completed",
        "completed",
        "[stdout]inside 65534",
        "[/stdout]",
        "uids [None]",  # no dedicated uid (and no RLIMIT_NPROC): the user's own namespace
    ]
