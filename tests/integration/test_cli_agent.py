"""``agentic run`` and ``agentic chat`` against the loopback vLLM server."""

from __future__ import annotations

import io
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO

import pytest

from agentic import _cli_agent
from agentic._cli_agent import _print_turn
from agentic.agent import Event, StepProgress, StepType
from agentic.cli import main
from agentic.testing import Reply, VLLMTestServer

LLAMA31 = "meta-llama/Llama-3.1-8B-Instruct"
SLOW = Reply("slow " * 200, token_delay=0.02)
"""An answer that streams for seconds: time to press Ctrl-C."""


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTIC_HOME", str(tmp_path / "home"))


def test_run_streams_the_answer_and_shows_steps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "agent.yaml"
    config.write_text(f"name: helper\nmodel: {LLAMA31}\ninstructions: Be brief.\n")
    with VLLMTestServer(["Paris is the capital of France.<|eot_id|>"]) as server:
        code = main(["run", str(config), "Capital of France?", "--base-url", server.base_url])
    out, err = capsys.readouterr()
    assert code == 0
    assert out == "Paris is the capital of France.\n"
    assert "· inference:" in err
    assert "· session " in err
    assert "Be brief." in (server.requests[-1].prompt or "")


def test_chat_uses_the_servers_only_model_and_keeps_the_session(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lines: Iterator[str | None] = iter(["Hi, I'm Bo.", "Who am I?", None])
    monkeypatch.setattr(_cli_agent, "_read_line", lambda: next(lines))
    with VLLMTestServer(["Hello Bo!<|eot_id|>", "You are Bo.<|eot_id|>"]) as server:
        code = main(["chat", "--base-url", server.base_url])
    out, err = capsys.readouterr()
    assert code == 0
    assert out == "Hello Bo!\nYou are Bo.\n"
    assert f"chatting with {LLAMA31}" in err
    assert "Hi, I'm Bo." in (server.requests[-1].prompt or "")


def test_a_missing_server_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = main(["chat", "--base-url", f"http://127.0.0.1:{port}/v1"])
    _, err = capsys.readouterr()
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "vllm serve" in lines[0]


@pytest.mark.parametrize("command", ["chat", "run"])
def test_a_model_the_server_does_not_serve_fails_before_the_first_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    other = "meta-llama/Llama-3.2-3B-Instruct"
    args = ["chat"] if command == "chat" else ["run", _agent_yaml(tmp_path), "Hi"]
    with VLLMTestServer([]) as server:
        code = main([*args, "--base-url", server.base_url, "--model", other])
    assert code == 2
    _, err = capsys.readouterr()
    assert "chatting with" not in err
    assert f"{other!r}" in err
    assert LLAMA31 in err  # what the server has
    assert not [r for r in server.requests if r.path.endswith("completions")]


def test_several_served_models_need_model(capsys: pytest.CaptureFixture[str]) -> None:
    models = [LLAMA31, "meta-llama/Llama-3.2-3B-Instruct"]
    with VLLMTestServer([], models=models) as server:
        code = main(["chat", "--base-url", server.base_url])
    assert code == 2
    assert "choose one with --model" in capsys.readouterr().err


async def test_withheld_text_is_marked_where_the_refusal_starts() -> None:
    ids = {"turn_id": "t", "step_id": "s", "step_type": StepType.inference}

    async def events() -> AsyncIterator[Event]:
        yield StepProgress(text="Mix the ", **ids)
        yield StepProgress(text="I can't help with that.", replaced=True, **ids)

    out, err = io.StringIO(), io.StringIO()
    assert await _print_turn(events(), out, err) is None
    assert (
        out.getvalue() == "Mix the \n[the rest was withheld by a shield] I can't help with that.\n"
    )


def _chat_lines(monkeypatch: pytest.MonkeyPatch, *lines: str) -> None:
    """Type ``lines`` into ``agentic chat``, then Ctrl-D."""
    typed: Iterator[str | None] = iter([*lines, None])
    monkeypatch.setattr(_cli_agent, "_read_line", lambda: next(typed))


def _agent_yaml(tmp_path: Path, text: str = f"name: helper\nmodel: {LLAMA31}\n") -> str:
    config = tmp_path / "agent.yaml"
    config.write_text(text)
    return str(config)


def _session_id(err: str) -> str:
    return next(line.split()[-1] for line in err.splitlines() if line.startswith("· session "))


def test_a_failed_turn_is_one_line_and_the_next_message_gives_it_up(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _chat_lines(monkeypatch, "first", "second", "third")
    script: list[str | Reply] = [
        "One.",
        Reply(status=500, error="CUDA error: out of memory"),
        "Three.",
    ]
    with VLLMTestServer(script) as server:
        code = main(["chat", "--base-url", server.base_url])
    out, err = capsys.readouterr()
    assert code == 0
    assert out == "One.\nThree.\n"
    errors = [line for line in err.splitlines() if line.startswith("agentic:")]
    assert len(errors) == 1
    assert "500: CUDA error: out of memory" in errors[0]
    assert "gave up the unfinished turn 1" in err
    last = server.requests[-1].prompt or ""
    assert "first" in last
    assert "third" in last
    assert "second" not in last  # the given-up turn is out of the conversation


def test_retry_continues_a_failed_turn(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _chat_lines(monkeypatch, "first", "/retry")
    with VLLMTestServer([Reply(status=500, error="overloaded"), "One.<|eot_id|>"]) as server:
        code = main(["chat", "--base-url", server.base_url])
    assert code == 0
    assert capsys.readouterr().out == "One.\n"
    assert server.remaining == 0


def test_run_with_session_goes_on_after_its_unfinished_turn(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _agent_yaml(tmp_path)
    script: list[str | Reply] = [Reply(status=500, error="overloaded"), "Rome."]
    with VLLMTestServer(script) as server:
        url = ["--base-url", server.base_url]
        assert main(["run", config, "Capital of France?", *url]) == 2
        session = _session_id(capsys.readouterr().err)
        code = main(["run", config, "Capital of Italy?", *url, "--session", session])
    out, err = capsys.readouterr()
    assert code == 0
    assert out == "Rome.\n"
    assert "gave up the unfinished turn 0" in err
    assert "session.resume" not in err


def test_sessions_lists_the_agents_sessions_to_continue_with_session(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _agent_yaml(tmp_path)
    with VLLMTestServer(["Paris.", "Rome."]) as server:
        url = ["--base-url", server.base_url]
        assert main(["run", config, "Capital of France?", *url]) == 0
        first = _session_id(capsys.readouterr().err)
        assert main(["run", config, "Capital of Italy?", *url, "--session", first]) == 0
        capsys.readouterr()
        assert main(["sessions", "--config", config]) == 0
        out, _ = capsys.readouterr()
        assert main(["sessions"]) == 0  # chat's agent: another name, none of them
        _, others = capsys.readouterr()
    [line] = out.splitlines()
    assert line.startswith(f"{first}  ")
    assert line.endswith("  2 turns")
    assert "no sessions of agent 'agent'" in others


def test_an_unknown_session_id_points_to_the_sessions_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _agent_yaml(tmp_path)
    with VLLMTestServer([]) as server:
        code = main(["run", config, "Hi", "--base-url", server.base_url, "--session", "nosuch"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"no session 'nosuch'; list sessions with 'agentic sessions --config {config}'" in err


@pytest.mark.parametrize(
    ("served", "flags"),
    [([LLAMA31], []), ([LLAMA31, "meta-llama/Llama-3.2-3B-Instruct"], ["--model", LLAMA31])],
    ids=["the-servers-only-model", "model-flag"],
)
def test_run_fills_a_config_without_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], served: list[str], flags: list[str]
) -> None:
    config = _agent_yaml(tmp_path, "name: helper\ninstructions: Be brief.\n")
    with VLLMTestServer(["Paris."], models=served) as server:
        code = main(["run", config, "Capital of France?", "--base-url", server.base_url, *flags])
    assert code == 0
    assert capsys.readouterr().out == "Paris.\n"
    assert (server.requests[-1].body or {})["model"] == LLAMA31


def test_a_config_mistake_found_when_the_agent_is_built_names_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _agent_yaml(tmp_path, f"model: {LLAMA31}\ntools: [brave_serch]\n")
    with VLLMTestServer([]) as server:
        code = main(["run", config, "Hi", "--base-url", server.base_url])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown tool 'brave_serch'" in err
    assert f"(in {config!r})" in err


def test_chat_says_when_the_base_url_lacks_v1(capsys: pytest.CaptureFixture[str]) -> None:
    with VLLMTestServer([]) as server:
        code = main(["chat", "--base-url", server.url])
    assert code == 2
    assert "ending in /v1" in capsys.readouterr().err


def test_no_prompt_when_input_is_not_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("Hi\nBye\n"))
    with VLLMTestServer(["Hello!", "Goodbye!"]) as server:
        code = main(["chat", "--base-url", server.base_url])
    assert code == 0
    assert capsys.readouterr().out == "Hello!\nGoodbye!\n"


class _Cli:
    """``agentic`` in a process of its own (to send it Ctrl-C), its output gathered."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agentic.cli", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.out, self.err = bytearray(), bytearray()
        self._readers = [
            threading.Thread(target=_gather, args=(pipe, into), daemon=True)
            for pipe, into in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for reader in self._readers:
            reader.start()

    def wait_for(self, text: str, stream: bytearray, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text.encode() not in stream:
            assert self.proc.poll() is None, f"exited: {self.err.decode()}"
            assert time.monotonic() < deadline, f"no {text!r} in {stream.decode()!r}"
            time.sleep(0.02)

    def type(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{line}\n".encode())
        self.proc.stdin.flush()

    def ctrl_c(self) -> None:
        self.proc.send_signal(signal.SIGINT)

    def end_input(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def wait(self) -> int:
        code = self.proc.wait(30)
        for reader in self._readers:
            reader.join(5)
        return code


def _gather(pipe: IO[bytes] | None, into: bytearray) -> None:
    assert pipe is not None
    while chunk := pipe.read1(4096):  # type: ignore[attr-defined]  # a BufferedReader
        into += chunk


@pytest.fixture
def cli() -> Iterator[type[_Cli]]:
    started: list[_Cli] = []

    class Started(_Cli):
        def __init__(self, *args: str) -> None:
            super().__init__(*args)
            started.append(self)

    yield Started
    for one in started:
        if one.proc.poll() is None:
            one.proc.kill()
            one.proc.wait()


def test_ctrl_c_stops_an_answer_and_the_chat_goes_on(cli: type[_Cli]) -> None:
    with VLLMTestServer([SLOW, "Done."]) as server:
        chat = cli("chat", "--base-url", server.base_url)
        chat.wait_for("chatting with", chat.err)
        chat.type("Tell me a long story.")
        chat.wait_for("slow", chat.out)
        chat.ctrl_c()
        chat.wait_for("stopped", chat.err)
        chat.type("/retry")
        chat.end_input()
        code = chat.wait()
    err = chat.err.decode()
    assert code == 0, err
    assert "Traceback" not in err
    assert chat.out.decode().endswith("\nDone.\n")  # the stopped answer ended its line


def test_ctrl_c_at_the_prompt_quits(cli: type[_Cli]) -> None:
    with VLLMTestServer([]) as server:
        chat = cli("chat", "--base-url", server.base_url)
        chat.wait_for("chatting with", chat.err)  # from here on it waits for a line
        chat.ctrl_c()
        code = chat.wait()
    err = chat.err.decode()
    assert code == 130, err
    assert "Traceback" not in err


def test_ctrl_c_stops_run_quietly(tmp_path: Path, cli: type[_Cli]) -> None:
    with VLLMTestServer([SLOW]) as server:
        run = cli(
            "run", _agent_yaml(tmp_path), "Tell me a long story.", "--base-url", server.base_url
        )
        run.wait_for("slow", run.out)
        run.ctrl_c()
        code = run.wait()
    err = run.err.decode()
    assert code == 130, err
    assert "Traceback" not in err
    assert "· session " in err  # to continue the stopped turn with --session


def test_ctrl_c_while_the_command_starts_up_quits_quietly(cli: type[_Cli]) -> None:
    with VLLMTestServer([]) as server:
        chat = cli("chat", "--base-url", server.base_url)
        time.sleep(1.0)  # past the interpreter's start, into the import of the agent machinery
        assert b"chatting with" not in chat.err  # still starting up
        chat.ctrl_c()
        code = chat.wait()
    err = chat.err.decode()
    assert code == 130, err
    assert "Traceback" not in err


def test_the_command_is_ready_for_ctrl_c_before_it_imports_the_agent_machinery() -> None:
    probe = "import sys, agentic.cli; print(sorted({m.split('.')[0] for m in sys.modules}))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "langgraph" not in out.stdout, out.stdout
    assert "httpx2" not in out.stdout, out.stdout
