"""Durations as users write them: "1h30m", "500ms", a timedelta or seconds."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.unit._match import exactly
from tether._durations import DurationLike, to_milliseconds


@pytest.mark.parametrize(
    ("duration", "expected"),
    [
        ("1h30m", 5_400_000),
        ("500ms", 500),
        ("2d", 172_800_000),
        ("1.5h", 5_400_000),
        ("30s", 30_000),
        ("5m", 300_000),
        ("1w", 604_800_000),
        ("1d2h3m4s5ms", 93_784_005),
        ("1h 30m", 5_400_000),
        ("1H30M", 5_400_000),
        ("0s", 0),
        (dt.timedelta(minutes=2, milliseconds=5), 120_005),
        (dt.timedelta(0), 0),
        (90, 90_000),
        (1.5, 1_500),
        (0, 0),
    ],
)
def test_to_milliseconds(duration: DurationLike, expected: int) -> None:
    assert to_milliseconds(duration) == expected


def test_fractions_of_a_millisecond_are_rounded() -> None:
    assert to_milliseconds(0.0004) == 0
    assert to_milliseconds(0.0006) == 1


@pytest.mark.parametrize("text", ["", "   "])
def test_empty_duration_is_rejected(text: str) -> None:
    with pytest.raises(
        ValueError, match=exactly("empty duration: write it like '30s', '1h30m' or '2d'")
    ):
        to_milliseconds(text)


@pytest.mark.parametrize("text", ["5x", "10", "h", "1h30", "1.h", "-5s", "5 seconds", "1h-30m"])
def test_invalid_duration_names_the_input_and_the_units(text: str) -> None:
    message = (
        f"invalid duration {text!r}: write it like '30s', '1h30m', '500ms' or '2d' "
        "(units: ms, s, m, h, d, w)"
    )
    with pytest.raises(ValueError, match=exactly(message)):
        to_milliseconds(text)


@pytest.mark.parametrize(
    ("duration", "shown"),
    [
        (-1, "-1"),
        (-0.5, "-0.5"),
        (dt.timedelta(seconds=-1), "datetime.timedelta(days=-1, seconds=86399)"),
    ],
)
def test_negative_duration_is_rejected(duration: DurationLike, shown: str) -> None:
    with pytest.raises(ValueError, match=exactly(f"a duration cannot be negative: {shown}")):
        to_milliseconds(duration)


@pytest.mark.parametrize("flag", [True, False])
def test_boolean_is_not_a_duration(flag: bool) -> None:
    with pytest.raises(TypeError, match=exactly("a duration cannot be a boolean")):
        to_milliseconds(flag)


@pytest.mark.parametrize(
    ("value", "type_name"), [(None, "NoneType"), ([1], "list"), (b"1s", "bytes")]
)
def test_other_types_are_rejected_by_name(value: object, type_name: str) -> None:
    with pytest.raises(TypeError) as caught:
        to_milliseconds(value)  # type: ignore[arg-type]
    assert str(caught.value) == (
        f"a duration is a string like '1h30m', a timedelta or seconds, not {type_name}"
    )
