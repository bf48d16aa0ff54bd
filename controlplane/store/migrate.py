"""Applies the Alembic migrations in ``migrations/`` to a store."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

MIGRATIONS = Path(__file__).parent / "migrations"
# An arbitrary constant naming the advisory lock held while migrating.
_MIGRATION_LOCK = 0x7E7E_0001


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def migrate(engine: Engine, schema: str | None = None) -> str:
    """Upgrade the schema to the newest revision; returns that revision. With
    ``schema`` (PostgreSQL: the connections' search path), it is created first."""
    config = _config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Control planes starting together on one database migrate one at a time.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            if schema is not None:
                conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    return head_revision()


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
