"""OpenTelemetry traces of runs, as the control plane records them.

A run is one trace. Its root span (the run span) and its step spans get ids the
whole system can compute in advance: the run's trace and root span ids are drawn
when the run is created and stored with it; a step attempt's span id is derived
from (run id, hashed step id, attempt) as docs/protocol.md describes. That lets a
worker parent its own spans under the control plane's step span before the
control plane has written it, and lets spans be emitted after the fact with their
real start and end times, across restarts.

An event's span is drawn when it is stored (a child of the sender's span when
the sender propagated one) and stored with it; the span of each run the event
starts links to it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.util.types import Attributes

from controlplane.engine.observer import EngineObserver
from controlplane.engine.trace_ids import parse_traceparent, step_span_id
from controlplane.model import (
    ErrorData,
    EventSpanRecord,
    RunSpanRecord,
    RunStatus,
    StepSpanRecord,
    WaitSpanRecord,
)
from controlplane.telemetry._env import DEFAULT_SERVICE_NAME, otlp_endpoint, service_name

__all__ = ["RunTracer", "step_span_id"]

log = logging.getLogger(__name__)

_preset: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "tether_preset_ids", default=None
)
_ROOT = trace.set_span_in_context(trace.INVALID_SPAN)


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


class RunTracer(EngineObserver):
    """Emits event, run, step and wait spans; does nothing unless configured
    with an exporter."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer("tether.controlplane") if provider else None

    @classmethod
    def from_environment(cls, service: str = DEFAULT_SERVICE_NAME) -> RunTracer:
        """Export over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT (or the traces
        variant) is set; otherwise tracing is off."""
        endpoint = otlp_endpoint("traces")
        if not endpoint:
            return cls()
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        log.info("exporting traces over OTLP to %s", endpoint)
        return cls.with_processor(BatchSpanProcessor(OTLPSpanExporter()), service)

    @classmethod
    def with_exporter(
        cls, exporter: SpanExporter, service: str = DEFAULT_SERVICE_NAME
    ) -> RunTracer:
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        return cls.with_processor(SimpleSpanProcessor(exporter), service)

    @classmethod
    def with_processor(cls, processor: SpanProcessor, service: str) -> RunTracer:
        provider = TracerProvider(
            id_generator=_PresetIdGenerator(),
            resource=Resource.create({"service.name": service_name(service)}),
        )
        provider.add_span_processor(processor)
        return cls(provider)

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    async def shutdown(self) -> None:
        if self._provider is not None:
            # Flushes what is batched: network I/O.
            await asyncio.to_thread(self._provider.shutdown)
            self._provider = self._tracer = None

    # -- the observer -----------------------------------------------------------------

    def events_stored(self, events: Sequence[EventSpanRecord]) -> None:
        if self._tracer is None:
            return
        for event in events:
            ids = parse_traceparent(event.traceparent)
            if ids is None:
                continue
            parent = parse_traceparent(event.parent_traceparent)
            span = self._start(
                f"event {event.name}",
                ids,
                _remote_parent(*parent) if parent else _ROOT,
                event.received_at_ms,
                {
                    "tether.event_id": event.event_id,
                    "tether.event_name": event.name,
                    "tether.run_count": event.run_count,
                },
                kind=SpanKind.PRODUCER,
            )
            span.end(end_time=event.received_at_ms * 1_000_000)

    def steps_ended(self, steps: Sequence[StepSpanRecord]) -> None:
        if self._tracer is None:
            return
        for step in steps:
            span = self._start(
                f"step {step.name}",
                (step.trace_id, step_span_id(step.run_id, step.step_id, step.attempt)),
                _remote_parent(step.trace_id, step.root_span_id),
                step.started_at_ms,
                {
                    "tether.run_id": step.run_id,
                    "tether.app_id": step.app_id,
                    "tether.function_id": step.function_id,
                    "tether.step_id": step.name,
                    "tether.step_hash": step.step_id,
                    "tether.step_kind": step.kind.value,
                    "tether.attempt": step.attempt,
                },
            )
            _set_error(span, step.error)
            span.end(end_time=step.ended_at_ms * 1_000_000)

    def waits_ended(self, waits: Sequence[WaitSpanRecord]) -> None:
        if self._tracer is None:
            return
        for wait in waits:
            run = parse_traceparent(wait.run_traceparent)
            if run is None:
                continue
            attributes: dict[str, str | bool] = {
                "tether.run_id": wait.run_id,
                "tether.step_id": wait.name,
                "tether.step_hash": wait.step_id,
                "tether.step_kind": wait.kind.value,
                "tether.timed_out": wait.timed_out,
            }
            if wait.event_id:
                attributes["tether.event_id"] = wait.event_id
            if wait.child_run_id:
                attributes["tether.child_run_id"] = wait.child_run_id
            span = self._start(
                f"{wait.kind.value} {wait.name}",
                (run[0], step_span_id(wait.run_id, wait.step_id, 0)),
                _remote_parent(*run),
                wait.started_at_ms,
                attributes,
            )
            _set_error(span, wait.error)
            span.end(end_time=max(wait.ended_at_ms, wait.started_at_ms) * 1_000_000)

    def runs_finished(self, runs: Sequence[RunSpanRecord]) -> None:
        if self._tracer is None:
            return
        for run in runs:
            attributes = {
                "tether.run_id": run.run_id,
                "tether.app_id": run.app_id,
                "tether.function_id": run.function_id,
                "tether.run_status": run.status.value,
            }
            if run.event_id:
                attributes["tether.event_id"] = run.event_id
                attributes["tether.event_name"] = run.event_name
            event = parse_traceparent(run.event_traceparent)
            links = (
                [Link(_span_context(*event), {"tether.event_id": run.event_id})] if event else []
            )
            span = self._start(
                f"run {run.function_id}",
                (run.trace_id, run.root_span_id),
                _ROOT,
                run.created_at_ms,
                attributes,
                links=links,
            )
            if run.error is not None:
                # A cancelled run says why in its description; only a failure is an error.
                if run.status is RunStatus.FAILED:
                    _set_error(span, run.error)
                else:
                    span.set_attribute("tether.cancel_reason", run.error.message)
            span.end(end_time=run.ended_at_ms * 1_000_000)

    def _start(
        self,
        name: str,
        ids: tuple[str, str],
        parent: Context,
        start_ms: int,
        attributes: Attributes,
        *,
        kind: SpanKind = SpanKind.INTERNAL,
        links: Sequence[Link] = (),
    ) -> trace.Span:
        """A span with the given (trace id, span id), started at ``start_ms``."""
        assert self._tracer is not None
        token = _preset.set((int(ids[0], 16), int(ids[1], 16)))
        try:
            return self._tracer.start_span(
                name,
                context=parent,
                kind=kind,
                start_time=start_ms * 1_000_000,
                attributes=attributes,
                links=links,
            )
        finally:
            _preset.reset(token)


def _span_context(trace_id: str, span_id: str) -> trace.SpanContext:
    return trace.SpanContext(
        trace_id=int(trace_id, 16),
        span_id=int(span_id, 16),
        is_remote=True,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    )


def _remote_parent(trace_id: str, span_id: str) -> Context:
    return trace.set_span_in_context(trace.NonRecordingSpan(_span_context(trace_id, span_id)))


def _set_error(span: trace.Span, error: ErrorData | None) -> None:
    """Error status, ``error.type`` and an ``exception`` event (semantic conventions)."""
    if error is None:
        return
    span.set_status(Status(StatusCode.ERROR, f"{error.name}: {error.message}"))
    span.set_attribute("error.type", error.name)
    span.add_event(
        "exception",
        {
            "exception.type": error.name,
            "exception.message": error.message,
            "exception.stacktrace": error.stack,
        },
    )
