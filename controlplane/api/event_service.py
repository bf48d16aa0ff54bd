"""EventService: sending events."""

from __future__ import annotations

import grpc

from controlplane.access.environments import HostedEnvironments
from controlplane.api import convert
from controlplane.api.auth import caller_engine
from controlplane.api.errors import unary
from controlplane.engine.engine import Engine
from tether.v1 import event_service_pb2 as es
from tether.v1 import event_service_pb2_grpc as es_grpc

Context = grpc.aio.ServicerContext[es.SendRequest, es.SendResponse]


class EventServicer(es_grpc.EventServiceServicer):
    def __init__(self, environments: HostedEnvironments) -> None:
        self._environments = environments

    @property
    def _engine(self) -> Engine:
        return caller_engine(self._environments)

    @unary
    async def Send(self, request: es.SendRequest, context: Context) -> es.SendResponse:
        # The sender's span, propagated as W3C trace context in the metadata.
        traceparent = next(
            (str(v) for k, v in context.invocation_metadata() or () if k == "traceparent"), None
        )
        results = await self._engine.send_events(
            [convert.event_input(e) for e in request.events], traceparent
        )
        return es.SendResponse(
            results=[
                es.SendResult(
                    event_id=r.event_id,
                    duplicate=r.duplicate,
                    run_ids=r.run_ids,
                    skipped=[convert.skipped_run(s) for s in r.skipped],
                    resumed_run_ids=r.resumed_run_ids,
                    cancelled_run_ids=r.cancelled_run_ids,
                )
                for r in results
            ]
        )
