from __future__ import annotations

from pathlib import Path

import pytest

from agentic.cli import main, vllm_serve_command
from agentic.config import Settings
from agentic.errors import MissingDependencyError, UnknownModelError
from agentic.llama.models import ModelSpec, known_models, register_model, resolve_model
from agentic.types import ToolPromptFormat


@pytest.mark.parametrize(
    ("name", "style", "fmt", "builtin", "vision"),
    [
        ("meta-llama/Llama-3.1-8B-Instruct", "llama3_1", ToolPromptFormat.json, True, False),
        ("Llama3.1-70B-Instruct", "llama3_1", ToolPromptFormat.json, True, False),
        ("llama3.2-3b-instruct", "llama3_2", ToolPromptFormat.python_list, False, False),
        (
            "meta-llama/Llama-3.2-1B-Instruct",
            "llama3_2",
            ToolPromptFormat.python_list,
            False,
            False,
        ),
        ("meta-llama/llama-3.2-11b-vision-instruct", "llama3_1", ToolPromptFormat.json, True, True),
        ("Llama3.3-70B-Instruct", "llama3_2", ToolPromptFormat.python_list, True, False),
    ],
)
def test_capability_rows(
    name: str, style: str, fmt: ToolPromptFormat, builtin: bool, vision: bool
) -> None:
    spec = resolve_model(name)
    assert spec.prompt_style == style
    assert spec.default_tool_format is fmt
    assert spec.builtin_tools is builtin
    assert spec.vision is vision
    assert not spec.is_guard


@pytest.mark.parametrize(
    "name", ["Llama-3.1-8B-Instruct", "llama-3.3-70b-instruct", "Llama-3.2-3B", "Llama-Guard-3-1B"]
)
def test_the_hugging_face_name_without_its_org_is_an_alias(name: str) -> None:
    assert resolve_model(name).id.lower() == f"meta-llama/{name}".lower()


def test_guard_rows() -> None:
    assert resolve_model("Llama-Guard-3-8B").guard_categories[-1] == "S14"
    assert len(resolve_model("meta-llama/Llama-Guard-3-1B").guard_categories) == 13
    vision_guard = resolve_model("llama-guard-3-11b-vision")
    assert vision_guard.vision
    assert vision_guard.is_guard
    assert vision_guard.default_tool_format is None


def test_unknown_and_registered_models() -> None:
    with pytest.raises(UnknownModelError) as info:
        resolve_model("gpt-4")
    assert "meta-llama/Llama-3.1-8B-Instruct" in str(info.value)
    assert "register_model" in str(info.value)
    spec = register_model(
        ModelSpec(
            id="acme/llama-3.1-8b-finetune",
            family="llama3.1",
            prompt_style="llama3_1",
            tool_formats=(ToolPromptFormat.json,),
            aliases=("acme-8b",),
        )
    )
    assert resolve_model("ACME-8B") is spec
    assert resolve_model(spec) is spec
    assert "acme/llama-3.1-8b-finetune" in known_models()


def test_vllm_serve_command() -> None:
    cmd = vllm_serve_command("Llama3.2-11B-Vision-Instruct", port=9000, extra=["--seed", "1"])
    assert cmd[:3] == ["vllm", "serve", "meta-llama/Llama-3.2-11B-Vision-Instruct"]
    assert "--limit-mm-per-prompt" in cmd
    assert cmd[cmd.index("--port") + 1] == "9000"
    assert cmd[-2:] == ["--seed", "1"]


def test_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["model", "serve", "llama3.1-8b-instruct", "--dry-run", "--", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("vllm serve meta-llama/Llama-3.1-8B-Instruct")
    assert out.strip().endswith("--seed 3")
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    assert "Llama-Guard-3-8B" in listing
    assert "guard=S1-S14" in listing
    assert "vision" in listing
    assert main(["model", "serve", "nope", "--dry-run"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    monkeypatch.setattr("shutil.which", lambda _: None)
    assert main(["model", "serve", "llama3.1-8b-instruct"]) == 2
    assert "llama-agentic[vllm]" in capsys.readouterr().err


def test_cli_execs_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    monkeypatch.setattr("shutil.which", lambda _: "/usr/bin/vllm")
    monkeypatch.setattr("os.execvp", lambda prog, argv: seen.append(argv))
    main(["model", "serve", "llama3.2-1b-instruct", "--port", "8001"])
    assert seen[0][:3] == ["vllm", "serve", "meta-llama/Llama-3.2-1B-Instruct"]


def test_missing_dependency_error_is_import_error() -> None:
    err = MissingDependencyError("chromadb", "memory")
    assert isinstance(err, ImportError)
    assert "llama-agentic[memory]" in str(err)


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VLLM_BASE_URL", "http://gpu-box:8000/v1")
    monkeypatch.setenv("AGENTIC_HOME", str(tmp_path / "home"))
    settings = Settings()
    assert settings.vllm_base_url == "http://gpu-box:8000/v1"
    assert settings.home_dir() == tmp_path / "home"
    assert (tmp_path / "home").is_dir()
