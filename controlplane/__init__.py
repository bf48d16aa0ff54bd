"""The Tether control plane: events, schedules and run state, served over gRPC."""

__version__ = "0.1.0"
