"""Declaring functions: ids, triggers, retries, handlers, and the wire definition."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.api import convert
from controlplane.model import CronTrigger as SpecCronTrigger
from controlplane.model import EventTrigger as SpecEventTrigger
from controlplane.model import FunctionSpec
from tests.unit._match import exactly
from tether import ConfigError, Context, CronTrigger, EventTrigger, Tether, cron, event
from tether._function import DEFAULT_RETRIES, MAX_RETRIES
from tether._triggers import normalize_triggers
from tether.v1 import common_pb2


async def handler(ctx: Context) -> None:
    return None


def sync_handler(ctx: Context) -> None:
    return None


@pytest.fixture
def app() -> Tether:
    return Tether(app_id="shop", address="localhost:1")


# -- triggers -----------------------------------------------------------------------


def test_event_helper() -> None:
    assert event("app/user.signup") == EventTrigger("app/user.signup", "")
    assert event("app/user.signup", if_="event.data.plan == 'pro'") == EventTrigger(
        "app/user.signup", "event.data.plan == 'pro'"
    )


def test_cron_helper() -> None:
    assert cron("0 9 * * *") == CronTrigger("0 9 * * *", "")
    assert cron("0 9 * * *", tz="Europe/Paris") == CronTrigger("0 9 * * *", "Europe/Paris")


def test_triggers_are_normalized_to_a_tuple() -> None:
    assert normalize_triggers("f", "app/a") == (EventTrigger("app/a"),)
    assert normalize_triggers("f", cron("* * * * *")) == (CronTrigger("* * * * *"),)
    assert normalize_triggers("f", ["app/a", event("app/b", if_="x"), cron("0 0 * * *")]) == (
        EventTrigger("app/a"),
        EventTrigger("app/b", "x"),
        CronTrigger("0 0 * * *"),
    )


def test_no_trigger_makes_an_invoke_only_function(app: Tether) -> None:
    function = app.function(id="nightly", trigger=[])(handler)
    assert function.triggers == ()
    assert list(function.definition().triggers) == []


@pytest.mark.parametrize("name", ["", "app/user signup", "app/x\n", "\tapp/x"])
def test_bad_event_names(app: Tether, name: str) -> None:
    with pytest.raises(ConfigError) as caught:
        app.function(id="flow", trigger=name)
    assert str(caught.value) == (
        f"function 'flow': invalid event name {name!r} "
        "(non-empty, no whitespace, like 'app/user.signup')"
    )


def test_bad_event_name_inside_a_list(app: Tether) -> None:
    with pytest.raises(ConfigError, match="invalid event name 'bad name'"):
        app.function(id="flow", trigger=["app/ok", event("bad name")])


def test_a_trigger_of_the_wrong_type_inside_a_list(app: Tether) -> None:
    with pytest.raises(ConfigError) as caught:
        app.function(id="flow", trigger=["app/ok", 5])  # type: ignore[list-item]
    assert str(caught.value) == (
        "function 'flow': a trigger is an event name, event(...) or cron(...), not int"
    )


def test_a_trigger_of_the_wrong_type(app: Tether) -> None:
    with pytest.raises(ConfigError, match="a trigger is an event name"):
        app.function(id="flow", trigger=5)  # type: ignore[arg-type]


def test_a_dict_trigger_is_rejected(app: Tether) -> None:
    # Written the way another workflow SDK spells triggers; it must not register
    # a function triggered by an event literally named "event".
    with pytest.raises(ConfigError):
        app.function(id="flow", trigger={"event": "app/user.signup"})  # type: ignore[arg-type]


# -- ids ----------------------------------------------------------------------------


@pytest.mark.parametrize("function_id", ["a", "onboarding-flow", "step-2-of-3", "x" * 128])
def test_valid_ids(app: Tether, function_id: str) -> None:
    function = app.function(id=function_id, trigger="app/x")(handler)
    assert function.id == function_id


@pytest.mark.parametrize(
    ("function_id", "suggestion"),
    [
        ("Onboarding_Flow", "onboarding-flow"),
        ("send welcome email", "send-welcome-email"),
        ("-leading", "leading"),
        ("double--dash", "double-dash"),
        ("trailing-", "trailing"),
        ("user.signup", "user-signup"),
        ("!!!", "my-function"),
    ],
)
def test_non_kebab_ids_get_a_suggestion(app: Tether, function_id: str, suggestion: str) -> None:
    with pytest.raises(ConfigError) as caught:
        app.function(id=function_id, trigger="app/x")
    assert str(caught.value) == (
        f"function id {function_id!r} is not kebab-case: use lowercase letters and "
        f"digits joined by '-', like {suggestion!r}"
    )


def test_empty_id(app: Tether) -> None:
    with pytest.raises(
        ConfigError, match=exactly("a function needs an id, like id='send-welcome-email'")
    ):
        app.function(id="", trigger="app/x")


def test_too_long_id(app: Tether) -> None:
    with pytest.raises(ConfigError) as caught:
        app.function(id="x" * 129, trigger="app/x")
    assert str(caught.value) == f"function id {'x' * 40!r}... is 129 characters; the limit is 128"


def test_id_with_a_trailing_newline_is_rejected(app: Tether) -> None:
    with pytest.raises(ConfigError, match="not kebab-case"):
        app.function(id="onboarding-flow\n", trigger="app/x")


def test_duplicate_id_is_rejected_when_declared(app: Tether) -> None:
    app.function(id="flow", trigger="app/x")(handler)
    with pytest.raises(ConfigError) as caught:
        app.function(id="flow", trigger="app/y")
    assert str(caught.value) == (
        "duplicate function id 'flow' in app 'shop': each function of an app needs its own id"
    )
    assert [f.triggers for f in app.registered_functions] == [(EventTrigger("app/x"),)]


def test_duplicate_id_is_rejected_when_decorating(app: Tether) -> None:
    first = app.function(id="flow", trigger="app/x")
    second = app.function(id="flow", trigger="app/y")
    first(handler)
    with pytest.raises(ConfigError, match=exactly("duplicate function id 'flow' in app 'shop'")):
        second(handler)


def test_the_same_id_in_two_apps_is_fine() -> None:
    one = Tether(app_id="shop", address="localhost:1")
    two = Tether(app_id="billing", address="localhost:1")
    one.function(id="flow", trigger="app/x")(handler)
    two.function(id="flow", trigger="app/x")(handler)
    assert (
        [f.id for f in one.registered_functions]
        == [f.id for f in two.registered_functions]
        == ["flow"]
    )


# -- handlers and retries -------------------------------------------------------------


@pytest.mark.parametrize("bad", [sync_handler, lambda ctx: None, "not a function"])
def test_handler_must_be_async(app: Tether, bad: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        app.function(id="flow", trigger="app/x")(bad)
    assert str(caught.value) == "function 'flow' must be an async function: 'async def ...(ctx)'"
    assert app.registered_functions == []


@pytest.mark.parametrize("retries", [0, 1, DEFAULT_RETRIES, MAX_RETRIES])
def test_retries_in_range(app: Tether, retries: int) -> None:
    assert app.function(id="flow", trigger="app/x", retries=retries)(handler).retries == retries


@pytest.mark.parametrize("retries", [-1, 21, 100])
def test_retries_out_of_range(app: Tether, retries: int) -> None:
    with pytest.raises(ConfigError) as caught:
        app.function(id="flow", trigger="app/x", retries=retries)
    assert str(caught.value) == (
        f"function 'flow': retries must be between 0 and 20, not {retries}"
    )


@pytest.mark.parametrize("retries", [True, 2.0, "3"])
def test_retries_must_be_an_integer(app: Tether, retries: Any) -> None:
    with pytest.raises(ConfigError, match=exactly("function 'flow': retries must be an integer")):
        app.function(id="flow", trigger="app/x", retries=retries)


def test_app_id_is_required() -> None:
    with pytest.raises(ConfigError, match="Tether needs an app_id"):
        Tether(app_id="")


# -- what is registered and sent ------------------------------------------------------


def test_function_keeps_its_options_and_handler(app: Tether) -> None:
    function = app.function(id="onboarding-flow", trigger="app/user.signup", retries=2)(handler)
    assert function.id == "onboarding-flow"
    assert function.name == "onboarding-flow"
    assert function.retries == 2
    assert function.handler is handler
    assert function.triggers == (EventTrigger("app/user.signup"),)
    assert app.registered_functions == [function]


def test_default_retries(app: Tether) -> None:
    assert app.function(id="flow", trigger="app/x")(handler).retries == 4


def test_functions_are_listed_in_declaration_order(app: Tether) -> None:
    for function_id in ["c", "a", "b"]:
        app.function(id=function_id, trigger="app/x")(handler)
    assert [f.id for f in app.registered_functions] == ["c", "a", "b"]


def test_definition_protobuf(app: Tether) -> None:
    function = app.function(
        id="digest",
        name="Daily digest",
        trigger=[
            "app/user.signup",
            event("app/plan.changed", if_="event.data.plan == 'pro'"),
            cron("0 9 * * *", tz="Europe/Paris"),
        ],
        retries=0,
        cancel_on=[{"event": "app/user.deleted", "match": "data.user_id", "timeout": "7d"}],
        idempotency="event.data.user_id",
        timeouts={"start": "10m", "finish": "1h"},
    )(handler)
    expected = common_pb2.FunctionDefinition(
        id="digest",
        name="Daily digest",
        retries=0,
        cancel_on=[
            common_pb2.CancelOn(
                event="app/user.deleted", match="data.user_id", timeout_ms=7 * 86_400_000
            )
        ],
        idempotency="event.data.user_id",
        timeouts=common_pb2.Timeouts(start_ms=600_000, finish_ms=3_600_000),
        triggers=[
            common_pb2.Trigger(event=common_pb2.EventTrigger(name="app/user.signup")),
            common_pb2.Trigger(
                event=common_pb2.EventTrigger(
                    name="app/plan.changed", if_expression="event.data.plan == 'pro'"
                )
            ),
            common_pb2.Trigger(
                cron=common_pb2.CronTrigger(
                    schedule="0 9 * * *",
                    timezone="Europe/Paris",
                    catch_up=common_pb2.CRON_CATCH_UP_ONE,
                )
            ),
        ],
    )
    definition = function.definition()
    assert definition == expected
    # retries=0 is sent explicitly, not left for the control plane's default.
    assert definition.HasField("retries")


def test_definition_reads_back_on_the_control_plane(app: Tether) -> None:
    function = app.function(
        id="digest", trigger=["app/a", event("app/b", if_="x"), cron("0 9 * * *")], retries=0
    )(handler)
    assert convert.function_spec("shop", function.definition()) == FunctionSpec(
        app_id="shop",
        id="digest",
        name="digest",
        triggers=(
            SpecEventTrigger("app/a"),
            SpecEventTrigger("app/b", "x"),
            SpecCronTrigger("0 9 * * *"),
        ),
        retries=0,
    )


# -- the client's address --------------------------------------------------------------


def test_address_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TETHER_ADDRESS", raising=False)
    assert Tether(app_id="shop").address == "localhost:4770"
    monkeypatch.setenv("TETHER_ADDRESS", "tether.internal:4770")
    assert Tether(app_id="shop").address == "tether.internal:4770"
    assert Tether(app_id="shop", address="other:1").address == "other:1"


def test_an_on_failure_companion_id_over_the_limit_is_refused(app: Tether) -> None:
    async def handler(ctx: Context) -> None: ...

    function_id = "f" * 121  # its companion, "<id>-failure", would be 129 characters
    with pytest.raises(ConfigError, match="is 129 characters; the limit is 128"):
        app.function(id=function_id, trigger="app/x", on_failure=handler)(handler)
