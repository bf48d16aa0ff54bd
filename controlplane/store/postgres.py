"""PostgreSQL (psycopg 3): the store several control planes can share."""

from __future__ import annotations

from sqlalchemy import Engine, Insert, Table, create_engine
from sqlalchemy.dialects.postgresql import insert as pg_insert

from controlplane.store.base import Store


class PostgresStore(Store):
    dialect = "postgresql"
    shared = True

    def _create_engine(self, url: str) -> Engine:
        return create_engine(url, pool_size=8, max_overflow=4, pool_pre_ping=True)

    def insert(self, table: Table) -> Insert:
        return pg_insert(table)
