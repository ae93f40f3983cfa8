"""Turn claims in a shared SQLite file: one holder at a time, lapsed and dead holders replaced."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import time

import pytest

from agentic.agent import _leases
from agentic.agent._leases import (
    LEASE_SECONDS,
    Holder,
    SessionLeases,
    SqliteLeases,
    _place,
    _process_start,
)
from agentic.agent._sqlite import SqliteThread


async def _leases_on(thread: SqliteThread, clock: float = 0.0) -> SessionLeases:
    leases = SessionLeases(SqliteLeases(thread), clock=lambda: time.time() + clock)
    await leases.setup()
    return leases


async def _rows(thread: SqliteThread) -> list[tuple[object, ...]]:
    assert thread.conn is not None
    cursor = thread.conn.execute(
        "SELECT session_id, owner, pid, expires_at FROM agentic_turn_leases ORDER BY session_id"
    )
    return list(cursor.fetchall())


def _plant(thread: SqliteThread, holder: Holder, session_id: str = "s1") -> None:
    """A claim as another process would have left it."""
    assert thread.conn is not None
    thread.conn.execute(
        "INSERT INTO agentic_turn_leases VALUES (?, ?, ?, ?, ?, ?)",
        (session_id, holder.owner, holder.place, holder.pid, holder.started, holder.expires_at),
    )


async def test_one_holder_at_a_time(thread: SqliteThread) -> None:
    a, b = await _leases_on(thread), await _leases_on(thread)
    assert await a.acquire("s1") is None
    holder = await b.acquire("s1")
    assert holder is not None
    assert (holder.owner, holder.pid) == (a.owner, os.getpid())
    assert f"process {os.getpid()} on " in holder.describe()
    assert "its claim lapses by" in holder.describe()
    assert await b.acquire("s2") is None  # other sessions are free
    assert await a.acquire("s1") is None  # a holder may claim again
    await a.release("s1")
    assert await b.acquire("s1") is None
    assert [r[:2] for r in await _rows(thread)] == [("s1", b.owner), ("s2", b.owner)]
    await b.release("s1")
    await b.release("s2")
    assert await _rows(thread) == []


async def test_a_lapsed_claim_is_taken_over(thread: SqliteThread) -> None:
    a = await _leases_on(thread)
    late = await _leases_on(thread, clock=LEASE_SECONDS + 1)
    assert await a.acquire("s1") is None
    assert await late.acquire("s1") is None
    assert (await _rows(thread))[0][1] == late.owner
    await a.release("s1")  # the old holder letting go does not drop the new claim
    assert (await _rows(thread))[0][1] == late.owner


async def test_the_claim_of_an_exited_process_is_taken_over(
    thread: SqliteThread, caplog: pytest.LogCaptureFixture
) -> None:
    leases = await _leases_on(thread)
    pid = _exited_pid()
    _plant(thread, Holder("dead", _place(), pid, "", time.time() + LEASE_SECONDS))
    with caplog.at_level(logging.WARNING, logger="agentic.agent._leases"):
        assert await leases.acquire("s1") is None
    assert (await _rows(thread))[0][1] == leases.owner
    assert f"from process {pid}, which exited during a turn" in caplog.text


def _exited_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


async def test_a_reused_pid_is_told_from_the_holder_by_its_start_time(
    thread: SqliteThread,
) -> None:
    leases = await _leases_on(thread)
    live = await asyncio.create_subprocess_exec("sleep", "30")
    try:
        started = _process_start(live.pid)
        assert started
        until = time.time() + LEASE_SECONDS
        _plant(thread, Holder("running", _place(), live.pid, started, until), "alive")
        _plant(thread, Holder("earlier", _place(), live.pid, "1", until), "reused")
        holder = await leases.acquire("alive")
        assert holder is not None
        assert holder.owner == "running"
        assert await leases.acquire("reused") is None
    finally:
        live.kill()
        await live.wait()


async def test_a_process_elsewhere_is_waited_for_until_its_claim_lapses(
    thread: SqliteThread,
) -> None:
    leases = await _leases_on(thread)
    until = time.time() + LEASE_SECONDS
    _plant(thread, Holder("far", "other-host/pid:[1]", _exited_pid(), "", until))
    holder = await leases.acquire("s1")
    assert holder is not None
    assert holder.owner == "far"
    assert "on other-host;" in holder.describe()
    later = await _leases_on(thread, clock=LEASE_SECONDS + 1)
    assert await later.acquire("s1") is None


async def test_held_claims_are_renewed_until_released(
    thread: SqliteThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_leases, "RENEW_SECONDS", 0.05)
    leases = await _leases_on(thread)
    assert await leases.acquire("s1") is None
    first = (await _rows(thread))[0][3]
    assert isinstance(first, float)
    await asyncio.sleep(0.3)
    renewed = (await _rows(thread))[0][3]
    assert isinstance(renewed, float)
    assert renewed > first
    renewal = leases._renewal
    assert renewal is not None
    assert not renewal.done()
    await leases.release("s1")
    await asyncio.wait_for(renewal, 1.0)  # nothing held: the renewal ends by itself


async def test_a_failed_renewal_is_logged_and_tried_again(
    thread: SqliteThread, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_leases, "RENEW_SECONDS", 0.02)
    leases = await _leases_on(thread)
    calls: list[int] = []
    renew = leases._storage.renew

    async def flaky(session_ids: list[str], owner: str, until: float) -> None:
        calls.append(len(session_ids))
        if len(calls) == 1:
            raise OSError("disk gone")
        await renew(session_ids, owner, until)

    monkeypatch.setattr(leases._storage, "renew", flaky)
    with caplog.at_level(logging.ERROR, logger="agentic.agent._leases"):
        assert await leases.acquire("s1") is None
        await asyncio.sleep(0.2)
    assert len(calls) >= 2
    assert "could not renew the turn claims of 1 sessions" in caplog.text
    await leases.aclose()


async def test_closing_drops_the_claims_still_held(thread: SqliteThread) -> None:
    leases = await _leases_on(thread)
    other = await _leases_on(thread)
    assert await leases.acquire("s1") is None
    assert await other.acquire("s2") is None
    await leases.aclose()
    assert [r[:2] for r in await _rows(thread)] == [("s2", other.owner)]
    assert leases._renewal is None


def test_process_start_of_a_missing_process_is_unknown() -> None:
    assert _process_start(_exited_pid()) == ""
    assert _process_start(os.getpid())


async def test_a_claim_that_cannot_be_dropped_is_left_to_lapse(
    thread: SqliteThread, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    leases = await _leases_on(thread)
    assert await leases.acquire("s1") is None

    async def broken(session_id: str, owner: str) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(leases._storage, "drop", broken)
    with caplog.at_level(logging.WARNING, logger="agentic.agent._leases"):
        await leases.release("s1")  # the turn still ends normally
    assert "could not drop the turn claim of session s1; it lapses within 60 s" in caplog.text
    assert leases._held == set()  # no longer renewed
    assert await leases.acquire("s1") is None  # and this process may claim it again
