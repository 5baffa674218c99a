"""Five-field cron schedules in an IANA timezone, correct across DST changes (spec §6, §10 #17).

    schedule = parse("30 9 * * 1-5")                          # CronError on a bad expression
    nxt = next_fire_time(schedule, "Europe/Paris", after)     # aware UTC datetime, strictly after `after`

Fields: minute hour day-of-month month day-of-week, with `*`, lists, ranges, steps (`*/2`, `1-9/2`),
month and weekday names (`JAN`, `MON`), Sunday as 0 or 7, and the aliases `@hourly`, `@daily`
(`@midnight`), `@weekly`, `@monthly`, `@yearly` (`@annually`). As in Vixie cron, a day matches when
either day field matches if both are restricted.

Schedules are wall-clock times in their timezone. Across DST changes (the Vixie cron rules):
- a wall time that does not exist (spring forward) fires at the instant it maps to with the earlier
  offset, i.e. just after the jump (`30 2 * * *` in New York fires at 03:30 EDT that day);
- a wall time that happens twice (fall back) fires once, at its first occurrence, unless the hour
  field is a wildcard (`*`, `*/n`): an hourly schedule keeps firing every hour, so it fires at both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MIN_INTERVAL_MINUTES = 60
_ALIASES = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_MONTHS = {name: i for i, name in enumerate(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], start=1)}
_DAYS = {name: i for i, name in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}
# Feb 29 on a Monday can be 28 years away; a schedule that matches no day in that span never fires.
_SEARCH_DAYS = 366 * 29


class CronError(ValueError):
    """The expression or timezone is not valid; the message says why."""


@dataclass(frozen=True)
class CronSchedule:
    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool
    hour_wildcard: bool

    def matches_day(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        in_days = day.day in self.days
        in_weekdays = (day.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_days or in_weekdays
        return in_days and in_weekdays


def _number(token: str, names: dict[str, int] | None, field: str) -> int:
    upper = token.upper()
    if names and upper in names:
        return names[upper]
    if not token.isdigit():
        raise CronError(f"{field}: {token!r} is not a number")
    return int(token)


def _field(text: str, low: int, high: int, field: str, names: dict[str, int] | None = None) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"{field}: empty list item")
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{field}: bad step {step_text!r}")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = _number(first, names, field), _number(last, names, field)
        else:
            start = _number(base, names, field)
            end = high if step_text else start
        if not (low <= start <= high and low <= end <= high):
            raise CronError(f"{field}: {part!r} is outside {low}-{high}")
        if start > end:
            raise CronError(f"{field}: range {part!r} runs backwards")
        values.update(range(start, end + 1, step))
    return values


def parse(expression: str) -> CronSchedule:
    """Parse a five-field expression (or an alias); raise CronError naming the bad field."""
    text = " ".join(expression.split())
    text = _ALIASES.get(text.lower(), text)
    parts = text.split(" ")
    if len(parts) != 5:
        raise CronError(f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}")
    minute, hour, dom, month, dow = parts
    weekdays = {day % 7 for day in _field(dow, 0, 7, "day-of-week", _DAYS)}
    return CronSchedule(
        expression=text,
        minutes=tuple(sorted(_field(minute, 0, 59, "minute"))),
        hours=tuple(sorted(_field(hour, 0, 23, "hour"))),
        days=frozenset(_field(dom, 1, 31, "day-of-month")),
        months=frozenset(_field(month, 1, 12, "month", _MONTHS)),
        weekdays=frozenset(weekdays),
        days_restricted=not dom.startswith("*"),
        weekdays_restricted=not dow.startswith("*"),
        hour_wildcard=hour.startswith("*"),
    )


def zone(name: str) -> ZoneInfo:
    """The IANA timezone `name`; CronError if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise CronError(f"unknown timezone {name!r} (use an IANA name such as Europe/Paris)") from None


def _instants(naive: datetime, tz: ZoneInfo, both_folds: bool) -> list[datetime]:
    """The real instants (UTC) a wall-clock time stands for in `tz`: one, two (fall back) or the shifted
    one (spring forward)."""
    first = naive.replace(tzinfo=tz, fold=0)
    second = naive.replace(tzinfo=tz, fold=1)
    if first.utcoffset() == second.utcoffset():
        return [first.astimezone(UTC)]
    exists = first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == naive
    if not exists:  # in the gap: fold=0 reads it with the offset before the jump, i.e. just after it
        return [first.astimezone(UTC)]
    return [first.astimezone(UTC), second.astimezone(UTC)] if both_folds else [first.astimezone(UTC)]


def next_fire_time(schedule: CronSchedule, timezone: str, after: datetime) -> datetime | None:
    """The first slot strictly after `after` (aware), as an aware UTC datetime; None if it never fires."""
    tz = zone(timezone)
    after = after if after.tzinfo else after.replace(tzinfo=UTC)
    # Start a day early: the wall clock may be behind or ahead of `after` by the zone's offset change.
    day = after.astimezone(tz).date() - timedelta(days=1)
    for _ in range(_SEARCH_DAYS):
        if schedule.matches_day(day):
            found = [instant for hour in schedule.hours for minute in schedule.minutes
                     for instant in _instants(datetime(day.year, day.month, day.day, hour, minute), tz,
                                              schedule.hour_wildcard)
                     if instant > after]
            if found:
                return min(found)
        day += timedelta(days=1)
    return None


def validate(expression: str, timezone: str = "UTC") -> CronSchedule:
    """Parse and check a schedule for an automation: a known timezone, at least one future slot, and no
    two slots closer than MIN_INTERVAL_MINUTES (spec §6: hourly at most), i.e. one minute value."""
    schedule = parse(expression)
    zone(timezone)
    if len(schedule.minutes) > 1:
        raise CronError(f"the schedule fires more often than every {MIN_INTERVAL_MINUTES} minutes "
                        "(the minimum interval); use a single minute value")
    if next_fire_time(schedule, timezone, datetime.now(UTC)) is None:
        raise CronError("the schedule never fires (no calendar day matches it)")
    return schedule
