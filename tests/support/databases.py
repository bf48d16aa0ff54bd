"""Fresh databases for tests: a SQLite file, or a new PostgreSQL database."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, make_url, text

POSTGRES_URL_VARIABLE = "TETHER_TEST_POSTGRES_URL"


def postgres_url() -> str | None:
    return os.environ.get(POSTGRES_URL_VARIABLE) or None


@contextmanager
def fresh_database(kind: str, tmp_path: Path) -> Iterator[str]:
    """A SQLAlchemy URL of an empty database of ``kind`` ("sqlite" or "postgres"),
    dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'tether.db'}"
        return
    base = postgres_url()
    if base is None:
        raise RuntimeError(f"{POSTGRES_URL_VARIABLE} is not set")
    name = f"tether_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
