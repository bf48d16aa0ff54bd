"""Step durations and scheduling lag are counted in buckets per label set and
served as the histograms Prometheus and OTLP users read."""

from __future__ import annotations

from controlplane.model import ClaimRecord, StepKind, StepSpanRecord
from controlplane.telemetry.metrics import Metrics


def _step(function_id: str, duration_ms: int) -> StepSpanRecord:
    return StepSpanRecord(
        "t", "s", "r", "shop", function_id, "id", "name", StepKind.RUN, 1, 0, duration_ms
    )


def _samples(body: bytes, name: str) -> dict[str, float]:
    found = {}
    for line in body.decode().splitlines():
        if line.startswith(name):
            series, _, value = line.rpartition(" ")
            found[series] = float(value)
    return found


async def test_a_value_on_a_bucket_bound_counts_in_that_bucket_and_every_later_one() -> None:
    metrics = Metrics()
    metrics.steps_ended([_step("f", 5), _step("f", 6), _step("f", 120_000)])
    body, _ = await metrics.render_prometheus()
    buckets = _samples(body, "tether_step_duration_seconds_bucket")
    labels = (
        'tether_app_id="shop",tether_environment="default",tether_function_id="f",'
        'tether_step_kind="run",tether_step_outcome="completed"'
    )
    assert buckets[f'tether_step_duration_seconds_bucket{{le="0.0025",{labels}}}'] == 0
    assert buckets[f'tether_step_duration_seconds_bucket{{le="0.005",{labels}}}'] == 1
    assert buckets[f'tether_step_duration_seconds_bucket{{le="0.01",{labels}}}'] == 2
    assert buckets[f'tether_step_duration_seconds_bucket{{le="60.0",{labels}}}'] == 2
    assert buckets[f'tether_step_duration_seconds_bucket{{le="+Inf",{labels}}}'] == 3
    total = _samples(body, "tether_step_duration_seconds_sum")
    assert list(total.values()) == [120.011]


async def test_a_deleted_environment_leaves_no_series() -> None:
    metrics = Metrics()
    prod = metrics.environment("prod")
    prod.steps_ended([_step("f", 1)])
    prod.runs_claimed([ClaimRecord("shop", "f", 3, True)])
    metrics.steps_ended([_step("g", 1)])
    metrics.forget("prod")
    body, _ = await metrics.render_prometheus()
    assert not [s for s in _samples(body, "tether_") if 'environment="prod"' in s]
    assert [s for s in _samples(body, "tether_step_duration_seconds_count")] == [
        'tether_step_duration_seconds_count{tether_app_id="shop",tether_environment="default",'
        'tether_function_id="g",tether_step_kind="run",tether_step_outcome="completed"}'
    ]
