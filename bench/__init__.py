"""Benchmarks: durable steps per second and latency, Tether next to DBOS.

``python -m bench.run`` (or ``make bench``) runs them; results are recorded in
docs/performance.md.
"""
