"""Traces, as a real OTLP receiver gets them from a control-plane process and a
worker process (Python or TypeScript) configured only by the standard OTEL_*
variables: the event's
span (a child of the sender's), the run's root span linked to it, a span per
step attempt with the worker's spans under them, spans for a sleep, a wait and
an invoke with their real durations (on a virtual clock), and errors recorded.
The control plane logs JSON lines carrying the run's ids."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tests.e2e.cli import tether as tether_cli
from tests.integration.apps import observed
from tests.support.admin import Admin
from tests.support.http import Http
from tests.support.otlp import OtlpReceiver, ReceivedSpan, attributes
from tests.support.processes import ControlPlaneProcess, WorkerProcess, typescript_worker
from tests.support.waiting import wait_until
from tether import Tether
from tether._durations import to_milliseconds
from tether.v1 import common_pb2

CONTROL_PLANE = "tether-control-plane"
WORKER = "tether-worker-observed"


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(params=["python", "typescript"])
def processes(
    request: pytest.FixtureRequest,
    receiver: OtlpReceiver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[ControlPlaneProcess, WorkerProcess]]:
    """The control plane and a worker of each SDK, serving the same functions."""
    # Both processes inherit these; a short batch delay makes spans arrive quickly.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    for name in ("OTEL_SERVICE_NAME", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    plane = ControlPlaneProcess(
        f"sqlite:///{tmp_path / 'tether.db'}",
        tmp_path,
        clock="virtual",
        extra_args=["--log-format", "json"],
    ).start()
    if request.param == "python":
        worker = WorkerProcess(
            "tests.integration.apps.observed:app", plane.address, tmp_path, name="worker"
        )
    else:
        worker = typescript_worker(
            "tests/integration/apps/typescript/observed.ts", plane.address, tmp_path, name="worker"
        )
    worker.start()
    try:
        yield plane, worker
    finally:
        worker.kill()
        plane.stop()


def _one(spans: list[ReceivedSpan], name: str, service: str = CONTROL_PLANE) -> ReceivedSpan:
    found = [s for s in spans if s.name == name and s.service == service]
    assert len(found) == 1, f"{len(found)} span(s) {name!r} from {service}: {found}"
    return found[0]


def _events(span: ReceivedSpan) -> dict[str, dict[str, Any]]:
    return {e.name: attributes(e.attributes) for e in span.span.events}


def test_a_run_is_one_trace_linked_to_its_event(
    processes: tuple[ControlPlaneProcess, WorkerProcess], receiver: OtlpReceiver
) -> None:
    plane, worker = processes
    admin = Admin(plane.address)
    sender = Tether(app_id="sender", address=plane.address)
    try:
        wait_until(lambda: admin.connected("traced-flow"), what="the worker")
        # The sender's span: app.send propagates it (W3C traceparent metadata).
        sent_from = trace.SpanContext(
            trace_id=0x0AF7651916CD43DD8448EB211C80319C,
            span_id=0x00F067AA0BA902B7,
            is_remote=False,
            trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
        )
        with trace.use_span(trace.NonRecordingSpan(sent_from)):
            [sent] = sender.send_sync({"name": "observed/go", "data": {}})
        [run_id] = sent.run_ids
        done = wait_until(lambda: admin.finished(run_id), what="the run to finish", timeout=60)
    finally:
        admin.close()
    assert done is not None
    assert done.run.status == common_pb2.RUN_STATUS_COMPLETED, plane.logs() + worker.logs()
    child_run_id = next(s.child_run_id for s in done.steps if s.child_run_id)

    def complete() -> list[ReceivedSpan] | None:
        spans = receiver.spans()
        names = {(s.service, s.name) for s in spans}
        wanted = {
            (CONTROL_PLANE, "run traced-flow"),
            (CONTROL_PLANE, "run traced-child"),
            (WORKER, "step double"),
        }
        worker_steps = [s for s in spans if s.service == WORKER and s.name.startswith("step ")]
        return spans if wanted <= names and len(worker_steps) == 4 else None

    spans = wait_until(complete, what="the spans of both runs")
    assert spans is not None

    # The event: a child of the sender's span, in the sender's trace.
    event = _one(spans, "event observed/go")
    assert event.trace_id == format(sent_from.trace_id, "032x")
    assert event.parent_span_id == format(sent_from.span_id, "016x")
    assert event.span.kind == Span.SPAN_KIND_PRODUCER
    assert event.attributes["tether.event_id"] == sent.event_id
    assert event.attributes["tether.event_name"] == "observed/go"

    # The run: a trace of its own whose root span links to the event's span.
    root = _one(spans, "run traced-flow")
    assert root.trace_id == done.run.trace_id
    assert root.parent_span_id == ""
    assert root.attributes["tether.run_id"] == run_id
    assert root.attributes["tether.event_id"] == sent.event_id
    [link] = root.span.links
    assert (link.trace_id.hex(), link.span_id.hex()) == (event.trace_id, event.span_id)
    in_run = [s for s in spans if s.trace_id == root.trace_id]

    # A span per step attempt under the root; the worker's span under each.
    steps = [s for s in in_run if s.service == CONTROL_PLANE and s.name.startswith("step ")]
    assert sorted(s.name for s in steps) == ["step first", "step flaky", "step flaky"]
    assert {s.parent_span_id for s in steps} == {root.span_id}
    on_worker = [s for s in in_run if s.service == WORKER]
    assert sorted(s.parent_span_id for s in on_worker) == sorted(s.span_id for s in steps)
    for span in on_worker:
        assert span.attributes["tether.run_id"] == run_id

    # The failed attempt: an error status and an exception event, on both sides.
    [failed] = [s for s in steps if s.span.status.code == Status.STATUS_CODE_ERROR]
    assert failed.name == "step flaky"
    assert failed.attributes["tether.attempt"] == 0
    assert failed.attributes["error.type"] == "ConnectionError"
    assert _events(failed)["exception"]["exception.type"] == "ConnectionError"
    assert _events(failed)["exception"]["exception.message"] == "first attempt fails"
    [failed_on_worker] = [s for s in on_worker if s.span.status.code == Status.STATUS_CODE_ERROR]
    assert failed_on_worker.parent_span_id == failed.span_id
    assert "exception" in _events(failed_on_worker)

    # The sleep and the wait last as long as they did on the (virtual) clock;
    # the wait timed out, which is not an error.
    nap = _one(spans, "sleep nap")
    assert (nap.trace_id, nap.parent_span_id) == (root.trace_id, root.span_id)
    assert nap.duration_ms == to_milliseconds(observed.SLEEP)
    assert nap.attributes["tether.timed_out"] is False
    approval = _one(spans, "wait_for_event approval")
    assert approval.parent_span_id == root.span_id
    assert approval.duration_ms == to_milliseconds(observed.WAIT_TIMEOUT)
    assert approval.attributes["tether.timed_out"] is True
    assert approval.span.status.code != Status.STATUS_CODE_ERROR

    # The invoke: its span, and the child run's own trace linked to it.
    invoke = _one(spans, "invoke child")
    assert invoke.parent_span_id == root.span_id
    assert invoke.attributes["tether.child_run_id"] == child_run_id
    assert invoke.span.start_time_unix_nano < invoke.span.end_time_unix_nano
    child = _one(spans, "run traced-child")
    assert child.trace_id != root.trace_id
    [child_link] = child.span.links
    assert (child_link.trace_id.hex(), child_link.span_id.hex()) == (root.trace_id, invoke.span_id)
    double = _one(spans, "step double", WORKER)
    assert double.trace_id == child.trace_id

    # The control plane's JSON log line about the run carries its ids.
    def logged() -> dict[str, Any] | None:
        for line in plane.log_path.read_text().splitlines():
            entry = json.loads(line)
            if entry["message"] == f"run {run_id} completed":
                return dict(entry)
        return None

    entry = wait_until(logged, what="the run's log line")
    assert entry is not None
    assert entry["run_id"] == run_id
    assert entry["function_id"] == "traced-flow"
    assert entry["app_id"] == "observed"
    assert entry["trace_id"] == done.run.trace_id
    assert entry["level"] == "info"
    assert entry["ts"].endswith("Z")


def test_an_event_sent_over_http_is_a_child_of_the_callers_span(
    receiver: OtlpReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    plane = ControlPlaneProcess(f"sqlite:///{tmp_path / 'tether.db'}", tmp_path, http=True)
    plane.start()
    try:
        caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        reply = Http(plane.http_url).request(
            "POST", "/api/events", {"name": "observed/http", "data": {}}, {"traceparent": caller}
        )
        assert reply.status == 200, reply.body
        [result] = reply.json()["results"]

        def event_span() -> list[ReceivedSpan]:
            return [s for s in receiver.spans() if s.name == "event observed/http"]

        [event] = wait_until(event_span, what="the event's span")
    finally:
        plane.stop()
    assert event.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert event.parent_span_id == "00f067aa0ba902b7"
    assert event.attributes["tether.event_id"] == result["event_id"]


def test_deleting_an_environment_leaves_the_others_traced(
    receiver: OtlpReceiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tracer is shared by every environment's engine: closing one must
    not shut it down for the rest."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    db_url = f"sqlite:///{tmp_path / 'tether.db'}"
    tether_cli("env", "create", "staging", "--db", db_url).ok()
    plane = ControlPlaneProcess(db_url, tmp_path, http=True)
    plane.start()
    try:
        http = Http(plane.http_url)
        wait_until(
            lambda: "serving environment 'staging'" in plane.logs(), what="staging to be served"
        )
        tether_cli("env", "delete", "staging", "--yes", "--db", db_url).ok()
        wait_until(lambda: "no longer serving it" in plane.logs(), what="staging to be closed")
        reply = http.request("POST", "/api/events", {"name": "observed/after", "data": {}})
        assert reply.status == 200, reply.body

        def event_span() -> list[ReceivedSpan]:
            return [s for s in receiver.spans() if s.name == "event observed/after"]

        wait_until(event_span, what="the default environment's event span")
    finally:
        plane.stop()
