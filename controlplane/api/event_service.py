"""EventService: sending events."""

from __future__ import annotations

import grpc

from controlplane.api import convert
from controlplane.api.auth import InCallersEnvironment
from controlplane.api.errors import unary
from tether.v1 import event_service_pb2 as es
from tether.v1 import event_service_pb2_grpc as es_grpc

Context = grpc.aio.ServicerContext[es.SendRequest, es.SendResponse]


class EventServicer(InCallersEnvironment, es_grpc.EventServiceServicer):
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
