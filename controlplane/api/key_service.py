"""KeyService: the API keys of the caller's environment (admin only, see auth.py)."""

from __future__ import annotations

from typing import Any

import grpc

from controlplane.access.keys import KeyRing
from controlplane.api.auth import current_caller
from controlplane.api.errors import unary
from controlplane.engine.clock import SystemClock
from controlplane.model.access import ApiKey, Role
from controlplane.model.errors import InvalidArgument
from tether.v1 import key_service_pb2 as ks
from tether.v1 import key_service_pb2_grpc as ks_grpc

Context = grpc.aio.ServicerContext[Any, Any]
# Keys are stamped on the wall clock, whatever clock the engines run on.
_WALL = SystemClock()


def parse_role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        roles = ", ".join(role.value for role in Role)
        raise InvalidArgument(f"unknown role {value[:64]!r}: use one of {roles}") from None


def key_message(key: ApiKey) -> ks.ApiKey:
    return ks.ApiKey(
        id=key.id,
        name=key.name,
        role=key.role.value,
        apps=list(key.apps),
        created_at_ms=key.created_at_ms,
        revoked_at_ms=key.revoked_at_ms or 0,
    )


class KeyServicer(ks_grpc.KeyServiceServicer):
    def __init__(self, keys: KeyRing) -> None:
        self._keys = keys

    @unary
    async def CreateKey(
        self, request: ks.CreateKeyRequest, context: Context
    ) -> ks.CreateKeyResponse:
        key, secret = await self._keys.create(
            request.name,
            parse_role(request.role),
            tuple(request.apps),
            now_ms=_WALL.now_ms(),
            environment=current_caller.get().environment,
        )
        return ks.CreateKeyResponse(key=key_message(key), secret=secret)

    @unary
    async def ListKeys(self, request: ks.ListKeysRequest, context: Context) -> ks.ListKeysResponse:
        found = await self._keys.list(
            include_revoked=request.include_revoked, environment=current_caller.get().environment
        )
        return ks.ListKeysResponse(keys=[key_message(key) for key in found])

    @unary
    async def RotateKey(
        self, request: ks.RotateKeyRequest, context: Context
    ) -> ks.CreateKeyResponse:
        key, secret = await self._keys.rotate(
            request.key_id, now_ms=_WALL.now_ms(), environment=current_caller.get().environment
        )
        return ks.CreateKeyResponse(key=key_message(key), secret=secret)

    @unary
    async def RevokeKey(
        self, request: ks.RevokeKeyRequest, context: Context
    ) -> ks.RevokeKeyResponse:
        await self._keys.revoke(
            request.key_id, now_ms=_WALL.now_ms(), environment=current_caller.get().environment
        )
        return ks.RevokeKeyResponse()
