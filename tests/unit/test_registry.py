"""The function registry: which functions an event starts, and specs as JSON."""

from __future__ import annotations

import json

from controlplane.engine.registry import FunctionRegistry, spec_from_json, spec_to_json
from controlplane.model import (
    Batching,
    CancelOn,
    CatchUp,
    Concurrency,
    ConcurrencyScope,
    CronTrigger,
    Debounce,
    EventTrigger,
    FunctionKey,
    FunctionSpec,
    RateLimit,
    Singleton,
    SingletonMode,
    Throttle,
    Timeouts,
)


def spec(app_id: str, function_id: str, *triggers: EventTrigger | CronTrigger) -> FunctionSpec:
    return FunctionSpec(app_id=app_id, id=function_id, name=function_id, triggers=triggers)


def test_matching_by_event_name() -> None:
    registry = FunctionRegistry()
    registry.put_all([(spec("shop", "onboarding", EventTrigger("app/user.signup")), 1, 1)])
    registry.put_all(
        [
            (
                spec(
                    "shop", "audit", EventTrigger("app/user.signup"), EventTrigger("app/order.paid")
                ),
                1,
                1,
            )
        ]
    )
    registry.put_all([(spec("shop", "invoice", EventTrigger("app/order.paid")), 1, 1)])

    assert list(registry.matching("app/user.signup")) == [
        FunctionKey("shop", "audit"),
        FunctionKey("shop", "onboarding"),
    ]
    assert list(registry.matching("app/order.paid")) == [
        FunctionKey("shop", "audit"),
        FunctionKey("shop", "invoice"),
    ]
    assert list(registry.matching("app/unknown")) == []


def test_matching_is_exact() -> None:
    registry = FunctionRegistry()
    registry.put_all([(spec("shop", "f", EventTrigger("app/user.signup")), 1, 1)])
    assert list(registry.matching("app/user")) == []
    assert list(registry.matching("App/User.Signup")) == []
    assert list(registry.matching("app/user.signup ")) == []


def test_functions_of_several_apps_match_the_same_event() -> None:
    registry = FunctionRegistry()
    registry.put_all([(spec("shop", "f", EventTrigger("app/x")), 1, 1)])
    registry.put_all([(spec("billing", "f", EventTrigger("app/x")), 1, 1)])
    assert list(registry.matching("app/x")) == [
        FunctionKey("billing", "f"),
        FunctionKey("shop", "f"),
    ]


def test_a_function_with_the_same_trigger_twice_matches_once() -> None:
    registry = FunctionRegistry()
    registry.put_all([(spec("shop", "f", EventTrigger("app/x"), EventTrigger("app/x", "x")), 1, 1)])
    assert list(registry.matching("app/x")) == [FunctionKey("shop", "f")]


def test_cron_triggers_match_no_event() -> None:
    registry = FunctionRegistry()
    registry.put_all([(spec("shop", "nightly", CronTrigger("0 0 * * *")), 1, 1)])
    assert list(registry.matching("0 0 * * *")) == []
    assert registry.get(FunctionKey("shop", "nightly")) is not None


def test_putting_a_function_again_replaces_its_triggers() -> None:
    registry = FunctionRegistry()
    registry.put_all([(spec("shop", "f", EventTrigger("app/old")), 100, 100)])
    registry.put_all([(spec("shop", "f", EventTrigger("app/new")), 200, 200)])
    assert list(registry.matching("app/old")) == []
    assert list(registry.matching("app/new")) == [FunctionKey("shop", "f")]
    # The first registration time is kept; the update time moves.
    assert registry.all() == [(spec("shop", "f", EventTrigger("app/new")), 100, 200)]


def test_matching_returns_a_copy() -> None:
    registry = FunctionRegistry()
    registry.put_all([(spec("shop", "f", EventTrigger("app/x")), 1, 1)])
    registry.matching("app/x").clear()
    assert list(registry.matching("app/x")) == [FunctionKey("shop", "f")]


def test_get_retries_and_all() -> None:
    registry = FunctionRegistry()
    b = FunctionSpec("shop", "b", "B", (EventTrigger("app/x"),), retries=7)
    a = FunctionSpec("shop", "a", "a", (EventTrigger("app/x"),), retries=0)
    registry.put_all([(b, 10, 11)])
    registry.put_all([(a, 20, 21)])
    assert registry.get(FunctionKey("shop", "b")) == b
    assert registry.get(FunctionKey("shop", "zzz")) is None
    assert registry.retries("shop", "b") == 7
    assert registry.retries("shop", "a") == 0
    assert registry.retries("shop", "unknown") == 0
    assert registry.all() == [(a, 20, 21), (b, 10, 11)]


def test_spec_json_round_trip() -> None:
    original = FunctionSpec(
        app_id="shop",
        id="digest",
        name="Daily digest",
        triggers=(
            EventTrigger("app/user.signup"),
            EventTrigger("app/plan.changed", "event.data.plan == 'pro'"),
            CronTrigger("0 9 * * *", "Europe/Paris"),
            CronTrigger("*/5 * * * *", catch_up=CatchUp.ALL),
        ),
        retries=0,
        cancel_on=(CancelOn("app/plan.cancelled", "data.user_id", "", 60_000),),
        idempotency="event.data.user_id",
        timeouts=Timeouts(start_ms=1_000, finish_ms=0),
        concurrency=(
            Concurrency(5),
            Concurrency(2, "event.data.account", ConcurrencyScope.APP),
        ),
        throttle=Throttle(10, 60_000, 2, "event.data.user_id"),
        rate_limit=RateLimit(1, 3_600_000),
        debounce=Debounce(5_000, "event.data.user_id", 60_000),
        priority="event.data.vip ? 60 : 0",
        batching=None,
        singleton=Singleton("event.data.user_id", SingletonMode.CANCEL),
        retention_ms=90 * 86_400_000,
    )
    batched = FunctionSpec(
        "shop", "digest", "digest", (), batching=Batching(100, 5_000, "event.data.team")
    )
    assert spec_from_json("shop", "digest", spec_to_json(batched)) == batched
    raw = spec_to_json(original)
    assert spec_from_json("shop", "digest", raw) == original
    assert json.loads(raw) == {
        "name": "Daily digest",
        "triggers": [
            {"event": "app/user.signup", "if": ""},
            {"event": "app/plan.changed", "if": "event.data.plan == 'pro'"},
            {"cron": "0 9 * * *", "timezone": "Europe/Paris", "catch_up": "one"},
            {"cron": "*/5 * * * *", "timezone": "", "catch_up": "all"},
        ],
        "retries": 0,
        "cancel_on": [
            {"event": "app/plan.cancelled", "match": "data.user_id", "if": "", "timeout_ms": 60_000}
        ],
        "idempotency": "event.data.user_id",
        "timeouts": {"start_ms": 1_000, "finish_ms": 0},
        "concurrency": [
            {"limit": 5, "key": "", "scope": "fn"},
            {"limit": 2, "key": "event.data.account", "scope": "app"},
        ],
        "throttle": {"limit": 10, "period_ms": 60_000, "burst": 2, "key": "event.data.user_id"},
        "rate_limit": {"limit": 1, "period_ms": 3_600_000, "key": ""},
        "debounce": {"period_ms": 5_000, "key": "event.data.user_id", "timeout_ms": 60_000},
        "priority": "event.data.vip ? 60 : 0",
        "batching": None,
        "singleton": {"key": "event.data.user_id", "mode": "cancel"},
        "retention_ms": 90 * 86_400_000,
    }


def test_spec_from_minimal_json_uses_defaults() -> None:
    assert spec_from_json("shop", "f", '{"triggers": [{"event": "app/x"}]}') == FunctionSpec(
        app_id="shop", id="f", name="f", triggers=(EventTrigger("app/x", ""),), retries=4
    )
    assert spec_from_json("shop", "f", '{"name": ""}') == FunctionSpec(
        app_id="shop", id="f", name="f", triggers=(), retries=4
    )
