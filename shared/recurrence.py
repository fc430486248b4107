"""Due times of time-based schedules: Azure ML's ScheduleRecurrence and six-field NCRONTAB.

Pure (no I/O). Times go in and out as aware UTC datetimes; recurrences are evaluated on the wall
clock of their time zone (IANA names such as `Europe/Berlin`, `UTC`, and the Windows names Azure
ML uses for the common zones, e.g. `W. Europe Standard Time`).

ScheduleRecurrence (Azure ML SDK v1 semantics):
- `frequency` Minute | Hour | Day | Week | Month, every `interval` of them, counted from `startTime`
  (default: when the schedule was created);
- Day and Week: `hours` x `minutes` are the times of day (default: startTime's time of day);
- Week: `weekDays` (Monday..Sunday; default: startTime's day) in every `interval`-th week;
- Month: startTime's day of month (the last day in shorter months) at startTime's time.
"""

from __future__ import annotations

import calendar
import datetime as dt
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.ncrontab import CronError, CronSchedule

UTC = dt.timezone.utc
WEEK_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
WINDOWS_ZONES = {
    "UTC": "UTC", "Coordinated Universal Time": "UTC", "GMT Standard Time": "Europe/London",
    "W. Europe Standard Time": "Europe/Berlin", "Central Europe Standard Time": "Europe/Budapest",
    "Romance Standard Time": "Europe/Paris", "E. Europe Standard Time": "Europe/Chisinau",
    "Eastern Standard Time": "America/New_York", "Central Standard Time": "America/Chicago",
    "Mountain Standard Time": "America/Denver", "Pacific Standard Time": "America/Los_Angeles",
    "India Standard Time": "Asia/Kolkata", "China Standard Time": "Asia/Shanghai",
    "Tokyo Standard Time": "Asia/Tokyo", "AUS Eastern Standard Time": "Australia/Sydney",
}
MAX_STEPS = 200_000  # bound on iterations when walking due times


def zone(name: str | None) -> dt.tzinfo:
    if not name:
        return UTC
    try:
        return ZoneInfo(WINDOWS_ZONES.get(name, name))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (use an IANA name such as 'Europe/Berlin' or 'UTC')") from None


def parse_time(value: str | dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    """An ISO time; without an offset it is wall-clock time in `tz`."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value.astimezone(tz)


class Recurrence(BaseModel):
    """Azure ML `ScheduleRecurrence` (field names camelCase as in the REST body)."""

    model_config = ConfigDict(extra="forbid")
    frequency: Literal["Minute", "Hour", "Day", "Week", "Month"]
    interval: int = Field(ge=1, le=1000)
    startTime: str | None = None
    timeZone: str | None = None
    hours: list[int] | None = None
    minutes: list[int] | None = None
    weekDays: list[str] | None = None

    @field_validator("hours")
    @classmethod
    def _hours(cls, value):
        if value is not None and (not value or any(not 0 <= h <= 23 for h in value)):
            raise ValueError("hours must be a non-empty list of 0-23")
        return sorted(set(value)) if value is not None else None

    @field_validator("minutes")
    @classmethod
    def _minutes(cls, value):
        if value is not None and (not value or any(not 0 <= m <= 59 for m in value)):
            raise ValueError("minutes must be a non-empty list of 0-59")
        return sorted(set(value)) if value is not None else None

    @field_validator("weekDays")
    @classmethod
    def _week_days(cls, value):
        if value is None:
            return None
        names = {name.lower(): name for name in WEEK_DAYS}
        out = []
        for day in value:
            if not isinstance(day, str) or day.lower() not in names:
                raise ValueError(f"weekDays: {day!r} is not one of {', '.join(WEEK_DAYS)}")
            out.append(names[day.lower()])
        if not out:
            raise ValueError("weekDays must not be empty")
        return out

    @field_validator("timeZone")
    @classmethod
    def _time_zone(cls, value):
        zone(value)
        return value

    @field_validator("startTime")
    @classmethod
    def _start(cls, value):
        if value is not None:
            try:
                parse_time(value, UTC)
            except ValueError:
                raise ValueError(f"startTime: {value!r} is not an ISO 8601 time") from None
        return value

    def check_fields_fit(self) -> None:
        if self.frequency not in ("Day", "Week") and (self.hours or self.minutes):
            raise ValueError("hours and minutes apply only to frequency Day or Week")
        if self.frequency != "Week" and self.weekDays:
            raise ValueError("weekDays applies only to frequency Week")


def _times_of_day(rec: Recurrence, start: dt.datetime) -> list[dt.time]:
    hours = rec.hours if rec.hours is not None else [start.hour]
    minutes = rec.minutes if rec.minutes is not None else ([start.minute] if rec.hours is None else [0])
    return [dt.time(h, m) for h in hours for m in minutes]


def _add_months(value: dt.datetime, months: int, day: int) -> dt.datetime:
    index = value.month - 1 + months
    year, month = value.year + index // 12, index % 12 + 1
    return value.replace(year=year, month=month, day=min(day, calendar.monthrange(year, month)[1]))


def _local(value: dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    return value.astimezone(tz).replace(tzinfo=None)


def _aware(naive: dt.datetime, tz: dt.tzinfo) -> dt.datetime:
    return naive.replace(tzinfo=tz).astimezone(UTC)


def recurrence_next(rec: Recurrence, after: dt.datetime, created: dt.datetime) -> dt.datetime:
    """The first due time strictly after `after` (UTC)."""
    tz = zone(rec.timeZone)
    start = parse_time(rec.startTime, tz) if rec.startTime else created.astimezone(tz)
    start_l = _local(start, tz)
    after_l = _local(after, tz)
    if rec.frequency in ("Minute", "Hour"):
        step = dt.timedelta(minutes=rec.interval) if rec.frequency == "Minute" else dt.timedelta(hours=rec.interval)
        if after_l < start_l:
            return _aware(start_l, tz)
        k = int((after_l - start_l) // step) + 1
        return _aware(start_l + k * step, tz)
    if rec.frequency == "Month":
        k = 0
        if after_l >= start_l:
            k = max(0, (after_l.year - start_l.year) * 12 + after_l.month - start_l.month - 1)
        for _ in range(MAX_STEPS):
            candidate = _add_months(start_l, k * rec.interval, start_l.day)
            if candidate > after_l and candidate >= start_l:
                return _aware(candidate, tz)
            k += 1
        raise ValueError("recurrence never falls due")
    times = _times_of_day(rec, start_l)
    if rec.frequency == "Day":
        day0 = start_l.date()
        k = max(0, ((after_l.date() - day0).days // rec.interval) - 1) if after_l > start_l else 0
        for _ in range(MAX_STEPS):
            day = day0 + dt.timedelta(days=k * rec.interval)
            for t in times:
                candidate = dt.datetime.combine(day, t)
                if candidate >= start_l and candidate > after_l:
                    return _aware(candidate, tz)
            k += 1
        raise ValueError("recurrence never falls due")
    # Week
    week_days = rec.weekDays or [WEEK_DAYS[start_l.weekday()]]
    offsets = sorted(WEEK_DAYS.index(d) for d in week_days)
    week0 = start_l.date() - dt.timedelta(days=start_l.weekday())
    k = max(0, ((after_l.date() - week0).days // 7 // rec.interval) - 1) if after_l > start_l else 0
    for _ in range(MAX_STEPS):
        monday = week0 + dt.timedelta(weeks=k * rec.interval)
        for offset in offsets:
            for t in times:
                candidate = dt.datetime.combine(monday + dt.timedelta(days=offset), t)
                if candidate >= start_l and candidate > after_l:
                    return _aware(candidate, tz)
        k += 1
    raise ValueError("recurrence never falls due")


def cron_next(cron: CronSchedule, after: dt.datetime, time_zone: str | None = None) -> dt.datetime:
    tz = zone(time_zone)
    return _aware(cron.next_after(_local(after, tz)), tz)


def parse_cron(text: str) -> CronSchedule:
    try:
        return CronSchedule.parse(text)
    except CronError as error:
        raise ValueError(str(error)) from None


def latest_due(next_due, after: dt.datetime, until: dt.datetime) -> dt.datetime | None:
    """The latest due time in (after, until], walking `next_due(t)`; None if nothing fell due.

    Missed due times collapse into this one (one catch-up run, not one per missed slot).
    """
    due = next_due(after)
    if due > until:
        return None
    for _ in range(MAX_STEPS):
        following = next_due(due)
        if following > until:
            return due
        due = following
    return due
