"""Flow control options of ``@app.function``: how they are written, checked and sent."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from controlplane import model as models
from controlplane.api import convert
from controlplane.engine import validation
from tests.unit._match import exactly
from tether import (
    Batching,
    Concurrency,
    ConfigError,
    Context,
    Debounce,
    PauseMode,
    Priority,
    RateLimit,
    Singleton,
    Tether,
    Throttle,
    _flow,
    cron,
)
from tether._functions_admin import function_info
from tether._triggers import CronTrigger, EventTrigger
from tether.v1 import common_pb2
from tether.v1 import run_service_pb2 as rs


async def handler(ctx: Context) -> None:
    return None


@pytest.fixture
def app() -> Tether:
    return Tether(app_id="shop", address="localhost:1")


def declare(app: Tether, **options: Any) -> common_pb2.FunctionDefinition:
    return app.function(id="sync", trigger="app/sync", **options)(handler).definition()


# -- each option, as written and on the wire ---------------------------------------------


def test_no_flow_control_sets_no_field(app: Tether) -> None:
    definition = declare(app)
    assert list(definition.concurrency) == []
    for name in ("throttle", "rate_limit", "debounce", "priority", "batching", "singleton"):
        assert not definition.HasField(name), name


@pytest.mark.parametrize(
    "value",
    [5, Concurrency(5), {"limit": 5}, [5], (Concurrency(5),)],
    ids=["int", "class", "dict", "list-of-int", "tuple"],
)
def test_a_concurrency_limit(app: Tether, value: Any) -> None:
    function = app.function(id="sync", trigger="app/sync", concurrency=value)(handler)
    assert function.flow.concurrency == (Concurrency(5),)
    assert list(function.definition().concurrency) == [
        common_pb2.Concurrency(limit=5, scope=common_pb2.CONCURRENCY_SCOPE_FUNCTION)
    ]


def test_two_concurrency_limits_with_keys_and_scopes(app: Tether) -> None:
    definition = declare(
        app,
        concurrency=[
            Concurrency(10, key="event.data.region", scope="global"),
            {"limit": 2, "key": "event.data.customer_id", "scope": "app"},
        ],
    )
    assert list(definition.concurrency) == [
        common_pb2.Concurrency(
            limit=10, key="event.data.region", scope=common_pb2.CONCURRENCY_SCOPE_GLOBAL
        ),
        common_pb2.Concurrency(
            limit=2, key="event.data.customer_id", scope=common_pb2.CONCURRENCY_SCOPE_APP
        ),
    ]


@pytest.mark.parametrize(
    "value",
    [
        Throttle(10, "1m", burst=3, key="event.data.user_id"),
        {"limit": 10, "period": dt.timedelta(minutes=1), "burst": 3, "key": "event.data.user_id"},
        Throttle(10, 60, 3, "event.data.user_id"),
    ],
    ids=["class", "dict-timedelta", "seconds"],
)
def test_throttle(app: Tether, value: Any) -> None:
    definition = declare(app, throttle=value)
    assert definition.throttle == common_pb2.Throttle(
        limit=10, period_ms=60_000, burst=3, key="event.data.user_id"
    )


def test_throttle_burst_defaults_to_one(app: Tether) -> None:
    assert declare(app, throttle={"limit": 1, "period": "1s"}).throttle.burst == 1


def test_rate_limit(app: Tether) -> None:
    assert declare(app, rate_limit=RateLimit(100, "1h", key="event.data.ip")).rate_limit == (
        common_pb2.RateLimit(limit=100, period_ms=3_600_000, key="event.data.ip")
    )
    assert declare_other(app, rate_limit={"limit": 1, "period": "24h"}).rate_limit == (
        common_pb2.RateLimit(limit=1, period_ms=86_400_000)
    )


def declare_other(app: Tether, **options: Any) -> common_pb2.FunctionDefinition:
    return app.function(id="other", trigger="app/other", **options)(handler).definition()


def test_debounce(app: Tether) -> None:
    assert declare(app, debounce=Debounce("30s", key="event.data.doc", timeout="5m")).debounce == (
        common_pb2.Debounce(period_ms=30_000, key="event.data.doc", timeout_ms=300_000)
    )
    assert declare_other(app, debounce={"period": 2}).debounce == common_pb2.Debounce(
        period_ms=2000
    )


@pytest.mark.parametrize(
    "value",
    [
        "event.data.plan == 'enterprise' ? 120 : 0",
        Priority(run="event.data.plan == 'enterprise' ? 120 : 0"),
        {"run": "event.data.plan == 'enterprise' ? 120 : 0"},
    ],
    ids=["string", "class", "dict"],
)
def test_priority(app: Tether, value: Any) -> None:
    function = app.function(id="sync", trigger="app/sync", priority=value)(handler)
    assert function.flow.priority == Priority("event.data.plan == 'enterprise' ? 120 : 0")
    assert function.definition().priority == common_pb2.Priority(
        run="event.data.plan == 'enterprise' ? 120 : 0"
    )


def test_batching(app: Tether) -> None:
    assert declare(app, batching=Batching(100, "5s", key="event.data.tenant")).batching == (
        common_pb2.Batching(max_size=100, timeout_ms=5000, key="event.data.tenant")
    )
    assert declare_other(app, batching={"max_size": 1, "timeout": "1h"}).batching == (
        common_pb2.Batching(max_size=1, timeout_ms=3_600_000)
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Singleton(), common_pb2.Singleton(mode=common_pb2.SINGLETON_MODE_SKIP)),
        (
            Singleton(key="event.data.user_id", mode="cancel"),
            common_pb2.Singleton(key="event.data.user_id", mode=common_pb2.SINGLETON_MODE_CANCEL),
        ),
        (
            {"key": "event.data.user_id"},
            common_pb2.Singleton(key="event.data.user_id", mode=common_pb2.SINGLETON_MODE_SKIP),
        ),
    ],
    ids=["default", "cancel", "dict"],
)
def test_singleton(app: Tether, value: Any, expected: common_pb2.Singleton) -> None:
    assert declare(app, singleton=value).singleton == expected


def test_every_option_reads_back_on_the_control_plane(app: Tether) -> None:
    definition = declare(
        app,
        concurrency=[3, Concurrency(1, key="event.data.user_id", scope="app")],
        throttle=Throttle(5, "1s"),
        debounce=Debounce("7d", timeout="1s"),
        priority="event.data.vip ? 600 : -600",
        singleton=Singleton(mode="cancel"),
    )
    spec = convert.function_spec("shop", definition)

    assert validation.function_problem(spec) is None
    assert spec.concurrency == (
        models.Concurrency(3),
        models.Concurrency(1, "event.data.user_id", models.ConcurrencyScope.APP),
    )
    assert spec.throttle == models.Throttle(5, 1000, 1)
    assert spec.debounce == models.Debounce(7 * 86_400_000, "", 1000)
    assert spec.priority == "event.data.vip ? 600 : -600"
    assert spec.singleton == models.Singleton("", models.SingletonMode.CANCEL)
    batched = convert.function_spec(
        "shop", declare_other(app, batching=Batching(1000, "1h"), rate_limit=None)
    )
    assert validation.function_problem(batched) is None
    assert batched.batching == models.Batching(1000, 3_600_000)


def test_the_sdk_limits_are_the_control_planes() -> None:
    assert _flow.MAX_CONCURRENCY_LIMITS == validation.MAX_CONCURRENCY_LIMITS
    assert _flow.MAX_CONCURRENCY == validation.MAX_CONCURRENCY
    assert _flow.MAX_RATE == validation.MAX_RATE
    assert _flow.MAX_BATCH_SIZE == validation.MAX_BATCH_SIZE
    assert (_flow.SECOND_MS, _flow.HOUR_MS, _flow.DAY_MS) == (
        validation.SECOND_MS,
        validation.HOUR_MS,
        validation.DAY_MS,
    )


# -- mistakes, caught when the function is declared ------------------------------------------

PREFIX = "function 'sync': "


@pytest.mark.parametrize(
    ("options", "message"),
    [
        # wrong types
        (
            {"concurrency": "5"},
            "concurrency is Concurrency(...) or a dict with the keys limit, key, scope, not str",
        ),
        (
            {"concurrency": True},
            "concurrency is Concurrency(...) or a dict with the keys limit, key, scope, not bool",
        ),
        ({"concurrency": Concurrency(True)}, "concurrency limit must be an integer, not bool"),
        (
            {"concurrency": 2.5},
            "concurrency is Concurrency(...) or a dict with the keys limit, key, scope, not float",
        ),
        (
            {"throttle": 10},
            "throttle is Throttle(...) or a dict with the keys limit, period, burst, key, not int",
        ),
        ({"throttle": Throttle("10", "1m")}, "throttle limit must be an integer, not str"),  # type: ignore[arg-type]
        ({"priority": 5}, "priority is Priority(...) or a dict with the keys run, not int"),
        (
            {"priority": "  "},
            "priority is a CEL expression giving seconds, such as "
            "\"event.data.plan == 'enterprise' ? 120 : 0\"",
        ),
        (
            {"singleton": "event.data.user_id"},
            "singleton is Singleton(...) or a dict with the keys key, mode, not str",
        ),
        (
            {"concurrency": Concurrency(1, key=5)},  # type: ignore[arg-type]
            "concurrency key is a CEL expression such as 'event.data.customer_id', not int",
        ),
        # unknown or missing dict keys
        (
            {"throttle": {"limit": 1, "period": "1s", "per": "1m"}},
            "throttle has unknown key(s) ['per']; it takes limit, period, burst, key",
        ),
        (
            {"concurrency": {"limit": 1, "scope": "app", "keys": "x"}},
            "concurrency has unknown key(s) ['keys']; it takes limit, key, scope",
        ),
        ({"rate_limit": {"limit": 1}}, "rate_limit needs period"),
        ({"batching": {}}, "batching needs max_size, timeout"),
        # limits
        ({"concurrency": 0}, "concurrency limit must be between 1 and 100,000, not 0"),
        ({"concurrency": 100_001}, "concurrency limit must be between 1 and 100,000, not 100001"),
        ({"concurrency": [1, 2, 3]}, "concurrency has 3 limits; the limit is 2"),
        ({"throttle": Throttle(0, "1m")}, "throttle limit must be between 1 and 100,000, not 0"),
        (
            {"throttle": Throttle(1, "1m", burst=0)},
            "throttle burst must be between 1 and 100,000, not 0",
        ),
        (
            {"throttle": Throttle(1, "500ms")},
            "throttle period must be between 1s and 7d, not '500ms'",
        ),
        ({"throttle": Throttle(1, "8d")}, "throttle period must be between 1s and 7d, not '8d'"),
        (
            {"rate_limit": RateLimit(1, "25h")},
            "rate_limit period must be between 1s and 1d, not '25h'",
        ),
        (
            {"rate_limit": RateLimit(-1, "1h")},
            "rate_limit limit must be between 1 and 100,000, not -1",
        ),
        ({"debounce": Debounce(0)}, "debounce period must be between 1s and 7d, not 0"),
        (
            {"debounce": Debounce("1m", timeout="0.5s")},
            "debounce timeout must be between 1s and 7d, not '0.5s'",
        ),
        (
            {"batching": Batching(1001, "1s")},
            "batching max_size must be between 1 and 1,000, not 1001",
        ),
        (
            {"batching": Batching(10, "61m")},
            "batching timeout must be between 1s and 1h, not '61m'",
        ),
        # scopes and modes
        (
            {"concurrency": Concurrency(1, scope="app")},
            "concurrency with scope 'app' needs a key: the key's value names the limit that "
            "functions share",
        ),
        (
            {"concurrency": {"limit": 1, "scope": "global", "key": ""}},
            "concurrency with scope 'global' needs a key: the key's value names the limit that "
            "functions share",
        ),
        (
            {"concurrency": Concurrency(1, scope="function")},  # type: ignore[arg-type]
            "concurrency scope is one of 'fn', 'app', 'global', not 'function'",
        ),
        (
            {"singleton": Singleton(mode="replace")},  # type: ignore[arg-type]
            "singleton mode is one of 'skip', 'cancel', not 'replace'",
        ),
        # durations
        (
            {"throttle": Throttle(1, "1 minute")},
            "throttle period is not a valid duration: invalid duration '1 minute': write it "
            "like '30s', '1h30m', '500ms' or '2d' (units: ms, s, m, h, d, w)",
        ),
        (
            {"debounce": Debounce([1])},  # type: ignore[arg-type]
            "debounce period is not a valid duration: a duration is a string like '1h30m', "
            "a timedelta or seconds, not list",
        ),
        (
            {"batching": Batching(1, "-5s")},
            "batching timeout is not a valid duration: invalid duration '-5s': write it like "
            "'30s', '1h30m', '500ms' or '2d' (units: ms, s, m, h, d, w)",
        ),
    ],
)
def test_mistakes_name_the_function_the_option_and_the_problem(
    app: Tether, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=exactly(PREFIX + message)):
        app.function(id="sync", trigger="app/sync", **options)
    assert app.registered_functions == []


@pytest.mark.parametrize(
    ("options", "clashes"),
    [
        ({"debounce": Debounce("1m")}, "debounce"),
        ({"idempotency": "event.data.id"}, "idempotency"),
        ({"rate_limit": RateLimit(1, "1m"), "singleton": Singleton()}, "rate_limit, singleton"),
        ({"cancel_on": [{"event": "app/stop"}]}, "cancel_on"),
    ],
)
def test_batching_does_not_combine_with_single_event_options(
    app: Tether, options: dict[str, Any], clashes: str
) -> None:
    message = (
        f"{PREFIX}batching cannot be combined with {clashes}: a batched run has many events, "
        "and these options work on the one event of a run"
    )
    with pytest.raises(ConfigError, match=exactly(message)):
        app.function(id="sync", trigger="app/sync", batching=Batching(10, "5s"), **options)


def test_batching_combines_with_concurrency_throttle_and_priority(app: Tether) -> None:
    definition = declare(
        app,
        batching=Batching(10, "5s"),
        concurrency=1,
        throttle=Throttle(1, "1s"),
        priority="1",
    )
    assert definition.HasField("batching")
    assert validation.function_problem(convert.function_spec("shop", definition)) is None


def test_cel_is_left_to_the_control_plane(app: Tether) -> None:
    # Not a valid expression, but the SDK does not parse CEL: registration reports it.
    function = app.function(
        id="sync", trigger="app/sync", concurrency=Concurrency(2, key="evnt.data.x")
    )(handler)
    problem = validation.function_problem(convert.function_spec("shop", function.definition()))
    assert problem is not None
    assert problem.startswith("concurrency key: unknown variable 'evnt'")


# -- app.functions: what the control plane reports ---------------------------------------------


def test_function_info_from_the_wire() -> None:
    definition = Tether(app_id="shop", address="localhost:1").function(
        id="digest", trigger=["app/a", cron("0 9 * * *", tz="Europe/Paris", catch_up="all")]
    )(handler)
    info = function_info(
        rs.FunctionInfo(
            app_id="shop",
            definition=definition.definition(),
            connected_workers=2,
            registered_at_ms=1_700_000_000_000,
            paused=rs.PAUSE_MODE_HOLD,
            next_fire_ms=[1_700_000_060_000],
        )
    )
    assert info.app_id == "shop"
    assert info.id == info.name == "digest"
    assert info.triggers == (EventTrigger("app/a"), CronTrigger("0 9 * * *", "Europe/Paris", "all"))
    assert info.connected_workers == 2
    assert info.registered_at == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)
    assert info.updated_at is None
    assert info.paused is PauseMode.HOLD
    assert info.next_fires == (dt.datetime(2023, 11, 14, 22, 14, 20, tzinfo=dt.UTC),)
    assert function_info(rs.FunctionInfo(next_fire_ms=[0])).next_fires == (None,)
    assert function_info(rs.FunctionInfo()).paused is None


async def test_pause_refuses_an_unknown_mode_before_calling(app: Tether) -> None:
    with pytest.raises(ValueError, match=exactly("a pause mode is 'hold' or 'skip', not 'later'")):
        await app.functions.pause("sync", mode="later")


def test_a_function_keeps_its_runs_as_long_as_it_says(app: Tether) -> None:
    definition = declare(app, retention="90d")
    assert definition.retention_ms == 90 * 86_400_000
    spec = convert.function_spec("shop", definition)
    assert spec.retention_ms == 90 * 86_400_000
    assert validation.function_problem(spec) is None
    assert declare_other(app).retention_ms == 0, "no option: the environment's"
    with pytest.raises(ConfigError, match="retention must be at least a minute"):
        declare(app, retention="30s")
    # What another SDK could send: refused by the control plane, naming the limit.
    definition.retention_ms = 1000
    problem = validation.function_problem(convert.function_spec("shop", definition))
    assert problem is not None
    assert "the retention must be between 1m and" in problem
