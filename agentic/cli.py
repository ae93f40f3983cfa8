"""The ``agentic`` command."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from collections.abc import Sequence

from agentic import __version__
from agentic.errors import AgenticError, MissingDependencyError
from agentic.llama.models import ModelSpec, known_models, resolve_model

__all__ = ["main", "print_error", "vllm_serve_command"]

_INTERRUPTED = 128 + 2
"""The exit status of a command stopped with Ctrl-C (SIGINT), as shells report it."""


def vllm_serve_command(
    model: str | ModelSpec, *, host: str = "0.0.0.0", port: int = 8000, extra: Sequence[str] = ()
) -> list[str]:
    """The ``vllm serve`` command line with the flags the capability table knows ``model`` needs."""
    spec = resolve_model(model)
    cmd = ["vllm", "serve", spec.id, "--host", host, "--port", str(port)]
    cmd += list(spec.vllm_args)
    if spec.vision:
        cmd += ["--limit-mm-per-prompt", '{"image": 1}']
    return cmd + list(extra)


def _serve(args: argparse.Namespace) -> int:
    cmd = vllm_serve_command(args.model, host=args.host, port=args.port, extra=args.extra)
    if args.dry_run:
        print(shlex.join(cmd))
        return 0
    if shutil.which("vllm") is None:
        raise MissingDependencyError("vllm", "vllm")
    print(f"$ {shlex.join(cmd)}", file=sys.stderr, flush=True)
    os.execvp(cmd[0], cmd)  # replaces this process
    return 0  # only reached when execvp is replaced (tests)


def _models(_: argparse.Namespace) -> int:
    for model_id in known_models():
        spec = resolve_model(model_id)
        caps = [spec.family, f"ctx={spec.context_length}"]
        if spec.vision:
            caps.append("vision")
        if spec.tool_formats:
            caps.append("tools=" + "/".join(f.value for f in spec.tool_formats))
        if spec.builtin_tools:
            caps.append("builtin-tools")
        if spec.guard_categories:
            caps.append(f"guard={spec.guard_categories[0]}-{spec.guard_categories[-1]}")
        print(f"{spec.id:45} {' '.join(caps)}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentic",
        description="Agents for Llama models.",
        epilog="agentic model serve MODEL [options] -- [more vllm serve flags]",
    )
    parser.add_argument("--version", action="version", version=f"llama-agentic {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list the models the capability table knows").set_defaults(
        func=_models
    )
    model = sub.add_parser("model", help="model utilities").add_subparsers(
        dest="model_command", required=True
    )
    serve = model.add_parser("serve", help="start a vLLM server for MODEL with the right flags")
    serve.add_argument("model")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--dry-run", action="store_true", help="print the command, do not run it")
    serve.set_defaults(func=_serve, extra=[])
    from agentic._cli_agent import add_agent_commands

    add_agent_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:  # everything after -- goes to vllm unchanged
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    try:
        args = _parser().parse_args(argv)  # imports the agent commands: Ctrl-C may come here
        if extra:
            args.extra = extra
        code: int = args.func(args)
    except AgenticError as exc:
        print_error(exc)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: the command already stopped what it was doing
        return _INTERRUPTED
    return code


def print_error(exc: AgenticError) -> None:
    """Show an error as one line on stderr."""
    print(f"agentic: {' '.join(str(exc).split())}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
