"""The code-interpreter worker: the Python process inside the sandbox. Standard library only.

Run as ``python3 -I /opt/sbx/worker.py FD [MODULE,...]``: it serves newline-delimited JSON
requests on the socket FD (never stdin/stdout), keeps one namespace across cells like a
notebook, and answers each request with the request's own id. During a cell, fds 1 and 2 point
at capture files in /tmp; between cells at /dev/null, so stray writes go nowhere.

Ops: ``ping`` (after importing the preload modules), ``put`` (a file into /work), ``exec``
(acknowledged at once with status ``started``, then the result), ``get`` (a chunk of a
figure or output file). The host holds the limits; this script only keeps the bookkeeping.
"""

from __future__ import annotations

# Imports are kept to what the first cell needs: every module here is paid for by each cold
# start (traceback, linecache and importlib are imported when first needed).
import _ast
import binascii
import builtins
import io
import json
import os
import signal
import stat
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import FrameType
    from typing import Any, TypeAlias

    Json: TypeAlias = dict[str, Any]

WORK = "/work"
OUTPUTS = "/work/outputs"
CELL = "<cell>"
MAX_REQUEST = 8 * 1024 * 1024
MAX_SCAN = 2000
MAX_NAME = 500
DEFAULT_OUTPUT = 64 * 1024
Signature = tuple[int, int, int, int]


class CellTimeout(BaseException):
    """Raised in the cell by the soft timer; a BaseException so ``except Exception`` misses it."""


class Worker:
    """The state of one interpreter: the cell namespace, figures and the outputs seen so far."""

    def __init__(
        self,
        work: str = WORK,
        outputs: str = OUTPUTS,
        tmp: str = "/tmp",
        idle_fds: tuple[int, int] | None = None,
    ) -> None:
        self.work = work
        self.outputs = outputs
        self.tmp = tmp
        self.idle_fds = idle_fds
        """Where fds 1 and 2 point between cells (None: /dev/null)."""
        self.namespace: Json = {"__name__": "__main__", "__builtins__": builtins}
        self.figures: dict[str, bytes] = {}
        self.figure_count = 0
        self.seen: dict[str, Signature] = {}
        self.in_cell = False
        self.pid = os.getpid()

    # --- requests ---------------------------------------------------------------------------

    def handle(self, request: Json, send: Callable[[Json], None]) -> Json:
        """The reply to one request (``exec`` sends its acknowledgement through ``send``)."""
        op = request.get("op")
        if op == "ping":
            return {"status": "ok"}
        if op == "put":
            return self.put(str(request["name"]), str(request["data_b64"]), int(request["offset"]))
        if op == "get":
            return self.get(str(request["name"]), int(request["offset"]), int(request["length"]))
        if op == "exec":
            send({"id": request["id"], "status": "started"})
            return self.execute(
                str(request["code"]),
                float(request.get("timeout", 10.0)),
                int(request.get("max_output", DEFAULT_OUTPUT)),
            )
        return {"status": "error", "message": f"unknown op {op!r}"}

    def put(self, name: str, data_b64: str, offset: int) -> Json:
        """Write (offset 0) or append a chunk of a file directly under /work."""
        if not name or "/" in name or name in (".", ".."):
            return {"status": "error", "message": f"bad file name {name!r}"}
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_TRUNC if offset == 0 else 0)
        try:
            fd = os.open(os.path.join(self.work, name), flags, 0o644)
            try:
                os.pwrite(fd, binascii.a2b_base64(data_b64), offset)
            finally:
                os.close(fd)
        except OSError as exc:
            return {"status": "error", "message": f"{name}: {exc.strerror or exc}"}
        return {"status": "ok"}

    def get(self, name: str, offset: int, length: int) -> Json:
        """A chunk of a figure from this cell or of an output file that was listed."""
        if name in self.figures:
            data = self.figures[name]
            return {"status": "ok", "size": len(data), "data_b64": _b64(data[offset:][:length])}
        expected = self.seen.get(name)
        path = os.path.join(self.work, name)
        if expected is None or not name.startswith("outputs/"):
            return {"status": "error", "message": f"no file {name!r}"}
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            return {"status": "error", "message": f"{name}: {exc.strerror or exc}"}
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or _signature(st) != expected:
                return {"status": "error", "message": f"{name} changed since it was listed"}
            data = os.pread(fd, length, offset)
        finally:
            os.close(fd)
        return {"status": "ok", "size": st.st_size, "data_b64": _b64(data)}

    # --- cells ------------------------------------------------------------------------------

    def execute(self, code: str, timeout: float, max_output: int) -> Json:
        """Run one cell with fds 1/2 captured; figures and changed outputs are listed after."""
        started = time.monotonic()
        self.figures = {}
        out, err = _capture_file(self.tmp), _capture_file(self.tmp)
        with Redirect(out, err, self.idle_fds):
            status = self.run_cell(code, timeout)
            if os.getpid() != self.pid:  # a child the cell forked must not serve requests
                os._exit(0)
            figures = self.save_figures()
        files = self.scan_outputs()
        reply: Json = {"status": status, "figures": figures, "files": files}
        for name, fd in (("stdout", out), ("stderr", err)):
            reply[name], reply[name + "_size"] = read_clipped(fd, max_output)
            os.close(fd)
        reply["elapsed"] = time.monotonic() - started
        return reply

    def run_cell(self, code: str, timeout: float) -> str:
        """``ok``, ``error`` (traceback on stderr) or ``timeout``; the namespace persists."""
        previous = signal.signal(signal.SIGALRM, self._alarm)
        self.in_cell = True
        signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            run_source(code, self.namespace)
            status = "ok"
        except CellTimeout:
            status = "timeout"
            _say(
                f"TimeoutError: the cell ran past its {timeout:g} s limit and was "
                "interrupted (variables are kept)\n"
            )
        except SystemExit as exc:
            status = "ok" if exc.code in (None, 0) else "error"
            if status == "error":
                _say(f"SystemExit: {exc.code}\n")
        except BaseException as exc:  # the cell's own error, reported like Python would
            status = "error"
            _say(format_exception(exc, code))
        finally:
            self.in_cell = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        return status

    def _alarm(self, signum: int, frame: FrameType | None) -> None:
        if self.in_cell:
            raise CellTimeout

    def save_figures(self) -> list[Json]:
        """Every open matplotlib figure as PNG bytes (kept for ``get``), then close them all."""
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is None:
            return []
        listed: list[Json] = []
        try:
            for num in plt.get_fignums():
                buf = io.BytesIO()
                plt.figure(num).savefig(buf, format="png")
                self.figure_count += 1
                name = f"figure_{self.figure_count}.png"
                self.figures[name] = buf.getvalue()
                listed.append({"name": name, "size": len(self.figures[name])})
        except Exception as exc:  # a broken figure must not lose the cell's result
            _say(f"could not save a figure: {type(exc).__name__}: {exc}\n")
        finally:
            try:
                plt.close("all")
            except Exception as exc:
                _say(f"could not close figures: {exc}\n")
        return listed

    def scan_outputs(self) -> list[Json]:
        """New or changed entries under /work/outputs: regular files, or why one is skipped."""
        current: dict[str, Signature] = {}
        listed: list[Json] = []
        for rel, st in walk(self.outputs, MAX_SCAN):
            name = "outputs/" + rel
            sig = _signature(st)
            current[name] = sig
            if self.seen.get(name) == sig:
                continue
            skip = _skip_reason(st)
            if len(name) > MAX_NAME:
                name, skip = name[:MAX_NAME], f"a name over {MAX_NAME} characters"
            listed.append({"name": name, "size": st.st_size, "skip": skip})
        self.seen = current
        return listed


class Redirect:
    """Point fds 1 and 2 at capture files for the cell, then back at /dev/null."""

    def __init__(self, out: int, err: int, idle: tuple[int, int] | None = None) -> None:
        self.out = out
        self.err = err
        self.idle = idle
        self.saved: tuple[Any, Any] = (None, None)

    def __enter__(self) -> None:
        _flush()
        self.saved = (sys.stdout, sys.stderr)
        sys.stdout, sys.stderr = _std_stream("__stdout__", 1), _std_stream("__stderr__", 2)
        os.dup2(self.out, 1)
        os.dup2(self.err, 2)

    def __exit__(self, *exc: object) -> None:
        _flush()
        sys.stdout, sys.stderr = self.saved
        if self.idle is not None:
            os.dup2(self.idle[0], 1)
            os.dup2(self.idle[1], 2)
            return
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        os.close(null)


def run_source(code: str, namespace: Json) -> None:
    """Execute ``code`` like a notebook cell: the value of a final expression is printed."""
    tree = compile(code, CELL, "exec", _ast.PyCF_ONLY_AST)  # _ast: no import of ast.py
    assert isinstance(tree, _ast.Module)
    last = tree.body[-1] if tree.body else None
    if isinstance(last, _ast.Expr):
        tree.body.pop()
        exec(compile(tree, CELL, "exec"), namespace)
        value = eval(compile(_ast.Expression(last.value), CELL, "eval"), namespace)
        if value is not None:
            print(repr(value))
    else:
        exec(compile(tree, CELL, "exec"), namespace)


def format_exception(exc: BaseException, source: str = "") -> str:
    """A traceback that shows only the cell's own frames (no worker or library paths)."""
    import linecache
    import traceback

    linecache.cache[CELL] = (len(source), None, source.splitlines(keepends=True), CELL)
    if isinstance(exc, SyntaxError):
        return "".join(traceback.format_exception_only(type(exc), exc))
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == CELL]
    out = ["Traceback (most recent call last):\n"] if frames else []
    for f in frames:
        out.append(f'  File "{CELL}", line {f.lineno}, in {f.name}\n')
        if f.line:
            out.append(f"    {f.line.strip()}\n")
    out.extend(traceback.format_exception_only(type(exc), exc))
    return "".join(out)


def read_clipped(fd: int, limit: int) -> tuple[str, int]:
    """The captured text (head and tail when longer than ``limit`` bytes) and its full size."""
    size = os.fstat(fd).st_size
    if size <= limit:
        data = os.pread(fd, size, 0)
    else:
        half = limit // 2
        head, tail = os.pread(fd, half, 0), os.pread(fd, half, size - half)
        data = head + f"\n…[{size - 2 * half} bytes cut]…\n".encode() + tail
    return data.decode("utf-8", errors="replace"), size


def walk(root: str, limit: int) -> list[tuple[str, os.stat_result]]:
    """Entries under ``root`` (relative path, lstat), symlinks never followed, ``limit`` at most."""
    found: list[tuple[str, os.stat_result]] = []
    stack = [""]
    while stack and len(found) < limit:
        rel = stack.pop()
        try:
            entries = sorted(os.scandir(os.path.join(root, rel)), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            path = f"{rel}/{entry.name}" if rel else entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                stack.append(path)
            elif len(found) < limit:
                found.append((path, st))
    return found


def _skip_reason(st: os.stat_result) -> str:
    if stat.S_ISLNK(st.st_mode):
        return "a symbolic link"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_nlink != 1:
        return "a hard link"
    return ""


def _signature(st: os.stat_result) -> Signature:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _capture_file(tmp: str) -> int:
    """An unnamed file in /tmp: the cell cannot find it, and it is gone once closed."""
    return os.open(tmp, os.O_TMPFILE | os.O_RDWR, 0o600)


def _b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def _std_stream(name: str, fd: int) -> Any:
    """``sys.__stdout__``/``__stderr__``, reopened on its fd if a cell closed or removed it."""
    stream = getattr(sys, name)
    if stream is None or stream.closed:
        stream = open(fd, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
        stream.reconfigure(write_through=True)
        setattr(sys, name, stream)
    return stream


def _say(text: str) -> None:
    """Write the worker's own note (traceback, timeout) to fd 2, whatever the cell did to sys."""
    try:
        _write_all(2, text.encode("utf-8", errors="backslashreplace"))
    except OSError:  # fd 2 closed or full: the note is lost, the cell's result is not
        return


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:  # the cell may have closed or replaced them
            pass


def preload(modules: list[str]) -> list[str]:
    """Import ``modules`` so cells start fast; returns those that failed."""
    import importlib

    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except (Exception, SystemExit):  # a module that exits on import is just not loaded
            missing.append(name)
    return missing


def serve(fd: int, worker: Worker, missing: list[str]) -> None:
    """Answer requests on the channel ``fd`` until the host closes it."""
    rfile = open(fd, "rb", buffering=65536, closefd=False)  # noqa: SIM115 - lives as long

    def send(message: Json) -> None:
        _write_all(fd, json.dumps(message, separators=(",", ":")).encode("ascii") + b"\n")

    while line := rfile.readline(MAX_REQUEST):
        request: Json = {}
        try:
            parsed = json.loads(line)
            request = parsed if isinstance(parsed, dict) else {}
            reply = worker.handle(request, send)
        except CellTimeout:  # the timer fired just after the cell ended
            reply = {"status": "timeout"}
        except Exception as exc:
            reply = {"status": "error", "message": f"{type(exc).__name__}: {exc}"}
        if request.get("op") == "ping":
            reply["missing"] = missing
        reply["id"] = request.get("id")
        send(reply)


def main(argv: list[str]) -> None:  # pragma: no cover - runs only inside the sandbox
    """Detach from the launcher's stdio, keep only the channel fd, preload, then serve."""
    fd = int(argv[1])
    null = os.open(os.devnull, os.O_RDWR)
    for target in (0, 1, 2):
        os.dup2(null, target)
    os.closerange(3, fd)
    os.closerange(fd + 1, os.sysconf("SC_OPEN_MAX"))
    os.makedirs(OUTPUTS, exist_ok=True)
    os.makedirs("/tmp/mpl", exist_ok=True)
    missing = preload([m for m in (argv[2] if len(argv) > 2 else "").split(",") if m])
    serve(fd, Worker(), missing)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv)
