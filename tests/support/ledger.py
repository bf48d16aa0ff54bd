"""A file that test apps append to from their steps: the outside world's record
of what actually ran, read back by tests to count executions."""

from __future__ import annotations

import os
from pathlib import Path

LEDGER_VARIABLE = "TETHER_TEST_LEDGER"


def record(*fields: object) -> None:
    """Append one line (a single small write, so appends from threads and
    processes do not interleave)."""
    path = os.environ[LEDGER_VARIABLE]
    line = "\t".join(str(f) for f in fields) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def read(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split("\t") for line in path.read_text().splitlines() if line]
