"""CodeShield over the real codeshield package and semgrep: findings, treatments, fail-closed."""

from __future__ import annotations

import asyncio
import sys

import pytest

from agentic.errors import ConfigError, MissingDependencyError
from agentic.shields import CodeBlock, CodeShield, Shield, extract_code
from agentic.shields.code_shield import language_of
from agentic.types import AssistantMessage, ToolCall, UserMessage

MD5 = "import hashlib\n\nprint(hashlib.md5(b'x').hexdigest())\n"  # regex rule
SHELL = "import subprocess\n\ndef run(cmd):\n    subprocess.call(cmd, shell=True)\n"  # semgrep
GETS = "#include <stdio.h>\nint main(void) { char b[8]; gets(b); return 0; }\n"  # C, error
BENIGN = "def add(a, b):\n    return a + b\n"


@pytest.fixture(scope="module")
def shield() -> CodeShield:
    started = CodeShield()
    asyncio.run(started.start())  # the self-check, once for the module
    return started


async def test_the_regex_layer_finds_weak_hashing(shield: CodeShield) -> None:
    verdict = await shield.scan_code(MD5, "python")
    [issue] = verdict.issues
    assert (issue.analyzer, issue.cwe, issue.pattern_id) == (
        "regex",
        "CWE-328",
        "insecure-md5-hash-usage",
    )
    assert (issue.severity, issue.line, issue.language) == ("warning", 3, "python")
    assert verdict.treatment == "block"
    assert verdict.blocked


async def test_the_semgrep_layer_finds_shell_injection(shield: CodeShield) -> None:
    verdict = await shield.scan_code(SHELL, "py")
    [issue] = verdict.issues
    assert issue.analyzer == "semgrep"
    assert issue.pattern_id == "insecure-subprocess-using-shell"  # the rule id, not a file path
    assert (issue.cwe, issue.line) == ("CWE-78", 4)


async def test_benign_code_is_ignored(shield: CodeShield) -> None:
    verdict = await shield.scan_code(BENIGN)
    assert verdict.issues == []
    assert verdict.treatment == "ignore"


async def test_severity_decides_between_block_and_warn(shield: CodeShield) -> None:
    lenient = CodeShield(block_at="error")
    warned = await lenient.scan_code(MD5, "python")
    assert warned.treatment == "warn"
    blocked = await lenient.scan_code(GETS, "c")
    assert blocked.treatment == "block"
    assert [i.severity for i in blocked.issues] == ["error"]


async def test_unknown_languages_are_scanned_as_every_language(shield: CodeShield) -> None:
    verdict = await shield.scan_code("import pickle\ndata = pickle.loads(blob)\n", "text")
    assert verdict.language is None
    assert {i.language for i in verdict.issues} == {"python"}
    assert verdict.blocked


def test_code_is_found_in_fences_and_code_interpreter_calls() -> None:
    message = AssistantMessage(
        content=(
            "Try this:\n```python3 title=x\nprint(1)\n```\nthen\n  ```\nplain\n  ```\n"
            "```rs\nfn main() {}"  # an unclosed fence still counts
        ),
        tool_calls=[
            ToolCall(tool_name="code_interpreter", arguments={"code": "import os"}),
            ToolCall(tool_name="brave_search", arguments={"query": "x"}),
        ],
    )
    assert extract_code(message) == [
        CodeBlock("print(1)\n", "python", "fence"),
        CodeBlock("plain\n", None, "fence"),
        CodeBlock("fn main() {}\n", "rust", "fence"),
        CodeBlock("import os", "python", "tool_call"),
    ]
    assert extract_code(UserMessage(content="no code here")) == []


@pytest.mark.parametrize(
    ("hint", "language"),
    [("Python", "python"), ("c++", "cpp"), ("C#", "csharp"), ("js", "javascript"), ("sql", None)],
)
def test_fence_hints(hint: str, language: str | None) -> None:
    assert language_of(hint) == language


async def test_as_a_shield_it_blocks_insecure_code_in_the_answer(shield: CodeShield) -> None:
    assert isinstance(shield, Shield)
    answer = AssistantMessage(content=f"Run it like this:\n```python\n{SHELL}```\nDone.")
    violation = await shield.check([UserMessage(content="hi"), answer], stage="output")
    assert violation is not None
    assert violation.shield == "code_shield"
    assert violation.categories == ["insecure-subprocess-using-shell"]
    assert "CWE-78" in violation.message
    assert violation.metadata["issues"][0]["line"] == 4
    plain = AssistantMessage(content=f"```python\n{BENIGN}```")
    assert await shield.check([plain], stage="output") is None
    assert await shield.check([AssistantMessage(content="no code")], stage="output") is None


async def test_warnings_alone_do_not_block_a_message() -> None:
    lenient = CodeShield(block_at="error", refusal="No.")
    answer = AssistantMessage(content=f"```python\n{MD5}```")
    assert await lenient.check([answer], stage="output") is None
    [verdict] = await lenient.scan_message(answer)
    assert verdict.treatment == "warn"


async def test_a_check_needs_a_message(shield: CodeShield) -> None:
    with pytest.raises(ConfigError, match="needs a message"):
        await shield.check([], stage="output")


def test_block_at_is_validated() -> None:
    with pytest.raises(ConfigError, match="block_at"):
        CodeShield(block_at="fatal")  # type: ignore[arg-type]


# --- failing loudly -------------------------------------------------------------------------
# The faults are injected into codeshield's semgrep command: the shield's own code is unchanged.


async def test_a_semgrep_that_scans_nothing_stops_the_shield(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from codeshield.insecure_code_detector import oss

    monkeypatch.setattr(oss, "SEMGREP_COMMAND", ["true"])  # exits 0, reports no file
    with pytest.raises(ConfigError, match="semgrep layer found nothing") as caught:
        await CodeShield().start()
    assert "pip install --no-deps codeshield==1.0.1 semgrep==1.90.0" in str(caught.value)


async def test_a_failing_semgrep_run_is_an_error_not_a_clean_result(
    shield: CodeShield, monkeypatch: pytest.MonkeyPatch
) -> None:
    from codeshield.insecure_code_detector import oss

    monkeypatch.setattr(oss, "SEMGREP_COMMAND", ["false"])  # exits 1 with no output
    with pytest.raises(ConfigError, match="could not scan the code"):
        await shield.scan_code(SHELL, "python")
    assert (await shield.scan_code(MD5, "python")).blocked  # regex hits skip semgrep


async def test_without_codeshield_installed_it_says_which_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in list(sys.modules):
        if name.startswith("codeshield"):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "codeshield", None)
    with pytest.raises(MissingDependencyError, match=r"llama-agentic\[codeshield\]"):
        await CodeShield().start()
