"""The machine's own ceilings, measured in the same invocation as the figures
they bound: fsyncs a second on the disk the databases use, single-row commits
a second on SQLite (WAL, synchronous=FULL, as Tether runs it) and on the
PostgreSQL server, and gRPC round trips a second over loopback (a unary call
of an empty message, Python client and server, as the benchmark's own client
and the control plane talk)."""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from bench.databases import postgres_base_url

_SECONDS = 1.0


def _rate(operation: Any, seconds: float = _SECONDS) -> float:
    """Operations a second, running ``operation`` back to back for ``seconds``."""
    for _ in range(20):  # warm
        operation()
    count = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        operation()
        count += 1
    return count / elapsed


def fsyncs_per_s(directory: Path) -> float:
    path = directory / "fsync.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:

        def one() -> None:
            os.write(fd, b"x" * 100)
            os.fsync(fd)

        return _rate(one)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)


def sqlite_commits_per_s(directory: Path) -> float:
    path = directory / "commits.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE t (x INTEGER)")

        def one() -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t VALUES (1)")
            conn.execute("COMMIT")

        return _rate(one)
    finally:
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def postgres_commits_per_s() -> float | None:
    """None when no PostgreSQL server is reachable."""
    import psycopg

    url = postgres_base_url().replace("postgresql+psycopg://", "postgresql://")
    try:
        conn = psycopg.connect(url, connect_timeout=5)
    except psycopg.Error:
        return None
    try:
        conn.execute("CREATE TEMPORARY TABLE bench_commits (x integer)")
        conn.commit()

        def one() -> None:
            conn.execute("INSERT INTO bench_commits VALUES (1)")
            conn.commit()

        return _rate(one)
    finally:
        conn.close()


def grpc_round_trips_per_s() -> float:
    def echo(request: bytes, _context: grpc.ServicerContext) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Call": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    call = channel.unary_unary("/bench.Echo/Call", None, None)
    try:
        return _rate(lambda: call(b"", timeout=5))
    finally:
        channel.close()
        server.stop(0)


def measure_machine(backends: list[str], workdir: Path) -> dict[str, float | None]:
    """Each ceiling, per second (None: not measurable here), on the disk of
    ``workdir`` (where the benchmark's SQLite files are)."""
    with tempfile.TemporaryDirectory(prefix="machine-", dir=workdir) as directory:
        place = Path(directory)
        found: dict[str, float | None] = {
            "fsync_per_s": fsyncs_per_s(place),
            "sqlite_commits_per_s": sqlite_commits_per_s(place),
        }
    found["postgres_commits_per_s"] = postgres_commits_per_s() if "postgres" in backends else None
    found["grpc_round_trips_per_s"] = grpc_round_trips_per_s()
    return found


def describe(limits: dict[str, float | None]) -> str:
    names = {
        "fsync_per_s": "fsync",
        "sqlite_commits_per_s": "SQLite single-row commits",
        "postgres_commits_per_s": "PostgreSQL single-row commits",
        "grpc_round_trips_per_s": "gRPC round trips (Python, loopback)",
    }
    parts = [f"{names[k]} {v:,.0f}/s" for k, v in limits.items() if v is not None]
    return "machine limits, measured now: " + "; ".join(parts)
