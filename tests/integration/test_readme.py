"""The README's Python snippets run, the vLLM one against the scripted loopback server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentic.testing import RecordedRequest, VLLMTestServer

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
SNIPPETS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def test_readme_has_snippets() -> None:
    assert len(SNIPPETS) >= 3


def _model(request: RecordedRequest) -> str:
    """The scripted model: calls the tool the prompt offers, answers after a tool result."""
    prompt = request.prompt or ""
    if prompt.endswith("<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n") and (
        "<|start_header_id|>ipython<|end_header_id|>"
        in prompt.rsplit("user<|end_header_id|>", 1)[-1]
    ):
        return "It is 25 degrees and sunny in Paris.<|eot_id|>"
    if '"name": "get_weather"' in prompt:
        return '{"name": "get_weather", "parameters": {"city": "Paris"}}<|eot_id|>'
    return '<|python_tag|>brave_search.call(query="weather in Paris")<|eom_id|>'


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_snippet_runs(
    index: int,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    code = SNIPPETS[index]
    with VLLMTestServer(_model) as server:
        monkeypatch.setenv("AGENTIC_VLLM_BASE_URL", server.base_url)
        monkeypatch.setenv("AGENTIC_HOME", str(tmp_path))
        code = code.replace("http://localhost:8000/v1", server.base_url)
        exec(compile(code, f"README snippet {index}", "exec"), {"__name__": "__main__"})
    out = capsys.readouterr().out
    if "brave_search" in code and "VLLMServer(" in code:
        assert "tool_name='brave_search'" in out
        assert [r.path for r in server.requests] == ["/v1/models", "/v1/completions"]
    if "Agent(" in code and ".run_sync(" in code:
        assert "It is 25 degrees and sunny in Paris." in out
        assert "['inference', 'tool_execution', 'inference']" in out
        assert (tmp_path / "sessions.sqlite").exists()
