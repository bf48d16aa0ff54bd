"""The gRPC server: Tether's services, health checking and reflection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer as AsyncHealthServicer
from grpc_reflection.v1alpha import reflection

from controlplane.access.environments import HostedEnvironments
from controlplane.access.keys import KeyRing
from controlplane.api.auth import Authorizer
from controlplane.api.clock_service import ClockServicer
from controlplane.api.decoding import DecodingInterceptor
from controlplane.api.event_service import EventServicer
from controlplane.api.key_service import KeyServicer
from controlplane.api.run_service import RunServicer
from controlplane.api.worker_service import WorkerServicer
from tether.v1 import (
    clock_service_pb2,
    clock_service_pb2_grpc,
    event_service_pb2,
    event_service_pb2_grpc,
    key_service_pb2,
    key_service_pb2_grpc,
    run_service_pb2,
    run_service_pb2_grpc,
    worker_service_pb2,
    worker_service_pb2_grpc,
)

MAX_MESSAGE_BYTES = 128 * 1024 * 1024

SERVICE_NAMES = (
    event_service_pb2.DESCRIPTOR.services_by_name["EventService"].full_name,
    worker_service_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name,
    run_service_pb2.DESCRIPTOR.services_by_name["RunService"].full_name,
    clock_service_pb2.DESCRIPTOR.services_by_name["ClockService"].full_name,
    key_service_pb2.DESCRIPTOR.services_by_name["KeyService"].full_name,
)

SERVER_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    # Notice dead connections that TCP alone would keep open for hours.
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_pings_without_data", 0),
]


@dataclass
class GrpcServer:
    server: grpc.aio.Server
    workers: WorkerServicer
    health: Any
    port: int

    async def set_health(
        self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType
    ) -> None:
        """Report ``status`` for the server and each of Tether's services."""
        for name in ("", *SERVICE_NAMES):
            await self.health.set(name, status)


async def build_server(
    environments: HostedEnvironments,
    address: str,
    *,
    keys: KeyRing,
    tls: tuple[bytes, bytes] | None = None,
    client_ca: bytes | None = None,
) -> GrpcServer:
    """A started-ready (not yet started) server bound to ``address``."""
    # Outermost first: every call's request is decoded, and its unexpected
    # failures answered, by DecodingInterceptor; a refused API key or role
    # answers before any decoding.
    interceptors: list[Any] = [DecodingInterceptor(), Authorizer(keys, environments)]
    server = grpc.aio.server(options=SERVER_OPTIONS, interceptors=interceptors)
    # Each servicer serves the environment of the caller's key.
    workers = WorkerServicer(environments)
    event_service_pb2_grpc.add_EventServiceServicer_to_server(EventServicer(environments), server)
    worker_service_pb2_grpc.add_WorkerServiceServicer_to_server(workers, server)
    run_service_pb2_grpc.add_RunServiceServicer_to_server(RunServicer(environments), server)
    clock_service_pb2_grpc.add_ClockServiceServicer_to_server(ClockServicer(environments), server)
    key_service_pb2_grpc.add_KeyServiceServicer_to_server(KeyServicer(keys), server)
    health_servicer = AsyncHealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    if tls is not None:
        # tls: (key, certificate chain), PEM. With client_ca (PEM), mutual TLS: a
        # client without a certificate signed by it fails the handshake.
        key, cert = tls
        credentials = grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
        )
        port = server.add_secure_port(address, credentials)
    elif client_ca is not None:
        raise ValueError("a client CA needs TLS: give the server's certificate and key too")
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not listen on {address}: the address is in use or invalid")
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return GrpcServer(server, workers, health_servicer, port)
