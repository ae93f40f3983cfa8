"""CodeInterpreter and its worker pool against the real sandbox: arguments, documents,
artifacts and their caps, worker lifetimes, eviction, crashes, cancellation and loop changes."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from agentic.errors import ToolArgumentsError, ToolError
from agentic.tools import Tool, ToolContext, ToolExecutor, ToolLifecycle, ToolResult
from agentic.tools.code_interpreter import CodeInterpreter, SandboxConfig
from agentic.types import Document, ToolCall, ToolDefinition

FAST = SandboxConfig(pool_size=0, timeout=5, kill_grace=1)


def ctx(session: str = "s", documents: tuple[Document, ...] = ()) -> ToolContext[Any]:
    call = ToolCall(tool_name="code_interpreter")
    return ToolContext(deps=None, session_id=session, turn_id="t", call=call, documents=documents)


async def run(tool: CodeInterpreter, code: str, **kw: Any) -> ToolResult:
    return await tool.call({"code": code}, ctx(**kw))


async def text(tool: CodeInterpreter, code: str, **kw: Any) -> str:
    content = (await run(tool, code, **kw)).content
    assert isinstance(content, str)
    return content


@pytest.fixture
async def tool() -> AsyncIterator[CodeInterpreter]:
    interpreter = CodeInterpreter(FAST)
    try:
        yield interpreter
    finally:
        await interpreter.aclose()


async def make(config: SandboxConfig) -> CodeInterpreter:
    return CodeInterpreter(config)


def state_of(pid: int) -> str:
    """The process state letter from /proc (Z: a zombie, dead but not yet reaped)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def uid_alive(uid: int) -> bool:
    """Whether any non-zombie process of ``uid`` is left."""
    for entry in Path("/proc").iterdir():
        try:
            status = (entry / "status").read_text() if entry.name.isdigit() else ""
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields and int(fields["Uid"].split()[0]) == uid and fields["State"].split()[0] != "Z":
            return True
    return False


async def until_gone(uid: int) -> None:
    for _ in range(250):
        if not uid_alive(uid):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"uid {uid} still has processes")


async def until_dead(pid: int) -> None:
    """Wait until the killed launcher is a zombie (its sandbox is gone), unreaped."""
    for _ in range(250):
        if state_of(pid) == "Z":
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{pid} did not die")


def test_it_is_the_builtin_tool_with_hooks() -> None:
    interpreter = CodeInterpreter(FAST)
    assert isinstance(interpreter, Tool)
    assert isinstance(interpreter, ToolLifecycle)
    assert interpreter.definition == ToolDefinition.builtin("code_interpreter")
    assert interpreter.timeout > FAST.hard_timeout + FAST.start_timeout
    assert interpreter.max_output_chars > FAST.max_output_chars
    assert repr(interpreter) == "CodeInterpreter(pool_size=0)"
    assert interpreter.workers() == []  # constructing starts nothing


@pytest.mark.parametrize("arguments", [{}, {"code": 5}, {"query": "print(1)"}])
async def test_bad_arguments_are_rejected_before_any_worker(
    tool: CodeInterpreter, arguments: dict[str, Any]
) -> None:
    with pytest.raises(ToolArgumentsError, match="code: a string of Python is required"):
        await tool.call(arguments, ctx())
    assert tool.workers() == []


async def test_through_the_executor_output_is_escaped_and_not_cut(tool: CodeInterpreter) -> None:
    executor = ToolExecutor([tool], max_output_chars=100)
    call = ToolCall(tool_name="code_interpreter", arguments={"code": "print('<|eot_id|>' * 50)"})
    response = await executor.run_one(call, ctx())
    assert response.error is None
    assert isinstance(response.content, str)
    assert response.content.count("<\\|eot_id|>") == 50  # escaped, and past the 100 default
    assert "<|eot_id|>" not in response.content


async def test_documents_are_copied_once_per_content(tool: CodeInterpreter) -> None:
    doc = Document(content="a,b\n1,2\n", name="data.csv", mime_type="text/csv")
    same_name = Document(content="other", name="data.csv")
    read = "print(open('data.csv').read(), open('data_2.csv').read())"
    first = await text(tool, read, documents=(doc, same_name))
    assert first == "completed\n[stdout]a,b\n1,2\n other\n[/stdout]"
    await text(tool, "import os; os.remove('data.csv')")
    again = await text(tool, "import os; print(os.path.exists('data.csv'))", documents=(doc,))
    assert again == "completed\n[stdout]False\n[/stdout]"  # unchanged: not copied again
    changed = Document(content="a,b\n3,4\n", name="data.csv")
    assert "3,4" in await text(tool, "print(open('data.csv').read())", documents=(changed,))


async def test_large_and_oversized_documents() -> None:
    tool = await make(SandboxConfig(pool_size=0, max_document_bytes=3 * 1024 * 1024))
    try:
        big = Document(content="x" * (2_500_000), name="big.txt")  # three put chunks
        huge = Document(content="y" * (3 * 1024 * 1024 + 1), name="huge.txt")
        out = await text(
            tool,
            "import hashlib; print(hashlib.sha256(open('big.txt', 'rb').read()).hexdigest())",
            documents=(big, huge),
        )
    finally:
        await tool.aclose()
    assert hashlib.sha256(b"x" * 2_500_000).hexdigest() in out
    assert out.endswith("\nNot loaded: huge.txt (3.0 MiB, over the 3.0 MiB cap)")


async def test_a_document_that_cannot_be_written_is_reported(tool: CodeInterpreter) -> None:
    await text(tool, "import os; os.mkdir('notes.txt')")
    doc = Document(content="hi", name="notes.txt")
    out = await text(tool, "print('ran')", documents=(doc,))
    assert out.startswith("completed\n[stdout]ran\n[/stdout]")
    assert "Not loaded: notes.txt (notes.txt: Is a directory)" in out


async def test_output_files_come_back_once_with_their_type(tool: CodeInterpreter) -> None:
    code = (
        "import os\nos.makedirs('outputs/tables', exist_ok=True)\n"
        "open('outputs/tables/t.csv', 'w').write('a,b\\n1,2\\n')\n"
        "open('outputs/big.bin', 'wb').write(os.urandom(2_500_000))\n"
        "import hashlib; print(hashlib.sha256(open('outputs/big.bin', 'rb').read()).hexdigest())"
    )
    result = await run(tool, code)
    assert isinstance(result.content, str)
    digest = result.content.split("[stdout]")[1][:64]
    got = {a.name: a for a in result.artifacts}
    assert set(got) == {"outputs/big.bin", "outputs/tables/t.csv"}
    assert got["outputs/tables/t.csv"].mime_type == "text/csv"
    assert got["outputs/tables/t.csv"].data == b"a,b\n1,2\n"
    assert hashlib.sha256(got["outputs/big.bin"].data).hexdigest() == digest  # 3 chunks
    assert result.content.endswith("Files: outputs/big.bin, outputs/tables/t.csv")
    unchanged = await run(tool, "pass")
    assert unchanged.artifacts == ()
    touched = await run(tool, "open('outputs/tables/t.csv', 'a').write('3,4\\n')")
    assert [a.data for a in touched.artifacts] == [b"a,b\n1,2\n3,4\n"]


async def test_artifact_caps_per_file_and_per_call() -> None:
    tool = await make(SandboxConfig(pool_size=0, max_artifacts=2, max_artifact_bytes=1000))
    code = (
        "for i in range(4):\n    open(f'outputs/f{i}.txt', 'w').write(str(i))\n"
        "open('outputs/z.bin', 'wb').write(b'x' * 5000)"
    )
    try:
        result = await run(tool, code)
    finally:
        await tool.aclose()
    assert [a.name for a in result.artifacts] == ["outputs/f0.txt", "outputs/f1.txt"]
    assert isinstance(result.content, str)
    assert result.content.endswith(
        "Files: outputs/f0.txt, outputs/f1.txt\nNot returned: outputs/z.bin (4.9 KiB, over the "
        "1000 bytes cap); 2 more files (at most 2 per call)"
    )


async def test_a_listed_file_that_cannot_be_read_is_reported(tool: CodeInterpreter) -> None:
    code = (
        "import os\nopen('outputs/locked', 'w').write('x')\nos.chmod('outputs/locked', 0)\n"
        "open('outputs/empty', 'w').close()"
    )
    result = await run(tool, code)
    assert [(a.name, a.data) for a in result.artifacts] == [("outputs/empty", b"")]
    assert isinstance(result.content, str)
    assert "Not returned: outputs/locked (outputs/locked: Permission denied)" in result.content


async def test_idle_workers_are_stopped_and_the_session_is_told() -> None:
    tool = await make(SandboxConfig(pool_size=0, idle_ttl=0.2))
    try:
        await text(tool, "x = 1")
        await asyncio.sleep(0.6)
        assert tool.workers() == []
        after = await text(tool, "print('x' in dir())")
    finally:
        await tool.aclose()
    assert after == (
        "completed\n[stdout]False\n[/stdout]\nNote: state was reset (the interpreter was idle "
        "for more than 0.2 s): variables, imports and files from earlier calls are gone."
    )


async def test_workers_are_replaced_at_their_maximum_lifetime() -> None:
    tool = await make(SandboxConfig(pool_size=0, max_lifetime=0.3, idle_ttl=60))
    try:
        await text(tool, "x = 1")
        await asyncio.sleep(0.8)
        after = await text(tool, "print(1)")
    finally:
        await tool.aclose()
    assert "state was reset (the interpreter reached its maximum lifetime (0.3 s))" in after


async def test_the_least_recently_used_idle_session_makes_room() -> None:
    tool = await make(SandboxConfig(pool_size=0, max_workers=2))
    try:
        for session in ("a", "b", "c"):
            await text(tool, f"name = {session!r}", session=session)
        assert sorted(w.session_id or "" for w in tool.workers()) == ["b", "c"]
        back = await text(tool, "print('name' in dir())", session="a")
    finally:
        await tool.aclose()
    assert "state was reset (the interpreter was stopped to make room for other sessions)" in back


async def test_when_every_sandbox_is_busy_the_call_fails_clearly() -> None:
    tool = await make(SandboxConfig(pool_size=0, max_workers=1))
    try:
        busy = asyncio.create_task(run(tool, "import time; time.sleep(1)", session="a"))
        await asyncio.sleep(0.4)
        with pytest.raises(ToolError, match="all 1 code-interpreter sandboxes are busy"):
            await run(tool, "print(1)", session="b")
        assert (await busy).content == "completed"
    finally:
        await tool.aclose()


async def test_a_worker_that_exits_mid_cell_is_reported_and_replaced(
    tool: CodeInterpreter,
) -> None:
    await text(tool, "x = 1")
    died = await text(tool, "import os; os._exit(3)")
    assert died == (
        "failed\n[stderr]Error: the interpreter exited (status 3); the cell's output is lost.\n"
        "[/stderr]\nNote: state was reset: variables, imports and files from earlier calls "
        "are gone."
    )
    assert await text(tool, "print('fresh')") == "completed\n[stdout]fresh\n[/stdout]"


async def test_a_worker_killed_mid_cell_says_sigkill(tool: CodeInterpreter) -> None:
    out = await text(tool, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert out.startswith("failed\n[stderr]Error: the interpreter was killed by SIGKILL;")


async def test_a_worker_found_dead_before_a_cell_runs_it_on_a_fresh_one(
    tool: CodeInterpreter,
) -> None:
    await text(tool, "x = 1")
    (worker,) = tool.workers()
    assert worker.uid is not None
    os.killpg(worker.pid, signal.SIGKILL)
    await until_gone(worker.uid)  # the launcher, and the sandbox it took along
    out = await text(tool, "print('ran')")
    assert out == (
        "completed\n[stdout]ran\n[/stdout]\nNote: state was reset (the interpreter was killed by "
        "SIGKILL): variables, imports and files from earlier calls are gone."
    )


async def test_the_reaper_removes_dead_workers(tool: CodeInterpreter) -> None:
    await text(tool, "x = 1")
    (worker,) = tool.workers()
    os.killpg(worker.pid, signal.SIGKILL)
    for _ in range(100):
        await asyncio.sleep(0.02)
        if tool.workers() == []:
            break
        await tool._pool.reap_once(time.monotonic())
    assert tool.workers() == []
    assert "(the interpreter process had exited)" in await text(tool, "print(1)")


async def test_a_cancelled_call_kills_its_worker(tool: CodeInterpreter) -> None:
    await text(tool, "x = 1")
    task = asyncio.create_task(run(tool, "import time; time.sleep(10)"))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    out = await text(tool, "print('x' in dir())")
    assert "state was reset (the previous call was cancelled while running)" in out


async def test_a_forked_child_cannot_take_over_the_channel(tool: CodeInterpreter) -> None:
    out = await text(tool, "import os\npid = os.fork()\nprint('child' if pid == 0 else 'parent')")
    assert out.startswith("completed\n[stdout]")
    for i in range(3):  # one answer per request: the child left at the end of the cell
        assert await text(tool, f"print({i})") == f"completed\n[stdout]{i}\n[/stdout]"


async def test_a_forged_reply_with_the_stolen_id_is_a_malformed_reply(
    tool: CodeInterpreter,
) -> None:
    code = (
        "import os, sys, json\nf = sys._getframe()\n"
        "while 'request' not in f.f_locals:\n    f = f.f_back\n"
        "rid = f.f_locals['request']['id']\n"
        "def kind(n):\n    try:\n        return os.readlink(f'/proc/self/fd/{n}')\n"
        "    except OSError:\n        return ''\n"
        "fd = [int(n) for n in os.listdir('/proc/self/fd') if kind(n).startswith('socket:')][0]\n"
        "os.write(fd, json.dumps({'id': rid, 'status': 'ok', 'stdout': 5}).encode() + b'\\n')"
    )
    out = await text(tool, code)
    assert out.startswith("failed\n[stderr]Error: the interpreter sent a malformed reply")
    assert "state was reset" in out
    assert await text(tool, "print(2)") == "completed\n[stdout]2\n[/stdout]"


async def test_close_session_and_unknown_sessions(tool: CodeInterpreter) -> None:
    await text(tool, "x = 1", session="a")
    await tool.close_session("nobody")
    await tool.close_session("a")
    assert tool.workers() == []
    assert await text(tool, "print('x' in dir())", session="a") == (
        "completed\n[stdout]False\n[/stdout]"  # a closed session starts clean, no reset note
    )


async def test_the_pool_warms_preloaded_workers_in_the_background(
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = SandboxConfig(pool_size=1, preload=("json", "no_such_module_for_agentic"))
    tool = await make(config)
    try:
        await tool.start()
        await tool.start()  # idempotent
        for _ in range(250):
            if tool.workers():
                break
            await asyncio.sleep(0.02)
        (warm,) = tool.workers()
        assert warm.session_id is None
        assert warm.preloaded
        out = await text(tool, "import sys; print('json' in sys.modules)", session="s")
        assert out == "completed\n[stdout]True\n[/stdout]"
        (taken, *_refilled) = tool.workers()
        assert taken.session_id == "s"
        assert taken.pid == warm.pid
    finally:
        await tool.aclose()
    assert tool.workers() == []
    assert "cannot import no_such_module_for_agentic" in caplog.text


async def test_a_worker_that_cannot_start_in_time_is_a_tool_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tool = await make(SandboxConfig(pool_size=1, start_timeout=0.001))
    caplog.set_level(logging.WARNING, "agentic.tools.code_interpreter")
    try:
        await tool.start()
        with pytest.raises(ToolError, match="the sandbox did not start"):
            await run(tool, "print(1)")
        await asyncio.sleep(0.1)
    finally:
        await tool.aclose()
    assert "could not warm a code-interpreter worker" in caplog.text
    assert tool.workers() == []


def test_a_session_keeps_its_worker_across_event_loops() -> None:
    # a script that calls asyncio.run once per question keeps its variables
    tool = CodeInterpreter(FAST)
    try:
        first = asyncio.run(text(tool, "x = 41"))
        (old,) = tool.workers()
        second = asyncio.run(text(tool, "print(x + 1)"))
        (new,) = tool.workers()
    finally:
        asyncio.run(tool.aclose())
    assert first == "completed"
    assert second == "completed\n[stdout]42\n[/stdout]"
    assert new.pid == old.pid
    assert tool.workers() == []


async def test_a_worker_that_dies_at_start_shows_what_it_printed() -> None:
    # 16 MiB of address space lets the probe's python start, not the worker's imports
    tool = await make(SandboxConfig(pool_size=0, memory_bytes=16 * 1024 * 1024))
    try:
        with pytest.raises(ToolError) as info:
            await run(tool, "print(1)")
    finally:
        await tool.aclose()
    message = str(info.value)
    assert message.startswith("the sandbox did not start: the interpreter exited (status 1): ")
    assert "MemoryError" in message


async def test_a_cell_past_the_cpu_budget_says_so() -> None:
    tool = await make(SandboxConfig(pool_size=0, cpu_seconds=1, timeout=10))
    try:
        out = await text(tool, "while True:\n    pass")
    finally:
        await tool.aclose()
    assert out.startswith(
        "failed\n[stderr]Error: the interpreter used up its CPU time budget (1 s); the cell's "
        "output is lost."
    )


async def test_a_dead_pooled_worker_is_replaced_before_use() -> None:
    tool = await make(SandboxConfig(pool_size=1, preload=()))
    try:
        await tool.start()
        for _ in range(250):
            if tool.workers():
                break
            await asyncio.sleep(0.02)
        (warm,) = tool.workers()
        os.killpg(warm.pid, signal.SIGKILL)
        await until_dead(warm.pid)
        out = await text(tool, "print('fresh')")
        assert out == "completed\n[stdout]fresh\n[/stdout]"  # nothing was lost: no note
        assert warm.pid not in [w.pid for w in tool.workers()]
    finally:
        await tool.aclose()


async def test_a_call_cancelled_while_its_sandbox_starts_leaves_nothing_behind() -> None:
    tool = await make(FAST)
    try:
        for delay in (0.0, 0.002, 0.01):
            task = asyncio.create_task(run(tool, "print(1)", session=f"c{delay}"))
            await asyncio.sleep(delay)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        await asyncio.sleep(0.3)  # a launch that finished after the cancel is killed
        assert tool.workers() == []
        assert sandbox_children() == []
    finally:
        await tool.aclose()


def sandbox_children() -> list[int]:
    """Live children of this process that are sandbox launchers."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == os.getpid() and stat[0] != "Z" and b"bwrap" in cmdline:
            found.append(int(entry.name))
    return found


async def test_a_put_to_a_dead_worker_is_a_tool_error(tool: CodeInterpreter) -> None:
    await text(tool, "x = 1")
    handle, _ = await tool._pool.worker_for("s")
    handle.terminate()
    with pytest.raises(ToolError, match="the interpreter stopped answering"):
        await handle.request({"op": "put", "name": "a", "data_b64": "", "offset": 0}, 1.0)


def test_pending_reset_notes_are_bounded() -> None:
    pool = CodeInterpreter(FAST)._pool
    for i in range(10_005):
        pool._note_reset(f"s{i}", "gone")
    assert len(pool._resets) == 10_000
    assert "s0" not in pool._resets
    assert "s10004" in pool._resets


@pytest.mark.parametrize(
    ("data", "most", "expected"),
    [("aGVsbG8=", 5, b"hello"), ("aGVsbG8=", 4, b""), ("not base64!", 10, b"")],
)
def test_file_chunks_are_checked(data: str, most: int, expected: bytes) -> None:
    from agentic.tools.code_interpreter.tool import _decoded

    assert _decoded(data, most) == expected


async def pooled(tool: CodeInterpreter, within: float = 5.0) -> list[int]:
    """Pids of the pooled workers, waiting up to ``within`` seconds for the refill."""
    for _ in range(int(within / 0.02)):
        await asyncio.sleep(0.02)
        warm = [w.pid for w in tool.workers() if w.session_id is None]
        if warm:
            return warm
    return []


async def test_the_pool_refills_when_room_is_freed() -> None:
    tool = await make(SandboxConfig(pool_size=1, max_workers=2, preload=()))
    try:
        await tool.start()
        assert await pooled(tool)
        await text(tool, "pass", session="a")
        assert await pooled(tool)  # refilled: one session, one pooled
        await text(tool, "pass", session="b")  # takes it: two sessions fill every slot
        assert await pooled(tool, within=0.5) == []
        await tool.close_session("a")
        assert await pooled(tool)  # room again: the pool warms a worker
    finally:
        await tool.aclose()
