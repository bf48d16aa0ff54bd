"""The store on real SQLite and PostgreSQL: migrations, group commit, claiming."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select

from controlplane.engine.claims import claim_executions
from controlplane.model import FunctionKey, NewRunRecord, QueueEntry, RunStatus
from controlplane.model.errors import NotFound
from controlplane.store import Store, migrate, open_store
from controlplane.store.migrate import current_revision, head_revision
from controlplane.store.schema import metadata, runs
from controlplane.store.tx import WriteTx


def new_run(run_id: str, key: FunctionKey, now_ms: int) -> NewRunRecord:
    return NewRunRecord(run_id, key, RunStatus.QUEUED, now_ms, "0" * 32, "0" * 16)


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    opened = open_store(db_url)
    migrate(opened.engine)
    await opened.start()
    yield opened
    await opened.close()


def test_migrations_build_exactly_the_declared_schema(db_url: str) -> None:
    opened = open_store(db_url)
    try:
        assert migrate(opened.engine) == head_revision()
        assert migrate(opened.engine) == head_revision(), "migrating twice is harmless"
        assert current_revision(opened.engine) == head_revision()
        with opened.engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), metadata)
        assert differences == [], "schema.py and the migrations disagree"
    finally:
        opened.engine.dispose()


async def test_concurrent_writes_share_commits(store: Store) -> None:
    key = FunctionKey("app", "fn")

    def add(i: int) -> Callable[[WriteTx], str]:
        def op(tx: WriteTx) -> str:
            run_id = f"run-{i:04d}"
            tx.add_runs([new_run(run_id, key, 1_000)])
            return run_id

        return op

    batches_before = store._writer.batches
    results = await asyncio.gather(*(store.write(add(i)) for i in range(200)))

    assert results == [f"run-{i:04d}" for i in range(200)], "each caller gets its own result"
    commits = store._writer.batches - batches_before
    assert commits < 50, f"200 writes took {commits} commits"
    count = await store.read(
        lambda r: r.conn.execute(select(func.count()).select_from(runs)).scalar()
    )
    assert count == 200


async def test_a_failing_write_fails_alone(store: Store) -> None:
    key = FunctionKey("app", "fn")

    def good(tx: WriteTx) -> str:
        tx.add_runs([new_run("kept", key, 1_000)])
        return "kept"

    def bad(tx: WriteTx) -> str:
        tx.add_runs([new_run("discarded", key, 1_000)])
        raise NotFound("run 'x' not found")

    outcomes = await asyncio.gather(store.write(good), store.write(bad), return_exceptions=True)

    assert outcomes[0] == "kept"
    assert isinstance(outcomes[1], NotFound)
    ids = await store.read(lambda r: [row.id for row in r.conn.execute(select(runs.c.id))])
    assert ids == ["kept"], "the failing operation's writes were not rolled back alone"


async def test_claims_take_only_due_unleased_runs_of_served_functions(store: Store) -> None:
    served = FunctionKey("app", "served")
    other = FunctionKey("app", "other")
    rows = [
        ("due-1", served, 1_000),
        ("due-2", served, 2_000),
        ("future", served, 9_000),
        ("other-fn", other, 1_000),
    ]

    def seed(tx: WriteTx) -> None:
        tx.add_runs([new_run(r, k, 0) for r, k, _ in rows])
        tx.add_queue_items([QueueEntry(r, k, due) for r, k, due in rows])

    await store.write(seed)

    first = await store.write(lambda tx: claim_executions(tx, "app", ["served"], 10, 5_000, 1_000))
    again = await store.write(lambda tx: claim_executions(tx, "app", ["served"], 10, 5_000, 1_000))

    assert sorted(e.run_id for e in first) == ["due-1", "due-2"]
    assert again == [], "a leased run was claimed twice"
    assert len({e.execution_id for e in first}) == 2
    assert all(e.lease_deadline_ms == 6_000 for e in first)


async def test_a_failed_write_is_followed_by_its_fallback_before_later_writes(
    store: Store,
) -> None:
    key = FunctionKey("app", "fn")
    seen_by_later: list[list[str]] = []

    def failing(tx: WriteTx) -> None:
        tx.add_runs([new_run("lost", key, 1_000)])
        raise RuntimeError("disk full")

    def fallback(tx: WriteTx, error: Exception) -> None:
        tx.add_runs([new_run("fallback", key, 1_000)])

    def later(tx: WriteTx) -> None:
        seen_by_later.append([row.id for row in tx.conn.execute(select(runs.c.id))])

    outcomes = await asyncio.gather(
        store.submit(failing, fallback), store.submit(later), return_exceptions=True
    )

    assert isinstance(outcomes[0], RuntimeError)
    assert seen_by_later == [["fallback"]], "the later write ran before the fallback"
