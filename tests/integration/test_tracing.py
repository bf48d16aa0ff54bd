"""Traces: one per run, the control plane's step spans under the run span, the
worker's spans for user code under the control plane's step spans."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from controlplane.app import ControlPlane
from controlplane.config import Config
from controlplane.telemetry import RunTracer
from tests.support.waiting import wait_until_async
from tether import Context, RunStatus, Tether

app = Tether(app_id="traced")
failures = {"remaining": 1}


@app.function(id="traced-flow", trigger="trace/go")
async def traced_flow(ctx: Context) -> int:
    def flaky() -> int:
        if failures["remaining"]:
            failures["remaining"] -= 1
            raise ConnectionError("first attempt fails")
        return 2

    a = await ctx.step.run("first", lambda: 1)
    b = await ctx.step.run("flaky", flaky)
    return a + b


def _worker_exporter() -> InMemorySpanExporter:
    """The process-wide tracer provider the SDK uses, with an in-memory exporter."""
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
async def traced(
    tmp_path: Path,
) -> AsyncIterator[tuple[InMemorySpanExporter, InMemorySpanExporter]]:
    control_plane_spans = InMemorySpanExporter()
    worker_spans = _worker_exporter()
    plane = ControlPlane(
        Config(db_url=f"sqlite:///{tmp_path / 'tether.db'}", port=0, clock="virtual"),
        tracer=RunTracer.with_exporter(control_plane_spans),
    )
    await plane.start()
    app._set_address(f"127.0.0.1:{plane.port}")
    worker = app.worker()
    running = asyncio.create_task(worker.run())
    try:
        await wait_until_async(lambda: _true(worker.connected.is_set()), what="the worker")
        yield control_plane_spans, worker_spans
    finally:
        worker.stop()
        await running
        await app.close()
        await plane.stop()


async def _true(value: bool) -> bool:
    return value


def _by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


async def test_a_run_is_one_trace_with_linked_spans(
    traced: tuple[InMemorySpanExporter, InMemorySpanExporter],
) -> None:
    control_plane_spans, worker_spans = traced
    [result] = await app.send({"name": "trace/go", "data": {}})
    run_id = result.run_ids[0]

    run = await app.runs.wait(run_id, timeout=10)
    assert run.status is RunStatus.COMPLETED
    await wait_until_async(
        lambda: _true(bool(_by_name(control_plane_spans.get_finished_spans(), "run traced-flow"))),
        what="the run span",
    )

    planes = control_plane_spans.get_finished_spans()
    workers = [s for s in worker_spans.get_finished_spans() if s.name.startswith("step ")]
    [root] = _by_name(planes, "run traced-flow")
    assert root.parent is None
    assert root.context is not None
    trace_id = root.context.trace_id
    assert format(trace_id, "032x") == run.trace_id
    assert root.attributes is not None
    assert root.attributes["tether.run_id"] == run_id

    plane_steps = _by_name(planes, "step first") + _by_name(planes, "step flaky")
    assert len(plane_steps) == 3, "one span per step attempt: first, flaky (failed), flaky"
    for span in plane_steps:
        assert span.context is not None
        assert span.parent is not None
        assert span.context.trace_id == trace_id
        assert span.parent.span_id == root.context.span_id
    assert {s.context.span_id for s in plane_steps if s.context} == {
        s.parent.span_id for s in workers if s.parent
    }, "each worker span's parent is the control plane's span of the same attempt"
    for span in workers:
        assert span.context is not None
        assert span.context.trace_id == trace_id

    failed_attempts = [s for s in plane_steps if s.status.status_code is StatusCode.ERROR]
    [failed] = failed_attempts
    assert failed.name == "step flaky"
    assert failed.attributes is not None
    assert failed.attributes["tether.attempt"] == 0
    [failed_on_worker] = [s for s in workers if s.status.status_code is StatusCode.ERROR]
    assert failed.context is not None
    assert failed_on_worker.parent is not None
    assert failed_on_worker.parent.span_id == failed.context.span_id
    assert any(e.name == "exception" for e in failed_on_worker.events)
