"""Where the time goes: CPU seconds of a process, and py-spy profiles of the
control plane and the worker during the measured rounds (``--profile DIR``).

py-spy is not a dependency of the benchmark: install it into the benchmark
virtualenv (``.venv-bench/bin/pip install py-spy``) to profile.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench.processes import Process

_FRAME_LINE = re.compile(r":\d+\)$")
_THREAD = re.compile(r"^thread \(\d+\): ")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux; None elsewhere)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; the rest follows its ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


class PySpyProfiler:
    """Records each process with ``py-spy record`` while the measured rounds run,
    then writes the raw stacks (flamegraph input) and a summary next to them."""

    def __init__(self, directory: Path, label: str, *, rate: int = 250) -> None:
        executable = py_spy()
        if executable is None:
            raise RuntimeError(
                "--profile needs py-spy: .venv-bench/bin/pip install py-spy (or pip install py-spy)"
            )
        self.executable = executable
        self.directory = directory
        self.label = label
        self.rate = rate
        self._running: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self.summaries: dict[str, str] = {}

    def __call__(self, processes: dict[str, Process] | None) -> None:
        if processes is not None:
            self._start(processes)
        else:
            self._stop()

    def _start(self, processes: dict[str, Process]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for name, process in processes.items():
            out = self.directory / f"{self.label}-{name}.txt"
            command = [
                self.executable,
                "record",
                "--pid",
                str(process.pid),
                "--rate",
                str(self.rate),
                "--format",
                "raw",
                "--threads",
                "--full-filenames",
                "--nonblocking",
                "--output",
                str(out),
            ]
            log = (self.directory / f"{self.label}-{name}.py-spy.log").open("wb")
            spy = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            log.close()
            self._running.append((name, spy, out))

    def _stop(self) -> None:
        for name, spy, out in self._running:
            if spy.poll() is None:
                spy.send_signal(signal.SIGINT)
            try:
                spy.wait(60)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait()
            if out.exists():
                summary = summarize(out)
                (out.with_suffix(".summary.txt")).write_text(summary)
                self.summaries[name] = summary
        self._running.clear()


def _split(raw: str) -> tuple[str, str]:
    """``fn (/path/to/file.py:123)`` -> (``fn``, ``/path/to/file.py``)."""
    name, _, where = raw.partition(" (")
    return name, _FRAME_LINE.sub("", "(" + where)[1:] if where else ""


def _frame(raw: str) -> str:
    """``fn (/path/to/file.py:123)`` -> ``fn (file.py)``: aggregated over lines."""
    name, path = _split(raw)
    return f"{name} ({Path(path).name})" if path else raw


def _package(raw: str) -> str:
    """Which code a frame belongs to: a project package, a library, the stdlib."""
    _, path = _split(raw)
    parts = Path(path).parts
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            rest = parts[parts.index(marker) + 1 :]
            return rest[0].removesuffix(".py") if rest else marker
    if "controlplane" in parts:
        rest = parts[parts.index("controlplane") + 1 :]
        return "controlplane." + rest[0].removesuffix(".py") if len(rest) > 1 else "controlplane"
    if "sdk_python" in parts or "tether" in parts:
        return "tether (SDK)"
    if "bench" in parts:
        return "bench"
    for index, part in enumerate(parts):
        if part.startswith("python3"):
            rest = parts[index + 1 :]
            return "stdlib " + rest[0].removesuffix(".py") if rest else "stdlib"
    return Path(path).name or raw


_PROJECT = ("controlplane", "tether", "bench")

#: Leaf frames that mean a thread was blocked (py-spy does not always tell):
#: an event loop in epoll, an executor thread waiting for work, gRPC's poller.
WAITING = frozenset(
    {
        "EpollSelector.select (selectors.py)",
        "_worker (thread.py)",
        "Thread.run (threading.py)",
        "Condition.wait (threading.py)",
        "Event.wait (threading.py)",
    }
)


def summarize(path: Path, top: int = 20) -> str:
    """The threads, the functions with the most samples on top of the stack
    (self) and the functions on the most stacks (inclusive), in percent of the
    samples that were not waiting."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    waiting = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        stack = _THREAD.sub("", stack)
        thread, *frames = stack.split(";")
        thread = re.sub(r"[-_]?\d+$", "", thread) or "thread"
        names = [_frame(f) for f in frames]
        if names and names[-1] in WAITING:
            waiting += count
            continue
        total += count
        threads[thread] += count
        if frames:
            packages[_package(frames[-1])] += count
        if names:
            self_time[names[-1]] += count
        project = {
            name
            for raw, name in zip(frames, names, strict=True)
            if _package(raw).startswith(_PROJECT)
        }
        for name in project:
            inclusive[name] += count
    if not total:
        return "no samples\n"

    def table(title: str, counter: Counter[str]) -> list[str]:
        lines = [title]
        lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in counter.most_common(top)]
        return lines

    lines = [
        f"{total} samples in Python threads ({waiting} more waiting, left out; "
        "gRPC's C threads are not sampled)"
    ]
    lines += table("by thread:", threads)
    lines += table("self, by package (where the CPU is spent):", packages)
    lines += table("self (top of stack):", self_time)
    lines += table("project functions, inclusive (anywhere on the stack):", inclusive)
    return "\n".join(lines) + "\n"
