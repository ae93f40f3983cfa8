"""Every public name is exported, every export exists, and every exception is reachable."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

import agentic
from agentic import errors

PACKAGES = [
    "agentic",
    "agentic.agent",
    "agentic.inference",
    "agentic.llama",
    "agentic.memory",
    "agentic.shields",
    "agentic.testing",
    "agentic.tools",
    "agentic.types",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported), name
    assert len(set(exported)) == len(exported)
    for member in exported:
        assert hasattr(module, member), f"{name}.{member} is in __all__ but missing"


SELECTIVE = {"base", "tokens", "system_prompts"}
INTERNAL = {
    # the orchestrator's machinery: graph nodes, prompt shaping, persistence plumbing
    "agentic.agent": {
        "core",
        "steps",
        "graph",
        "store",
        "prompting",
        "inference",
        "inputs",
        "guarding",
        "gates",
    },
}


@pytest.mark.parametrize(
    "name",
    [
        "agentic.agent",
        "agentic.inference",
        "agentic.llama",
        "agentic.memory",
        "agentic.shields",
        "agentic.testing",
        "agentic.tools",
    ],
)
def test_subpackages_export_their_modules_public_api(name: str) -> None:
    package = importlib.import_module(name)
    prefix = name + "."
    for mod_name, module in list(vars(package).items()):
        if not inspect.ismodule(module) or not module.__name__.startswith(prefix):
            continue
        if mod_name.startswith("_") or mod_name in INTERNAL.get(name, set()) | SELECTIVE:
            continue  # private modules, and helpers re-exported selectively
        missing = set(getattr(module, "__all__", ())) - set(package.__all__)
        assert not missing, f"{module.__name__} exports {sorted(missing)} not in {name}.__all__"


def test_every_exception_is_exported_at_the_top() -> None:
    for exc_name in errors.__all__:
        exc = getattr(errors, exc_name)
        assert issubclass(exc, errors.AgenticError)
        assert getattr(agentic, exc_name) is exc


def test_the_top_level_imports_lazily_what_type_checkers_see() -> None:
    """``agentic`` resolves its names on first use; its TYPE_CHECKING imports must say the same."""
    tree = ast.parse(Path(agentic.__file__).read_text())
    block = next(
        n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"
    )
    seen = {
        alias.name: str(node.module)
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert seen == agentic._EXPORTS
    assert set(agentic.__all__) == set(seen) | {"__version__"}
    for name, module in seen.items():
        assert getattr(agentic, name) is getattr(importlib.import_module(module), name)
    assert set(agentic.__all__) <= set(dir(agentic))
    with pytest.raises(AttributeError, match="no attribute 'Agnet'"):
        getattr(agentic, "Agnet")  # noqa: B009  (mypy already rejects agentic.Agnet)


def test_the_package_is_marked_typed() -> None:
    """PEP 561: without ``py.typed`` mypy and IDEs ignore the package's type hints."""
    assert (Path(agentic.__file__).parent / "py.typed").is_file()
