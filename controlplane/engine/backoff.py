"""When a failed step or function body is retried.

Exponential: 10 s after the first failure, then 20 s, 40 s, 80 s... capped at one
hour, each stretched by up to 20 % of random jitter so that many runs failing
together do not retry together.
"""

from __future__ import annotations

import random

BASE_DELAY_MS = 10_000
MAX_DELAY_MS = 3_600_000
JITTER = 0.2


def retry_delay_ms(failed_attempts: int, rng: random.Random | None = None) -> int:
    """The delay before the next attempt, given how many attempts failed (>= 1)."""
    exponent = max(0, failed_attempts - 1)
    base = min(BASE_DELAY_MS * 2 ** min(exponent, 32), MAX_DELAY_MS)
    draw = (rng or random).random()
    return int(base * (1 + JITTER * draw))


def delay_bounds_ms(failed_attempts: int) -> tuple[int, int]:
    """The smallest and largest delay :func:`retry_delay_ms` may return."""
    exponent = max(0, failed_attempts - 1)
    base = min(BASE_DELAY_MS * 2 ** min(exponent, 32), MAX_DELAY_MS)
    return base, int(base * (1 + JITTER))
