"""JSON as the wire wants it: compact UTF-8 bytes, no NaN, clear errors."""

from __future__ import annotations

import json
from typing import Any


class NotSerializableError(TypeError):
    """A value is not JSON. ``found`` names the offending type."""

    def __init__(self, found: str, detail: str = "") -> None:
        super().__init__(detail or f"a value of type {found!r} is not JSON-serializable")
        self.found = found


def _reject(value: object) -> Any:
    raise NotSerializableError(type(value).__name__)


def dumps(value: Any) -> bytes:
    try:
        text = json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_reject
        )
    except NotSerializableError:
        raise
    except ValueError as error:  # NaN or Infinity
        raise NotSerializableError("float", f"{error} (NaN and Infinity are not JSON)") from None
    except TypeError as error:  # e.g. a dict key that is a tuple
        raise NotSerializableError("dict", str(error)) from None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise NotSerializableError(
            "str", f"a string holds a lone surrogate, which is not valid Unicode ({error.reason})"
        ) from None


def loads(payload: bytes) -> Any:
    return json.loads(payload) if payload else None
