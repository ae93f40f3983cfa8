"""The README's Python snippets run, the vLLM one against the scripted loopback server."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentic.testing import VLLMTestServer

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
SNIPPETS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def test_readme_has_snippets() -> None:
    assert len(SNIPPETS) >= 3


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_snippet_runs(index: int, capsys: pytest.CaptureFixture[str]) -> None:
    code = SNIPPETS[index]
    reply = '<|python_tag|>brave_search.call(query="weather in Paris")<|eom_id|>'
    with VLLMTestServer([reply]) as server:
        code = code.replace("http://localhost:8000/v1", server.base_url)
        exec(compile(code, f"README snippet {index}", "exec"), {"__name__": "__main__"})
    out = capsys.readouterr().out
    if "brave_search" in code and "VLLMServer(" in code:
        assert "tool_name='brave_search'" in out
        assert [r.path for r in server.requests] == ["/v1/models", "/v1/completions"]
