"""The cron parser and next-slot computation: fields, aliases, day rules, and DST in both directions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from replicas.services.cron_schedule import CronError, next_fire_time, parse, validate, zone

NEW_YORK = "America/New_York"


def _slots(expression: str, timezone: str, after: datetime, count: int) -> list[str]:
    schedule, out = parse(expression), []
    for _ in range(count):
        after = next_fire_time(schedule, timezone, after)
        out.append(after.astimezone(zone(timezone)).isoformat())
    return out


def test_fields_lists_ranges_steps_and_names():
    schedule = parse("5 */6 1,15 JAN-MAR mon-fri")
    assert schedule.minutes == (5,) and schedule.hours == (0, 6, 12, 18)
    assert schedule.days == {1, 15} and schedule.months == {1, 2, 3} and schedule.weekdays == {1, 2, 3, 4, 5}
    assert parse("0 0 * * 7").weekdays == {0}  # Sunday is 0 or 7
    assert parse("@daily").expression == "0 0 * * *"
    assert parse("0 9-17/4 * * *").hours == (9, 13, 17)


@pytest.mark.parametrize("expression", ["* * * *", "60 * * * *", "0 24 * * *", "0 0 0 * *", "0 0 * 13 *",
                                        "0 0 * * 8", "0 5-1 * * *", "0 */0 * * *", "a * * * *", "0 0 ,1 * *"])
def test_bad_expressions_are_refused(expression):
    with pytest.raises(CronError):
        parse(expression)


def test_minimum_interval_unknown_zones_and_impossible_dates():
    validate("0 * * * *")  # hourly is the most frequent allowed
    for expression in ("*/30 * * * *", "0,59 1 * * *", "* 3 * * *"):
        with pytest.raises(CronError, match="60 minutes"):
            validate(expression)
    with pytest.raises(CronError, match="timezone"):
        validate("0 9 * * *", "Nowhere/City")
    with pytest.raises(CronError, match="never fires"):
        validate("0 0 31 4 *")


def test_day_of_month_or_day_of_week_when_both_are_restricted():
    # The 13th, or any Friday (Vixie cron): from Thu 2026-02-12 the next are Fri 13th, then the 20th.
    assert _slots("0 12 13 * 5", "UTC", datetime(2026, 2, 12, tzinfo=UTC), 2) == [
        "2026-02-13T12:00:00+00:00", "2026-02-20T12:00:00+00:00"]
    # Only the day-of-week restricted: Mondays.
    assert _slots("0 12 * * 1", "UTC", datetime(2026, 2, 12, tzinfo=UTC), 1) == ["2026-02-16T12:00:00+00:00"]


def test_a_daily_time_in_the_spring_gap_runs_once_just_after_the_jump():
    # 2026-03-08 02:00 EST -> 03:00 EDT in New York: 02:30 does not exist that day.
    assert _slots("30 2 * * *", NEW_YORK, datetime(2026, 3, 7, 12, tzinfo=UTC), 3) == [
        "2026-03-08T03:30:00-04:00", "2026-03-09T02:30:00-04:00", "2026-03-10T02:30:00-04:00"]


def test_a_daily_time_in_the_repeated_hour_runs_once():
    # 2026-11-01 02:00 EDT -> 01:00 EST: 01:30 happens twice; a daily job runs at the first only.
    assert _slots("30 1 * * *", NEW_YORK, datetime(2026, 10, 31, 12, tzinfo=UTC), 2) == [
        "2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]


def test_an_hourly_schedule_keeps_firing_every_hour_across_both_changes():
    fall = _slots("30 * * * *", NEW_YORK, datetime(2026, 11, 1, 4, tzinfo=UTC), 4)
    assert fall == ["2026-11-01T00:30:00-04:00", "2026-11-01T01:30:00-04:00", "2026-11-01T01:30:00-05:00",
                    "2026-11-01T02:30:00-05:00"]
    spring = _slots("30 * * * *", NEW_YORK, datetime(2026, 3, 8, 6, tzinfo=UTC), 3)
    assert spring == ["2026-03-08T01:30:00-05:00", "2026-03-08T03:30:00-04:00", "2026-03-08T04:30:00-04:00"]


def test_slots_are_strictly_after_and_in_utc():
    schedule = parse("0 9 * * *")
    slot = next_fire_time(schedule, "Europe/Paris", datetime(2026, 6, 1, 7, 0, tzinfo=UTC))
    assert slot == datetime(2026, 6, 2, 7, 0, tzinfo=UTC) and slot.tzinfo is UTC
    assert next_fire_time(schedule, "Asia/Kathmandu", datetime(2026, 6, 1, tzinfo=UTC)) == datetime(
        2026, 6, 1, 3, 15, tzinfo=UTC)
