"""Events in: deduplicate, store, resolve what waits for them, start runs.

Each event, in order: first it resolves the waits and cancel_on watches it
matches (runs created before it), then it starts a run of every function it
triggers (trigger name, including `prefix.*`, and the trigger's `if_`
expression), unless the function's idempotency key for it is already taken, in
which case the skip and its reason are recorded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from controlplane.engine import admin
from controlplane.engine.creation import NewRun, Routing, create_runs
from controlplane.engine.effects import Effects
from controlplane.engine.expressions import (
    EVENT_ONLY,
    MISSING,
    bounded_key,
    canonical,
    compile_expression,
    event_object,
)
from controlplane.engine.flow import (
    EventGate,
    FlowKind,
    FlowStates,
    event_lock,
    flow_key,
    key_value,
    shown,
)
from controlplane.engine.matching import WaitMatcher
from controlplane.engine.trace_ids import parse_traceparent, traceparent
from controlplane.engine.waits import WaitPlanner
from controlplane.model import (
    EventInput,
    EventSkip,
    EventSpanRecord,
    EventTrigger,
    FunctionSpec,
    IdempotencyClaim,
    NewEvent,
    PauseMode,
    RunEventLink,
    SendResult,
    SingletonMode,
    SkippedRun,
    StoredEvent,
    WaitKind,
)
from controlplane.model.ids import new_hex_id, new_ulid
from controlplane.store.flow_tx import FlowState
from controlplane.store.tx import WriteTx

IDEMPOTENCY_WINDOW_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class PreparedEvent:
    """An event validated, with its id assigned."""

    event: EventInput
    event_id: str
    ts_ms: int
    # The sender's span (W3C traceparent), if it sent one.
    parent: str | None = None


def prepare(event: EventInput, now_ms: int, parent: str | None = None) -> PreparedEvent:
    return PreparedEvent(
        event=event,
        event_id=event.id or new_ulid(now_ms),
        ts_ms=event.ts_ms or now_ms,
        parent=parent,
    )


def store_events(
    tx: WriteTx,
    batch: list[PreparedEvent],
    now_ms: int,
    dedupe_since_ms: int,
    routing: Routing,
) -> tuple[list[SendResult], Effects]:
    """Store new events, resolve the waits they match, start the runs they
    trigger; duplicates (same id within the window) change nothing."""
    effects = Effects()
    ids_sent = [p.event_id for p in batch if p.event.id]
    # Across control planes: one order per event name with the waits and
    # watches stored for it, and per event id with its duplicates.
    tx.lock_keys([event_lock(p.event.name) for p in batch] + [f"event-id|{i}" for i in ids_sent])
    seen = tx.recent_event_ids(ids_sent, dedupe_since_ms) if ids_sent else set()
    results: list[SendResult] = []
    stored: list[tuple[str, StoredEvent, SendResult]] = []
    new_events: list[NewEvent] = []
    spans: list[tuple[str, str | None, str, SendResult]] = []
    for prepared in batch:
        if prepared.event_id in seen:
            results.append(SendResult(prepared.event_id, duplicate=True, run_ids=[]))
            continue
        seen.add(prepared.event_id)
        pk = new_ulid(now_ms)
        sent = prepared.event
        # The event's span: a child of the sender's when it sent one.
        parent = parse_traceparent(prepared.parent)
        span = traceparent(parent[0] if parent else new_hex_id(16), new_hex_id(8))
        event = StoredEvent(
            id=prepared.event_id,
            name=sent.name,
            data=sent.data or b"{}",
            user=sent.user,
            ts_ms=prepared.ts_ms,
            received_at_ms=now_ms,
        )
        new_events.append(NewEvent(pk, event, span))
        result = SendResult(prepared.event_id, duplicate=False, run_ids=[])
        results.append(result)
        spans.append((span, prepared.parent if parent else None, sent.name, result))
        stored.append((pk, event, result))
    tx.add_events(new_events)
    matcher = WaitMatcher(tx, [event for _, event, _ in stored], now_ms)
    planner = WaitPlanner(tx, now_ms, routing, effects)
    starter = _RunStarter(tx, now_ms, routing, effects, matcher)
    for pk, event, result in stored:
        # Runs this event starts must not see it as an event they wait for.
        starter.flush_if_watched(event.name)
        resolve_waits(tx, event, matcher, planner, result)
        starter.start_for(pk, event, result)
    starter.flush()
    planner.flush()
    effects.event_spans.extend(
        EventSpanRecord(span, parent, result.event_id, name, now_ms, len(result.run_ids))
        for span, parent, name, result in spans
    )
    return results, effects


def resolve_waits(
    tx: WriteTx,
    event: StoredEvent,
    matcher: WaitMatcher,
    planner: WaitPlanner,
    result: SendResult,
) -> None:
    """Resolve the event waits this event satisfies; cancel the runs whose
    cancel_on it satisfies. Both are reported in ``result``."""
    matched = matcher.matched_by(event)
    cancelled: set[str] = set()
    # Cancellations first: a run this event cancels does not resume.
    for wait in sorted(matched, key=lambda w: w.kind is not WaitKind.CANCEL_ON):
        if wait.kind is WaitKind.CANCEL_ON:
            if wait.run_id in cancelled:
                continue
            cancelled.add(wait.run_id)
            reason = f"cancelled by event {event.name} ({event.id}) matching cancel_on"
            done = admin.cancel_unfinished(tx, wait.run_id, reason, planner.now)
            matcher.run_ended(wait.run_id)
            if done is not None:
                planner.effects.merge(done)
                result.cancelled_run_ids.append(wait.run_id)
        elif wait.run_id not in cancelled:
            planner.resolve_with_event(wait, event)
            matcher.resolved(wait)
            if wait.run_id not in result.resumed_run_ids:  # a run may wait twice for it
                result.resumed_run_ids.append(wait.run_id)


class _RunStarter:
    """Collects the runs events start (after flow control) and creates them together."""

    def __init__(
        self,
        tx: WriteTx,
        now_ms: int,
        routing: Routing,
        effects: Effects,
        matcher: WaitMatcher,
    ) -> None:
        self.tx = tx
        self.now = now_ms
        self.routing = routing
        self.effects = effects
        self.matcher = matcher
        self.states = FlowStates(tx)
        self.gate = EventGate(tx, self.states, now_ms)
        self.pending: list[NewRun] = []
        self.pending_results: list[tuple[NewRun, SendResult]] = []
        self.pending_by_id: dict[str, NewRun] = {}
        self.skips: list[EventSkip] = []
        # Idempotency keys taken in this batch: key -> run id.
        self.keys: dict[tuple[str, str, str], str] = {}
        self.key_claims: list[IdempotencyClaim] = []
        self.event_links: list[RunEventLink] = []
        self.watched: set[str] = set()

    def start_for(self, pk: str, event: StoredEvent, result: SendResult) -> None:
        obj = event_object(event)
        for key, triggers in self.routing.matching(event.name).items():
            spec = self.routing.spec_of(key)
            if spec is None or not _triggered(triggers, obj):
                continue
            new = NewRun(spec, pk, obj, run_id=new_ulid(self.now))
            if not self._admitted(spec, new, event, result):
                continue
            self.pending.append(new)
            self.pending_results.append((new, result))
            self.pending_by_id[new.run_id] = new
            self.watched.update(c.event for c in spec.cancel_on)

    def _admitted(
        self, spec: FunctionSpec, new: NewRun, event: StoredEvent, result: SendResult
    ) -> bool:
        """Whether ``new`` is to be created: False when flow control skipped the
        event (recorded) or it joined a run that exists (a debounce, a batch)."""
        obj, pk, gate = new.event or {}, new.event_pk or "", self.gate
        if gate.paused(spec) == PauseMode.SKIP:
            self._skip(spec, pk, result, "the function is paused; new events start nothing")
            return False
        reason = gate.rate_limited(spec, obj)
        if reason is not None:
            self._skip(spec, pk, result, reason)
            return False
        if spec.idempotency and not self._claim_key(spec, new, obj, pk, result):
            return False
        singleton_key = ""
        if spec.singleton is not None:
            holder, singleton_key = gate.singleton_holder(spec, obj)
            if holder and not self._resolve_singleton(spec, new, holder, singleton_key, result):
                return False
        if spec.debounce is not None and self._debounced(spec, new, event, result):
            return False
        if spec.batching is not None and self._batched(spec, new, result):
            return False
        if spec.singleton is not None:
            gate.hold_singleton(spec, singleton_key, new.run_id)
        return True

    def _skip(
        self, spec: FunctionSpec, pk: str, result: SendResult, reason: str, holder: str = ""
    ) -> None:
        """The event starts no run of ``spec``: say so in the result and record it."""
        result.skipped.append(SkippedRun(spec.app_id, spec.id, reason, holder))
        self._record_skip(spec, pk, reason, holder)

    def _record_skip(self, spec: FunctionSpec, pk: str, reason: str, holder: str = "") -> None:
        self.skips.append(EventSkip(pk, spec.key, reason, self.now, holder or None))

    def _resolve_singleton(
        self, spec: FunctionSpec, new: NewRun, holder: str, key: str, result: SendResult
    ) -> bool:
        """A run holds the singleton key: skip the event, or cancel that run."""
        assert spec.singleton is not None
        where = f" for key {shown(key)}" if spec.singleton.key else ""
        if spec.singleton.mode == SingletonMode.SKIP:
            reason = f"singleton: run {holder} is still unfinished{where}"
            self._skip(spec, new.event_pk or "", result, reason, holder)
            return False
        if holder in self.pending_by_id:
            self.flush()
        reason = f"cancelled by event {result.event_id}: singleton{where}, the newest run wins"
        done = admin.cancel_unfinished(self.tx, holder, reason, self.now)
        self.matcher.run_ended(holder)
        if done is not None:
            self.effects.merge(done)
            result.cancelled_run_ids.append(holder)
        return True

    def _debounced(
        self, spec: FunctionSpec, new: NewRun, event: StoredEvent, result: SendResult
    ) -> bool:
        """Join the pending debounced run of the key (True), or make ``new`` it."""
        rule = spec.debounce
        assert rule is not None
        key = key_value(rule.key, new.event, "debounce")
        slot = flow_key(spec, FlowKind.DEBOUNCE, key)
        pending = self.gate.open_run(spec, FlowKind.DEBOUNCE, key)
        first = pending.value_ms if pending is not None else self.now
        due = self.now + rule.period_ms
        if rule.timeout_ms:
            due = min(due, first + rule.timeout_ms)
        if pending is None or pending.run_id is None:
            new.due_at_ms = due
            self.states.put(slot, FlowState(new.run_id, self.now))
            self.gate.pending_here.add(new.run_id)
            return False
        run_id = pending.run_id
        waiting = self.pending_by_id.get(run_id)
        if waiting is not None:
            replaced = waiting.event_pk
            waiting.event_pk, waiting.event, waiting.due_at_ms = new.event_pk, new.event, due
        else:
            replaced = self.tx.run_states([run_id])[run_id].event_pk
            self.tx.set_run_event(run_id, new.event_pk or "", self.now)
            self.tx.set_due(run_id, due)
            self.effects.changed_runs.add(run_id)
            self.effects.wake = True
        if replaced:
            reason = f"debounced: event {event.id} arrived later and replaced it in run {run_id}"
            self._record_skip(spec, replaced, reason, run_id)
        result.run_ids.append(run_id)
        return True

    def _batched(self, spec: FunctionSpec, new: NewRun, result: SendResult) -> bool:
        """Join the open batch of the key (True), or make ``new`` a new batch."""
        rule = spec.batching
        assert rule is not None
        key = key_value(rule.key, new.event, "batching")
        slot = flow_key(spec, FlowKind.BATCH, key)
        pk = new.event_pk or ""
        batch = self.gate.open_run(spec, FlowKind.BATCH, key)
        if batch is None or batch.run_id is None:
            new.event_pks = [pk]
            if rule.max_size > 1:
                new.due_at_ms = self.now + rule.timeout_ms
                self.states.put(slot, FlowState(new.run_id, self.now, 1))
                self.gate.pending_here.add(new.run_id)
            return False
        run_id = batch.run_id
        waiting = self.pending_by_id.get(run_id)
        if waiting is not None:
            waiting.event_pks.append(pk)
        else:
            self.event_links.append(RunEventLink(run_id, batch.count, pk))
            self.effects.changed_runs.add(run_id)
        batch.count += 1
        if batch.count >= rule.max_size:
            # Full: it starts now, and the next event opens a new batch.
            if waiting is not None:
                waiting.due_at_ms = self.now
            else:
                self.tx.set_due(run_id, self.now)
                self.effects.wake = True
            self.states.put(slot, None)
        else:
            self.states.put(slot, batch)
        result.run_ids.append(run_id)
        return True

    def _claim_key(
        self, spec: FunctionSpec, new: NewRun, obj: dict[str, Any], pk: str, result: SendResult
    ) -> bool:
        expression = compile_expression(spec.idempotency, EVENT_ONLY, "idempotency")
        value = expression.evaluate({"event": obj})
        if value is MISSING or value is None:
            return True  # no key: the run proceeds
        # A number and the string of its digits are one key; so are 42 and 42.0.
        text = value if isinstance(value, str) else canonical(value)
        key = bounded_key(text)
        slot = (spec.app_id, spec.id, key)
        self.tx.lock_keys([f"idempotency|{spec.app_id}|{spec.id}|{key}"])
        holder = self.keys.get(slot) or self.tx.active_idempotency_key(
            spec.app_id, spec.id, key, self.now
        )
        if holder is not None:
            as_text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
            used = f"already used by run {holder} in the last 24 hours"
            reason = f"idempotency key {shown(as_text)} {used}"
            self._skip(spec, pk, result, reason, holder)
            return False
        self.keys[slot] = new.run_id
        self.key_claims.append(
            IdempotencyClaim(spec.key, key, new.run_id, self.now + IDEMPOTENCY_WINDOW_MS)
        )
        return True

    def flush_if_watched(self, event_name: str) -> None:
        """Runs waiting to be created that watch this event name (cancel_on) must
        exist before the event is matched."""
        if event_name in self.watched:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            create_runs(self.tx, self.pending, self.now, self.effects)
            self.matcher.waits_stored(self.watched)  # their cancel_on watches
            for new, result in self.pending_results:
                result.run_ids.append(new.run_id)
        self.states.save()
        self.tx.claim_idempotency_keys(self.key_claims)
        self.tx.add_event_skips(self.skips)
        self.tx.add_run_events(self.event_links)
        self.pending, self.pending_results, self.key_claims, self.skips = [], [], [], []
        self.event_links, self.pending_by_id = [], {}
        self.gate.pending_here = set()
        self.watched = set()


def _triggered(triggers: list[EventTrigger], event: dict[str, Any]) -> bool:
    for trigger in triggers:
        if not trigger.if_expression:
            return True
        expression = compile_expression(trigger.if_expression, EVENT_ONLY, "trigger")
        if expression.holds({"event": event}):
            return True
    return False


def emit(
    tx: WriteTx,
    name: str,
    data: dict[str, Any],
    now_ms: int,
    routing: Routing,
    *,
    event_id: str = "",
    parent: str | None = None,
) -> Effects:
    """Store an event the control plane itself emits (``tether/...``) and start
    the runs it triggers, within the current transaction. ``parent``: the span
    (W3C traceparent) its span is a child of."""
    prepared = PreparedEvent(
        EventInput(id=event_id, name=name, data=json.dumps(data).encode(), user=b"", ts_ms=now_ms),
        event_id or new_ulid(now_ms),
        now_ms,
        parent,
    )
    _, effects = store_events(tx, [prepared], now_ms, now_ms - IDEMPOTENCY_WINDOW_MS, routing)
    return effects
