"""Functions as workers register them: triggers, retries and run options."""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EventTrigger:
    name: str
    if_expression: str = ""


class CatchUp(enum.StrEnum):
    """Cron ticks missed while no control plane ran."""

    ONE = "one"
    NONE = "none"
    ALL = "all"


@dataclass(frozen=True, slots=True)
class CronTrigger:
    schedule: str
    timezone: str = ""
    catch_up: CatchUp = CatchUp.ONE


Trigger = EventTrigger | CronTrigger

DEFAULT_RETRIES = 4
MAX_RETRIES = 20


@dataclass(frozen=True, slots=True)
class CancelOn:
    """Cancel a run when a matching event arrives."""

    event: str
    match: str = ""
    if_expression: str = ""
    timeout_ms: int = 0


@dataclass(frozen=True, slots=True)
class Timeouts:
    start_ms: int = 0
    finish_ms: int = 0


class ConcurrencyScope(enum.StrEnum):
    FUNCTION = "fn"
    APP = "app"
    GLOBAL = "global"


@dataclass(frozen=True, slots=True)
class Concurrency:
    """At most ``limit`` runs of the scope (per key value) execute at once."""

    limit: int
    key: str = ""
    scope: ConcurrencyScope = ConcurrencyScope.FUNCTION


@dataclass(frozen=True, slots=True)
class Throttle:
    limit: int
    period_ms: int
    burst: int = 1
    key: str = ""


@dataclass(frozen=True, slots=True)
class RateLimit:
    limit: int
    period_ms: int
    key: str = ""


@dataclass(frozen=True, slots=True)
class Debounce:
    period_ms: int
    key: str = ""
    timeout_ms: int = 0


@dataclass(frozen=True, slots=True)
class Batching:
    max_size: int
    timeout_ms: int
    key: str = ""


class SingletonMode(enum.StrEnum):
    SKIP = "skip"
    CANCEL = "cancel"


@dataclass(frozen=True, slots=True)
class Singleton:
    key: str = ""
    mode: SingletonMode = SingletonMode.SKIP


class PauseMode(enum.StrEnum):
    HOLD = "hold"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """A function definition as registered by a worker."""

    app_id: str
    id: str
    name: str
    triggers: tuple[Trigger, ...]
    retries: int = DEFAULT_RETRIES
    cancel_on: tuple[CancelOn, ...] = ()
    idempotency: str = ""
    timeouts: Timeouts = Timeouts()
    concurrency: tuple[Concurrency, ...] = ()
    throttle: Throttle | None = None
    rate_limit: RateLimit | None = None
    debounce: Debounce | None = None
    #: CEL over ``event``: seconds to start ahead (positive) or later (negative).
    priority: str = ""
    batching: Batching | None = None
    singleton: Singleton | None = None
    #: How long its finished runs are kept (ms); 0: the environment's retention.
    retention_ms: int = 0

    @property
    def crons(self) -> list[CronTrigger]:
        return [t for t in self.triggers if isinstance(t, CronTrigger)]

    @property
    def key(self) -> FunctionKey:
        return FunctionKey(self.app_id, self.id)


@dataclass(frozen=True, slots=True)
class FunctionKey:
    app_id: str
    function_id: str

    def __str__(self) -> str:
        return f"{self.app_id}/{self.function_id}"


@dataclass(frozen=True, slots=True)
class FunctionInfo:
    spec: FunctionSpec
    connected_workers: int
    registered_at_ms: int
    updated_at_ms: int
    paused: PauseMode | None = None
    #: The next tick of each cron trigger, in trigger order (0: none).
    next_fire_ms: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class HeldExecution:
    """An execution a reconnecting worker still holds (Hello.held)."""

    execution_id: str
    run_id: str


@dataclass(frozen=True, slots=True)
class WorkerHello:
    protocol_version: int
    app_id: str
    instance_id: str
    sdk_language: str
    sdk_version: str
    capacity: int
    functions: list[FunctionSpec]
    held: tuple[HeldExecution, ...] = ()
