"""The role table covers every method of the contract: a new RPC cannot be
added without saying who may call it."""

from __future__ import annotations

from google.protobuf import descriptor_pool

from controlplane.api.auth import METHOD_ROLES
from controlplane.api.server import SERVICE_NAMES


def test_every_tether_method_has_a_role_and_no_role_names_a_missing_method() -> None:
    pool = descriptor_pool.Default()
    methods = {
        f"/{name}/{method.name}"
        for name in SERVICE_NAMES
        for method in pool.FindServiceByName(name).methods
    }
    assert set(METHOD_ROLES) == methods
