"""OpenTelemetry metrics of the control plane, served in the Prometheus text
format (``GET /metrics``) and exported over OTLP when an endpoint is set.

Histograms are counted here in buckets as the engine reports its commits
(telemetry/_bucketed.py), and run counts are plain integers kept here:
OpenTelemetry's per-call cost is several microseconds, too much once per step.
Both are served at collection. Gauges read a snapshot of the
engine's state (``Engine.stats``) taken on the event loop just before each
collection, never the database from the collecting thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
from collections.abc import Awaitable, Callable, Iterable, Sequence

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from controlplane.engine.observer import EngineObserver
from controlplane.engine.stats import EngineStats
from controlplane.model import (
    ClaimRecord,
    RunSpanRecord,
    RunStatus,
    StepKind,
    StepSpanRecord,
)
from controlplane.model.access import DEFAULT_ENVIRONMENT
from controlplane.telemetry._bucketed import (
    BucketedHistogram,
    PrometheusHistogram,
    WithBucketedHistograms,
)
from controlplane.telemetry._env import DEFAULT_SERVICE_NAME, otlp_endpoint, service_name

log = logging.getLogger(__name__)

StatsSource = Callable[[], Awaitable[EngineStats]]

_DEFAULT_EXPORT_INTERVAL_MS = 60_000.0
# Seconds: from a millisecond step to a long one.
_STEP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Seconds: a claim within a millisecond of its due time, up to a backlog of an hour.
_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
_WAIT_KINDS = (StepKind.WAIT_FOR_EVENT.value, StepKind.INVOKE.value)
_STARTED = "started"

APP = "tether.app_id"
FUNCTION = "tether.function_id"
ENVIRONMENT = "tether.environment"


class Metrics(EngineObserver):
    """The control plane's meters, with a private Prometheus registry (several
    control planes may share a process) and an optional OTLP exporter. Every
    series is labelled with its environment: each engine reports through
    :meth:`environment` (reports made to this object directly count for the
    default environment)."""

    def __init__(
        self,
        exporter: MetricExporter | None = None,
        *,
        export_interval_ms: float = _DEFAULT_EXPORT_INTERVAL_MS,
        service: str = DEFAULT_SERVICE_NAME,
    ) -> None:
        self._registry = CollectorRegistry()
        self._step_duration = BucketedHistogram(
            "tether.step.duration",
            "s",
            "Duration of step attempts run by workers, as reported by them",
            (ENVIRONMENT, APP, FUNCTION, "tether.step_kind", "tether.step_outcome"),
            _STEP_BUCKETS,
        )
        self._lag = BucketedHistogram(
            "tether.scheduling.lag",
            "s",
            "How long after its due time a queued run was leased to a worker",
            (ENVIRONMENT, APP, FUNCTION),
            _LAG_BUCKETS,
        )
        histograms = (self._step_duration, self._lag)
        self._registry.register(PrometheusHistogram(histograms))
        readers: list[MetricReader] = [
            PrometheusMetricReader(registry=self._registry, scope_info_enabled=False)
        ]
        if exporter is not None:
            exporter = WithBucketedHistograms(exporter, histograms)
        # Collected by our own loop (after a refresh of the gauges), not by the
        # reader's thread: hence an infinite interval.
        self._otlp = (
            PeriodicExportingMetricReader(exporter, export_interval_millis=math.inf)
            if exporter is not None
            else None
        )
        if self._otlp is not None:
            readers.append(self._otlp)
        self._interval_s = export_interval_ms / 1000
        self._provider = MeterProvider(
            metric_readers=readers,
            resource=Resource.create({"service.name": service_name(service)}),
        )
        meter = self._provider.get_meter("tether.controlplane")
        # Runs counted per (what happened, environment, app id, function id);
        # only the event loop writes, the collecting thread reads a copy.
        self._runs: dict[tuple[str, str, str, str], int] = {}
        for what, description in (
            (_STARTED, "Runs whose first execution was leased to a worker"),
            (RunStatus.COMPLETED.value, "Runs that completed"),
            (RunStatus.FAILED.value, "Runs that failed for good"),
            (RunStatus.CANCELLED.value, "Runs cancelled (by the API, cancel_on, a timeout)"),
        ):
            meter.create_observable_counter(
                f"tether.runs.{what}", [self._run_counter(what)], "{run}", description
            )
        meter.create_observable_gauge(
            "tether.queue.depth",
            [self._observe_queue],
            "{run}",
            "Runs due now and not leased (waiting for a worker or a free slot)",
        )
        meter.create_observable_gauge(
            "tether.waits.pending",
            [self._observe_waits],
            "{wait}",
            "Pending event waits and invokes",
        )
        meter.create_observable_gauge(
            "tether.sleeps.pending", [self._observe_sleeps], "{sleep}", "Pending sleeps"
        )
        meter.create_observable_gauge(
            "tether.queue.oldest_age",
            [self._observe_oldest],
            "s",
            "How long the oldest run due and not leased has waited, per function",
        )
        meter.create_observable_gauge(
            "tether.invariant.violations",
            [self._observe_violations],
            "{violation}",
            "What the last background check of the invariants found (tether doctor)",
        )
        meter.create_observable_gauge(
            "tether.store.size",
            [self._observe_store_size],
            "By",
            "The size of the environment's store: its tables and indexes",
        )
        meter.create_observable_counter(
            "tether.purged",
            [self._observe_purged],
            "{row}",
            "What retention deleted since the control plane started: runs, events, state",
        )
        meter.create_observable_gauge(
            "tether.workers.connected",
            [self._observe_workers],
            "{worker}",
            "Worker streams connected to this control plane",
        )
        self._stats: dict[str, StatsSource] = {}
        self._snapshots: dict[str, EngineStats] = {}
        self._lock = asyncio.Lock()
        self._loop: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    def from_environment(cls, service: str = DEFAULT_SERVICE_NAME) -> Metrics:
        """Also export over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT (or the metrics
        variant) is set, every OTEL_METRIC_EXPORT_INTERVAL ms (60 s)."""
        endpoint = otlp_endpoint("metrics")
        if not endpoint:
            return cls(service=service)
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        interval = _DEFAULT_EXPORT_INTERVAL_MS
        raw = os.environ.get("OTEL_METRIC_EXPORT_INTERVAL", "")
        try:
            interval = float(raw) if raw else interval
        except ValueError:
            log.warning("OTEL_METRIC_EXPORT_INTERVAL=%r is not a number of ms; using 60000", raw)
        if interval <= 0:
            interval = _DEFAULT_EXPORT_INTERVAL_MS
        log.info("exporting metrics over OTLP to %s every %g ms", endpoint, interval)
        return cls(OTLPMetricExporter(), export_interval_ms=interval, service=service)

    def environment(self, name: str) -> EngineObserver:
        """The observer of environment ``name``'s engine: its reports are
        labelled with it. Its shutdown does nothing (this object's owner shuts
        this object down)."""
        return _EnvironmentMetrics(self, name)

    def start(self, stats: StatsSource, environment: str = DEFAULT_ENVIRONMENT) -> None:
        """Read environment ``environment``'s gauges from ``stats``; start
        exporting over OTLP if configured."""
        self._stats[environment] = stats
        if self._otlp is not None and self._loop is None:
            self._loop = asyncio.get_running_loop().create_task(
                self._export_loop(), name="tether-metrics-export"
            )

    async def render_prometheus(self) -> tuple[bytes, str]:
        """The metrics in the Prometheus text format: (body, content type)."""
        async with self._lock:
            await self._refresh()
            return generate_latest(self._registry), CONTENT_TYPE_PLAIN_0_0_4

    async def export(self) -> None:
        """Export over OTLP now (nothing without an exporter)."""
        if self._otlp is None:
            return
        async with self._lock:
            await self._refresh()
            await asyncio.to_thread(self._otlp.collect)

    async def shutdown(self) -> None:
        if self._closed:
            return
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
            self._loop = None
        await self.export()  # the last values
        self._closed = True
        self._stats.clear()
        await asyncio.to_thread(self._provider.shutdown)

    async def _export_loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.export()
            except Exception:
                log.exception("could not export metrics")

    def forget(self, environment: str) -> None:
        """Drop every series of a deleted environment."""
        self._stats.pop(environment, None)
        self._snapshots.pop(environment, None)
        self._runs = {key: n for key, n in self._runs.items() if key[1] != environment}
        for histogram in (self._step_duration, self._lag):
            histogram.forget(ENVIRONMENT, environment)

    async def _refresh(self) -> None:
        for environment, stats in list(self._stats.items()):
            try:
                self._snapshots[environment] = await stats()
            except Exception as error:
                # Serve the last snapshot rather than no metrics at all.
                log.warning("could not read the engine's state for metrics: %s", error)

    # -- the engine's reports (on the event loop, O(1) each) --------------------------

    def runs_claimed(
        self, claims: Sequence[ClaimRecord], environment: str = DEFAULT_ENVIRONMENT
    ) -> None:
        runs = self._runs
        lag = self._lag
        for claim in claims:
            lag.record(claim.lag_ms / 1000, (environment, claim.app_id, claim.function_id))
            if claim.first:
                key = (_STARTED, environment, claim.app_id, claim.function_id)
                runs[key] = runs.get(key, 0) + 1

    def steps_ended(
        self, steps: Sequence[StepSpanRecord], environment: str = DEFAULT_ENVIRONMENT
    ) -> None:
        durations = self._step_duration
        for step in steps:
            durations.record(
                max(0, step.ended_at_ms - step.started_at_ms) / 1000,
                (
                    environment,
                    step.app_id,
                    step.function_id,
                    step.kind.value,
                    "failed" if step.error else "completed",
                ),
            )

    def runs_finished(
        self, runs: Sequence[RunSpanRecord], environment: str = DEFAULT_ENVIRONMENT
    ) -> None:
        counts = self._runs
        for run in runs:
            key = (run.status.value, environment, run.app_id, run.function_id)
            counts[key] = counts.get(key, 0) + 1

    # -- observed (in the collecting thread: read copies and the snapshot only) -------

    def _run_counter(self, what: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            return [
                Observation(n, {ENVIRONMENT: environment, APP: app_id, FUNCTION: function_id})
                for (kind, environment, app_id, function_id), n in self._runs.copy().items()
                if kind == what
            ]

        return observe

    def _observe_queue(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(n, {ENVIRONMENT: env, APP: key.app_id, FUNCTION: key.function_id})
            for env, snapshot in self._snapshots.copy().items()
            for key, n in snapshot.queue_depth.items()
        ]

    def _observe_waits(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(
                snapshot.pending_waits.get(kind, 0), {ENVIRONMENT: env, "tether.step_kind": kind}
            )
            for env, snapshot in self._snapshots.copy().items()
            for kind in _WAIT_KINDS
        ]

    def _observe_sleeps(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(snapshot.pending_sleeps, {ENVIRONMENT: env})
            for env, snapshot in self._snapshots.copy().items()
        ]

    def _observe_oldest(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(ms / 1000, {ENVIRONMENT: env, APP: key.app_id, FUNCTION: key.function_id})
            for env, snapshot in self._snapshots.copy().items()
            for key, ms in snapshot.oldest_ready_ms.items()
        ]

    def _observe_violations(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(n, {ENVIRONMENT: env, "tether.invariant": invariant})
            for env, snapshot in self._snapshots.copy().items()
            for invariant, n in snapshot.invariant_violations.items()
        ]

    def _observe_store_size(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(snapshot.stored_bytes, {ENVIRONMENT: env})
            for env, snapshot in self._snapshots.copy().items()
        ]

    def _observe_purged(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(n, {ENVIRONMENT: env, "tether.purged_kind": kind})
            for env, snapshot in self._snapshots.copy().items()
            for kind, n in snapshot.purged.items()
        ]

    def _observe_workers(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(n, {ENVIRONMENT: env, APP: app})
            for env, snapshot in self._snapshots.copy().items()
            for app, n in snapshot.workers_connected.items()
        ]


class _EnvironmentMetrics(EngineObserver):
    """What one environment's engine reports, labelled with the environment."""

    def __init__(self, metrics: Metrics, environment: str) -> None:
        self._metrics = metrics
        self._environment = environment

    def runs_claimed(self, claims: Sequence[ClaimRecord]) -> None:
        self._metrics.runs_claimed(claims, self._environment)

    def steps_ended(self, steps: Sequence[StepSpanRecord]) -> None:
        self._metrics.steps_ended(steps, self._environment)

    def runs_finished(self, runs: Sequence[RunSpanRecord]) -> None:
        self._metrics.runs_finished(runs, self._environment)
