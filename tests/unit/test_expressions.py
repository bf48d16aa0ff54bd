"""CEL expressions and the equality index that finds waits by value."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.engine.expressions import (
    EVENT_AND_ASYNC,
    EVENT_ONLY,
    MISSING,
    bounded_key,
    canonical,
    compile_expression,
    equality_index,
    event_value,
    indexable_equality,
)
from controlplane.model.errors import InvalidArgument


def _event(**data: Any) -> dict[str, Any]:
    return {"id": "e", "name": "x/y", "data": data, "user": {}, "ts": 0}


def test_an_expression_holds_only_when_it_is_true() -> None:
    expression = compile_expression("async.data.n > event.data.n", EVENT_AND_ASYNC, "wait")

    assert expression.holds({"event": _event(n=1), "async": _event(n=2)})
    assert not expression.holds({"event": _event(n=3), "async": _event(n=2)})
    # A field the event lacks, or a type that does not compare, is no match.
    assert not expression.holds({"event": _event(n=1), "async": _event()})
    assert not expression.holds({"event": _event(n=1), "async": _event(n="2")})


def test_a_bad_expression_names_what_and_why() -> None:
    with pytest.raises(InvalidArgument, match=r"trigger: invalid CEL expression 'event.data =='"):
        compile_expression("event.data ==", EVENT_ONLY, "trigger")
    with pytest.raises(InvalidArgument, match=r"unknown variable 'async'.*use 'event'"):
        compile_expression("async.data.x == 1", EVENT_ONLY, "trigger")
    with pytest.raises(InvalidArgument, match="the expression is empty"):
        compile_expression("  ", EVENT_ONLY, "idempotency")


def test_paths_read_nested_fields_or_missing() -> None:
    event = _event(order={"id": 7})

    assert event_value(event, "data.order.id") == 7
    assert event_value(event, "data.order.total") is MISSING
    assert event_value(event, "data.order.id.more") is MISSING


def test_canonical_values_treat_whole_floats_as_integers_at_any_depth() -> None:
    assert canonical(1) == canonical(1.0)
    assert canonical([1, {"a": 2.0}]) == canonical([1.0, {"a": 2}])
    assert canonical({"b": 1, "a": 2}) == canonical({"a": 2, "b": 1})
    assert canonical(1.5) != canonical(1)
    assert canonical("1") != canonical(1)


@pytest.mark.parametrize(
    ("source", "pair"),
    [
        ("async.data.id == event.data.id", ("data.id", "data.id")),
        ("event.data.user == async.data.owner", ("data.owner", "data.user")),
        ("async.data.n > 3 && async.data.id == event.data.order_id", ("data.id", "data.order_id")),
        # Anything the clause is not required by is left to evaluation.
        ("async.data.id == event.data.id || async.data.vip", None),
        ("async.data.id == event.data.id && async.data.x ? true : false", None),
        ("!(async.data.id == event.data.id)", None),
        ("async.data.id == 'x'", None),
        ("async.data.id == async.data.other", None),
        ("event.data.id == event.data.other", None),
    ],
)
def test_which_expressions_can_be_indexed(source: str, pair: tuple[str, str] | None) -> None:
    compile_expression(source, EVENT_AND_ASYNC, "wait")  # each is valid CEL
    assert indexable_equality(source) == pair


def test_the_index_key_comes_from_the_runs_event() -> None:
    source = "async.data.refund_id == event.data.refund_id && async.data.amount >= 100"

    assert equality_index(source, _event(refund_id="r1")) == ("data.refund_id", '"r1"')
    assert equality_index(source, _event()) is None, "no value to index on"
    assert equality_index("async.data.amount >= 100", _event(refund_id="r1")) is None
    assert equality_index("", _event(refund_id="r1")) is None


@pytest.mark.parametrize(
    ("incoming", "accepted"),
    [
        ({"refund_id": 7, "amount": 100}, True),
        ({"refund_id": 7.0, "amount": 150}, True),
        ({"refund_id": 8, "amount": 100}, False),
        ({"refund_id": "7", "amount": 100}, False),
        ({"refund_id": 7, "amount": 50}, False),
        ({"amount": 100}, False),
    ],
)
def test_the_index_finds_every_event_the_expression_accepts(
    incoming: dict[str, Any], accepted: bool
) -> None:
    source = "async.data.refund_id == event.data.refund_id && async.data.amount >= 100"
    trigger = _event(refund_id=7)
    expression = compile_expression(source, EVENT_AND_ASYNC, "wait")
    index = equality_index(source, trigger)
    assert index is not None
    path, value = index
    found = event_value(_event(**incoming), path)

    assert expression.holds({"event": trigger, "async": _event(**incoming)}) is accepted
    if accepted:
        assert found is not MISSING
        assert canonical(found) == value


def test_long_keys_and_keys_with_nul_are_stored_as_digests() -> None:
    assert bounded_key("order-42") == "order-42"
    assert bounded_key("k" * 200) == "k" * 200
    long = bounded_key("k" * 201)
    assert long.startswith("sha256:")
    assert long != bounded_key("k" * 202)
    assert bounded_key("a\x00b").startswith("sha256:")
