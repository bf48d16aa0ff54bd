"""Tether: registering a large app (1,000 functions) while health checks are probed.

The claim: registering a large but allowed app never blocks the control plane's
event loop, so a health check (``grpc.health.v1.Health/Check``) keeps answering
within 100 ms while it happens. Each round has a fresh database and a real
control-plane process of its own (no worker process: the benchmark itself
speaks the worker protocol), which first registers a small app of 10 functions
twice (its first-use costs) and answers a few health checks, then:

- an *idle round*: a thread of the benchmark probes health, one ``Check`` after
  another with ~5 ms between an answer and the next call, recording each one's
  latency, with nothing else going on, for as long as the previous round's
  registration round took: the health latency of an idle control plane;
- a *registration round*: the same probing, while a raw worker stream sends a
  ``Hello`` declaring 1,000 functions (``bench-large``), each with an expression
  in every place one may go (a trigger condition, an idempotency key, a
  cancel-on condition and a keyed concurrency limit), and the clock stops at its
  ``Welcome``; then a second stream sends the same ``Hello`` again, so that it
  replaces the 1,000 functions just stored. Then the probing stops. Everything
  else (the Hello message, the connected channels) is ready before the probing
  starts, so the round's checks are those made while the registrations happen.

A fresh control plane per round keeps the rounds alike: the first registration
always adds 1,000 functions to a control plane holding only the small app, the
second replaces them. Warm-up rounds come first and are not counted.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.databases import fresh_database, redact
from bench.processes import Process, start_control_plane
from bench.profiling import cpu_seconds
from bench.stats import Spread, columns, percentile
from bench.tether_workload import describe_error
from tether.v1 import common_pb2
from tether.v1 import worker_service_pb2 as ws
from tether.v1 import worker_service_pb2_grpc as ws_grpc

#: The most functions one app may declare (the control plane's limit).
MAX_FUNCTIONS = 1000
#: Between a health check's answer and the next call.
PROBE_INTERVAL_S = 0.005
#: The claim: every health check answers within this while an app registers.
TARGET_MS = 100.0
IDLE = "idle"
REGISTERING = "registering"
#: The app measured, and a small one that warms each control plane up first.
LARGE_APP = "bench-large"
WARM_APP = "bench-warm"
WARM_FUNCTIONS = 10
#: How long the first idle round probes (later ones: as long as the
#: registration round before them).
FIRST_IDLE_S = 0.5


# -- the app ------------------------------------------------------------------------------


def rich_definition(index: int) -> common_pb2.FunctionDefinition:
    """A function with an expression in every place one may go."""
    result = common_pb2.FunctionDefinition(id=f"fn-{index}")
    result.triggers.add(
        event=common_pb2.EventTrigger(
            name=f"large/e{index}", if_expression=f"event.data.n != {index}"
        )
    )
    result.idempotency = f"event.data.id + '-{index}'"
    result.cancel_on.add(event="large/stop", if_expression=f"async.data.n == {index}")
    result.concurrency.add(limit=5, key=f"event.data.user + '{index}'")
    return result


def large_hello(app_id: str, functions: int) -> ws.WorkerFrame:
    return ws.WorkerFrame(
        hello=ws.Hello(
            protocol_version=1,
            app_id=app_id,
            instance_id="bench-registration",
            sdk_language="bench",
            sdk_version="0",
            functions=[rich_definition(i) for i in range(functions)],
            capacity=1,
        )
    )


def ready_channel(address: str, timeout: float) -> grpc.Channel:
    """A channel to ``address``, connected."""
    channel = grpc.insecure_channel(address)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except BaseException:
        channel.close()
        raise
    return channel


def register(channel: grpc.Channel, frame: ws.WorkerFrame, timeout: float) -> float:
    """Open a worker stream on ``channel``, send ``frame`` (a Hello) and wait
    for the Welcome; the seconds from sending to the Welcome. The stream is then
    cancelled (the control plane disconnects the session)."""
    stub = ws_grpc.WorkerServiceStub(channel)
    done = threading.Event()

    def frames() -> Any:
        yield frame
        done.wait()

    started = time.perf_counter()
    # A response iterator that is also the call (``cancel``).
    responses: Any = stub.Connect(frames(), timeout=timeout)
    try:
        for reply in responses:
            kind = reply.WhichOneof("frame")
            if kind == "welcome":
                return time.perf_counter() - started
            if kind == "rejected":
                raise RuntimeError(f"the Hello was rejected: {reply.rejected.reason}")
            if kind not in ("ping", "acks"):
                raise RuntimeError(f"expected a Welcome, got {kind}")
        raise RuntimeError("the worker stream ended before its Welcome")
    finally:
        done.set()
        responses.cancel()


# -- probing ------------------------------------------------------------------------------


class Prober:
    """Health checks one after another on a thread of their own, each one's
    latency recorded (ms), from :meth:`start` until :meth:`stop`."""

    def __init__(self, address: str, timeout: float) -> None:
        self.channel = ready_channel(address, timeout)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.timeout = timeout
        self.latencies_ms: list[float] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._first = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> float:
        """One health check: its latency (ms); fails unless it answers SERVING."""
        request = health_pb2.HealthCheckRequest(service="")
        started = time.perf_counter()
        reply = self.health.Check(request, timeout=self.timeout)
        elapsed = (time.perf_counter() - started) * 1000
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            raise RuntimeError(f"the health check answered status {reply.status}")
        return elapsed

    def _probe(self) -> None:
        try:
            while not self._stop.is_set():
                self.latencies_ms.append(self.check())
                self._first.set()
                self._stop.wait(PROBE_INTERVAL_S)
        except BaseException as error:  # reported by stop()
            self.error = error
        finally:
            self._first.set()

    def start(self) -> None:
        """Start probing; returns once the first check has answered."""
        self.latencies_ms = []
        self.error = None
        self._stop.clear()
        self._first.clear()
        self._thread = threading.Thread(target=self._probe, name="health-probe", daemon=True)
        self._thread.start()
        self._first.wait(self.timeout)

    def stop(self) -> list[float]:
        """Stop probing; every latency recorded since :meth:`start` (ms)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.error is not None:
            raise self.error
        return list(self.latencies_ms)

    def close(self) -> None:
        self.channel.close()


# -- results ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProbeRound:
    """One round: the health checks it answered and, if it registered, how long
    each registration took."""

    kind: str
    window_s: float
    probes: int
    health_p50_ms: float
    health_p99_ms: float
    health_max_ms: float
    #: Health checks slower than the target (100 ms).
    over_target: int
    #: Seconds from the Hello to its Welcome: a new app, then the same app again.
    register_new_s: float
    register_replace_s: float
    #: CPU time of the control plane during the round (ms).
    control_plane_cpu_ms: float

    @classmethod
    def of(
        cls,
        kind: str,
        window_s: float,
        latencies_ms: Sequence[float],
        *,
        register_new_s: float = math.nan,
        register_replace_s: float = math.nan,
        control_plane_cpu_ms: float = math.nan,
    ) -> ProbeRound:
        return cls(
            kind=kind,
            window_s=window_s,
            probes=len(latencies_ms),
            health_p50_ms=percentile(latencies_ms, 50),
            health_p99_ms=percentile(latencies_ms, 99),
            health_max_ms=max(latencies_ms, default=math.nan),
            over_target=sum(1 for x in latencies_ms if x > TARGET_MS),
            register_new_s=register_new_s,
            register_replace_s=register_replace_s,
            control_plane_cpu_ms=control_plane_cpu_ms,
        )

    def to_json(self) -> dict[str, Any]:
        return _finite(asdict(self))


def _finite(values: dict[str, Any]) -> dict[str, Any]:
    """NaN (a figure a round does not have) as null, for JSON."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in values.items()}


@dataclass(slots=True)
class RegistrationMeasurement:
    """Idle and registration rounds on one backend, or why there are none."""

    backend: str
    functions: int
    idle: list[ProbeRound] = field(default_factory=list)
    registering: list[ProbeRound] = field(default_factory=list)
    error: str = ""
    notes: dict[str, Any] = field(default_factory=dict)

    def summary(self, kind: str, metric: str) -> Spread:
        rounds = self.idle if kind == IDLE else self.registering
        return Spread.of([getattr(r, metric) for r in rounds])

    @property
    def slowest_ms(self) -> float:
        """The slowest health check of any measured registration round."""
        return max((r.health_max_ms for r in self.registering), default=math.nan)

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "functions": self.functions,
            "idle": [r.to_json() for r in self.idle],
            "registering": [r.to_json() for r in self.registering],
            "summary": {
                kind: {
                    name: _finite(asdict(self.summary(kind, name)))
                    for name in ProbeRound.__dataclass_fields__
                    if name != "kind"
                }
                for kind in (IDLE, REGISTERING)
            },
            "error": self.error,
            "notes": self.notes,
        }


# -- one backend --------------------------------------------------------------------------


def _registration_round(
    address: str,
    prober: Prober,
    process: Process,
    app_id: str,
    functions: int,
    timeout: float,
) -> ProbeRound:
    # Everything but the registrations themselves is ready before the probing
    # starts, so that the round's checks are those made while they happen.
    hello = large_hello(app_id, functions)
    channels = [ready_channel(address, timeout) for _ in range(2)]
    try:
        cpu_before = cpu_seconds(process.pid)
        started = time.perf_counter()
        prober.start()
        try:
            new = register(channels[0], hello, timeout)
            # The same Hello again: it replaces the functions just stored.
            replace = register(channels[1], hello, timeout)
        finally:
            latencies = prober.stop()
        window = time.perf_counter() - started
        cpu_after = cpu_seconds(process.pid)
    finally:
        for channel in channels:
            channel.close()
    cpu_ms = (
        (cpu_after - cpu_before) * 1000
        if cpu_before is not None and cpu_after is not None
        else math.nan
    )
    return ProbeRound.of(
        REGISTERING,
        window,
        latencies,
        register_new_s=new,
        register_replace_s=replace,
        control_plane_cpu_ms=cpu_ms,
    )


def _idle_round(prober: Prober, process: Process, seconds: float) -> ProbeRound:
    cpu_before = cpu_seconds(process.pid)
    started = time.perf_counter()
    prober.start()
    try:
        time.sleep(seconds)
    finally:
        latencies = prober.stop()
    window = time.perf_counter() - started
    cpu_after = cpu_seconds(process.pid)
    cpu_ms = (
        (cpu_after - cpu_before) * 1000
        if cpu_before is not None and cpu_after is not None
        else math.nan
    )
    return ProbeRound.of(IDLE, window, latencies, control_plane_cpu_ms=cpu_ms)


def _warm(address: str, prober: Prober, timeout: float) -> None:
    """Take the control plane's first-use costs (its thread pools, the statements
    that store functions, the expression compiler) with a small app of its own,
    registered twice, so that the round measures registering, not starting up."""
    hello = large_hello(WARM_APP, WARM_FUNCTIONS)
    for _ in range(2):
        channel = ready_channel(address, timeout)
        try:
            register(channel, hello, timeout)
        finally:
            channel.close()
    for _ in range(20):
        prober.check()


def _round(
    backend: str,
    directory: Path,
    *,
    functions: int,
    idle_s: float,
    timeout: float,
    notes: dict[str, Any],
) -> tuple[ProbeRound, ProbeRound]:
    """On a fresh database with a control plane of its own: an idle round of
    ``idle_s``, then a registration round."""
    with fresh_database(backend, directory, "tether_bench_registration") as url:
        notes["database"] = redact(url)
        process, port = start_control_plane(url, directory)
        address = f"127.0.0.1:{port}"
        prober: Prober | None = None
        try:
            prober = Prober(address, timeout)
            _warm(address, prober, timeout)
            idle = _idle_round(prober, process, idle_s)
            registering = _registration_round(
                address, prober, process, LARGE_APP, functions, timeout
            )
            return idle, registering
        except BaseException:
            notes["control plane log"] = process.tail(15)
            raise
        finally:
            if prober is not None:
                prober.close()
            process.stop()


def measure_registration(
    backend: str,
    *,
    functions: int,
    rounds: int,
    warmup: int,
    timeout: float,
    workdir: Path,
) -> RegistrationMeasurement:
    """``warmup`` rounds (not counted), then ``rounds`` measured ones, each on a
    fresh ``backend`` database with a control plane of its own: an idle round,
    then a registration round. The idle round probes for as long as the
    registration round before it took (the first: 0.5 s)."""
    measurement = RegistrationMeasurement(backend, functions)
    directory = workdir / f"registration-{backend}"
    directory.mkdir(parents=True, exist_ok=True)
    idle_s = FIRST_IDLE_S
    try:
        for index in range(warmup + rounds):
            idle, registering = _round(
                backend,
                directory,
                functions=functions,
                idle_s=idle_s,
                timeout=timeout,
                notes=measurement.notes,
            )
            idle_s = registering.window_s
            if index >= warmup:
                measurement.idle.append(idle)
                measurement.registering.append(registering)
    except (RuntimeError, TimeoutError, grpc.RpcError, grpc.FutureTimeoutError) as error:
        measurement.error = describe_error(error)
    return measurement


# -- the report ---------------------------------------------------------------------------


def _number(value: float, digits: int = 0) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def _ms(value: float) -> str:
    return _number(value, 1 if abs(value) < 10 else 0)


def _spread(spread: Spread, show: Any = _ms) -> str:
    if math.isnan(spread.median):
        return "-"
    return f"{show(spread.median)}  [{show(spread.low)}-{show(spread.high)}]"


def _seconds(value: float) -> str:
    return _number(value, 2)


def table(measurements: Sequence[RegistrationMeasurement]) -> str:
    """Per backend, a row of idle rounds and a row of registration rounds."""
    rows: list[tuple[str, ...]] = [
        (
            "backend",
            "rounds",
            "register new s  median [min-max]",
            "register again s  median [min-max]",
            "probes / round",
            "health p50 ms  median [min-max]",
            "health p99 ms  median [min-max]",
            "health max ms  median [min-max]",
            f"> {TARGET_MS:.0f} ms",
            "cp CPU ms / round",
        )
    ]
    failed: set[int] = set()
    for m in measurements:
        if m.error and not m.registering:
            reason = m.error.strip().splitlines()[0] if m.error.strip() else "failed"
            failed.add(len(rows))
            rows.append((m.backend, f"failed: {reason}", *[""] * 8))
            continue
        for kind, label in ((IDLE, "idle (probes only)"), (REGISTERING, "registering")):
            done = m.idle if kind == IDLE else m.registering
            rows.append(
                (
                    m.backend,
                    f"{len(done)} {label}",
                    _spread(m.summary(kind, "register_new_s"), _seconds),
                    _spread(m.summary(kind, "register_replace_s"), _seconds),
                    _number(m.summary(kind, "probes").median),
                    _spread(m.summary(kind, "health_p50_ms")),
                    _spread(m.summary(kind, "health_p99_ms")),
                    _spread(m.summary(kind, "health_max_ms")),
                    f"{sum(r.over_target for r in done)} of {sum(r.probes for r in done):,}",
                    _number(m.summary(kind, "control_plane_cpu_ms").median),
                )
            )
        if m.error:
            failed.add(len(rows))
            rows.append((m.backend, f"failed: {m.error.strip().splitlines()[0]}", *[""] * 8))
    return columns(rows, failed)


def verdicts(measurements: Sequence[RegistrationMeasurement]) -> list[str]:
    """Whether every health check answered within the target while registering."""
    lines = []
    for m in measurements:
        if not m.registering:
            continue
        over = sum(r.over_target for r in m.registering)
        probes = sum(r.probes for r in m.registering)
        verdict = "met" if over == 0 else "NOT met"
        lines.append(
            f"Target (every health check < {TARGET_MS:.0f} ms while {m.functions:,} functions "
            f"register) on {m.backend}: {verdict}; slowest {_ms(m.slowest_ms)} ms, "
            f"{over} of {probes:,} checks over"
        )
    return lines
