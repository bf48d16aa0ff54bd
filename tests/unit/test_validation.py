"""Checks on what users send: events and a worker's Hello."""

from __future__ import annotations

import dataclasses
import json
import re
import time

import pytest

from controlplane.engine.settings import Limits
from controlplane.engine.validation import (
    MAX_JSON_DEPTH,
    json_depth_over,
    load_json,
    validate_events,
    validate_hello,
)
from controlplane.model import (
    CancelOn,
    CronTrigger,
    EventInput,
    EventTrigger,
    FunctionSpec,
    WorkerHello,
)
from controlplane.model.errors import InvalidArgument, LimitExceeded, WorkerRejected
from tests.unit._match import exactly

LIMITS = Limits()


def ev(name: str = "app/user.signup", data: bytes = b'{"user_id":1}', **kw: object) -> EventInput:
    fields: dict[str, object] = {"id": "", "name": name, "data": data, "user": b"", "ts_ms": 0}
    fields.update(kw)
    return EventInput(**fields)  # type: ignore[arg-type]


# -- events -----------------------------------------------------------------------------


def test_valid_events_pass() -> None:
    validate_events(
        [
            ev(),
            ev("app/order.paid", b"", id="order-1", user=b'{"id":"u1"}', ts_ms=1),
            ev("x", b"{}"),
        ],
        LIMITS,
    )


def test_empty_batch() -> None:
    with pytest.raises(InvalidArgument, match=exactly("no events to send: the batch is empty")):
        validate_events([], LIMITS)


def test_too_many_events() -> None:
    with pytest.raises(LimitExceeded, match=exactly("1001 events in one call; the limit is 1000")):
        validate_events([ev() for _ in range(1001)], LIMITS)
    validate_events([ev() for _ in range(1000)], LIMITS)


def test_too_many_events_with_a_configured_limit() -> None:
    with pytest.raises(LimitExceeded, match=exactly("3 events in one call; the limit is 2")):
        validate_events([ev(), ev(), ev()], Limits(max_events_per_send=2))


def test_empty_name() -> None:
    with pytest.raises(InvalidArgument, match=exactly("event 0: the name is empty")):
        validate_events([ev("")], LIMITS)


@pytest.mark.parametrize("name", ["app/user signup", " app/x", "app/x\n", "app/\tx", "app/\x00x"])
def test_whitespace_or_control_characters_in_name(name: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_events([ev(name)], LIMITS)
    assert str(caught.value) == (
        f"event 0 ({name!r}): the name {name!r} contains whitespace or control characters"
    )


def test_the_failing_event_is_named_by_its_index() -> None:
    with pytest.raises(InvalidArgument, match=exactly("event 2: the name is empty")):
        validate_events([ev(), ev(), ev("")], LIMITS)


def test_name_length_limit() -> None:
    validate_events([ev("a" * 256)], LIMITS)
    with pytest.raises(InvalidArgument) as caught:
        validate_events([ev("a" * 257)], LIMITS)
    assert str(caught.value).endswith(": the name is 257 characters long; the limit is 256")


@pytest.mark.parametrize("name", ["tether/cron.tick", "tether/"])
def test_reserved_prefix(name: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_events([ev(name)], LIMITS)
    assert str(caught.value) == (
        f"event 0 ({name!r}): names starting with 'tether/' are reserved "
        "for events the control plane emits"
    )


def test_names_merely_containing_tether_are_fine() -> None:
    validate_events([ev("app/tether/x"), ev("tethered/x")], LIMITS)


@pytest.mark.parametrize("data", [b"{", b"{'a': 1}", b"\xff\xfe", b"NaN-ish"])
def test_data_not_json(data: bytes) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_events([ev("app/x", data)], LIMITS)
    assert str(caught.value).startswith("event 0 ('app/x'): data is not valid UTF-8 JSON: ")


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b'{"x": NaN}', "NaN is not a JSON value (JSON has no NaN or Infinity; send null)"),
        (b'{"x": -Infinity}', "-Infinity is not a JSON value"),
        (b'{"x": 1e999}', "the number 1e999 is too large for a double (at most about 1.8e308)"),
    ],
)
def test_numbers_json_does_not_have_are_refused(data: bytes, problem: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(problem)):
        validate_events([ev("app/x", data)], LIMITS)
    validate_events([ev("app/x", b'{"x": 1.7e308, "big": 123456789012345678901234567890}')], LIMITS)


@pytest.mark.parametrize(
    ("data", "found"),
    [
        (b"[1, 2]", "an array"),
        (b'"text"', "a string"),
        (b"true", "a boolean"),
        (b"42", "a number"),
        (b"1.5", "a number"),
        (b"null", "null"),
    ],
)
def test_data_not_an_object_names_the_json_type(data: bytes, found: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_events([ev("app/x", data)], LIMITS)
    assert str(caught.value) == f"event 0 ('app/x'): data must be a JSON object, not {found}"


def test_user_must_be_an_object_too() -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_events([ev("app/x", b"{}", user=b"[1]")], LIMITS)
    assert str(caught.value) == "event 0 ('app/x'): user must be a JSON object, not an array"


def _nested(levels: int) -> bytes:
    return b'{"a":' * (levels - 1) + b"[" + b"]" + b"}" * (levels - 1)


@pytest.mark.parametrize(
    ("payload", "depth"),
    [
        (_nested(64), 0),
        (_nested(65), 65),
        (_nested(10_000), 10_000),
        (b"[" * 65 + b"]" * 65, 65),
        # 65 siblings, each one level deep: wide, not deep.
        (b"[" + b"[]," * 64 + b"[]]", 0),
        # Brackets inside strings, escaped quotes and backslashes count for nothing.
        (b'{"a": "' + b"[{" * 100 + b'"}', 0),
        (rb'["\"' + b"[" * 100 + b'"]', 0),
        (rb'["\\", ' + b"[" * 64 + b"]" * 64 + b"]", 65),
        (b'["' + b'[{", "' * 70 + b'"]', 0),
        # Not JSON (unbalanced): counted as it stands.
        (b"[" * 70, 70),
    ],
)
def test_json_depth_is_counted_without_parsing(payload: bytes, depth: int) -> None:
    assert json_depth_over(payload, MAX_JSON_DEPTH) == depth


def test_json_nested_deeper_than_the_limit_is_refused_naming_it() -> None:
    assert load_json(_nested(64), "data") == json.loads(_nested(64))
    with pytest.raises(InvalidArgument) as caught:
        validate_events([ev("app/x", _nested(65))], LIMITS)
    assert str(caught.value) == (
        "event 0 ('app/x'): data is nested 65 levels deep; the limit is 64 levels of "
        "arrays and objects"
    )
    started = time.monotonic()
    with pytest.raises(InvalidArgument, match="user is nested 10000 levels deep"):
        validate_events([ev("app/x", b"{}", user=_nested(10_000))], LIMITS)
    assert time.monotonic() - started < 1


def test_negative_timestamp() -> None:
    with pytest.raises(InvalidArgument, match=exactly("event 0 ('app/x'): ts_ms is negative (-1)")):
        validate_events([ev("app/x", b"{}", ts_ms=-1)], LIMITS)


def test_event_id_length_limit() -> None:
    validate_events([ev(id="i" * 256)], LIMITS)
    with pytest.raises(InvalidArgument) as caught:
        validate_events([ev("app/x", id="i" * 257)], LIMITS)
    assert str(caught.value) == (
        "event 0 ('app/x'): the id is 257 characters long; the limit is 256"
    )


def _data_of_total_size(name: str, total: int) -> bytes:
    """A JSON object that makes name + data exactly ``total`` bytes."""
    filler = total - len(name) - len(b'{"k":""}')
    return b'{"k":"' + b"a" * filler + b'"}'


def test_oversized_event_names_the_size_in_kib_and_the_limit() -> None:
    data = _data_of_total_size("app/x", 600 * 1024)
    assert len("app/x") + len(data) == 614_400
    with pytest.raises(LimitExceeded) as caught:
        validate_events([ev("app/x", data)], LIMITS)
    assert str(caught.value) == "event 0 ('app/x') is 600 KiB; the limit is 512 KiB per event"


def test_event_size_limit_is_inclusive() -> None:
    validate_events([ev("app/x", _data_of_total_size("app/x", 512 * 1024))], LIMITS)
    with pytest.raises(LimitExceeded) as caught:
        validate_events([ev("app/x", _data_of_total_size("app/x", 512 * 1024 + 1))], LIMITS)
    assert str(caught.value) == "event 0 ('app/x') is 512.0 KiB; the limit is 512 KiB per event"


def test_the_user_counts_towards_the_event_size() -> None:
    limits = Limits(max_event_bytes=2048)
    user = b'{"u":"' + b"a" * 1500 + b'"}'
    validate_events([ev("app/x", b"{}", user=user)], limits)
    with pytest.raises(LimitExceeded, match="the limit is 2 KiB per event"):
        validate_events([ev("app/x", b'{"k":"' + b"a" * 600 + b'"}', user=user)], limits)


def test_one_bad_event_fails_the_batch_whatever_its_position() -> None:
    with pytest.raises(InvalidArgument, match=r"^event 1 \('app/x'\): data must be"):
        validate_events([ev(), ev("app/x", b"[]"), ev()], LIMITS)


# -- hello ------------------------------------------------------------------------------


def spec(function_id: str = "onboarding-flow", **kw: object) -> FunctionSpec:
    fields: dict[str, object] = {
        "app_id": "shop",
        "id": function_id,
        "name": function_id,
        "triggers": (EventTrigger("app/user.signup"),),
        "retries": 4,
    }
    fields.update(kw)
    return FunctionSpec(**fields)  # type: ignore[arg-type]


def hello(**kw: object) -> WorkerHello:
    base = WorkerHello(
        protocol_version=1,
        app_id="shop",
        instance_id="worker-1",
        sdk_language="python",
        sdk_version="0.1.0",
        capacity=10,
        functions=[spec(), spec("nightly-digest")],
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def rejection(value: WorkerHello) -> tuple[str, str]:
    with pytest.raises(WorkerRejected) as caught:
        validate_hello(value)
    return caught.value.code, str(caught.value)


def test_valid_hello_passes() -> None:
    validate_hello(hello())
    validate_hello(hello(functions=[]))
    validate_hello(hello(app_id="My_App.v2-eu", capacity=1))


@pytest.mark.parametrize("version", [0, 2])
def test_protocol_version(version: int) -> None:
    assert rejection(hello(protocol_version=version)) == (
        "unsupported_protocol",
        f"unsupported protocol version {version}; this control plane speaks version 1",
    )


def test_protocol_is_checked_before_anything_else() -> None:
    code, _ = rejection(hello(protocol_version=9, app_id="", capacity=0))
    assert code == "unsupported_protocol"


def test_empty_app_id() -> None:
    assert rejection(hello(app_id="")) == ("invalid_hello", "the app id is empty")


@pytest.mark.parametrize("app_id", ["my app", "-shop", "shop/eu", "a" * 129])
def test_invalid_app_id(app_id: str) -> None:
    assert rejection(hello(app_id=app_id)) == (
        "invalid_hello",
        f"invalid app id {app_id!r}: use letters, digits, '-', '_' and '.', at most 128 characters",
    )


def test_app_id_with_a_trailing_newline() -> None:
    assert rejection(hello(app_id="shop\n"))[0] == "invalid_hello"


@pytest.mark.parametrize("capacity", [0, -1])
def test_capacity(capacity: int) -> None:
    assert rejection(hello(capacity=capacity)) == ("invalid_hello", "capacity must be at least 1")


def test_duplicate_function_id() -> None:
    assert rejection(hello(functions=[spec("a"), spec("b"), spec("a")])) == (
        "duplicate_function",
        "duplicate function id 'a' in app 'shop'",
    )


@pytest.mark.parametrize("function_id", ["Onboarding", "a_b", "a--b", "-a", "a-"])
def test_invalid_function_id(function_id: str) -> None:
    assert rejection(hello(functions=[spec(function_id)])) == (
        "invalid_function",
        f"function {function_id!r}: ids are kebab-case: lowercase letters and digits "
        "joined by single '-'",
    )


def test_function_id_with_a_trailing_newline() -> None:
    assert rejection(hello(functions=[spec("flow\n")]))[0] == "invalid_function"


def test_empty_and_too_long_function_ids() -> None:
    assert rejection(hello(functions=[spec("")])) == (
        "invalid_function",
        "function '': the id is empty",
    )
    long_id = "a" * 129
    assert rejection(hello(functions=[spec(long_id)])) == (
        "invalid_function",
        f"function {long_id!r}: the id is longer than 128 characters",
    )
    validate_hello(hello(functions=[spec("a" * 128)]))


def test_a_function_without_trigger_is_invoke_only() -> None:
    validate_hello(hello(functions=[spec(triggers=())]))


@pytest.mark.parametrize("retries", [-1, 21])
def test_function_retries_out_of_range(retries: int) -> None:
    assert rejection(hello(functions=[spec(retries=retries)])) == (
        "invalid_function",
        f"function 'onboarding-flow': retries must be between 0 and 20, not {retries}",
    )


def test_function_name_over_the_limit() -> None:
    assert rejection(hello(functions=[spec(name="n" * 257)])) == (
        "invalid_function",
        "function 'onboarding-flow': the name is 257 characters long; the limit is 256",
    )


def test_function_with_a_bad_event_name() -> None:
    assert rejection(hello(functions=[spec(triggers=(EventTrigger("app/a b"),))])) == (
        "invalid_function",
        "function 'onboarding-flow': event trigger: the name 'app/a b' contains whitespace "
        "or control characters",
    )


def test_event_trigger_expressions_are_checked_when_a_function_registers() -> None:
    accepted = (EventTrigger("app/x", "event.data.plan == 'pro'"),)
    validate_hello(hello(functions=[spec(triggers=accepted)]))
    typo = (EventTrigger("app/x", "evnt.data.plan == 'pro'"),)
    code, reason = rejection(hello(functions=[spec(triggers=typo)]))
    assert code == "invalid_function"
    assert "unknown variable 'evnt'" in reason
    assert "use 'event'" in reason
    broken = (EventTrigger("app/x", "event.data.plan =="),)
    code, reason = rejection(hello(functions=[spec(triggers=broken)]))
    assert code == "invalid_function"
    assert "invalid CEL expression" in reason


def test_cron_triggers_are_checked_when_a_function_registers() -> None:
    good = (EventTrigger("app/x"), CronTrigger("0 9 * * *", "Europe/Paris"))
    validate_hello(hello(functions=[spec(triggers=good)]))
    assert rejection(hello(functions=[spec(triggers=(CronTrigger("0 25 * * *"),))])) == (
        "invalid_function",
        "function 'onboarding-flow': cron trigger: '0 25 * * *' is not a valid cron "
        "expression (minute hour day month weekday)",
    )
    assert rejection(hello(functions=[spec(triggers=(CronTrigger("0 9 * *"),))])) == (
        "invalid_function",
        "function 'onboarding-flow': cron trigger: '0 9 * *' has 4 field(s); a cron "
        "expression has five: minute hour day-of-month month day-of-week, like '0 9 * * *'",
    )
    unknown_zone = (CronTrigger("0 9 * * *", "Europe/Pariss"),)
    assert rejection(hello(functions=[spec(triggers=unknown_zone)])) == (
        "invalid_function",
        "function 'onboarding-flow': cron trigger: unknown time zone 'Europe/Pariss': use an "
        "IANA name such as 'Europe/Paris'",
    )


def test_cancel_on_needs_an_exact_event_name() -> None:
    watch = CancelOn(event="app/order.*", match="data.order_id")

    assert rejection(hello(functions=[spec(cancel_on=(watch,))])) == (
        "invalid_function",
        "function 'onboarding-flow': cancel_on: 'app/order.*' has a wildcard; only triggers "
        "match names by prefix, waits and cancel_on need the exact name",
    )
