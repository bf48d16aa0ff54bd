"""Errors user code raises to steer retries, and StepError raised into it."""

from __future__ import annotations

import datetime as dt

import pytest

from tether import NonRetriableError, RetryAfterError, StepError
from tether._errors import ConfigError, TetherError


@pytest.mark.parametrize(
    ("delay", "expected_ms"),
    [
        ("30s", 30_000),
        ("1h30m", 5_400_000),
        (dt.timedelta(minutes=2), 120_000),
        (5, 5_000),
        (0.25, 250),
    ],
)
def test_retry_after_a_duration(delay: str | dt.timedelta | float, expected_ms: int) -> None:
    error = RetryAfterError("rate limited", delay)
    assert error.delay_ms == expected_ms
    assert str(error) == "rate limited"


def test_retry_after_an_aware_datetime_is_the_time_left() -> None:
    at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=60)
    delay_ms = RetryAfterError("later", at).delay_ms
    # Computed against the wall clock a moment after `at` was chosen.
    assert 59_000 <= delay_ms <= 60_000


def test_retry_after_an_aware_datetime_in_another_zone() -> None:
    paris_summer = dt.timezone(dt.timedelta(hours=2))
    at = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10)).astimezone(paris_summer)
    assert 599_000 <= RetryAfterError("later", at).delay_ms <= 600_000


def test_retry_after_a_naive_datetime_is_local_time() -> None:
    at = dt.datetime.now() + dt.timedelta(minutes=2)
    assert 119_000 <= RetryAfterError("later", at).delay_ms <= 120_000


def test_retry_after_a_datetime_in_the_past_is_now() -> None:
    at = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    assert RetryAfterError("late", at).delay_ms == 0


def test_retry_after_rejects_a_bad_duration() -> None:
    with pytest.raises(ValueError, match="invalid duration '5 parsecs'"):
        RetryAfterError("x", "5 parsecs")
    with pytest.raises(ValueError, match="cannot be negative"):
        RetryAfterError("x", -1)


def test_step_error_carries_the_step_and_the_original_error() -> None:
    error = StepError("charge:1", "ValueError", "card declined", "Traceback ...")
    assert str(error) == "step 'charge:1' failed: ValueError: card declined"
    assert (error.step_id, error.name, error.error_message, error.stack) == (
        "charge:1",
        "ValueError",
        "card declined",
        "Traceback ...",
    )


def test_error_classes() -> None:
    assert issubclass(NonRetriableError, Exception)
    assert issubclass(ConfigError, TetherError)
    assert issubclass(ConfigError, ValueError)
    assert ConfigError.code == "INVALID_ARGUMENT"
