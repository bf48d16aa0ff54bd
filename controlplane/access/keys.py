"""API keys: created (the secret shown once), listed, rotated and revoked
without a restart, and checked on every call from memory.

A key is ``tk_`` and 43 URL-safe characters (256 random bits); only its
SHA-256 is stored. Keys given to the server at start (``--api-key``,
``TETHER_API_KEYS``) are admin keys of the default environment that live only
in that process: they bootstrap the first stored keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
import time

from controlplane.engine.validation import app_id_problem
from controlplane.model.access import DEFAULT_ENVIRONMENT, ApiKey, Caller, Role
from controlplane.model.errors import InvalidArgument, NotFound
from controlplane.model.ids import new_hex_id
from controlplane.store import Store
from controlplane.store.tx import WriteTx

KEY_PREFIX = "tk_"
# How often the keys are read again from the store.
REFRESH_S = 5.0
# How often at most the keys are read again for a key not known in memory.
MISSED_KEY_RELOAD_S = 1.0
MAX_KEY_NAME_LENGTH = 128


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class KeyRing:
    """The keys callers may present, kept in memory and reloaded on change."""

    def __init__(self, store: Store, static_keys: tuple[str, ...] = ()) -> None:
        self._store = store
        self._static = tuple(k.encode() for k in static_keys)
        self._by_hash: dict[str, tuple[str, ApiKey]] = {}
        # When the newest reload began (monotonic), and the one a missed key waits for.
        self._reload_began = float("-inf")
        self._next_reload: asyncio.Future[None] | None = None

    @property
    def required(self) -> bool:
        """Whether calls need a key: some key exists (static or stored)."""
        return bool(self._static or self._by_hash)

    async def reload(self) -> None:
        """Read the keys as stored (a key created or revoked elsewhere)."""
        self._reload_began = time.monotonic()
        rows = await self._store.read(lambda r: r.active_key_hashes())
        self._by_hash = {digest: (environment, key) for digest, environment, key in rows}

    async def keep_fresh(self) -> None:
        """Reload every few seconds, so that a key revoked by another process
        (``tether keys revoke``, another control plane) stops working soon."""
        while True:
            await asyncio.sleep(REFRESH_S)
            with contextlib.suppress(Exception):  # an outage is the store's to report
                await self.reload()

    async def authenticate(self, authorization: str | None) -> Caller | None:
        """Who sends this ``Authorization`` value (``Bearer <key>``), or None
        for no valid key; anyone is admin while no key is configured or stored."""
        if not self.required:
            return Caller(Role.ADMIN)
        token = (authorization or "").removeprefix("Bearer ").strip()
        return await self.caller(token) if token else None

    async def caller(self, token: str) -> Caller | None:
        """Who presents ``token``, or None for no valid key. A token not known
        here is looked for in the store, so that a key created by another
        process works at once: the call waits for a reload begun after it
        arrived, and reloads for unknown keys begin at most once a second
        (callers with forged keys share them, and wait for them)."""
        raw = token.encode()
        if any(hmac.compare_digest(raw, k) for k in self._static):
            return Caller(Role.ADMIN)
        digest = secret_hash(token)
        if digest not in self._by_hash:
            await self._reload_after(time.monotonic())
        found = self._by_hash.get(digest)
        if found is None:
            return None
        environment, key = found
        return Caller(key.role, key.apps, key.id, environment)

    async def _reload_after(self, arrived: float) -> None:
        while self._reload_began < arrived:
            if self._next_reload is None:
                self._next_reload = asyncio.ensure_future(self._paced_reload())
            await asyncio.shield(self._next_reload)

    async def _paced_reload(self) -> None:
        try:
            delay = self._reload_began + MISSED_KEY_RELOAD_S - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.reload()
        finally:
            self._next_reload = None

    async def create(
        self,
        name: str,
        role: Role,
        apps: tuple[str, ...] = (),
        *,
        now_ms: int,
        environment: str = DEFAULT_ENVIRONMENT,
    ) -> tuple[ApiKey, str]:
        """A new key of ``environment`` and its secret (shown to the caller
        once, never again)."""
        _check(name, role, apps)
        key = ApiKey(new_hex_id(8), name, role, tuple(sorted(set(apps))), now_ms)
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        digest = secret_hash(secret)

        def add(tx: WriteTx) -> bool:
            if environment != DEFAULT_ENVIRONMENT and environment not in {
                e.name for e in tx.environments()
            }:
                return False
            tx.add_api_key(environment, key, digest)
            return True

        if not await self._store.write(add):
            raise NotFound(f"no environment {environment!r} (tether env create)")
        self._by_hash[digest] = (environment, key)
        self._store.announce("keys")
        return key, secret

    async def list(
        self, *, include_revoked: bool = False, environment: str = DEFAULT_ENVIRONMENT
    ) -> list[ApiKey]:
        """The keys of ``environment``, oldest first (never their secrets)."""
        return await self._store.read(
            lambda r: r.api_keys(environment, include_revoked=include_revoked)
        )

    async def revoke(
        self, key_id: str, *, now_ms: int, environment: str = DEFAULT_ENVIRONMENT
    ) -> None:
        """Revoke a key of ``environment`` at once (NotFound if it has no
        active key with that id)."""
        revoked = await self._store.write(
            lambda tx: tx.revoke_api_keys(environment, [key_id], now_ms)
        )
        if not revoked:
            raise NotFound(f"no active API key {key_id!r} in environment {environment!r}")
        self._by_hash = {d: v for d, v in self._by_hash.items() if v[1].id != key_id}
        self._store.announce("keys")

    async def rotate(
        self, key_id: str, *, now_ms: int, environment: str = DEFAULT_ENVIRONMENT
    ) -> tuple[ApiKey, str]:
        """A new secret for a key's name, role and apps; the old key is revoked."""
        current = {k.id: k for k in await self.list(environment=environment)}.get(key_id)
        if current is None:
            raise NotFound(f"no active API key {key_id!r} in environment {environment!r}")
        created = await self.create(
            current.name, current.role, current.apps, now_ms=now_ms, environment=environment
        )
        await self.revoke(key_id, now_ms=now_ms, environment=environment)
        return created


def _check(name: str, role: Role, apps: tuple[str, ...]) -> None:
    if not name or len(name) > MAX_KEY_NAME_LENGTH or not name.isprintable():
        raise InvalidArgument(
            f"a key's name is 1 to {MAX_KEY_NAME_LENGTH} printable characters; got {name!r}"
        )
    if apps and role is not Role.WORKER:
        raise InvalidArgument(f"only worker keys are bound to apps; this key's role is {role}")
    for app_id in apps:
        problem = app_id_problem(app_id)
        if problem:
            raise InvalidArgument(problem)
