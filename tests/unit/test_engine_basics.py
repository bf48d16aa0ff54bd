"""Small engine pieces: retry backoff, ids, clocks, byte formatting."""

from __future__ import annotations

import itertools
import random
import string

import pytest

from controlplane.engine import clock as clock_module
from controlplane.engine.backoff import (
    BASE_DELAY_MS,
    MAX_DELAY_MS,
    delay_bounds_ms,
    retry_delay_ms,
)
from controlplane.engine.clock import SystemClock, VirtualClock
from controlplane.engine.settings import format_bytes
from controlplane.model.ids import new_hex_id, new_ulid
from tests.unit._match import exactly

# -- backoff ------------------------------------------------------------------------------


class FixedDraw(random.Random):
    """A random source that always draws the same number."""

    def __init__(self, draw: float) -> None:
        super().__init__(0)
        self.draw = draw

    def random(self) -> float:
        return self.draw


@pytest.mark.parametrize(
    ("failed_attempts", "bounds"),
    [
        (1, (10_000, 12_000)),
        (2, (20_000, 24_000)),
        (3, (40_000, 48_000)),
        (4, (80_000, 96_000)),
        (9, (2_560_000, 3_072_000)),
        (10, (3_600_000, 4_320_000)),
        (20, (3_600_000, 4_320_000)),
        (10_000, (3_600_000, 4_320_000)),
    ],
)
def test_delay_bounds(failed_attempts: int, bounds: tuple[int, int]) -> None:
    assert delay_bounds_ms(failed_attempts) == bounds


def test_delays_double_until_the_cap() -> None:
    lows = [delay_bounds_ms(n)[0] for n in range(1, 12)]
    for previous, current in itertools.pairwise(lows):
        assert current == min(previous * 2, MAX_DELAY_MS)
    assert lows[0] == BASE_DELAY_MS
    assert lows[-1] == MAX_DELAY_MS


def test_no_failed_attempt_counts_as_one() -> None:
    assert delay_bounds_ms(0) == delay_bounds_ms(1)


@pytest.mark.parametrize("failed_attempts", [1, 2, 5, 9, 10, 30, 1000])
def test_delays_stay_within_bounds(failed_attempts: int) -> None:
    low, high = delay_bounds_ms(failed_attempts)
    rng = random.Random(failed_attempts)
    delays = [retry_delay_ms(failed_attempts, rng) for _ in range(200)]
    assert all(low <= d <= high for d in delays)
    # Jitter spreads the delays out.
    assert len(set(delays)) > 100


def test_jitter_is_up_to_twenty_percent() -> None:
    assert retry_delay_ms(1, FixedDraw(0.0)) == 10_000
    assert retry_delay_ms(1, FixedDraw(0.5)) == 11_000
    assert retry_delay_ms(3, FixedDraw(0.25)) == 42_000
    assert retry_delay_ms(50, FixedDraw(0.5)) == 3_960_000


def test_retry_delay_without_an_rng_uses_the_module_random() -> None:
    low, high = delay_bounds_ms(2)
    assert low <= retry_delay_ms(2) <= high


# -- ids ------------------------------------------------------------------------------------

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def crockford_value(text: str) -> int:
    value = 0
    for char in text:
        value = value * 32 + CROCKFORD.index(char)
    return value


def test_ulid_is_26_crockford_characters() -> None:
    for now_ms in [0, 1, 1_700_000_000_000, 2**48 - 1]:
        ulid = new_ulid(now_ms)
        assert len(ulid) == 26
        assert set(ulid) <= set(CROCKFORD)
        assert not set(ulid) & set("ILOU")


def test_ulid_starts_with_the_time() -> None:
    # The example from the ULID specification.
    assert new_ulid(1_469_918_176_385)[:10] == "01ARYZ6S41"
    assert crockford_value(new_ulid(1_700_000_000_000)[:10]) == 1_700_000_000_000
    assert new_ulid(0)[:10] == "0000000000"


def test_ulids_of_one_millisecond_sort_in_the_order_they_were_made() -> None:
    made = [new_ulid(1_700_000_000_000) for _ in range(1000)]

    assert made == sorted(made)
    assert len(set(made)) == 1000
    assert {u[:10] for u in made} == {new_ulid(1_700_000_000_000)[:10]}


def test_ulids_sort_by_time() -> None:
    times = [0, 1, 31, 32, 999, 1_000, 1_700_000_000_000, 1_700_000_000_001, 2**47, 2**48 - 1]
    ulids = [new_ulid(t) for t in reversed(times)]
    assert sorted(ulids) == list(reversed(ulids))


def test_ulids_of_one_millisecond_differ() -> None:
    assert len({new_ulid(5) for _ in range(100)}) == 100


@pytest.mark.parametrize("n_bytes", [8, 16])
def test_hex_ids(n_bytes: int) -> None:
    value = new_hex_id(n_bytes)
    assert len(value) == 2 * n_bytes
    assert set(value) <= set(string.hexdigits.lower())
    assert value.strip("0")


# -- clocks ---------------------------------------------------------------------------------


class FakeTime:
    """Stands in for the ``time`` module: a monotonic and a wall clock we move by hand."""

    def __init__(self) -> None:
        self.monotonic_ms = 5_000
        self.wall_ms = 1_700_000_000_000

    def monotonic_ns(self) -> int:
        return self.monotonic_ms * 1_000_000

    def time_ns(self) -> int:
        return self.wall_ms * 1_000_000


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(clock_module, "time", fake)
    return fake


def test_virtual_clock_starts_where_asked(fake_time: FakeTime) -> None:
    clock = VirtualClock(start_ms=1_000_000)
    assert clock.now_ms() == 1_000_000
    assert clock.is_virtual


def test_virtual_clock_starts_at_the_wall_clock_by_default(fake_time: FakeTime) -> None:
    assert VirtualClock().now_ms() == 1_700_000_000_000


def test_virtual_clock_runs_at_the_wall_clock_pace(fake_time: FakeTime) -> None:
    clock = VirtualClock(start_ms=1_000_000)
    fake_time.monotonic_ms += 250
    assert clock.now_ms() == 1_000_250


def test_virtual_clock_advances(fake_time: FakeTime) -> None:
    clock = VirtualClock(start_ms=1_000_000)
    assert clock.advance(72 * 3_600_000) == 1_000_000 + 72 * 3_600_000
    assert clock.now_ms() == 1_000_000 + 72 * 3_600_000
    assert clock.advance(0) == 1_000_000 + 72 * 3_600_000


def test_virtual_clock_never_goes_backwards(fake_time: FakeTime) -> None:
    clock = VirtualClock(start_ms=1_000_000)
    with pytest.raises(ValueError, match=exactly("the clock only moves forward; got -1 ms")):
        clock.advance(-1)
    assert clock.now_ms() == 1_000_000


def test_virtual_clock_advance_to(fake_time: FakeTime) -> None:
    clock = VirtualClock(start_ms=1_000_000)
    assert clock.advance_to(4_000_000) == 4_000_000
    assert clock.now_ms() == 4_000_000


def test_virtual_clock_advance_to_the_past_is_a_no_op(fake_time: FakeTime) -> None:
    clock = VirtualClock(start_ms=1_000_000)
    assert clock.advance_to(999_999) == 1_000_000
    assert clock.advance_to(0) == 1_000_000
    assert clock.now_ms() == 1_000_000


def test_seconds_until(fake_time: FakeTime) -> None:
    clock = VirtualClock(start_ms=1_000_000)
    assert clock.seconds_until(1_001_500) == 1.5
    assert clock.seconds_until(1_000_000) == 0.0
    assert clock.seconds_until(10) == 0.0


def test_auto_skip_flag(fake_time: FakeTime) -> None:
    assert VirtualClock().auto_skip is True
    assert VirtualClock(auto_skip=False).auto_skip is False


def test_system_clock_is_the_wall_clock(fake_time: FakeTime) -> None:
    clock = SystemClock()
    assert clock.now_ms() == 1_700_000_000_000
    assert not clock.is_virtual


# -- format_bytes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 bytes"),
        (1023, "1023 bytes"),
        (1024, "1 KiB"),
        (1536, "1.5 KiB"),
        (512 * 1024, "512 KiB"),
        (512 * 1024 + 1, "512.0 KiB"),
        (4 * 1024 * 1024, "4 MiB"),
        (4_194_304, "4 MiB"),
        (1_572_864, "1536 KiB"),
        (5 * 1024 * 1024 + 1, "5.0 MiB"),
        (64 * 1024 * 1024, "64 MiB"),
    ],
)
def test_format_bytes(n: int, text: str) -> None:
    assert format_bytes(n) == text
