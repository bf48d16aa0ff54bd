"""A real OTLP/gRPC receiver for tests: what an OpenTelemetry Collector or Jaeger
would receive from the control plane and the workers."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as ms
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as ms_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as ts
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as ts_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Metric
from opentelemetry.proto.trace.v1.trace_pb2 import Span


def attributes(values: Iterable[KeyValue]) -> dict[str, Any]:
    """OTLP attributes as a dict of plain values."""
    return {kv.key: _plain(kv.value) for kv in values}


def _plain(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@dataclass(frozen=True)
class ReceivedSpan:
    span: Span
    service: str

    @property
    def name(self) -> str:
        return self.span.name

    @property
    def trace_id(self) -> str:
        return self.span.trace_id.hex()

    @property
    def span_id(self) -> str:
        return self.span.span_id.hex()

    @property
    def parent_span_id(self) -> str:
        return self.span.parent_span_id.hex()

    @property
    def attributes(self) -> dict[str, Any]:
        return attributes(self.span.attributes)

    @property
    def duration_ms(self) -> float:
        return (self.span.end_time_unix_nano - self.span.start_time_unix_nano) / 1e6


@dataclass(frozen=True)
class ReceivedMetric:
    metric: Metric
    service: str

    @property
    def name(self) -> str:
        return self.metric.name


class _Traces(ts_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(
        self, request: ts.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> ts.ExportTraceServiceResponse:
        with self._receiver.lock:
            self._receiver.trace_requests.append(request)
        return ts.ExportTraceServiceResponse()


class _Metrics(ms_grpc.MetricsServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self._receiver = receiver

    def Export(
        self, request: ms.ExportMetricsServiceRequest, context: grpc.ServicerContext
    ) -> ms.ExportMetricsServiceResponse:
        with self._receiver.lock:
            self._receiver.metric_requests.append(request)
        return ms.ExportMetricsServiceResponse()


class OtlpReceiver:
    """Collects every ExportTraceServiceRequest and ExportMetricsServiceRequest."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.trace_requests: list[ts.ExportTraceServiceRequest] = []
        self.metric_requests: list[ms.ExportMetricsServiceRequest] = []
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        ts_grpc.add_TraceServiceServicer_to_server(_Traces(self), self._server)  # type: ignore[no-untyped-call]
        ms_grpc.add_MetricsServiceServicer_to_server(_Metrics(self), self._server)  # type: ignore[no-untyped-call]
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OtlpReceiver:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None)

    def spans(self) -> list[ReceivedSpan]:
        with self.lock:
            requests = list(self.trace_requests)
        return [
            ReceivedSpan(span, attributes(resource.resource.attributes).get("service.name", ""))
            for request in requests
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]

    def metrics(self) -> list[ReceivedMetric]:
        with self.lock:
            requests = list(self.metric_requests)
        return [
            ReceivedMetric(metric, attributes(resource.resource.attributes).get("service.name", ""))
            for request in requests
            for resource in request.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        ]
