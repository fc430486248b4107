"""Due-time computation for schedules (shared/recurrence.py): Azure ML ScheduleRecurrence and NCRONTAB."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from shared.recurrence import Recurrence, cron_next, latest_due, parse_cron, recurrence_next

UTC = dt.timezone.utc


def t(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


CREATED = t("2026-01-01T00:00:00")


def nexts(rec: Recurrence, after: dt.datetime, count: int) -> list[str]:
    out = []
    for _ in range(count):
        after = recurrence_next(rec, after, CREATED)
        out.append(after.strftime("%Y-%m-%d %H:%M"))
    return out


def test_minute_and_hour_count_from_the_start_time():
    rec = Recurrence(frequency="Minute", interval=15, startTime="2026-01-01T00:05:00Z")
    assert nexts(rec, t("2026-01-01T00:20:00"), 3) == ["2026-01-01 00:35", "2026-01-01 00:50", "2026-01-01 01:05"]
    rec = Recurrence(frequency="Hour", interval=6, startTime="2026-01-01T02:00:00Z")
    assert nexts(rec, t("2025-12-31T00:00:00"), 2) == ["2026-01-01 02:00", "2026-01-01 08:00"]


def test_day_with_hours_and_minutes_in_a_time_zone():
    rec = Recurrence(frequency="Day", interval=1, hours=[9, 17], minutes=[30], timeZone="Europe/Berlin")
    # Berlin is UTC+1 in January: 09:30 -> 08:30 UTC, 17:30 -> 16:30 UTC
    assert nexts(rec, t("2026-01-05T10:00:00"), 3) == ["2026-01-05 16:30", "2026-01-06 08:30", "2026-01-06 16:30"]


def test_day_follows_daylight_saving_time():
    rec = Recurrence(frequency="Day", interval=1, hours=[9], minutes=[0], timeZone="W. Europe Standard Time")
    assert nexts(rec, t("2026-03-28T12:00:00"), 2) == ["2026-03-29 07:00", "2026-03-30 07:00"]  # CEST from 29 March


def test_every_second_week_on_chosen_days():
    rec = Recurrence(frequency="Week", interval=2, weekDays=["Monday", "Friday"], hours=[6],
                     startTime="2026-01-01T00:00:00")  # a Thursday
    assert nexts(rec, t("2026-01-01T00:00:00"), 4) == ["2026-01-02 06:00", "2026-01-12 06:00",
                                                      "2026-01-16 06:00", "2026-01-26 06:00"]


def test_month_keeps_the_day_or_the_last_day():
    rec = Recurrence(frequency="Month", interval=1, startTime="2026-01-31T04:00:00Z")
    assert nexts(rec, t("2026-01-01T00:00:00"), 3) == ["2026-01-31 04:00", "2026-02-28 04:00", "2026-03-31 04:00"]


def test_default_time_of_day_is_the_start_time():
    rec = Recurrence(frequency="Day", interval=2, startTime="2026-01-01T07:45:00Z")
    assert nexts(rec, t("2026-01-01T08:00:00"), 2) == ["2026-01-03 07:45", "2026-01-05 07:45"]


@pytest.mark.parametrize("fields", [
    {"frequency": "Hour", "interval": 1, "hours": [1]},
    {"frequency": "Day", "interval": 1, "weekDays": ["Monday"]},
])
def test_fields_that_do_not_fit_the_frequency_are_rejected(fields):
    with pytest.raises(ValueError):
        Recurrence(**fields).check_fields_fit()


@pytest.mark.parametrize("fields", [
    {"frequency": "Day", "interval": 0},
    {"frequency": "Day", "interval": 1, "hours": [24]},
    {"frequency": "Week", "interval": 1, "weekDays": ["Funday"]},
    {"frequency": "Day", "interval": 1, "timeZone": "Nowhere/Land"},
])
def test_invalid_recurrences(fields):
    with pytest.raises(ValidationError):
        Recurrence(**fields)


def test_cron_in_utc_and_in_a_time_zone():
    cron = parse_cron("0 30 9 * * 1-5")
    assert cron_next(cron, t("2026-01-02T10:00:00")) == t("2026-01-05T09:30:00")  # Friday after 9:30 -> Monday
    assert cron_next(cron, t("2026-01-05T00:00:00"), "America/New_York") == t("2026-01-05T14:30:00")


def test_latest_due_collapses_missed_slots_into_one():
    rec = Recurrence(frequency="Minute", interval=5, startTime="2026-01-01T00:00:00Z")

    def following(after):
        return recurrence_next(rec, after, CREATED)

    assert latest_due(following, t("2026-01-01T00:00:00"), t("2026-01-01T03:02:00")) == t("2026-01-01T03:00:00")
    assert latest_due(following, t("2026-01-01T03:00:00"), t("2026-01-01T03:04:59")) is None
