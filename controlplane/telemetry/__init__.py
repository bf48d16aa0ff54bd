"""OpenTelemetry for the control plane: traces of runs (traces.py) and metrics
(metrics.py), both fed by the engine's observer interface
(controlplane/engine/observer.py) and exported over OTLP when the standard
``OTEL_*`` variables say where."""

from controlplane.telemetry.metrics import Metrics
from controlplane.telemetry.traces import RunTracer, step_span_id

__all__ = ["Metrics", "RunTracer", "step_span_id"]
