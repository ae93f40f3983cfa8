"""The session store's own bookkeeping: what a deleted session leaves behind."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from agentic.agent.config import PersistenceConfig
from agentic.agent.store import SessionStore
from agentic.agent.types import SessionInfo, Turn, utcnow
from agentic.types import UserMessage


async def _create_use_delete(sessions: SessionStore, count: int, start: int) -> None:
    for i in range(start, start + count):
        now = utcnow()
        info = SessionInfo(session_id=f"s{i}", agent="a", created_at=now, updated_at=now)
        await sessions.save_session(info)
        turn = Turn(
            turn_id=f"t{i}",
            session_id=info.session_id,
            input_messages=[UserMessage(content="hi")],
            started_at=now,
        )
        await sessions.save_turn(turn, info)
        assert await sessions.load_turn(info.session_id, "missing") is None
        await sessions.delete_session(info.session_id)


async def test_deleted_memory_sessions_leave_nothing_in_the_process(tmp_path: Path) -> None:
    sessions = SessionStore(PersistenceConfig(backend="memory"), tmp_path)
    await sessions.open()
    await _create_use_delete(sessions, 50, 0)  # warm up
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        await _create_use_delete(sessions, 2000, 50)
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # each deleted session used to leave its (empty) turns namespace: ~0.7 kB, 1.4 MB here
    assert after - before < 100_000
    assert await sessions.list_sessions() == []
    await sessions.aclose()
