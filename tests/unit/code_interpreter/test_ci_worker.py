"""The in-sandbox worker's logic, run in-process on temporary directories.

The same code runs inside the sandbox in the integration tests; here each piece is checked
directly: cells and their namespace, timeouts, tracebacks, output capture and clipping, the
outputs scan (symlinks, hard links, changes), figures, put/get and the request loop.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentic.tools.code_interpreter import worker as w


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[w.Worker]:
    """A worker on temp dirs whose fds 1/2 go back to what they were after each cell."""
    (tmp_path / "outputs").mkdir()
    (tmp_path / "tmp").mkdir()
    idle = (os.dup(1), os.dup(2))
    try:
        yield w.Worker(str(tmp_path), str(tmp_path / "outputs"), str(tmp_path / "tmp"), idle)
    finally:
        for fd in idle:
            os.close(fd)


def exec_cell(worker: w.Worker, code: str, timeout: float = 5.0, cap: int = 4096) -> w.Json:
    return worker.execute(code, timeout, cap)


def test_cells_share_one_namespace_and_echo_a_final_expression(worker: w.Worker) -> None:
    first = exec_cell(worker, "x = 20\nprint('set', x)")
    assert (first["status"], first["stdout"], first["stderr"]) == ("ok", "set 20\n", "")
    assert exec_cell(worker, "x * 2 + 2")["stdout"] == "42\n"
    assert exec_cell(worker, "None")["stdout"] == ""
    assert exec_cell(worker, "")["status"] == "ok"
    assert worker.namespace["x"] == 20


def test_stdout_and_stderr_from_python_and_subprocesses_are_captured(worker: w.Worker) -> None:
    code = (
        "import os, subprocess, sys\nprint('py out')\nsys.stderr.write('py err\\n')\n"
        "os.write(1, b'fd out\\n')\ndone = subprocess.run(['echo', 'child out'])"
    )
    reply = exec_cell(worker, code)
    assert reply["stdout"] == "py out\nfd out\nchild out\n"
    assert reply["stderr"] == "py err\n"


def test_errors_show_only_cell_frames(worker: w.Worker) -> None:
    code = "import json\ndef parse(s):\n    return json.loads(s)\n\nparse('{')"
    reply = exec_cell(worker, code)
    assert reply["status"] == "error"
    err = reply["stderr"]
    assert err.startswith("Traceback (most recent call last):\n")
    assert "  File \"<cell>\", line 5, in <module>\n    parse('{')\n" in err
    assert '  File "<cell>", line 3, in parse\n    return json.loads(s)\n' in err
    assert err.endswith(
        "json.decoder.JSONDecodeError: Expecting property name enclosed in "
        "double quotes: line 1 column 2 (char 1)\n"
    )
    assert "json/decoder.py" not in err
    assert "worker.py" not in err


def test_syntax_errors_point_into_the_cell(worker: w.Worker) -> None:
    reply = exec_cell(worker, "x = (1,\nprint(x")
    assert reply["status"] == "error"
    assert reply["stderr"].startswith('  File "<cell>", line 2\n    print(x\n')
    assert "SyntaxError" in reply["stderr"]


def test_an_error_without_cell_frames_still_names_the_exception() -> None:
    assert w.format_exception(KeyError("k")) == "KeyError: 'k'\n"


def test_system_exit_ends_the_cell_not_the_worker(worker: w.Worker) -> None:
    assert exec_cell(worker, "import sys\nsys.exit(0)")["status"] == "ok"
    reply = exec_cell(worker, "raise SystemExit(3)")
    assert (reply["status"], reply["stderr"]) == ("error", "SystemExit: 3\n")


def test_the_soft_timeout_interrupts_and_keeps_state(worker: w.Worker) -> None:
    reply = exec_cell(worker, "n = 1\nwhile True:\n    n += 1", timeout=0.2)
    assert reply["status"] == "timeout"
    assert "TimeoutError: the cell ran past its 0.2 s limit" in reply["stderr"]
    assert worker.namespace["n"] > 1
    assert exec_cell(worker, "n > 1")["stdout"] == "True\n"


def test_a_late_timer_outside_a_cell_is_ignored(worker: w.Worker) -> None:
    worker._alarm(14, None)  # what the handler does when no cell runs: nothing
    worker.in_cell = True
    with pytest.raises(w.CellTimeout):
        worker._alarm(14, None)


def test_long_output_keeps_head_and_tail(worker: w.Worker) -> None:
    reply = exec_cell(worker, "print('A' * 5000 + 'Z' * 5000)", cap=100)
    assert reply["stdout_size"] == 10001
    assert reply["stdout"].startswith("A" * 50 + "\n…[9901 bytes cut]…\n")
    assert reply["stdout"].endswith("Z" * 49 + "\n")


def test_a_cell_that_replaces_or_closes_stdout_does_not_break_the_next(worker: w.Worker) -> None:
    exec_cell(worker, "import io, sys\nsys.stdout = io.StringIO()\nsys.stderr.close()")
    assert exec_cell(worker, "print('back')")["stdout"] == "back\n"


def test_outputs_scan_lists_new_and_changed_files_once(worker: w.Worker, tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    (out / "a.csv").write_text("1")
    (out / "sub").mkdir()
    (out / "sub" / "b.txt").write_text("22")
    assert worker.scan_outputs() == [
        {"name": "outputs/a.csv", "size": 1, "skip": ""},
        {"name": "outputs/sub/b.txt", "size": 2, "skip": ""},
    ]
    assert worker.scan_outputs() == []  # nothing changed
    (out / "a.csv").write_text("333")
    assert worker.scan_outputs() == [{"name": "outputs/a.csv", "size": 3, "skip": ""}]


def test_outputs_scan_refuses_links_and_special_files(worker: w.Worker, tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    (out / "link").symlink_to("/etc/passwd")
    (out / "dirlink").symlink_to("/usr")
    (tmp_path / "mine").write_text("x")
    os.link(tmp_path / "mine", out / "hard")
    os.mkfifo(out / "fifo")
    skips = {e["name"]: e["skip"] for e in worker.scan_outputs()}
    assert skips == {
        "outputs/dirlink": "a symbolic link",
        "outputs/fifo": "not a regular file",
        "outputs/hard": "a hard link",
        "outputs/link": "a symbolic link",
    }


def test_very_long_output_names_are_listed_cut_and_skipped(
    worker: w.Worker, tmp_path: Path
) -> None:
    deep = tmp_path / "outputs"
    for _ in range(6):
        deep = deep / ("d" * 100)
    deep.mkdir(parents=True)
    (deep / "f.txt").write_text("x")
    (entry,) = worker.scan_outputs()
    assert len(entry["name"]) == w.MAX_NAME
    assert entry["skip"] == "a name over 500 characters"


def test_outputs_scan_is_bounded(tmp_path: Path) -> None:
    for i in range(30):
        (tmp_path / f"f{i:02}").write_text("x")
    assert len(w.walk(str(tmp_path), 10)) == 10
    assert w.walk(str(tmp_path / "missing"), 10) == []


def test_get_returns_chunks_of_listed_files_only(worker: w.Worker, tmp_path: Path) -> None:
    (tmp_path / "outputs" / "r.bin").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "secret").write_text("no")
    worker.scan_outputs()
    chunk = worker.get("outputs/r.bin", 1000, 100)
    assert chunk["status"] == "ok"
    assert chunk["size"] == 1024
    assert base64.b64decode(chunk["data_b64"]) == (bytes(range(256)) * 4)[1000:]
    assert worker.get("secret", 0, 10)["status"] == "error"
    assert worker.get("outputs/../secret", 0, 10)["status"] == "error"
    assert worker.get("outputs/missing", 0, 10) == {
        "status": "error",
        "message": "no file 'outputs/missing'",
    }


def test_get_refuses_a_file_swapped_after_the_scan(worker: w.Worker, tmp_path: Path) -> None:
    out = tmp_path / "outputs"
    (out / "a").write_text("original")
    (out / "b").write_text("original")
    worker.scan_outputs()
    (out / "a").unlink()
    (out / "a").symlink_to("/etc/hostname")
    (out / "b").write_text("changed!")
    assert "a:" in worker.get("outputs/a", 0, 100)["message"]  # O_NOFOLLOW: ELOOP
    assert worker.get("outputs/b", 0, 100)["message"] == "outputs/b changed since it was listed"


def test_put_writes_and_appends_plain_names_only(worker: w.Worker, tmp_path: Path) -> None:
    data = base64.b64encode(b"a,b\n").decode()
    assert worker.put("data.csv", data, 0) == {"status": "ok"}
    assert worker.put("data.csv", base64.b64encode(b"1,2\n").decode(), 4) == {"status": "ok"}
    assert (tmp_path / "data.csv").read_text() == "a,b\n1,2\n"
    assert worker.put("data.csv", data, 0) == {"status": "ok"}  # offset 0 starts over
    assert (tmp_path / "data.csv").read_text() == "a,b\n"
    for bad in ("", ".", "..", "a/b"):
        assert worker.put(bad, data, 0)["status"] == "error"
    (tmp_path / "trap").symlink_to(tmp_path / "elsewhere")
    assert worker.put("trap", data, 0)["status"] == "error"
    assert not (tmp_path / "elsewhere").exists()


class _Figure:
    def __init__(self, payload: bytes, fail: bool = False) -> None:
        self.payload = payload
        self.fail = fail

    def savefig(self, buf: Any, format: str) -> None:
        if self.fail:
            raise RuntimeError("cannot render")
        buf.write(b"\x89PNG" + self.payload)


def _pyplot(figures: dict[int, _Figure]) -> types.ModuleType:
    """A stand-in for matplotlib.pyplot's figure registry (matplotlib is not in the venv)."""
    module = types.ModuleType("matplotlib.pyplot")
    module.get_fignums = lambda: sorted(figures)  # type: ignore[attr-defined]
    module.figure = lambda num: figures[num]  # type: ignore[attr-defined]
    module.close = lambda which: figures.clear()  # type: ignore[attr-defined]
    return module


def test_open_figures_are_saved_numbered_and_closed(
    worker: w.Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = {1: _Figure(b"one"), 3: _Figure(b"three")}
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", _pyplot(figures))
    reply = exec_cell(worker, "pass")
    assert reply["figures"] == [
        {"name": "figure_1.png", "size": 7},
        {"name": "figure_2.png", "size": 9},
    ]
    assert figures == {}
    got = worker.get("figure_2.png", 0, 100)
    assert base64.b64decode(got["data_b64"]) == b"\x89PNGthree"
    figures[5] = _Figure(b"again")
    assert exec_cell(worker, "pass")["figures"] == [{"name": "figure_3.png", "size": 9}]
    assert worker.get("figure_1.png", 0, 10)["status"] == "error"  # only this cell's figures


def test_a_broken_figure_is_reported_not_fatal(
    worker: w.Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = {1: _Figure(b"", fail=True)}
    module = _pyplot(figures)
    module.close = lambda which: (_ for _ in ()).throw(OSError("busy"))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", module)
    reply = exec_cell(worker, "print('still here')")
    assert reply["stdout"] == "still here\n"
    assert "could not save a figure: RuntimeError: cannot render" in reply["stderr"]
    assert "could not close figures: busy" in reply["stderr"]
    assert reply["figures"] == []


def test_handle_dispatches_ops_and_acknowledges_exec(worker: w.Worker) -> None:
    sent: list[w.Json] = []
    reply = worker.handle({"id": "r1", "op": "exec", "code": "print(1)"}, sent.append)
    assert sent == [{"id": "r1", "status": "started"}]
    assert reply["stdout"] == "1\n"
    assert worker.handle({"op": "ping"}, sent.append) == {"status": "ok"}
    assert worker.handle({"op": "nope"}, sent.append)["message"] == "unknown op 'nope'"
    put = {"op": "put", "name": "f", "data_b64": "", "offset": 0}
    assert worker.handle(put, sent.append) == {"status": "ok"}
    get = {"op": "get", "name": "f", "offset": 0, "length": 1}
    assert worker.handle(get, sent.append)["status"] == "error"


def test_preload_reports_modules_that_fail() -> None:
    assert w.preload(["json", "no_such_module_for_agentic"]) == ["no_such_module_for_agentic"]


def test_serve_answers_each_request_with_its_id(worker: w.Worker) -> None:
    host, inner = socket.socketpair()
    thread = threading.Thread(target=w.serve, args=(inner.fileno(), worker, ["pandas"]))
    thread.start()
    rfile = host.makefile("rb")
    try:
        requests = [
            b'{"id": "a", "op": "ping"}\n',
            b"this is not json\n",
            b"[1, 2]\n",
            b'{"id": "b", "op": "put", "name": "x"}\n',  # no data: a KeyError, reported
            b'{"id": "c", "op": "unknown"}\n',
        ]
        host.sendall(b"".join(requests))
        replies = [json.loads(rfile.readline()) for _ in requests]
    finally:
        rfile.close()
        host.close()
        thread.join(5)
        inner.close()
    assert replies[0] == {"status": "ok", "missing": ["pandas"], "id": "a"}
    assert replies[1]["id"] is None
    assert replies[1]["status"] == "error"
    assert replies[2] == {"status": "error", "message": "unknown op None", "id": None}
    assert replies[3] == {"status": "error", "message": "KeyError: 'data_b64'", "id": "b"}
    assert replies[4]["id"] == "c"
    assert not thread.is_alive()  # EOF ends the loop
