"""Where each benchmark stores its state: a new SQLite file in a temporary
directory, or a new PostgreSQL database created for it and dropped afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, make_url, text

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
POSTGRES_URL_VARIABLES = ("TETHER_BENCH_POSTGRES_URL", "TETHER_TEST_POSTGRES_URL")


def postgres_base_url() -> str:
    """The server to create benchmark databases on: TETHER_BENCH_POSTGRES_URL,
    else TETHER_TEST_POSTGRES_URL, else the local default."""
    for variable in POSTGRES_URL_VARIABLES:
        value = os.environ.get(variable)
        if value:
            return value
    return DEFAULT_POSTGRES_URL


def redact(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


@contextmanager
def fresh_database(backend: str, directory: Path, prefix: str) -> Iterator[str]:
    """A SQLAlchemy URL of an empty database of ``backend`` (``sqlite`` or
    ``postgres``); a PostgreSQL database is dropped afterwards."""
    if backend == "sqlite":
        path = directory / f"{prefix}.db"
        for leftover in (
            path,
            path.with_name(path.name + "-wal"),
            path.with_name(path.name + "-shm"),
        ):
            leftover.unlink(missing_ok=True)
        yield f"sqlite:///{path}"
        return
    if backend != "postgres":
        raise ValueError(f"unknown backend {backend!r}")
    base = postgres_base_url()
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(base).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
