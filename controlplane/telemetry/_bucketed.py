"""A histogram counted here, in buckets, and served as an OpenTelemetry one.

OpenTelemetry's ``Histogram.record`` costs about 8 µs a call (attribute
checks, hashing, a lock): once per durable step that is a tenth of the control
plane's time. A :class:`BucketedHistogram` costs a bisect and a few additions
per value, kept per label set on the event loop; it reaches Prometheus through
a collector on the metrics registry (:class:`PrometheusHistogram`) and OTLP
through the exporter it wraps (:class:`WithBucketedHistograms`), cumulative,
with the same name, unit, labels and buckets the SDK's histogram would have.
"""

from __future__ import annotations

import bisect
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
)
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector


@dataclass(slots=True)
class _Series:
    #: One count per bucket, the last one for values above every bound.
    counts: list[int]
    total: float = 0.0
    count: int = 0
    low: float = float("inf")
    high: float = float("-inf")


@dataclass(slots=True)
class BucketedHistogram:
    """Values counted per label set (the labels' values, in ``labels``' order)."""

    name: str
    unit: str
    description: str
    labels: tuple[str, ...]
    bounds: tuple[float, ...]
    _series: dict[tuple[str, ...], _Series] = field(default_factory=dict)
    _started_ns: int = field(default_factory=time.time_ns)

    def record(self, value: float, label_values: tuple[str, ...]) -> None:
        series = self._series.get(label_values)
        if series is None:
            series = self._series[label_values] = _Series([0] * (len(self.bounds) + 1))
        # A value on a bound belongs to that bound's bucket (Prometheus' "le").
        series.counts[bisect.bisect_left(self.bounds, value)] += 1
        series.total += value
        series.count += 1
        if value < series.low:
            series.low = value
        if value > series.high:
            series.high = value

    def forget(self, label: str, value: str) -> None:
        """Drop every series whose ``label`` is ``value``."""
        index = self.labels.index(label)
        self._series = {k: s for k, s in self._series.items() if k[index] != value}

    def snapshot(self) -> list[tuple[tuple[str, ...], _Series]]:
        """A copy of every series, for a collecting thread. Its count is the
        sum of its buckets, so that a value recorded as the copy is taken
        cannot make them disagree (the sum may lag by that value)."""
        copies = []
        for key, s in list(self._series.items()):
            counts = list(s.counts)
            copies.append((key, _Series(counts, s.total, sum(counts), s.low, s.high)))
        return copies

    def otel_metric(self) -> Metric:
        now = time.time_ns()
        points = [
            HistogramDataPoint(
                attributes=dict(zip(self.labels, key, strict=True)),
                start_time_unix_nano=self._started_ns,
                time_unix_nano=now,
                count=s.count,
                sum=s.total,
                bucket_counts=s.counts,
                explicit_bounds=self.bounds,
                min=s.low,
                max=s.high,
            )
            for key, s in self.snapshot()
        ]
        return Metric(
            name=self.name,
            description=self.description,
            unit=self.unit,
            data=Histogram(points, AggregationTemporality.CUMULATIVE),
        )


_UNIT_SUFFIXES = {"s": "seconds"}


def _prometheus_name(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", text)


class PrometheusHistogram(Collector):
    """Serves bucketed histograms as the OpenTelemetry Prometheus exporter
    names them (``tether.step.duration`` in s: ``tether_step_duration_seconds``)."""

    def __init__(self, histograms: Sequence[BucketedHistogram]) -> None:
        self._histograms = histograms

    def collect(self) -> Iterator[HistogramMetricFamily]:
        for histogram in self._histograms:
            name = _prometheus_name(histogram.name)
            suffix = _UNIT_SUFFIXES.get(histogram.unit)
            if suffix:
                name = f"{name}_{suffix}"
            family = HistogramMetricFamily(
                name, histogram.description, labels=[_prometheus_name(n) for n in histogram.labels]
            )
            bounds = (*(repr(float(b)) for b in histogram.bounds), "+Inf")
            for key, series in histogram.snapshot():
                cumulative = 0
                buckets: list[tuple[str, float]] = []
                for bound, count in zip(bounds, series.counts, strict=True):
                    cumulative += count
                    buckets.append((bound, cumulative))
                family.add_metric(list(key), buckets, series.total)
            yield family


class WithBucketedHistograms(MetricExporter):
    """An exporter that adds bucketed histograms to what the SDK collected."""

    def __init__(self, inner: MetricExporter, histograms: Iterable[BucketedHistogram]) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self._inner = inner
        self._histograms = list(histograms)

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        extra = [h.otel_metric() for h in self._histograms]
        resources = list(metrics_data.resource_metrics)
        if resources and extra:
            first = resources[0]
            scopes = list(first.scope_metrics)
            if scopes:
                scopes[0] = ScopeMetrics(
                    scopes[0].scope, [*scopes[0].metrics, *extra], scopes[0].schema_url
                )
                resources[0] = ResourceMetrics(first.resource, scopes, first.schema_url)
                metrics_data = MetricsData(resources)
        return self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)
