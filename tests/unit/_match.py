"""Matching error messages exactly."""

from __future__ import annotations

import re


def exactly(message: str) -> str:
    """A ``pytest.raises(match=...)`` pattern for this whole message, taken literally."""
    return f"^{re.escape(message)}$"
