"""``tether migrate``, and the CLI against a control plane on each database
(SQLite, and PostgreSQL when TETHER_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import create_engine, text

from controlplane.store.migrate import head_revision
from tests.e2e.cli import tether
from tests.e2e.conftest import start_app, stop_app


def stored_revision(db_url: str) -> str | None:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            value = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            return None if value is None else str(value)
    finally:
        engine.dispose()


def test_migrate_prints_the_revision_and_can_run_twice(db_url: str) -> None:
    first = tether("migrate", "--db", db_url).ok()

    match = re.fullmatch(r"schema is at revision (\S+)\n", first.stdout)
    assert match is not None, first
    assert match.group(1) == head_revision()
    assert stored_revision(db_url) == head_revision()

    again = tether("migrate", "--db", db_url).ok()
    assert again.stdout == first.stdout
    assert stored_revision(db_url) == head_revision()


def test_migrate_creates_a_fresh_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "state" / "fresh.db"
    assert not path.exists()

    result = tether("migrate", "--db", f"sqlite:///{path}").ok()

    assert result.stdout == f"schema is at revision {head_revision()}\n"
    assert path.is_file()


def test_migrate_explains_an_unsupported_url() -> None:
    result = tether("migrate", "--db", "mysql://root@localhost/tether")

    assert result.code == 1, result
    assert result.stdout == ""
    assert len(result.error_lines) == 1, result
    assert result.error_lines[0].startswith("Error: unsupported database 'mysql'"), result


def test_send_watch_and_show_against_each_database(db_url: str, tmp_path: Path) -> None:
    tether("migrate", "--db", db_url).ok()
    control_plane, worker, admin, _ = start_app(db_url, tmp_path)
    try:
        address = control_plane.address
        sent = tether(
            "send",
            "e2e/flaky.requested",
            "--data",
            '{"failures": 1, "delay": 0.1}',
            "--json",
            address=address,
        ).json()
        (run_id,) = sent["run_ids"]

        watched = tether("runs", "watch", run_id, "--timeout", "30", address=address).ok()
        assert f"run {run_id} completed" in watched.stdout
        assert re.search(r"✓ call-flaky-service  \d+ ms  2 attempts", watched.stdout), watched

        detail = tether("runs", "show", run_id, "--json", address=address).json()
        assert detail["status"] == "completed"
        assert detail["output"] == {"result": "ok after 2 attempts"}
        assert detail["events"][0]["id"] == sent["event_id"]

        listed = tether("runs", "list", "--status", "completed", "--json", address=address).json()
        assert [r["id"] for r in listed["runs"]] == [run_id]
        assert listed["next_page_token"] is None
    finally:
        stop_app(control_plane, worker, admin)
