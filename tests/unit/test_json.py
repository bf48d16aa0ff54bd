"""JSON as the wire wants it: compact UTF-8 bytes, no NaN, errors naming the type."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from typing import Any

import pytest

from tether import _json
from tether._json import NotSerializableError


def test_dumps_is_compact_utf8_bytes() -> None:
    assert _json.dumps({"a": 1, "b": [1, 2.5, None, True], "c": "x"}) == (
        b'{"a":1,"b":[1,2.5,null,true],"c":"x"}'
    )


def test_dumps_keeps_non_ascii_characters_as_utf8() -> None:
    assert _json.dumps({"city": "Zürich", "mood": "☀"}) == '{"city":"Zürich","mood":"☀"}'.encode()


def test_dumps_keeps_big_integers_exact() -> None:
    assert _json.dumps(2**63 + 1) == b"9223372036854775809"
    assert _json.loads(b"9223372036854775809") == 2**63 + 1


def test_dumps_scalars_and_tuples() -> None:
    assert _json.dumps(None) == b"null"
    assert _json.dumps("hi") == b'"hi"'
    assert _json.dumps((1, 2)) == b"[1,2]"


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (dt.datetime(2024, 1, 2, 3, 4, 5), "datetime"),
        (dt.date(2024, 1, 2), "date"),
        ({1, 2}, "set"),
        (b"raw", "bytes"),
        (decimal.Decimal("1.5"), "Decimal"),
        ({"nested": [object()]}, "object"),
    ],
)
def test_unserializable_values_name_their_type(value: Any, type_name: str) -> None:
    with pytest.raises(NotSerializableError) as caught:
        _json.dumps(value)
    assert caught.value.found == type_name
    assert str(caught.value) == f"a value of type {type_name!r} is not JSON-serializable"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, {"x": [math.nan]}])
def test_nan_and_infinity_are_rejected(value: Any) -> None:
    with pytest.raises(NotSerializableError) as caught:
        _json.dumps(value)
    assert caught.value.found == "float"
    assert str(caught.value).endswith("(NaN and Infinity are not JSON)")


def test_non_string_dict_keys_that_json_cannot_hold_are_rejected() -> None:
    with pytest.raises(NotSerializableError) as caught:
        _json.dumps({(1, 2): "pair"})
    assert caught.value.found == "dict"
    assert "tuple" in str(caught.value)


def test_not_serializable_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        _json.dumps({1, 2})


def test_loads_round_trips_and_treats_empty_bytes_as_none() -> None:
    value = {"a": [1, "é", None], "b": {"c": False}}
    assert _json.loads(_json.dumps(value)) == value
    assert _json.loads(b"") is None
