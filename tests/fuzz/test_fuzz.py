"""A bounded property-based fuzz of a real control plane (Hypothesis): garbage
and hostile but valid messages to every method of every Tether service, the
worker stream included, and to every route of the JSON API.

- Every unary and server-streaming method gets random bytes, and messages built
  from its request's descriptor: text of every script, with NUL, huge; integers
  at and past their edges; unknown enum numbers; hostile JSON (deep, huge, lone
  surrogates, NaN) in the bytes fields, which all carry JSON; repeated fields
  short or over their limits. Fields with a known shape (event names, ids, cron
  schedules, CEL) mostly get values of that shape, so that cases get past the
  first checks.
- WorkerService.Connect gets random frames, generated frames (mostly a Hello
  first), generated frames after a valid Hello, and generated outcomes for an
  execution it really holds.
- Each /api route of the OpenAPI document gets random path parameters, query
  strings, headers and bodies (shaped like its schema, or not).

The answer is a status from the control plane, never UNKNOWN or INTERNAL and
never a Python class or traceback in its message (or a status gRPC made up
because the server's did not fit), or an HTTP status below 500 with a problem
body on 4xx; every call ends within a deadline and the process stays up. After
each test health answers, a sent event runs to completion, the run stored before
fuzzing is unchanged, and what the test stored reads back over both APIs.

Hypothesis is derandomized (the same cases on every run) and keeps no database:
a failure is reproduced by running the test again, and its falsifying example is
printed. Cases it found are kept at the end as explicit tests. One control plane
serves the module (per database); the fuzzer never sends the ids the checks rely
on.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import queue
import tempfile
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any, TypeVar, cast

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, assume, currently_in_test_context, event, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from controlplane.api.server import SERVICE_NAMES
from tests.conftest import database_params
from tests.support.admin import FINISHED, Admin
from tests.support.channels import aio_channel
from tests.support.channels import channel as channel_to
from tests.support.databases import fresh_database
from tests.support.processes import ControlPlaneProcess
from tests.support.raw_worker import RawWorker, definition, hello, outcomes, payload
from tether._step_ids import hash_step_id
from tether.v1 import (
    clock_service_pb2,
    clock_service_pb2_grpc,
    common_pb2,
    event_service_pb2,
    event_service_pb2_grpc,
    run_service_pb2_grpc,
)
from tether.v1 import run_service_pb2 as rs
from tether.v1 import worker_service_pb2 as ws

T = TypeVar("T")

# Every call and every stream must end within this; a hang fails the test.
DEADLINE = 10.0
CONNECT = "/tether.v1.WorkerService/Connect"

# Cases per test, on each database: BYTES_CASES and MESSAGE_CASES for each method,
# STREAM_CASES for each of the three stream tests, DISPATCH_CASES of outcomes for
# a dispatched execution, HTTP_CASES over every route: about 2,200 in all (some
# methods have fewer distinct requests: GetTime has one).
BYTES_CASES = 25
MESSAGE_CASES = 80
STREAM_CASES = 100
HTTP_CASES = 400
DISPATCH_CASES = 60

# What the fuzzer may get back. INTERNAL and UNKNOWN are bugs; DEADLINE_EXCEEDED
# is a hang.
ALLOWED = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAVAILABLE,
    }
)
LEAKS = ("<class", "Traceback", "Error:")
# gRPC's own words when a status never reached the client as the server sent it
# (its message too large for the trailer, say).
TRANSPORT = ("Stream removed", "exceeds hard limit", "RST_STREAM", "Socket closed")

# The run stored before fuzzing, and the function the checks after each test
# run. The fuzzer never sends these ids (see _untouched).
RECORDED_APP = "fuzz-recorded"
RECORDED_FN = "fuzz-recorded-fn"
RECORDED_EVENT = "fuzz-recorded/go"
AFTER_APP = "fuzz-after"
AFTER_FN = "fuzz-after-fn"
AFTER_EVENT = "fuzz-after/go"
DISPATCH_APP = "fuzz-dispatch"
DISPATCH_FN = "fuzz-dispatch-fn"
DISPATCH_EVENT = "fuzz-dispatch/go"
# Every id the tests themselves use starts so.
MARKER = b"fuzz-"
# The control plane's admin key, sent with every call.
FUZZ_KEY = "fuzz-admin-key"

# Hypothesis caches what it learns from the source (its constants) in a directory
# of its own: keep it out of the repository.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "tether-test-hypothesis")
FUZZ_SETTINGS = settings(
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    # One control plane (a module fixture) and one check (after the test, not
    # after each example) serve every example of a test, on purpose.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


# -- the control plane and what it stores ----------------------------------------------


class Plane:
    """The module's control plane and what the checks compare against."""

    def __init__(
        self,
        process: ControlPlaneProcess,
        admin: Admin,
        recorded: rs.GetRunResponse,
        openapi: dict[str, Any],
    ) -> None:
        self.process = process
        self.admin = admin
        self.run_id = recorded.run.id
        self.recorded = recorded
        self.openapi = openapi
        self.checks = 0
        self.http: HttpStrategies | None = None

    @property
    def address(self) -> str:
        return self.process.address

    def __repr__(self) -> str:  # for Hypothesis' falsifying examples
        return f"Plane({self.address})"

    def alive(self) -> None:
        process = self.process.process
        assert process is not None
        assert process.poll() is None, f"the control plane exited:\n{self.log_tail()}"

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.process.logs().splitlines()[-lines:])


@pytest.fixture(scope="module", params=database_params())
def plane(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Plane]:
    """A control plane with HTTP, holding one completed run (a step and an output)."""
    workdir = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    with fresh_database(request.param, workdir) as url:
        # With a key, as a shared control plane runs: keys the fuzz creates
        # (KeyService, POST /api/keys) then change nothing for the rest.
        process = ControlPlaneProcess(
            url,
            workdir,
            heartbeat_ms=200,
            lease_timeout_ms=1000,
            http=True,
            extra_args=["--api-key", FUZZ_KEY],
        ).start()
        admin = Admin(process.address, FUZZ_KEY)
        try:
            run_id = asyncio.run(_record_a_run(process.address))
            recorded = admin.get(run_id)
            assert recorded.run.status == common_pb2.RUN_STATUS_COMPLETED
            assert [s.name for s in recorded.steps] == ["double"]
            status, openapi = _http(process.http_port, "GET", "/api/openapi.json")
            assert status == 200
            assert isinstance(openapi, dict)
            yield Plane(process, admin, recorded, openapi)
        finally:
            admin.close()
            process.stop()


async def _record_a_run(address: str) -> str:
    """Through a raw worker: an event starts a run, which completes a step and returns."""
    worker = RawWorker(address, FUZZ_KEY)
    try:
        await worker.send(hello([definition(RECORDED_FN, RECORDED_EVENT)], app_id=RECORDED_APP))
        assert (await worker.receive_kind("welcome")).welcome.session_id
        async with aio_channel(address, FUZZ_KEY) as channel:
            event = common_pb2.Event(name=RECORDED_EVENT, data=payload({"n": 1}))
            sent = await event_service_pb2_grpc.EventServiceStub(channel).Send(
                event_service_pb2.SendRequest(events=[event]), timeout=DEADLINE
            )
        [run_id] = sent.results[0].run_ids
        [execute] = (await worker.receive_kind("dispatch")).dispatch.executions
        step = ws.StepCompleted(
            step_id=hash_step_id("double"),
            name="double",
            kind=common_pb2.STEP_KIND_RUN,
            output=payload(2),
        )
        done = ws.RunCompleted(output=payload({"doubled": 2}))
        execution_id = execute.execution_id
        await worker.send(
            outcomes(
                ws.Outcome(seq=1, execution_id=execution_id, run_id=run_id, step_completed=step),
                ws.Outcome(seq=2, execution_id=execution_id, run_id=run_id, run_completed=done),
            )
        )
        assert (await worker.receive_kind("acks")).acks.through_seq == 2
        return run_id
    finally:
        await worker.close()


@pytest.fixture(autouse=True)
def intact(plane: Plane, request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test: the process lives, health answers SERVING (gRPC and HTTP),
    a sent event runs to completion, the recorded run is unchanged, and whatever
    the test stored reads back over both APIs."""
    clock = clock_service_pb2_grpc.ClockServiceStub(plane.admin.channel)
    started_ms = clock.GetTime(clock_service_pb2.GetTimeRequest(), timeout=DEADLINE).now_ms
    yield
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        print(f"--- control plane log (tail) ---\n{plane.log_tail(200)}")
    plane.alive()
    plane.checks += 1
    asyncio.run(_still_serving(plane.address, plane.checks))
    assert _http(plane.process.http_port, "GET", "/healthz") == (200, {"status": "serving"})
    assert plane.admin.get(plane.run_id) == plane.recorded
    runs = plane.admin.runs.ListRuns(
        rs.ListRunsRequest(app_id=RECORDED_APP, function_id=RECORDED_FN), timeout=DEADLINE
    )
    assert [r.id for r in runs.runs] == [plane.run_id]
    functions = plane.admin.runs.ListFunctions(
        rs.ListFunctionsRequest(app_id=RECORDED_APP), timeout=DEADLINE
    )
    assert [(f.definition.id, f.paused) for f in functions.functions] == [
        (RECORDED_FN, rs.PAUSE_MODE_UNSPECIFIED)
    ]
    _reads_back(plane, started_ms)


def _reads_back(plane: Plane, since_ms: int) -> None:
    """The events and runs stored since ``since_ms`` (this test's), every function,
    and the recorded run read back over gRPC and HTTP."""
    listing = plane.admin.runs
    listing.ListEvents(rs.ListEventsRequest(received_after_ms=since_ms), timeout=DEADLINE)
    listing.ListRuns(rs.ListRunsRequest(created_after_ms=since_ms), timeout=DEADLINE)
    listing.ListFunctions(rs.ListFunctionsRequest(), timeout=DEADLINE)
    port = plane.process.http_port
    for path in ("/api/functions", f"/api/runs/{plane.run_id}"):
        status, reply = _http(port, "GET", path)
        assert status == 200, f"GET {path}: {status} {reply!r}"
    list(_pages(port, f"/api/events?received_after_ms={since_ms}"))
    for page in _pages(port, f"/api/runs?created_after_ms={since_ms}"):
        for run in page["runs"]:
            status, reply = _http(port, "GET", f"/api/runs/{run['id']}")
            assert status == 200, f"GET /api/runs/{run['id']}: {status} {reply!r}"


def _pages(port: int, path: str, most: int = 20) -> Iterator[dict[str, Any]]:
    """Every page of an HTTP listing (up to ``most`` pages of 1,000)."""
    token = ""
    for _ in range(most):
        target = f"{path}&limit=1000" + (
            f"&page_token={urllib.parse.quote(token)}" if token else ""
        )
        status, page = _http(port, "GET", target)
        assert status == 200, f"GET {target}: {status} {page!r}"
        assert isinstance(page, dict)
        yield page
        token = page["next_page_token"]
        if not token:
            return
    raise AssertionError(f"GET {path}: more than {most} pages")


async def _still_serving(address: str, check: int) -> None:
    async with aio_channel(address, FUZZ_KEY) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=DEADLINE
        )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        worker = RawWorker(address, FUZZ_KEY)
        try:
            await worker.send(hello([definition(AFTER_FN, AFTER_EVENT)], app_id=AFTER_APP))
            assert (await worker.receive_kind("welcome")).welcome.session_id
            event = common_pb2.Event(name=AFTER_EVENT, data=payload({"check": check}))
            sent = await event_service_pb2_grpc.EventServiceStub(channel).Send(
                event_service_pb2.SendRequest(events=[event]), timeout=DEADLINE
            )
            # A fuzzed function with a wildcard trigger may start a run too.
            started = set(sent.results[0].run_ids)
            [execute] = (await worker.receive_kind("dispatch")).dispatch.executions
            assert execute.run_id in started
            assert json.loads(execute.events[0].data) == {"check": check}
            done = ws.RunCompleted(output=payload({"check": check}))
            await worker.send(
                outcomes(
                    ws.Outcome(
                        seq=1,
                        execution_id=execute.execution_id,
                        run_id=execute.run_id,
                        run_completed=done,
                    )
                )
            )
            assert (await worker.receive_kind("acks")).acks.through_seq == 1
        finally:
            await worker.close()
        run = await _get_run(channel, execute.run_id)
        assert run.run.status == common_pb2.RUN_STATUS_COMPLETED
        assert json.loads(run.run.output) == {"check": check}


async def _get_run(channel: grpc.aio.Channel, run_id: str) -> rs.GetRunResponse:
    stub = run_service_pb2_grpc.RunServiceStub(channel)
    reply: rs.GetRunResponse = await stub.GetRun(rs.GetRunRequest(run_id=run_id), timeout=DEADLINE)
    return reply


def _untouched(plane: Plane, *sent: bytes) -> None:
    """Skip a case that names the recorded run or the checks' ids (it would not,
    by chance; this makes sure)."""
    run_id = plane.run_id.encode()
    assume(not any(MARKER in part or run_id in part for part in sent))


def _note(what: str) -> None:
    """What a case got, for --hypothesis-show-statistics (in a Hypothesis test)."""
    if currently_in_test_context():
        event(what)


def _leaks(message: str, sent: bytes) -> list[str]:
    """Python-exception patterns in a message meant for people (unless the
    request itself carried them, to be echoed back)."""
    return [p for p in LEAKS if p in message and p.encode() not in sent]


# -- strategies: values ---------------------------------------------------------------


def _weighted(*options: tuple[int, st.SearchStrategy[T]]) -> st.SearchStrategy[T]:
    """One of ``options``, each as often as its weight says (one_of would draw
    each distinct strategy equally often, however often it is listed)."""
    expanded = [strategy for weight, strategy in options for _ in range(weight)]
    return st.sampled_from(expanded).flatmap(_itself)


def _itself(strategy: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    return strategy


def _nested(levels: int) -> bytes:
    return b'{"a":' * (levels - 1) + b"{}" + b"}" * (levels - 1)


def _arrays(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


# Text protobuf can carry: any code point UTF-8 encodes (no lone surrogates).
CHARS = st.characters(codec="utf-8")
TRICKY_TEXT = (
    "",
    " ",
    "\x00",
    "a\x00b",
    "\t\n\r",
    "é",
    "\u202e\ufeff\u200b",
    "\U0010ffff",
    "💥" * 50,
    "*",
    "a/*",
    "tether/x",
    "tether/function.failed",
    "app/user.signup",
    "a",
    "fn-1",
    "0",
    "-1",
    "9" * 30,
    "null",
    "{}",
    "%00",
    "%s%n",
    "../../..",
    "' OR '1'='1",
    "; DROP TABLE runs; --",
    "\\",
    '"',
    "01HZX3K8Q9ZQ5V6W7X8Y9Z0ABC",
    "zzz",
    # Cron schedules and time zones.
    "* * * * *",
    "0 0 31 2 *",
    "*/0 * * * *",
    "60 25 32 13 8",
    "Europe/Paris",
    "Mars/Olympus",
    "../../etc/passwd",
    # CEL expressions.
    "event.data.x",
    "event.data.x ==",
    "1/0",
    "size(event.data) > 0",
    "event.data.plan == 'pro' ? 120 : 0",
    "(" * 300 + "1" + ")" * 300,
    "!" * 3000 + "true",
    "[" * 2000,
    "data.a.b.c",
)
HUGE_TEXT = ("x" * 257, "é" * 1_000, "y" * 70_000, "z" * 600_000, "💥" * 3_000)


def _text(huge: tuple[str, ...]) -> st.SearchStrategy[str]:
    """Short text of any script, tricky values, text holding NUL, and ``huge``."""
    with_nul = st.builds("\x00".join, st.lists(st.text(CHARS, max_size=8), min_size=2, max_size=3))
    return _weighted(
        (10, st.text(CHARS, max_size=24)),
        (6, st.sampled_from(TRICKY_TEXT)),
        (3, st.text(st.characters(codec="utf-8", min_codepoint=0x80), min_size=1, max_size=64)),
        (1, with_nul),
        (1, st.sampled_from(huge)),
    )


TEXT = _text(HUGE_TEXT)
# Path and query values: a request line stays under the HTTP server's 16 KiB limit
# for what it reads before the application sees the request.
URL_TEXT = _text(HUGE_TEXT[:2])

# Values of the shape some fields expect, so that a case gets past the first
# checks more often: event names, ids, cron schedules, time zones, CEL, paths.
EVENT_NAMES = _weighted(
    (4, st.from_regex(r"[a-z]{1,6}/[a-z]{1,6}(\.[a-z]{1,6})?", fullmatch=True)),
    (1, st.sampled_from(["a/*", "*", "tether/function.failed", "tether/function.invoked"])),
)
IDS = st.from_regex(r"[a-z0-9]{1,6}(-[a-z0-9]{1,4}){0,2}", fullmatch=True)
CRONS = st.sampled_from(
    [
        "* * * * *",
        "*/5 * * * *",
        "0 9 * * 1-5",
        "0 0 29 2 *",
        "0 0 31 2 *",
        "@daily",
        "*/0 * * * *",
        "60 * * * *",
        "0 0 * * 7",
        "0 0 1 1 * 2099",
    ]
)
ZONES = st.sampled_from(
    ["", "UTC", "Europe/Paris", "Asia/Kathmandu", "Mars/Olympus", "../../etc/passwd", "Etc/GMT+14"]
)
CEL = st.sampled_from(
    [
        "true",
        "event.data.x",
        "event.data.n > 1",
        "event.data.plan == 'pro' ? 120 : 0",
        "async.data.x == event.data.x",
        "1/0",
        "int('x')",
        "event.data.x.y.z",
        "size(event.data) > 0",
        "event.data.n * 1000000000000",
        "(" * 300 + "1" + ")" * 300,
        "event.",
    ]
)
PATHS = st.sampled_from(["data.x", "data.a.b", "data", "user.id", ".", "data..x", "x"])


def _mostly(*values: int) -> st.SearchStrategy[int]:
    """Integers from ``values[0]`` to ``values[1]``, often exactly one of ``values``."""
    low, high = values[0], values[1]
    return _weighted((3, st.integers(low, high)), (1, st.sampled_from(values)))


NOW_MS = 1_800_000_000_000
TIME_EDGES = (
    NOW_MS,
    NOW_MS + 86_400_000,
    10**15,
    253_402_300_799_999,  # the last millisecond of year 9999
    253_402_300_800_000,  # year 10000: no datetime holds it
    -62_135_596_800_001,  # before year 1
)

SECOND, DAY = 1_000, 86_400_000
UNTIL_MS = (0, 1, 1_700_000_000_000, 4_000_000_000_000, *TIME_EDGES[3:], 2**63 - 1)
# Fields a case sets more often than not, with values of the shape they expect as
# often as with any value of their type.
_HINTS: dict[str, st.SearchStrategy[Any]] = {
    "tether.v1.Event.name": EVENT_NAMES,
    "tether.v1.Event.id": st.just("") | IDS,
    "tether.v1.Hello.protocol_version": st.just(1),
    "tether.v1.Hello.app_id": IDS,
    "tether.v1.Hello.capacity": _mostly(1, 100),
    "tether.v1.FunctionDefinition.retries": _mostly(0, 20),
    "tether.v1.Concurrency.limit": _mostly(1, 100_000),
    "tether.v1.Throttle.limit": _mostly(1, 100_000),
    "tether.v1.Throttle.period_ms": _mostly(SECOND, 7 * DAY),
    "tether.v1.Throttle.burst": _mostly(0, 100_000),
    "tether.v1.RateLimit.limit": _mostly(1, 100_000),
    "tether.v1.RateLimit.period_ms": _mostly(SECOND, DAY),
    "tether.v1.Debounce.period_ms": _mostly(SECOND, 7 * DAY),
    "tether.v1.Debounce.timeout_ms": _mostly(0, 7 * DAY),
    "tether.v1.Batching.max_size": _mostly(1, 1_000),
    "tether.v1.Batching.timeout_ms": _mostly(SECOND, 3_600_000),
    "tether.v1.Timeouts.start_ms": _mostly(0, DAY),
    "tether.v1.Timeouts.finish_ms": _mostly(0, DAY),
    # Times to sleep or wait until: the past, the future, past what datetime holds.
    "tether.v1.Sleep.until_ms": st.sampled_from(UNTIL_MS),
    "tether.v1.WaitForEvent.timeout_until_ms": st.sampled_from(UNTIL_MS),
    "tether.v1.Invoke.timeout_until_ms": st.sampled_from(UNTIL_MS),
    "tether.v1.EventTrigger.name": EVENT_NAMES,
    "tether.v1.CancelOn.event": EVENT_NAMES,
    "tether.v1.WaitForEvent.event": EVENT_NAMES,
    "tether.v1.ListEventsRequest.name": EVENT_NAMES,
    "tether.v1.FunctionDefinition.id": IDS,
    "tether.v1.CronTrigger.schedule": CRONS,
    "tether.v1.CronTrigger.timezone": ZONES,
    "tether.v1.FunctionDefinition.idempotency": CEL,
    "tether.v1.EventTrigger.if_expression": CEL,
    "tether.v1.CancelOn.if_expression": CEL,
    "tether.v1.WaitForEvent.if_expression": CEL,
    "tether.v1.Concurrency.key": CEL,
    "tether.v1.Throttle.key": CEL,
    "tether.v1.RateLimit.key": CEL,
    "tether.v1.Debounce.key": CEL,
    "tether.v1.Batching.key": CEL,
    "tether.v1.Singleton.key": CEL,
    "tether.v1.Priority.run": CEL,
    "tether.v1.CancelOn.match": PATHS,
    "tether.v1.WaitForEvent.match": PATHS,
    "tether.v1.StepCompleted.step_id": IDS.map(hash_step_id),
    "tether.v1.StepFailed.step_id": IDS.map(hash_step_id),
    "tether.v1.PlannedWait.step_id": IDS.map(hash_step_id),
}


for _name in _HINTS:
    descriptor_pool.Default().FindFieldByName(_name)  # a renamed field fails here


def _hint(descriptor: FieldDescriptor) -> st.SearchStrategy[Any] | None:
    hint = _HINTS.get(descriptor.full_name)
    if hint is None and descriptor.name in ("app_id", "function_id"):
        return IDS
    return hint


_JSON_SCALARS = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(CHARS, max_size=16)
)
JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    _JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(CHARS, max_size=8), inner),
    max_leaves=12,
)
JSON_OBJECTS: st.SearchStrategy[dict[str, Any]] = st.dictionaries(
    st.text(CHARS, max_size=8), JSON_VALUES, max_size=5
)
TRICKY_JSON = (
    b"",
    b"{}",
    b"[]",
    b"null",
    b"0",
    b'"s"',
    b'{"a": NaN}',
    b'{"a": -Infinity}',
    b'{"a": 1e999}',
    b'{"a": -0.0}',
    b'{"a": 123456789012345678901234567890}',
    b'{"a": "\\u0000"}',
    b'{"a\\u0000": 1}',
    b'{"a": "\\ud800"}',
    b'{"a": "\\udfff\\ud800"}',
    b'{"a": 1, "a": 2}',
    b'{"a": "x"',
    b"\xef\xbb\xbf{}",
    b" {} ",
    b"\xff\xfe",
    b'{"__proto__": {"x": 1}}',
    b'{"a": "\xff"}',
    b"{" * 100_000,
)
DEPTHS = (63, 64, 65, 66, 200, 5_000, 100_000)
HUGE_JSON = (b'{"a": "' + b"x" * 600_000 + b'"}', b'{"a": "' + b"x" * 5_000_000 + b'"}')


def _dump(value: Any, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode()


# Every bytes field of a request carries JSON (event data and user, outputs,
# invoke data): mostly JSON, some of it hostile, and some plain garbage.
JSON_BYTES: st.SearchStrategy[bytes] = _weighted(
    (4, st.builds(_dump, JSON_OBJECTS, st.booleans())),
    (2, st.builds(_dump, JSON_VALUES, st.booleans())),
    (2, st.binary(max_size=48)),
    (3, st.sampled_from(TRICKY_JSON)),
    (1, st.sampled_from(DEPTHS).map(_nested)),
    (1, st.sampled_from(DEPTHS).map(_arrays)),
    (1, st.sampled_from(HUGE_JSON)),
)


def _integers(low: int, high: int) -> st.SearchStrategy[int]:
    edges = sorted(
        {
            value
            for value in (
                low,
                low + 1,
                -1,
                0,
                1,
                2,
                1_000,
                1_001,
                100_001,
                2**31 - 1,
                2**31,
                2**32 - 1,
                2**53 + 1,
                *TIME_EDGES,
                high - 1,
                high,
            )
            if low <= value <= high
        }
    )
    return _weighted(
        (3, st.sampled_from(edges)),
        (2, st.integers(low, high)),
        (2, st.integers(max(low, -100), min(high, 2_000))),
    )


_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


# -- strategies: messages from their descriptors ------------------------------------------


def _is_map(descriptor: FieldDescriptor) -> bool:
    entry = descriptor.message_type
    return entry is not None and entry.GetOptions().map_entry


def _scalar(descriptor: FieldDescriptor) -> st.SearchStrategy[Any]:
    hint = _hint(descriptor)
    if hint is not None:
        return _weighted((3, hint), (2, _of_type(descriptor)))
    return _of_type(descriptor)


def _of_type(descriptor: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = descriptor.type
    if kind == FieldDescriptor.TYPE_STRING:
        return TEXT
    if kind == FieldDescriptor.TYPE_BYTES:
        return JSON_BYTES
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_ENUM:
        assert descriptor.enum_type is not None
        known = [value.number for value in descriptor.enum_type.values]
        # Open enums: any int32 decodes, the unknown ones included.
        return _weighted(
            (3, st.sampled_from(known)),
            (1, st.integers(-5, 40)),
            (1, st.integers(-(2**31), 2**31 - 1)),
        )
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(width=32 if kind == FieldDescriptor.TYPE_FLOAT else 64)
    if kind == FieldDescriptor.TYPE_MESSAGE:
        assert descriptor.message_type is not None
        return messages(descriptor.message_type)
    low, high = _RANGES[kind]
    return _integers(low, high)


def _copies(item: Any) -> list[Any]:
    """A repeated field over its limits (1,000 events, 100 functions...): 1,001
    copies of a small item (two of a large one)."""
    small = not isinstance(item, (str, bytes, Message)) or len(_size_of(item)) <= 2_048
    return [item] * (1_001 if small else 2)


def _size_of(item: str | bytes | Message) -> bytes:
    if isinstance(item, Message):
        return item.SerializeToString()
    return item.encode() if isinstance(item, str) else item


def _values(descriptor: FieldDescriptor) -> st.SearchStrategy[Any]:
    if _is_map(descriptor):
        entry = descriptor.message_type
        assert entry is not None
        return st.dictionaries(
            _scalar(entry.fields_by_name["key"]), _scalar(entry.fields_by_name["value"]), max_size=3
        )
    item = _scalar(descriptor)
    if descriptor.is_repeated:
        return _weighted((12, st.lists(item, max_size=3)), (1, item.map(_copies)))
    return item


def _set(message: Message, name: str, value: Any) -> None:
    descriptor = cast(FieldDescriptor, message.DESCRIPTOR.fields_by_name[name])
    target = getattr(message, name)
    if _is_map(descriptor):
        for key, item in value.items():
            if isinstance(item, Message):
                target[key].CopyFrom(item)
            else:
                target[key] = item
    elif descriptor.is_repeated:
        target.extend(value)
    elif isinstance(value, Message):
        target.CopyFrom(value)
    else:
        setattr(message, name, value)


# A field a case leaves unset although it usually sets it.
ABSENT: Any = object()


def _build(
    kind: type[Message], plain: dict[str, Any], chosen: tuple[tuple[str, Any] | None, ...]
) -> Message:
    message = kind()
    for name, value in plain.items():
        if value is not ABSENT:
            _set(message, name, value)
    for pick in chosen:
        if pick is not None:
            _set(message, *pick)
    return message


@cache
def messages(descriptor: Descriptor) -> st.SearchStrategy[Message]:
    """Messages of ``descriptor``'s type: each field set or not (a hinted one
    mostly set), with hostile values of its type; mostly one field of each oneof."""
    fields = [f for f in descriptor.fields if f.containing_oneof is None]
    usual = {
        f.name: _weighted((5, _values(f)), (1, st.just(ABSENT)))
        for f in fields
        if _hint(f) is not None
    }
    plain = {f.name: _values(f) for f in fields if f.name not in usual}
    oneofs = [
        _weighted((1, st.none()), *[(2, st.tuples(st.just(f.name), _values(f))) for f in o.fields])
        for o in descriptor.oneofs
    ]
    return st.builds(
        _build,
        st.just(message_factory.GetMessageClass(descriptor)),
        st.fixed_dictionaries(usual, optional=plain),
        st.tuples(*oneofs),
    )


# -- gRPC: every method -----------------------------------------------------------------


def _tether_methods() -> list[MethodDescriptor]:
    pool = descriptor_pool.Default()
    return [
        method
        for service in (pool.FindServiceByName(name) for name in SERVICE_NAMES)
        for method in service.methods
    ]


METHODS = [m for m in _tether_methods() if not m.client_streaming]
assert {m.full_name for m in _tether_methods() if m.client_streaming} == {
    "tether.v1.WorkerService.Connect"
}, "a new streaming method: fuzz it like Connect"


def _path(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def _call(
    channel: grpc.Channel, method: MethodDescriptor, body: bytes
) -> tuple[Any, str, Message | None]:
    """Send ``body`` (bytes) to ``method``: its status code, details and (last)
    reply, which must decode as the method's response type."""
    raw: Any = channel  # bytes in and out
    codecs: dict[str, Any] = {"request_serializer": None, "response_deserializer": None}
    kind = message_factory.GetMessageClass(method.output_type)
    reply: Message | None = None
    try:
        if method.server_streaming:
            for item in raw.unary_stream(_path(method), **codecs)(body, timeout=DEADLINE):
                reply = kind.FromString(item)
        else:
            reply = kind.FromString(
                raw.unary_unary(_path(method), **codecs)(body, timeout=DEADLINE)
            )
    except grpc.RpcError as error:
        failed: Any = error
        return failed.code(), failed.details() or "", None
    return grpc.StatusCode.OK, "", reply


def _check_answer(plane: Plane, what: str, body: bytes, code: Any, details: str) -> None:
    _note(code.name)
    plane.alive()
    assert code in ALLOWED, f"{what}: {code} {details!r}\n{plane.log_tail()}"
    assert not _leaks(details, body), f"{what}: {code} {details!r}"
    assert not [t for t in TRANSPORT if t in details], (
        f"{what}: the control plane's status did not reach the client: {code} {details!r}"
    )


@pytest.fixture(scope="module")
def channel(plane: Plane) -> Iterator[grpc.Channel]:
    with channel_to(plane.address, FUZZ_KEY) as opened:
        yield opened


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name)
@settings(FUZZ_SETTINGS, max_examples=BYTES_CASES)
@given(body=st.binary(max_size=256))
def test_every_method_answers_random_bytes_with_a_clear_status(
    plane: Plane, channel: grpc.Channel, method: MethodDescriptor, body: bytes
) -> None:
    _untouched(plane, body)
    code, details, _ = _call(channel, method, body)
    _check_answer(plane, method.full_name, body, code, details)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name)
@settings(FUZZ_SETTINGS, max_examples=MESSAGE_CASES)
@given(data=st.data())
def test_every_method_answers_hostile_messages_with_a_clear_status(
    plane: Plane, channel: grpc.Channel, method: MethodDescriptor, data: st.DataObject
) -> None:
    request = data.draw(messages(method.input_type), label="request")
    _untouched(plane, request.SerializeToString())
    code, details = _answers_clearly(plane, channel, method, request)
    if method.name in ("Advance", "SetAutoSkip"):
        # This control plane runs on the system clock.
        assert code == grpc.StatusCode.FAILED_PRECONDITION, (code, details)
        assert details == (
            "this control plane runs on the system clock; start it with --clock virtual"
        )


def _answers_clearly(
    plane: Plane, channel: grpc.Channel, method: MethodDescriptor, request: Message
) -> tuple[Any, str]:
    """Call ``method`` with ``request`` and check the answer; what a Send stored
    reads back over HTTP too (the events and the runs they started)."""
    body = request.SerializeToString()
    code, details, reply = _call(channel, method, body)
    _check_answer(plane, method.full_name, body, code, details)
    if isinstance(reply, event_service_pb2.SendResponse):
        for result in reply.results:
            # (An id "." or ".." names no path: HTTP clients resolve it away.)
            ids = [result.event_id] if result.event_id not in (".", "..") else []
            paths = [f"/api/events/{urllib.parse.quote(i, safe='')}" for i in ids]
            paths += [f"/api/runs/{run_id}" for run_id in result.run_ids]
            for path in paths:
                status, answer = _http(plane.process.http_port, "GET", path)
                assert status == 200, f"GET {path}: {status} {answer!r}\n{plane.log_tail()}"
    return code, details


# -- gRPC: the worker stream --------------------------------------------------------------


@dataclass
class StreamEnd:
    code: Any
    details: str
    frames: list[ws.ServerFrame]


def _connect(channel: grpc.Channel, frames: Iterable[bytes]) -> Any:
    """A Connect call writing ``frames`` (bytes) and half-closing after the last."""
    raw: Any = channel
    return raw.stream_stream(
        CONNECT, request_serializer=None, response_deserializer=ws.ServerFrame.FromString
    )(iter(frames), timeout=DEADLINE)


def _rest(call: Any) -> StreamEnd:
    """Read ``call`` to its end: the frames left, and how it ended."""
    received: list[ws.ServerFrame] = []
    try:
        for frame in call:
            received.append(frame)
    except grpc.RpcError as error:
        failed: Any = error
        return StreamEnd(failed.code(), failed.details() or "", received)
    return StreamEnd(call.code(), call.details() or "", received)


def _stream(channel: grpc.Channel, frames: list[bytes]) -> StreamEnd:
    """Open Connect, write ``frames``, half-close, and read to the end."""
    return _rest(_connect(channel, frames))


def _check_stream(plane: Plane, frames: list[bytes], end: StreamEnd) -> None:
    sent = b"".join(frames)
    _check_answer(plane, "WorkerService.Connect", sent, end.code, end.details)
    kinds = [frame.WhichOneof("frame") for frame in end.frames]
    _note(f"{end.code.name}: {' '.join(sorted(set(map(str, kinds))))}")
    if "rejected" in kinds:
        # Rejected is the first and last frame, and the stream then ends with OK.
        assert kinds == ["rejected"], kinds
        rejected = end.frames[0].rejected
        assert rejected.code != ws.REJECT_CODE_UNSPECIFIED, rejected
        assert rejected.reason, rejected
        assert not _leaks(rejected.reason, sent), rejected
        assert end.code == grpc.StatusCode.OK, (end.code, end.details)
    elif kinds:
        assert kinds[0] == "welcome", kinds


def _frames_of(kind: str) -> st.SearchStrategy[Message]:
    """Worker frames of one kind, its message fuzzed."""
    descriptor = ws.WorkerFrame.DESCRIPTOR.fields_by_name[kind].message_type
    assert descriptor is not None
    return messages(descriptor).map(partial(_wrap, kind))


def _wrap(kind: str, inner: Message) -> Message:
    frame = ws.WorkerFrame()
    getattr(frame, kind).CopyFrom(inner)
    return frame


FRAMES = messages(ws.WorkerFrame.DESCRIPTOR)
# After a valid Hello: mostly what a worker sends, sometimes anything.
LATER_FRAMES: st.SearchStrategy[bytes] = _weighted(
    (5, _frames_of("outcomes")),
    (2, _frames_of("heartbeat")),
    (1, _frames_of("cancel_ack")),
    (1, _frames_of("drain")),
    (2, FRAMES),
).map(lambda frame: frame.SerializeToString())
CONNECT_HELLO = hello(
    [definition("fuzz-connect-fn", "fuzz-connect/go")], app_id="fuzz-connect"
).SerializeToString()


@settings(FUZZ_SETTINGS, max_examples=STREAM_CASES)
@given(frames=st.lists(st.binary(max_size=128), min_size=1, max_size=4))
def test_the_worker_stream_ends_clearly_on_random_bytes(
    plane: Plane, channel: grpc.Channel, frames: list[bytes]
) -> None:
    _untouched(plane, *frames)
    _check_stream(plane, frames, _stream(channel, frames))


# A first frame: mostly a Hello (its fields fuzzed), sometimes anything.
FIRST_FRAMES = _weighted((3, _frames_of("hello")), (1, FRAMES))


@settings(FUZZ_SETTINGS, max_examples=STREAM_CASES)
@given(
    first=FIRST_FRAMES,
    later=st.lists(FRAMES.map(lambda f: f.SerializeToString()), max_size=3),
)
def test_the_worker_stream_ends_clearly_on_hostile_frames(
    plane: Plane, channel: grpc.Channel, first: Message, later: list[bytes]
) -> None:
    frames = [first.SerializeToString(), *later]
    _untouched(plane, *frames)
    _check_stream(plane, frames, _stream(channel, frames))


@settings(FUZZ_SETTINGS, max_examples=STREAM_CASES)
@given(later=st.lists(LATER_FRAMES, min_size=1, max_size=5))
def test_the_worker_stream_ends_clearly_on_hostile_frames_after_a_valid_hello(
    plane: Plane, channel: grpc.Channel, later: list[bytes]
) -> None:
    _untouched(plane, *later)
    frames = [CONNECT_HELLO, *later]
    end = _stream(channel, frames)
    _check_stream(plane, frames, end)
    assert end.frames, end
    assert end.frames[0].WhichOneof("frame") == "welcome", end


# -- HTTP: every route of the JSON API ---------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    spec: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}"


def _operations(openapi: dict[str, Any]) -> list[Operation]:
    return [
        Operation(method.upper(), path, spec)
        for path, methods in sorted(openapi["paths"].items())
        for method, spec in sorted(methods.items())
        if path.startswith("/api/")
    ]


def _http(
    port: int,
    method: str,
    target: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One request; its status and its body as JSON (as bytes if it is not JSON)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE)
    try:
        sent = {"Authorization": f"Bearer {FUZZ_KEY}", **(headers or {})}
        connection.request(method, target, body=body, headers=sent)
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw


def _resolve(schema: dict[str, Any], openapi: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = openapi["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _json_like(schema: dict[str, Any], openapi: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values close to ``schema`` (of its shape, with hostile contents), and
    sometimes any JSON at all."""
    schema = _resolve(schema, openapi)
    anything: st.SearchStrategy[Any] = JSON_VALUES
    if "anyOf" in schema:
        return st.one_of(*[_json_like(s, openapi) for s in schema["anyOf"]], anything)
    if "enum" in schema:
        return _weighted((3, st.sampled_from(schema["enum"])), (1, TEXT), (1, anything))
    kind = schema.get("type")
    if kind == "object":
        properties = {
            name: _json_like(sub, openapi) for name, sub in schema.get("properties", {}).items()
        }
        required = {name: properties.pop(name) for name in schema.get("required", [])}
        shaped = st.fixed_dictionaries(required, optional=properties)
        return _weighted((4, shaped), (1, JSON_OBJECTS), (1, anything))
    if kind == "array":
        items = _json_like(schema.get("items", {}), openapi)
        return _weighted((3, st.lists(items, max_size=3)), (1, anything))
    if kind == "string":
        return _weighted((4, TEXT), (1, anything))
    if kind == "integer":
        return _weighted((4, _integers(-(2**64), 2**64)), (1, st.floats()), (1, anything))
    return anything


ASCII_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)
TRACEPARENTS = (
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "00-00000000000000000000000000000000-0000000000000000-00",
    "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "00-xyz",
    "",
)


def _query_value(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    if schema.get("type") == "integer":
        numbers = _integers(-(2**70), 2**70).map(str)
        return _weighted((3, numbers), (1, st.sampled_from(["", "1.5", "1e3", "abc", "-"])))
    return URL_TEXT


def _bodies(operation: Operation, openapi: dict[str, Any]) -> st.SearchStrategy[bytes | None]:
    """Bodies for ``operation``: shaped like its schema, any JSON, garbage, none."""
    content = operation.spec.get("requestBody", {}).get("content", {})
    schema = content.get("application/json", {}).get("schema")
    if schema is None:
        return _weighted((9, st.none()), (1, JSON_BYTES))
    shaped = _json_like(schema, openapi).map(partial(_dump, ascii_only=False))
    return _weighted((6, shaped), (3, JSON_BYTES), (1, st.none()))


CONTENT_TYPES = _weighted(
    (6, st.just("application/json")),
    (1, st.sampled_from(["", "text/plain", "application/json; charset=latin-1"])),
    (1, st.just("multipart/form-data; boundary=x")),
)
HttpCase = tuple[Operation, str, bytes | None, dict[str, str]]
HttpStrategies = tuple[list[Operation], dict[str, st.SearchStrategy[bytes | None]]]


def _http_strategies(plane: Plane) -> HttpStrategies:
    """The operations of ``plane``'s OpenAPI document and a body strategy for each
    (built once per control plane)."""
    if plane.http is None:
        operations = _operations(plane.openapi)
        plane.http = operations, {op.name: _bodies(op, plane.openapi) for op in operations}
    return plane.http


@st.composite
def _requests(
    draw: st.DrawFn, operations: list[Operation], bodies: dict[str, st.SearchStrategy[bytes | None]]
) -> HttpCase:
    operation = draw(st.sampled_from(operations))
    target = operation.path
    query: list[tuple[str, str]] = []
    headers: dict[str, str] = {}
    for parameter in operation.spec.get("parameters", []):
        name, where, schema = parameter["name"], parameter["in"], parameter.get("schema", {})
        if where == "path":
            value = draw(_weighted((4, URL_TEXT), (1, st.sampled_from(["", ".", "..", "a/b"]))))
            target = target.replace("{" + name + "}", urllib.parse.quote(value, safe=""))
        elif where == "query" and draw(st.booleans()):
            query.append((name, draw(_query_value(schema))))
        elif where == "header" and draw(st.booleans()):
            headers[name] = draw(st.sampled_from(TRACEPARENTS) | ASCII_TEXT)
    if draw(st.integers(0, 5)) == 0:  # an unknown or repeated parameter
        query.append((draw(st.sampled_from(["limit", "status", "x", ""])), draw(URL_TEXT)))
    if query:
        target += "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
    body = draw(bodies[operation.name])
    if body is not None:
        content_type = draw(CONTENT_TYPES)
        if content_type:
            headers["Content-Type"] = content_type
    return operation, target, body, headers


@settings(FUZZ_SETTINGS, max_examples=HTTP_CASES)
@given(data=st.data())
def test_every_route_answers_hostile_requests_below_500_with_a_problem(
    plane: Plane, data: st.DataObject
) -> None:
    operation, target, body, headers = data.draw(_requests(*_http_strategies(plane)))
    sent = target.encode() + (body or b"") + json.dumps(headers).encode()
    _untouched(plane, sent, urllib.parse.unquote_to_bytes(target))
    status, reply = _http(plane.process.http_port, operation.method, target, body, headers)
    _note(f"{operation.name}: {status}")
    plane.alive()
    what = f"{operation.method} {target[:300]}"
    assert status < 500, f"{what}: {status} {reply!r}\n{plane.log_tail()}"
    if 200 <= status < 300:
        assert not isinstance(reply, bytes), f"{what}: {status} is not JSON: {reply!r}"
    if status >= 400:
        assert isinstance(reply, dict), f"{what}: {status} {reply!r}"
        assert set(reply) == {"error", "message"}, f"{what}: {status} {reply!r}"
        assert isinstance(reply["message"], str), reply
        assert reply["message"], reply
        assert not _leaks(reply["message"], sent), f"{what}: {status} {reply!r}"


def test_the_http_fuzz_covers_every_route(plane: Plane) -> None:
    """Every route of the OpenAPI document is among those the fuzzer picks from."""
    operations, _ = _http_strategies(plane)
    names = {op.name for op in operations}
    assert {"POST /api/events", "GET /api/runs/{run_id}", "GET /api/functions"} <= names
    assert len(names) == sum(len(methods) for methods in plane.openapi["paths"].values())


# -- gRPC: outcomes for an execution the stream holds ---------------------------------------


class _Feed:
    """The requests of a synchronous stream, written as the test goes."""

    def __init__(self) -> None:
        self._frames: queue.Queue[bytes | None] = queue.Queue()

    def write(self, frame: Message) -> None:
        self._frames.put(frame.SerializeToString())

    def close(self) -> None:
        self._frames.put(None)

    def __iter__(self) -> Iterator[bytes]:
        while (frame := self._frames.get()) is not None:
            yield frame


def _dispatched(call: Any, run_id: str) -> ws.Execute:
    """Read ``call`` until ``run_id`` is dispatched on it."""
    for frame in call:
        kind = frame.WhichOneof("frame")
        assert kind in ("ping", "dispatch"), frame
        if kind == "dispatch":
            for execute in frame.dispatch.executions:
                if execute.run_id == run_id:
                    assert isinstance(execute, ws.Execute)
                    return execute
    raise AssertionError(f"the stream ended before run {run_id} was dispatched")


DISPATCH_HELLO = hello([definition(DISPATCH_FN, DISPATCH_EVENT)], app_id=DISPATCH_APP)
# Outcomes, each either made the dispatched execution's (True) or left as drawn.
OUTCOME_PLANS = st.lists(
    st.tuples(messages(ws.Outcome.DESCRIPTOR), _weighted((6, st.just(True)), (1, st.just(False)))),
    min_size=1,
    max_size=4,
)


@settings(FUZZ_SETTINGS, max_examples=DISPATCH_CASES)
@given(
    plan=OUTCOME_PLANS,
    ordered=_weighted((8, st.just(True)), (1, st.just(False))),
    split=st.booleans(),
)
def test_hostile_outcomes_for_a_dispatched_execution_end_clearly_and_leave_the_run_readable(
    plane: Plane,
    channel: grpc.Channel,
    plan: list[tuple[Message, bool]],
    ordered: bool,
    split: bool,
) -> None:
    """Outcomes of every kind (steps, failures, sleeps, waits, invokes, returns,
    non-determinism) with hostile fields, for a real execution: the stream ends
    clearly, and the run can be read and cancelled afterwards."""
    _untouched(plane, *(outcome.SerializeToString() for outcome, _ in plan))
    end, status = _outcomes_for_a_dispatched_run(plane, channel, plan, ordered, split)
    _note(f"{end.code.name}, run {common_pb2.RunStatus.Name(status)}")


def _outcomes_for_a_dispatched_run(
    plane: Plane,
    channel: grpc.Channel,
    plan: list[tuple[Message, bool]],
    ordered: bool = True,
    split: bool = False,
) -> tuple[StreamEnd, common_pb2.RunStatus.ValueType]:
    """Start a run, take its execution on a stream, send ``plan``'s outcomes
    (each made the execution's where it says so; numbered 1, 2, 3... when
    ``ordered``; a frame each when ``split``) and half-close. Checks how the
    stream ended and that the run reads back over both APIs; then cancels the run
    unless it finished, so that no later stream is handed it. Returns how the
    stream ended and the run's status before the cancel."""
    feed = _Feed()
    call = _connect(channel, feed)
    batch: list[ws.Outcome] = []
    try:
        feed.write(DISPATCH_HELLO)
        assert next(call).WhichOneof("frame") == "welcome"
        [run_id] = plane.admin.send(DISPATCH_EVENT)
        execute = _dispatched(call, run_id)
        for seq, (drawn, ours) in enumerate(plan, start=1):
            outcome = ws.Outcome.FromString(drawn.SerializeToString())
            if ours:
                outcome.execution_id, outcome.run_id = execute.execution_id, run_id
            if ordered:
                outcome.seq = seq
            batch.append(outcome)
        groups = [[o] for o in batch] if split else [batch]
        for group in groups:
            feed.write(outcomes(*group))
    finally:
        feed.close()
    end = _rest(call)
    sent = b"".join(o.SerializeToString() for o in batch)
    _check_answer(plane, "WorkerService.Connect", sent, end.code, end.details)
    assert "rejected" not in [frame.WhichOneof("frame") for frame in end.frames], end

    code, details, _ = _call(channel, _method("RunService", "GetRun"), _run_request(run_id))
    assert code == grpc.StatusCode.OK, (code, details, plane.log_tail())
    status, reply = _http(plane.process.http_port, "GET", f"/api/runs/{run_id}")
    assert status == 200, f"GET /api/runs/{run_id}: {status} {reply!r}\n{plane.log_tail()}"
    run = plane.admin.get(run_id).run
    if run.status not in FINISHED:
        request = rs.CancelRunRequest(run_id=run_id, reason="fuzzed").SerializeToString()
        code, details, _ = _call(channel, _method("RunService", "CancelRun"), request)
        assert code in (grpc.StatusCode.OK, grpc.StatusCode.FAILED_PRECONDITION), (code, details)
    assert plane.admin.get(run_id).run.status in FINISHED
    return end, run.status


def _method(service: str, name: str) -> MethodDescriptor:
    return descriptor_pool.Default().FindMethodByName(f"tether.v1.{service}.{name}")


def _run_request(run_id: str) -> bytes:
    return rs.GetRunRequest(run_id=run_id).SerializeToString()


# -- what the fuzzer found -------------------------------------------------------------------
# Each case failed once (the fuzzer's falsifying example, shrunk); every run tries
# them again, whatever the random cases of the day are.

LONE_SURROGATE = b'{"a": "\\ud800"}'  # valid JSON syntax; no UTF-8 text holds U+D800
FOUND_REQUESTS: list[tuple[str, str, Message]] = [
    # Over 16 KiB once percent-encoded, a status message that quotes the value
    # does not fit gRPC's trailer: the client sees RESOURCE_EXHAUSTED "Stream
    # removed (received metadata size exceeds hard limit ...)". Cutting the
    # message to 2,000 characters fixed ASCII; a character of 4 UTF-8 bytes
    # still takes 12 once percent-encoded.
    ("a-long-run-id", "RunService.GetRun", rs.GetRunRequest(run_id="y" * 70_000)),
    ("a-long-run-id", "RunService.CancelRun", rs.CancelRunRequest(run_id="y" * 70_000)),
    ("a-long-run-id", "RunService.ReplayRun", rs.ReplayRunRequest(run_id="y" * 70_000)),
    ("a-long-run-id", "RunService.WaitRun", rs.WaitRunRequest(run_id="y" * 70_000)),
    ("a-long-event-id", "RunService.GetEvent", rs.GetEventRequest(event_id="y" * 70_000)),
    (
        "a-long-event-name",
        "EventService.Send",
        event_service_pb2.SendRequest(events=[common_pb2.Event(name="y" * 70_000)]),
    ),
    (
        "a-long-app-id",
        "RunService.PauseFunction",
        rs.PauseFunctionRequest(app_id="y" * 70_000, function_id="f"),
    ),
    ("a-long-emoji-run-id", "RunService.GetRun", rs.GetRunRequest(run_id="💥" * 3_000)),
    (
        "long-emoji-function-ids",
        "RunService.ResumeFunction",
        rs.ResumeFunctionRequest(app_id="💥" * 3_000, function_id="💥" * 3_000),
    ),
    # Stored, then GET /api/events and /api/events/{id} answer 500 (pydantic cannot
    # serialize the decoded string).
    (
        "event-data-with-a-lone-surrogate",
        "EventService.Send",
        event_service_pb2.SendRequest(
            events=[common_pb2.Event(name="found/surrogate", data=LONE_SURROGATE)]
        ),
    ),
]


@pytest.mark.parametrize(
    ("method", "request_message"),
    [(_method(*m.split(".")), r) for _, m, r in FOUND_REQUESTS],
    ids=[f"{m}-{name}" for name, m, _ in FOUND_REQUESTS],
)
def test_requests_the_fuzzer_found_answer_clearly(
    plane: Plane, channel: grpc.Channel, method: MethodDescriptor, request_message: Message
) -> None:
    _answers_clearly(plane, channel, method, request_message)


def test_outcomes_the_fuzzer_found_leave_the_run_readable(
    plane: Plane, channel: grpc.Channel
) -> None:
    # The run completes with it as its output; then GET /api/runs/{id} answers 500.
    done = ws.Outcome(run_completed=ws.RunCompleted(output=LONE_SURROGATE))
    _outcomes_for_a_dispatched_run(plane, channel, [(done, True)])
