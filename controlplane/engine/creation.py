"""Creating runs: the run row, its queue row (with its start deadline) and its
cancel_on watches, many at a time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from controlplane.engine import run_states
from controlplane.engine.effects import Effects
from controlplane.engine.expressions import MISSING, canonical, equality_index, event_value
from controlplane.engine.flow import (
    FlowStates,
    concurrency_slots,
    event_lock,
    priority_of,
    throttle_runs,
)
from controlplane.model import (
    CronTick,
    EventTrigger,
    FunctionKey,
    FunctionSpec,
    NewRunRecord,
    QueueEntry,
    RunEventLink,
    WaitKind,
    WaitRecord,
)
from controlplane.model.ids import new_hex_id, new_ulid
from controlplane.store.tx import NOT_DUE, WriteTx


@dataclass(frozen=True, slots=True)
class Routing:
    """The function registry as operations in the writer thread see it."""

    spec_of: Callable[[FunctionKey], FunctionSpec | None]
    matching: Callable[[str], dict[FunctionKey, list[EventTrigger]]]


@dataclass(slots=True)
class NewRun:
    spec: FunctionSpec
    event_pk: str | None
    # The event as expressions see it (for cancel_on match values).
    event: dict[str, Any] | None
    run_id: str = ""
    parent_run_id: str | None = None
    parent_step_id: str | None = None
    replay_of: str | None = None
    #: The tick, for a run a cron schedule starts.
    cron: CronTick | None = None
    #: When it is due, if not now (debounce, batching).
    due_at_ms: int | None = None
    #: Every event of a batched run, the first being ``event_pk``.
    event_pks: list[str] = field(default_factory=list)


def create_runs(tx: WriteTx, new: list[NewRun], now_ms: int, effects: Effects) -> list[str]:
    """Insert the runs, queued to start when due (now unless a debounce or batch
    set a time), later under a throttle or a negative priority; returns their
    ids. ``effects`` learns of them (and of their start deadlines)."""
    runs: list[NewRunRecord] = []
    entries: list[QueueEntry] = []
    watches: list[WaitRecord] = []
    links: list[RunEventLink] = []
    states = FlowStates(tx)
    priorities = [priority_of(item.spec, item.event) for item in new]
    # A negative priority delays the start; a positive one orders the claim.
    starts = throttle_runs(
        states,
        [
            (
                item.spec,
                item.event,
                (now_ms if item.due_at_ms is None else item.due_at_ms) + max(0, -priority) * 1000,
            )
            for item, priority in zip(new, priorities, strict=True)
        ],
    )
    for item, due, priority in zip(new, starts, priorities, strict=True):
        item.run_id = item.run_id or new_ulid(now_ms)
        key = item.spec.key
        runs.append(
            NewRunRecord(
                item.run_id,
                key,
                run_states.INITIAL,
                now_ms,
                trace_id=new_hex_id(16),
                root_span_id=new_hex_id(8),
                event_pk=item.event_pk,
                replay_of=item.replay_of,
                parent_run_id=item.parent_run_id,
                parent_step_id=item.parent_step_id,
                cron=item.cron,
            )
        )
        start = item.spec.timeouts.start_ms
        entries.append(
            QueueEntry(
                item.run_id,
                key,
                due,
                priority=max(0, priority),
                start_deadline_ms=due + start if start else None,
                concurrency=concurrency_slots(item.spec, item.event),
            )
        )
        if start:
            effects.note_deadline(due + start)
        effects.changed_runs.add(item.run_id)
        watches.extend(_cancel_watches(item, now_ms))
        links.extend(
            RunEventLink(item.run_id, position, pk) for position, pk in enumerate(item.event_pks)
        )
    states.save()
    tx.add_runs(runs)
    tx.add_queue_items(entries)
    tx.add_run_events(links)
    effects.wake = effects.wake or bool(new)
    if watches:
        tx.lock_keys(event_lock(w.event_name) for w in watches if w.event_name)
        tx.add_waits(watches)
    return [item.run_id for item in new]


def _cancel_watches(item: NewRun, now_ms: int) -> list[WaitRecord]:
    watches = []
    for index, cancel in enumerate(item.spec.cancel_on):
        match_path, match_value = cancel.match or None, None
        if cancel.match:
            value = event_value(item.event or {}, cancel.match)
            if value is MISSING:
                # The run's event lacks the field: nothing can match it.
                continue
            match_value = canonical(value)
        elif indexed := equality_index(cancel.if_expression, item.event):
            match_path, match_value = indexed
        watches.append(
            WaitRecord(
                run_id=item.run_id,
                step_id=f"cancel-on:{index}",
                name=f"cancel_on {cancel.event}",
                kind=WaitKind.CANCEL_ON,
                created_at_ms=now_ms,
                until_ms=now_ms + cancel.timeout_ms if cancel.timeout_ms else NOT_DUE,
                event_name=cancel.event,
                match_path=match_path,
                match_value=match_value,
                expression=cancel.if_expression or None,
                trigger_event_pk=item.event_pk,
            )
        )
    return watches
