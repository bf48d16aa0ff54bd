"""The group-commit writer: a Send of a few events goes ahead of what waits."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Connection, create_engine

from controlplane.store.writer import GroupCommitWriter


async def test_an_urgent_write_goes_ahead_of_those_waiting(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    writer = GroupCommitWriter(engine.connect)
    await writer.start()
    ran: list[str] = []
    entered, release = threading.Event(), threading.Event()

    def blocking(_conn: Connection) -> None:
        entered.set()
        release.wait(10)
        ran.append("blocking")

    def named(name: str) -> Callable[[Connection], None]:
        def op(_conn: Connection) -> None:
            ran.append(name)

        return op

    try:
        first = writer.submit(blocking)
        assert await asyncio.to_thread(entered.wait, 10)  # inside the first transaction
        later = [writer.submit(named(f"result-{n}")) for n in range(3)]
        send = writer.submit(named("send"), urgent=True)
        release.set()
        await asyncio.gather(first, send, *later)
        assert ran == ["blocking", "send", "result-0", "result-1", "result-2"]
    finally:
        release.set()
        await writer.close()
        engine.dispose()
