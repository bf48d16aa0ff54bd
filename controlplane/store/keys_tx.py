"""API keys (added, listed, revoked, and found by the hash of their secret)
and the environments they belong to."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import Row, delete, select, update

from controlplane.model.access import ApiKey, Environment, Role
from controlplane.store._txbase import TxBase
from controlplane.store.schema import api_keys, environments


def _key(row: Row[tuple[object, ...]]) -> ApiKey:
    m = row._mapping
    return ApiKey(
        id=m["id"],
        name=m["name"],
        role=Role(m["role"]),
        apps=tuple(json.loads(m["apps"])),
        created_at_ms=m["created_at_ms"],
        revoked_at_ms=m["revoked_at_ms"],
    )


class KeyReads(TxBase):
    def api_keys(self, environment: str, *, include_revoked: bool = False) -> list[ApiKey]:
        """The environment's keys, oldest first."""
        query = select(api_keys).where(api_keys.c.environment == environment)
        if not include_revoked:
            query = query.where(api_keys.c.revoked_at_ms.is_(None))
        rows = self.conn.execute(query.order_by(api_keys.c.created_at_ms, api_keys.c.id))
        return [_key(r) for r in rows]

    def active_key_hashes(self) -> list[tuple[str, str, ApiKey]]:
        """(secret hash, environment, key) of every key not revoked."""
        rows = self.conn.execute(select(api_keys).where(api_keys.c.revoked_at_ms.is_(None)))
        return [(r.secret_sha256, r.environment, _key(r)) for r in rows]

    def environments(self) -> list[Environment]:
        """The environments besides the default one, by name."""
        rows = self.conn.execute(select(environments).order_by(environments.c.name))
        return [Environment(r.name, r.created_at_ms, r.retention_ms) for r in rows]


class KeyWrites(KeyReads):
    def add_api_key(self, environment: str, key: ApiKey, secret_sha256: str) -> None:
        self.conn.execute(
            api_keys.insert().values(
                id=key.id,
                environment=environment,
                name=key.name,
                role=key.role.value,
                apps=json.dumps(list(key.apps)),
                secret_sha256=secret_sha256,
                created_at_ms=key.created_at_ms,
                revoked_at_ms=None,
            )
        )

    def revoke_api_keys(self, environment: str, key_ids: Sequence[str], now_ms: int) -> int:
        """Revoke these keys of the environment; how many were active."""
        if not key_ids:
            return 0
        result = self.conn.execute(
            update(api_keys)
            .where(
                api_keys.c.environment == environment,
                api_keys.c.id.in_(list(key_ids)),
                api_keys.c.revoked_at_ms.is_(None),
            )
            .values(revoked_at_ms=now_ms)
        )
        return int(result.rowcount)

    def add_environment(self, environment: Environment) -> bool:
        """Record an environment; False if one of that name exists."""
        if self.conn.execute(
            select(environments.c.name).where(environments.c.name == environment.name)
        ).first():
            return False
        self.conn.execute(
            environments.insert().values(
                name=environment.name,
                created_at_ms=environment.created_at_ms,
                retention_ms=environment.retention_ms,
            )
        )
        return True

    def remove_environment(self, name: str, now_ms: int) -> bool:
        """Forget an environment and revoke its keys; False if there was none."""
        removed = self.conn.execute(delete(environments).where(environments.c.name == name))
        self.conn.execute(
            update(api_keys)
            .where(api_keys.c.environment == name, api_keys.c.revoked_at_ms.is_(None))
            .values(revoked_at_ms=now_ms)
        )
        return bool(removed.rowcount)


def holds_active_keys(url: str) -> bool:
    """Whether the store at ``url`` holds an active API key, read without
    creating or migrating anything (False for a store not made yet)."""
    from pathlib import Path

    from sqlalchemy import create_engine, inspect, make_url

    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").exists():
        return False
    engine = create_engine(parsed)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table(api_keys.name):
                return False
            query = select(api_keys.c.id).where(api_keys.c.revoked_at_ms.is_(None)).limit(1)
            return conn.execute(query).first() is not None
    finally:
        engine.dispose()
