"""Flow control when runs are created.

An event that triggers a function goes through, in order: pause (a function
paused with SKIP starts nothing), rate limit (over it: skipped), idempotency
(see ingest), singleton (a run holds the key: skip, or cancel it), debounce
(join the pending run of the key: the last event wins) and batching (join the
open batch of the key). Every run created, however it was created, then gets its
start time from its throttle (GCRA: queued, never dropped) and its priority,
and the concurrency keys it will be counted under when it executes (counted at
claim time, see :mod:`controlplane.engine.claims`).

Keys are CEL expressions over the event; one that yields null or a missing
field gives the empty key. Per-key state lives in the ``flow_state`` table; on
PostgreSQL each key is locked (an advisory lock held until commit) before its
state is read, so several control planes apply one order per key.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from controlplane.engine.expressions import (
    EVENT_ONLY,
    MISSING,
    bounded_key,
    canonical,
    compile_expression,
)
from controlplane.engine.settings import format_duration
from controlplane.model import (
    ConcurrencyScope,
    ConcurrencySlot,
    FunctionKey,
    FunctionSpec,
    PauseMode,
)
from controlplane.store.flow_tx import FlowKey, FlowState
from controlplane.store.tx import WriteTx

#: Priorities are clamped to this many seconds either way (Inngest's range).
MAX_PRIORITY_S = 600


class FlowKind(enum.StrEnum):
    THROTTLE = "throttle"
    RATE_LIMIT = "rate_limit"
    DEBOUNCE = "debounce"
    BATCH = "batch"
    SINGLETON = "singleton"


def event_lock(name: str) -> str:
    """The lock that orders, across control planes, the ingestion of events of
    this name and the storing of waits and cancel_on watches for it: whichever
    commits second sees the other's rows."""
    return f"event|{name}"


def key_value(expression: str, event: dict[str, Any] | None, what: str) -> str:
    """The key ``expression`` gives for ``event``: "" without an expression, or
    when it yields null or a missing field. Long keys become digests."""
    if not expression:
        return ""
    value = compile_expression(expression, EVENT_ONLY, what).evaluate({"event": event or {}})
    if value is MISSING or value is None:
        return ""
    return bounded_key(value if isinstance(value, str) else canonical(value))


def shown(text: str) -> str:
    """A key or value as messages show it: quoted, at most 80 characters."""
    return repr(text if len(text) <= 80 else text[:77] + "...")


def concurrency_slots(
    spec: FunctionSpec, event: dict[str, Any] | None
) -> tuple[ConcurrencySlot, ...]:
    """The concurrency keys and limits a run of ``spec`` counts against."""
    slots = []
    for index, rule in enumerate(spec.concurrency, start=1):
        value = key_value(rule.key, event, "concurrency")
        if rule.scope == ConcurrencyScope.FUNCTION:
            key = f"fn:{spec.app_id}/{spec.id}:{index}:{value}"
        elif rule.scope == ConcurrencyScope.APP:
            key = f"app:{spec.app_id}:{value}"
        else:
            key = f"global:{value}"
        slots.append(ConcurrencySlot(bounded_key(key), rule.limit))
    return tuple(slots)


def priority_of(spec: FunctionSpec, event: dict[str, Any] | None) -> int:
    """Seconds to start ahead of other due runs (negative: later), clamped to
    ±600; an expression that does not yield a number gives 0."""
    if not spec.priority:
        return 0
    value = compile_expression(spec.priority, EVENT_ONLY, "priority").evaluate(
        {"event": event or {}}
    )
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return max(-MAX_PRIORITY_S, min(MAX_PRIORITY_S, int(value)))


@dataclass(frozen=True, slots=True)
class Gcra:
    """The generic cell rate algorithm: one start every ``interval_ms``, up to
    ``1 + tolerance_ms / interval_ms`` at once. ``tat`` is the theoretical
    arrival time kept per key."""

    interval_ms: int
    tolerance_ms: int

    @classmethod
    def for_rate(cls, limit: int, period_ms: int, burst: int) -> Gcra:
        interval = max(1, period_ms // limit)
        return cls(interval, interval * (burst - 1))

    def allowed_at(self, tat_ms: int | None, now_ms: int) -> int:
        """The earliest time the next start conforms."""
        return max(now_ms, (tat_ms or now_ms) - self.tolerance_ms)

    def take(self, tat_ms: int | None, at_ms: int) -> int:
        """The new TAT after a start at ``at_ms``."""
        return max(tat_ms or at_ms, at_ms) + self.interval_ms


class FlowStates:
    """The flow-control records of one transaction: read once per key (after
    locking it), changed in memory, written back by :meth:`save`."""

    def __init__(self, tx: WriteTx) -> None:
        self.tx = tx
        self._states: dict[FlowKey, FlowState | None] = {}
        self._dirty: set[FlowKey] = set()

    def load(self, keys: list[FlowKey]) -> None:
        missing = [k for k in keys if k not in self._states]
        if not missing:
            return
        self.tx.lock_keys("flow|" + "|".join(k) for k in missing)
        found = self.tx.flow_states(missing)
        for k in missing:
            self._states[k] = found.get(k)

    def get(self, key: FlowKey) -> FlowState | None:
        self.load([key])
        return self._states[key]

    def put(self, key: FlowKey, state: FlowState | None) -> None:
        self._states[key] = state
        self._dirty.add(key)

    def save(self) -> None:
        if self._dirty:
            self.tx.save_flow_states({k: self._states[k] for k in self._dirty})
            self._dirty.clear()


def flow_key(spec: FunctionSpec, kind: FlowKind, key: str) -> FlowKey:
    return (spec.app_id, spec.id, kind.value, key)


class EventGate:
    """The checks an event goes through before it starts a run of a function;
    one per ingest transaction."""

    def __init__(self, tx: WriteTx, states: FlowStates, now_ms: int) -> None:
        self.tx = tx
        self.states = states
        self.now = now_ms
        self._paused: dict[FunctionKey, PauseMode] | None = None
        #: Runs created in this transaction but not inserted yet (always pending).
        self.pending_here: set[str] = set()

    def paused(self, spec: FunctionSpec) -> PauseMode | None:
        if self._paused is None:
            self._paused = self.tx.paused_functions()
        return self._paused.get(spec.key)

    def rate_limited(self, spec: FunctionSpec, event: dict[str, Any]) -> str | None:
        """Why the event may not start a run now (the rate limit), or None (and
        the start is counted)."""
        rule = spec.rate_limit
        if rule is None:
            return None
        key = key_value(rule.key, event, "rate limit")
        slot = flow_key(spec, FlowKind.RATE_LIMIT, key)
        state = self.states.get(slot)
        gcra = Gcra.for_rate(rule.limit, rule.period_ms, rule.limit)
        tat = state.value_ms if state is not None else None
        if gcra.allowed_at(tat, self.now) > self.now:
            where = f" for key {shown(key)}" if rule.key else ""
            period = format_duration(rule.period_ms)
            return f"rate limited: at most {rule.limit} run(s) per {period}{where}"
        self.states.put(slot, FlowState(None, gcra.take(tat, self.now)))
        return None

    def singleton_holder(self, spec: FunctionSpec, event: dict[str, Any]) -> tuple[str, str]:
        """(the unfinished run holding the singleton key or "", the key)."""
        rule = spec.singleton
        assert rule is not None
        key = key_value(rule.key, event, "singleton")
        state = self.states.get(flow_key(spec, FlowKind.SINGLETON, key))
        if state is None or state.run_id is None:
            return "", key
        if state.run_id in self.pending_here or state.run_id in self.tx.unfinished([state.run_id]):
            return state.run_id, key
        return "", key

    def hold_singleton(self, spec: FunctionSpec, key: str, run_id: str) -> None:
        self.states.put(flow_key(spec, FlowKind.SINGLETON, key), FlowState(run_id, self.now))
        self.pending_here.add(run_id)

    def open_run(self, spec: FunctionSpec, kind: FlowKind, key: str) -> FlowState | None:
        """The pending run a debounce or batch of this key may still change."""
        state = self.states.get(flow_key(spec, kind, key))
        if state is None or state.run_id is None:
            return None
        if state.run_id in self.pending_here or state.run_id in self.tx.not_started([state.run_id]):
            return state
        return None


def throttle_runs(
    states: FlowStates, runs: list[tuple[FunctionSpec, dict[str, Any] | None, int]]
) -> list[int]:
    """The start time of each (spec, event, due time) under its throttle."""
    slots = [
        flow_key(spec, FlowKind.THROTTLE, key_value(spec.throttle.key, event, "throttle"))
        if spec.throttle is not None
        else None
        for spec, event, _ in runs
    ]
    states.load([s for s in slots if s is not None])
    starts = []
    for (spec, _, due), slot in zip(runs, slots, strict=True):
        if slot is None or spec.throttle is None:
            starts.append(due)
            continue
        rule = spec.throttle
        gcra = Gcra.for_rate(rule.limit, rule.period_ms, rule.burst)
        state = states.get(slot)
        tat = state.value_ms if state is not None else None
        start = gcra.allowed_at(tat, due)
        states.put(slot, FlowState(None, gcra.take(tat, start)))
        starts.append(start)
    return starts
