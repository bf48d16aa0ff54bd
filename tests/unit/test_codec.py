"""Conversions between table rows and engine models: cursors, errors, history."""

from __future__ import annotations

import base64
from types import SimpleNamespace
from typing import Any, cast

import pytest
from sqlalchemy import Row

from controlplane.model import ErrorData, HistoryEntry, HistoryKind, HistoryRecord
from controlplane.store.codec import (
    decode_cursor,
    decode_error,
    decode_page_cursor,
    encode_cursor,
    encode_error,
    history_from_row,
    history_row,
    to_bytes,
    to_text,
)
from tests.unit._match import exactly


def test_cursor_round_trip() -> None:
    token = encode_cursor(1_700_000_000_000, "01HZX3K8Q9ZQ5V6W7X8Y9Z0ABC")
    assert decode_cursor(token, 2) == ["1700000000000", "01HZX3K8Q9ZQ5V6W7X8Y9Z0ABC"]


def test_cursor_is_url_safe_without_padding() -> None:
    for parts in [("a",), ("ab",), ("abc", 1), ("~~~???>>>", "é")]:
        token = encode_cursor(*parts)
        assert "=" not in token
        assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
        assert decode_cursor(token, len(parts)) == [str(p) for p in parts]


def test_cursor_with_an_empty_part() -> None:
    assert decode_cursor(encode_cursor("", 5), 2) == ["", "5"]


def test_cursor_with_the_wrong_number_of_parts_is_refused() -> None:
    token = encode_cursor(1, 2, 3)
    with pytest.raises(ValueError, match=exactly("malformed page token")):
        decode_cursor(token, 2)
    with pytest.raises(ValueError, match=exactly("malformed page token")):
        decode_cursor(token, 4)


@pytest.mark.parametrize(
    "token",
    [
        "a",  # not a valid base64 length
        "%%%%",  # no base64 characters at all
        "not-a-token",
        base64.urlsafe_b64encode(b"\xff\xfe\x1f\xfd").decode(),  # not UTF-8
        "",
    ],
)
def test_malformed_token_raises_value_error(token: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - any ValueError; the message varies
        decode_cursor(token, 2)


def test_a_page_cursor_is_a_time_and_an_id() -> None:
    token = encode_cursor(1_700_000_000_000, "01HZX3K8Q9ZQ5V6W7X8Y9Z0ABC")
    assert decode_page_cursor(token) == (1_700_000_000_000, "01HZX3K8Q9ZQ5V6W7X8Y9Z0ABC")


@pytest.mark.parametrize(
    "parts",
    [
        (2**63, "01HZX3K8Q9ZQ5V6W7X8Y9Z0ABC"),  # no database stores such a time
        ("1_000", "01HZX3K8Q9ZQ5V6W7X8Y9Z0ABC"),
        (" 12", "01HZX3K8Q9ZQ5V6W7X8Y9Z0ABC"),
        (12, ""),
        (12, "a\x00b"),  # PostgreSQL stores no NUL
    ],
)
def test_a_page_cursor_that_no_page_could_have_made_is_refused(parts: tuple[object, str]) -> None:
    with pytest.raises(ValueError, match=exactly("malformed page token")):
        decode_page_cursor(encode_cursor(*parts))


@pytest.mark.parametrize(
    "error",
    [
        ErrorData("ValueError", "card declined", "Traceback (most recent call last):\n  ..."),
        ErrorData("KeyError", "'é' \"quoted\"", ""),
        ErrorData("", "", ""),
    ],
)
def test_error_json_round_trip(error: ErrorData) -> None:
    encoded = encode_error(error)
    assert isinstance(encoded, str)
    assert decode_error(encoded) == error


def test_no_error() -> None:
    assert encode_error(None) is None
    assert decode_error(None) is None
    assert decode_error("") is None


def test_error_json_missing_fields_default_to_empty() -> None:
    assert decode_error('{"message": "boom"}') == ErrorData("", "boom", "")


def test_payload_text_round_trip() -> None:
    assert to_text('{"city":"Zürich"}'.encode()) == '{"city":"Zürich"}'
    assert to_bytes('{"city":"Zürich"}') == '{"city":"Zürich"}'.encode()
    assert to_bytes(None) is None


def test_history_row_round_trip() -> None:
    error = ErrorData("ConnectionError", "timeout", "stack")
    row = history_row(
        HistoryRecord(
            "run-1",
            1_000,
            HistoryKind.STEP_FAILED,
            step_id="abc",
            step_name="send-email",
            attempt=2,
            until_ms=11_000,
            execution_id="ex-1",
            error=error,
            message="will retry",
        )
    )
    assert row["run_id"] == "run-1"
    assert row["kind"] == "step.failed"
    read_back = history_from_row(cast(Row[Any], SimpleNamespace(_mapping=row)))
    assert read_back == HistoryEntry(
        ts_ms=1_000,
        kind=HistoryKind.STEP_FAILED,
        step_id="abc",
        step_name="send-email",
        attempt=2,
        error=error,
        until_ms=11_000,
        message="will retry",
        execution_id="ex-1",
    )


def test_history_row_without_details() -> None:
    row = history_row(HistoryRecord("run-1", 5, HistoryKind.RUN_COMPLETED))
    assert row["detail"] is None
    read_back = history_from_row(cast(Row[Any], SimpleNamespace(_mapping=row)))
    assert read_back == HistoryEntry(ts_ms=5, kind=HistoryKind.RUN_COMPLETED)
