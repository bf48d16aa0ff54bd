"""The worker's spans: one per step attempt, a child of the control plane's step
span (whose id both sides derive from the run, step and attempt); and the trace
context that ``app.send`` propagates, so that an event's span is a child of the
sender's."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from opentelemetry import propagate, trace
from opentelemetry.trace import Span, Status, StatusCode

from tether._step_ids import step_span_id

log = logging.getLogger("tether")
_tracer = trace.get_tracer("tether.sdk")


def parse_traceparent(value: str) -> tuple[int, int] | None:
    """(trace id, parent span id) from a W3C traceparent, or None if malformed."""
    parts = value.split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        trace_id, span_id = int(parts[1], 16), int(parts[2], 16)
    except ValueError:
        return None
    return (trace_id, span_id) if trace_id and span_id else None


def step_span(
    trace_ids: tuple[int, int] | None,
    run_id: str,
    function_id: str,
    name: str,
    hashed: str,
    attempt: int,
) -> contextlib.AbstractContextManager[Span]:
    """A span around the user code of one step attempt (nothing at all when no
    tracer provider is configured: spans would be dropped anyway)."""
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return contextlib.nullcontext(trace.INVALID_SPAN)
    return _step_span(trace_ids, run_id, function_id, name, hashed, attempt)


@contextlib.contextmanager
def _step_span(
    trace_ids: tuple[int, int] | None,
    run_id: str,
    function_id: str,
    name: str,
    hashed: str,
    attempt: int,
) -> Iterator[Span]:
    if trace_ids is None:
        with _tracer.start_as_current_span(f"step {name}") as span:
            yield span
        return
    parent = trace.SpanContext(
        trace_id=trace_ids[0],
        span_id=step_span_id(run_id, hashed, attempt),
        is_remote=True,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
    )
    context = trace.set_span_in_context(trace.NonRecordingSpan(parent))
    with _tracer.start_as_current_span(
        f"step {name}",
        context=context,
        record_exception=False,
        set_status_on_exception=False,
        attributes={
            "tether.run_id": run_id,
            "tether.function_id": function_id,
            "tether.step_id": name,
            "tether.attempt": attempt,
        },
    ) as span:
        yield span


def trace_metadata() -> tuple[tuple[str, str], ...]:
    """gRPC metadata carrying the current span as W3C trace context
    (``traceparent``); empty when no span is current."""
    if not trace.get_current_span().get_span_context().is_valid:
        return ()
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return tuple(carrier.items())


def record_error(span: Span, error: BaseException) -> None:
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))


def configure_from_environment(service_name: str) -> None:
    """Export the worker's spans over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set
    and the application has not configured a tracer provider itself."""
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if not endpoint or not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)}
        )
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    log.info("exporting worker spans over OTLP to %s", endpoint)
