"""The engine: runs, queue, timers, leases and outcomes; no gRPC, no HTTP."""
