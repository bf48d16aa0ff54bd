"""Cron ticks: local times across daylight-saving changes, and catch-up."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest

from controlplane.engine.cron import (
    GRACE_MS,
    MAX_CATCH_UP,
    due_ticks,
    next_tick,
    ticks_between,
)
from controlplane.model import CatchUp

PARIS = ZoneInfo("Europe/Paris")
HOUR_MS = 3_600_000
MINUTE_MS = 60_000


def ms(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    """A UTC time in milliseconds."""
    return int(dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC).timestamp() * 1000)


def paris(at_ms: int) -> str:
    """A tick as Paris wall-clock time with its offset."""
    return dt.datetime.fromtimestamp(at_ms / 1000, PARIS).isoformat()


def forward(schedule: str, timezone: str, start_ms: int, count: int) -> list[int]:
    ticks: list[int] = []
    at = start_ms
    for _ in range(count):
        found = next_tick(schedule, timezone, at)
        assert found is not None
        ticks.append(found)
        at = found
    return ticks


# -- local times across daylight-saving changes --------------------------------------------


def test_nine_in_paris_stays_nine_across_the_spring_change() -> None:
    ticks = forward("0 9 * * *", "Europe/Paris", ms(2026, 3, 27, 12), 3)
    assert [paris(t) for t in ticks] == [
        "2026-03-28T09:00:00+01:00",
        "2026-03-29T09:00:00+02:00",
        "2026-03-30T09:00:00+02:00",
    ]
    assert ticks == [ms(2026, 3, 28, 8), ms(2026, 3, 29, 7), ms(2026, 3, 30, 7)]


def test_nine_in_paris_stays_nine_across_the_autumn_change() -> None:
    ticks = forward("0 9 * * *", "Europe/Paris", ms(2026, 10, 23, 12), 3)
    assert [paris(t) for t in ticks] == [
        "2026-10-24T09:00:00+02:00",
        "2026-10-25T09:00:00+01:00",
        "2026-10-26T09:00:00+01:00",
    ]
    assert ticks == [ms(2026, 10, 24, 7), ms(2026, 10, 25, 8), ms(2026, 10, 26, 8)]


def test_a_daily_job_in_the_repeated_hour_runs_once_on_the_fall_back_night() -> None:
    # 02:30 happens twice in Paris on 2026-10-25 (summer time, then winter time).
    ticks = forward("30 2 * * *", "Europe/Paris", ms(2026, 10, 23, 12), 3)
    assert [paris(t) for t in ticks] == [
        "2026-10-24T02:30:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
    ]
    # Even seen from inside the repeated hour, the second 02:30 is not a tick.
    assert next_tick("30 2 * * *", "Europe/Paris", ms(2026, 10, 25, 1, 0)) == ms(
        2026, 10, 26, 1, 30
    )


def test_a_daily_job_in_the_skipped_hour_runs_once_at_the_end_of_the_gap() -> None:
    # 02:00 jumps to 03:00 in Paris on 2026-03-29: 02:30 does not exist that day.
    ticks = forward("30 2 * * *", "Europe/Paris", ms(2026, 3, 27, 12), 3)
    assert [paris(t) for t in ticks] == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]


def test_a_fixed_hour_with_every_minute_skips_the_repeated_hour() -> None:
    night = ticks_between(
        "* 2 * * *", "Europe/Paris", ms(2026, 10, 24, 12), ms(2026, 10, 25, 12), 500
    )
    assert len(night) == 60
    assert paris(night[0]) == "2026-10-25T02:00:00+02:00"
    assert paris(night[-1]) == "2026-10-25T02:59:00+02:00"


def test_an_hourly_job_follows_real_time_when_the_clocks_go_back() -> None:
    # Midnight to midnight, local: 25 hours that day, 25 ticks an hour apart.
    start, end = ms(2026, 10, 24, 22), ms(2026, 10, 25, 23) - 1
    ticks = ticks_between("0 * * * *", "Europe/Paris", start, end, 100)
    assert len(ticks) == 25
    assert all(b - a == HOUR_MS for a, b in itertools.pairwise(ticks))
    assert [paris(t) for t in ticks[2:5]] == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T03:00:00+01:00",
    ]


def test_an_hourly_job_follows_real_time_when_the_clocks_go_forward() -> None:
    # Midnight to midnight, local: 23 hours that day, 23 ticks an hour apart.
    start, end = ms(2026, 3, 28, 23), ms(2026, 3, 29, 22) - 1
    ticks = ticks_between("0 * * * *", "Europe/Paris", start, end, 100)
    assert len(ticks) == 23
    assert all(b - a == HOUR_MS for a, b in itertools.pairwise(ticks))
    assert [paris(t) for t in ticks[1:3]] == [
        "2026-03-29T01:00:00+01:00",
        "2026-03-29T03:00:00+02:00",
    ]


def test_no_time_zone_means_utc() -> None:
    assert next_tick("0 9 * * *", "", ms(2026, 10, 24, 12)) == ms(2026, 10, 25, 9)
    assert next_tick("0 9 * * *", "UTC", ms(2026, 10, 24, 12)) == ms(2026, 10, 25, 9)


def test_the_next_tick_is_strictly_later() -> None:
    tick = ms(2026, 1, 1, 9)
    assert next_tick("0 9 * * *", "", tick - 1) == tick
    assert next_tick("0 9 * * *", "", tick) == ms(2026, 1, 2, 9)
    assert next_tick("*/15 * * * *", "", tick + 1) == tick + 15 * MINUTE_MS


def test_a_schedule_that_never_fires_has_no_next_tick() -> None:
    assert next_tick("0 0 31 2 *", "", ms(2026, 1, 1)) is None


@pytest.mark.parametrize(
    "schedule",
    ["30 2 * * *", "0 * * * *", "30 1-3 * * *", "*/10 * * * *", "*/30 2 * * *", "0 9 * * *"],
)
@pytest.mark.parametrize("night", [ms(2026, 3, 28, 18), ms(2026, 10, 24, 18)])
def test_walking_back_finds_the_ticks_walking_forward_finds(schedule: str, night: int) -> None:
    end = night + 13 * HOUR_MS + 7 * MINUTE_MS
    expected = [t for t in forward(schedule, "Europe/Paris", night - 1, 200) if t <= end]
    assert ticks_between(schedule, "Europe/Paris", night, end, 200) == expected
    assert ticks_between(schedule, "Europe/Paris", night, end, 2) == expected[-2:]


# -- catch-up ---------------------------------------------------------------------------------


HOURLY = "0 * * * *"
T1 = ms(2026, 11, 2, 10)


@pytest.mark.parametrize("catch_up", list(CatchUp))
def test_a_tick_found_on_time_runs_once_whatever_the_catch_up(catch_up: CatchUp) -> None:
    assert due_ticks(HOURLY, "", catch_up, T1, T1 + 5) == [T1]
    assert due_ticks(HOURLY, "", catch_up, T1, T1 + GRACE_MS - 1) == [T1]
    assert due_ticks(HOURLY, "", catch_up, T1, T1 - 1) == []


def test_missed_ticks_catch_up_one_runs_the_latest() -> None:
    now = T1 + 2 * HOUR_MS + 30 * MINUTE_MS
    assert due_ticks(HOURLY, "", CatchUp.ONE, T1, now) == [T1 + 2 * HOUR_MS]


def test_missed_ticks_catch_up_all_runs_each() -> None:
    now = T1 + 2 * HOUR_MS + 30 * MINUTE_MS
    assert due_ticks(HOURLY, "", CatchUp.ALL, T1, now) == [T1, T1 + HOUR_MS, T1 + 2 * HOUR_MS]


def test_missed_ticks_catch_up_none_runs_nothing() -> None:
    now = T1 + 2 * HOUR_MS + 30 * MINUTE_MS
    assert due_ticks(HOURLY, "", CatchUp.NONE, T1, now) == []
    # ... but a tick within the grace still runs.
    late = T1 + 2 * HOUR_MS + GRACE_MS
    assert due_ticks(HOURLY, "", CatchUp.NONE, T1, late - 1) == [T1 + 2 * HOUR_MS]
    assert due_ticks(HOURLY, "", CatchUp.NONE, T1, late) == []


def test_catch_up_all_runs_at_most_the_latest_hundred() -> None:
    now = T1 + 1000 * HOUR_MS
    ticks = due_ticks(HOURLY, "", CatchUp.ALL, T1, now)
    assert len(ticks) == MAX_CATCH_UP
    assert ticks[-1] == now
    assert ticks[0] == now - (MAX_CATCH_UP - 1) * HOUR_MS


def test_a_long_downtime_is_cheap_to_catch_up() -> None:
    # A year of an every-minute schedule: the work is bounded by the runs started.
    now = ms(2027, 11, 2, 10, 30)
    assert due_ticks("* * * * *", "", CatchUp.ONE, T1, now) == [now]
    assert len(due_ticks("* * * * *", "", CatchUp.ALL, T1, now)) == MAX_CATCH_UP
    assert due_ticks("* * * * *", "", CatchUp.NONE, T1, now) == [now]
