"""``agentic run`` and ``agentic chat`` against the loopback vLLM server."""

from __future__ import annotations

import io
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agentic import _cli_agent
from agentic._cli_agent import _print_turn
from agentic.agent import Event, StepProgress, StepType
from agentic.cli import main
from agentic.testing import VLLMTestServer

LLAMA31 = "meta-llama/Llama-3.1-8B-Instruct"


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
    assert out.getvalue() == "Mix the \n[the rest was withheld by a shield] I can't help with that."
