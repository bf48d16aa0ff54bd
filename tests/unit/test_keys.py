"""API keys on a real SQLite store: created with their secret shown once, found
by it, listed without it, rotated and revoked at once, and reloaded as stored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controlplane.access.keys import KEY_PREFIX, KeyRing
from controlplane.model.access import Caller, Role
from controlplane.model.errors import InvalidArgument, NotFound
from controlplane.store import Store, migrate, open_store

NOW = 1_800_000_000_000


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path / 'keys.db'}")
    await asyncio.to_thread(migrate, opened.engine)
    await opened.start()
    yield opened
    await opened.close()


async def test_a_created_key_is_found_by_its_secret_and_listed_without_it(store: Store) -> None:
    ring = KeyRing(store)
    assert not ring.required
    key, secret = await ring.create("shop workers", Role.WORKER, ("shop",), now_ms=NOW)

    assert secret.startswith(KEY_PREFIX)
    assert len(secret) > 40
    assert ring.required
    assert await ring.caller(secret) == Caller(Role.WORKER, ("shop",), key.id)
    assert await ring.caller(secret + "x") is None
    [listed] = await ring.list()
    assert listed == key
    assert secret not in repr(listed)

    fresh = KeyRing(store)  # another process, or this one after a restart
    await fresh.reload()
    assert await fresh.caller(secret) == Caller(Role.WORKER, ("shop",), key.id)


async def test_a_revoked_key_is_refused_at_once_and_a_rotated_one_replaced(store: Store) -> None:
    ring = KeyRing(store)
    reader, reader_secret = await ring.create("dashboards", Role.READ, now_ms=NOW)
    sender, sender_secret = await ring.create("web", Role.SEND, now_ms=NOW)

    await ring.revoke(reader.id, now_ms=NOW + 1)
    assert await ring.caller(reader_secret) is None
    with pytest.raises(NotFound, match=f"no active API key '{reader.id}'"):
        await ring.revoke(reader.id, now_ms=NOW + 2)

    rotated, rotated_secret = await ring.rotate(sender.id, now_ms=NOW + 3)
    assert await ring.caller(sender_secret) is None
    assert await ring.caller(rotated_secret) == Caller(Role.SEND, (), rotated.id)
    assert (rotated.name, rotated.role) == ("web", Role.SEND)
    assert [k.id for k in await ring.list()] == [rotated.id]
    assert {k.id for k in await ring.list(include_revoked=True)} == {
        reader.id,
        sender.id,
        rotated.id,
    }


async def test_keys_given_at_start_are_admin(store: Store) -> None:
    ring = KeyRing(store, static_keys=("bootstrap-key",))
    assert ring.required
    assert await ring.caller("bootstrap-key") == Caller(Role.ADMIN)
    assert await ring.caller("another") is None


async def test_bad_key_settings_are_refused_naming_the_problem(store: Store) -> None:
    ring = KeyRing(store)
    with pytest.raises(InvalidArgument, match="only worker keys are bound to apps"):
        await ring.create("x", Role.READ, ("shop",), now_ms=NOW)
    with pytest.raises(InvalidArgument, match="invalid app id 'no spaces'"):
        await ring.create("x", Role.WORKER, ("no spaces",), now_ms=NOW)
    with pytest.raises(InvalidArgument, match="1 to 128 printable characters"):
        await ring.create("", Role.ADMIN, now_ms=NOW)
    assert await ring.list() == []


def test_roles_grant_what_they_say() -> None:
    assert Caller(Role.ADMIN).may(Role.READ)
    assert Caller(Role.WORKER).may(Role.SEND), "steps send events"
    assert not Caller(Role.SEND).may(Role.WORKER)
    assert not Caller(Role.READ).may(Role.SEND)
    assert not Caller(Role.WORKER).may(Role.READ)
    assert Caller(Role.WORKER, ("shop",)).may_serve("shop")
    assert not Caller(Role.WORKER, ("shop",)).may_serve("billing")
    assert Caller(Role.WORKER).may_serve("billing"), "unbound: any app"


async def test_a_key_created_elsewhere_just_after_a_reload_works_at_once(store: Store) -> None:
    """The first call with a new key waits for the next paced reload rather
    than being refused because the keys were read a moment before."""
    serving = KeyRing(store)
    first, first_secret = await KeyRing(store).create("first", Role.SEND, now_ms=NOW)
    assert await serving.caller(first_secret) == Caller(Role.SEND, (), first.id)
    second, second_secret = await KeyRing(store).create("second", Role.READ, now_ms=NOW)

    found = await asyncio.gather(
        serving.caller(second_secret), serving.caller("tk_forged"), serving.caller(second_secret)
    )

    assert list(found) == [Caller(Role.READ, (), second.id), None, Caller(Role.READ, (), second.id)]
