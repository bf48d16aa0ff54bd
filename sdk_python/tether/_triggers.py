"""What starts a function: an event name, a filtered event, or a schedule."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tether._errors import ConfigError


@dataclass(frozen=True, slots=True)
class EventTrigger:
    name: str
    #: A CEL expression over ``event`` that must hold, e.g. "event.data.plan == 'pro'".
    if_: str = ""


CATCH_UP_MODES = ("one", "none", "all")


@dataclass(frozen=True, slots=True)
class CronTrigger:
    schedule: str
    #: An IANA time zone, e.g. "Europe/Paris"; empty means UTC.
    tz: str = ""
    #: Ticks missed while no control plane ran: "one" run for the latest (the
    #: default), "none", or "all" of them (at most 100).
    catch_up: str = "one"


Trigger = EventTrigger | CronTrigger
TriggerLike = str | Trigger | Sequence[str | Trigger]


def event(name: str, *, if_: str | None = None) -> EventTrigger:
    """Trigger on events named ``name``, optionally only when ``if_`` holds."""
    return EventTrigger(name, if_ or "")


def cron(schedule: str, *, tz: str | None = None, catch_up: str = "one") -> CronTrigger:
    """Trigger on a cron schedule such as "0 9 * * *", in time zone ``tz``
    (local times: 09:00 stays 09:00 across daylight-saving changes).

    ``catch_up`` says what happens to ticks missed while no control plane ran:
    ``"one"`` run for the latest of them (the default), ``"none"``, or ``"all"``.
    """
    if catch_up not in CATCH_UP_MODES:
        raise ConfigError(
            f"cron {schedule!r}: catch_up is one of {', '.join(CATCH_UP_MODES)}, not {catch_up!r}"
        )
    return CronTrigger(schedule, tz or "", catch_up)


def normalize_triggers(function_id: str, trigger: TriggerLike) -> tuple[Trigger, ...]:
    if isinstance(trigger, str | EventTrigger | CronTrigger):
        items: Sequence[object] = [trigger]
    elif isinstance(trigger, list | tuple):
        items = list(trigger)
    else:
        raise ConfigError(
            f"function {function_id!r}: a trigger is an event name, event(...) or cron(...), "
            f"or a list of them, not {type(trigger).__name__}"
        )
    # No trigger at all (``trigger=[]``): the function only runs when invoked.
    result: list[Trigger] = []
    for item in items:
        if isinstance(item, str):
            item = EventTrigger(item)
        if not isinstance(item, EventTrigger | CronTrigger):
            raise ConfigError(
                f"function {function_id!r}: a trigger is an event name, event(...) or "
                f"cron(...), not {type(item).__name__}"
            )
        if isinstance(item, EventTrigger) and (
            not item.name or any(c.isspace() for c in item.name)
        ):
            raise ConfigError(
                f"function {function_id!r}: invalid event name {item.name!r} "
                "(non-empty, no whitespace, like 'app/user.signup')"
            )
        result.append(item)
    return tuple(result)
