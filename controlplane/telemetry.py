"""OpenTelemetry traces of runs, as the control plane records them.

A run is one trace. Its root span (the run span) and its step spans get ids the
whole system can compute in advance: the run's trace and root span ids are drawn
when the run is created and stored with it; a step attempt's span id is derived
from (run id, hashed step id, attempt) as docs/protocol.md describes. That lets a
worker parent its own spans under the control plane's step span before the
control plane has written it, and lets spans be emitted after the fact with their
real start and end times, across restarts.
"""

from __future__ import annotations

import contextvars
import hashlib
import logging
import os
from collections.abc import Iterable

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode

from controlplane.engine.models import ErrorData, RunSpanRecord, RunStatus, StepSpanRecord

log = logging.getLogger(__name__)

_preset: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "tether_preset_ids", default=None
)


def step_span_id(run_id: str, step_id: str, attempt: int) -> str:
    """The span id of a step attempt: the first 16 hex digits of
    SHA-1("<run id>:<hashed step id>:<attempt>"). Workers compute the same."""
    digest = hashlib.sha1(f"{run_id}:{step_id}:{attempt}".encode()).hexdigest()[:16]
    return digest if digest.strip("0") else "0000000000000001"


class _PresetIdGenerator(IdGenerator):
    """Random ids, unless a span is being created with ids chosen in advance."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()

    def generate_span_id(self) -> int:
        preset = _preset.get()
        return preset[1] if preset else self._random.generate_span_id()

    def generate_trace_id(self) -> int:
        preset = _preset.get()
        return preset[0] if preset else self._random.generate_trace_id()


class RunTracer:
    """Emits run and step spans; does nothing unless configured with an exporter."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer("tether.controlplane") if provider else None

    @classmethod
    def from_environment(cls, service_name: str = "tether-control-plane") -> RunTracer:
        """Export over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT (or the traces
        variant) is set; otherwise tracing is off."""
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        if not endpoint:
            return cls()
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        log.info("exporting traces over OTLP to %s", endpoint)
        return cls.with_processor(BatchSpanProcessor(OTLPSpanExporter()), service_name)

    @classmethod
    def with_exporter(
        cls, exporter: SpanExporter, service_name: str = "tether-control-plane"
    ) -> RunTracer:
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        return cls.with_processor(SimpleSpanProcessor(exporter), service_name)

    @classmethod
    def with_processor(cls, processor: SpanProcessor, service_name: str) -> RunTracer:
        provider = TracerProvider(
            id_generator=_PresetIdGenerator(),
            resource=Resource.create(
                {"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)}
            ),
        )
        provider.add_span_processor(processor)
        return cls(provider)

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()

    def emit(self, steps: Iterable[StepSpanRecord], runs: Iterable[RunSpanRecord]) -> None:
        if self._tracer is None:
            return
        for step in steps:
            self._emit_step(step)
        for run in runs:
            self._emit_run(run)

    def _emit_step(self, step: StepSpanRecord) -> None:
        assert self._tracer is not None
        parent = trace.set_span_in_context(
            trace.NonRecordingSpan(_span_context(step.trace_id, step.root_span_id))
        )
        span_id = int(step_span_id(step.run_id, step.step_id, step.attempt), 16)
        token = _preset.set((int(step.trace_id, 16), span_id))
        try:
            span = self._tracer.start_span(
                f"step {step.name}",
                context=parent,
                kind=SpanKind.INTERNAL,
                start_time=step.started_at_ms * 1_000_000,
                attributes={
                    "tether.run_id": step.run_id,
                    "tether.app_id": step.app_id,
                    "tether.function_id": step.function_id,
                    "tether.step_id": step.name,
                    "tether.step_hash": step.step_id,
                    "tether.step_kind": step.kind.value,
                    "tether.attempt": step.attempt,
                },
            )
        finally:
            _preset.reset(token)
        _set_error(span, step.error)
        span.end(end_time=step.ended_at_ms * 1_000_000)

    def _emit_run(self, run: RunSpanRecord) -> None:
        assert self._tracer is not None
        token = _preset.set((int(run.trace_id, 16), int(run.root_span_id, 16)))
        try:
            span = self._tracer.start_span(
                f"run {run.function_id}",
                context=trace.set_span_in_context(trace.INVALID_SPAN),
                kind=SpanKind.INTERNAL,
                start_time=run.created_at_ms * 1_000_000,
                attributes={
                    "tether.run_id": run.run_id,
                    "tether.app_id": run.app_id,
                    "tether.function_id": run.function_id,
                    "tether.run_status": run.status.value,
                },
            )
        finally:
            _preset.reset(token)
        if run.status is RunStatus.FAILED:
            _set_error(span, run.error)
        span.end(end_time=run.ended_at_ms * 1_000_000)


def _span_context(trace_id: str, span_id: str) -> trace.SpanContext:
    return trace.SpanContext(
        trace_id=int(trace_id, 16),
        span_id=int(span_id, 16),
        is_remote=True,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    )


def _set_error(span: trace.Span, error: ErrorData | None) -> None:
    if error is None:
        return
    span.set_status(Status(StatusCode.ERROR, f"{error.name}: {error.message}"))
    span.add_event(
        "exception",
        {
            "exception.type": error.name,
            "exception.message": error.message,
            "exception.stacktrace": error.stack,
        },
    )
