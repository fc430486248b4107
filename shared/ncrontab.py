"""Six-field NCRONTAB schedules (`sec min hour day month day-of-week`), as Azure Functions timer triggers use.

Pure and dependency-free. Supports `*`, `n`, `a-b`, `*/n`, `a-b/n`, `n/step`, comma lists, and
month/day names (JAN..DEC, SUN..SAT). Day-of-week 0 and 7 both mean Sunday. As in cron, when
both day-of-month and day-of-week are restricted, a time matches if either matches.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

MONTH_NAMES = {name: i for i, name in enumerate(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], start=1)}
DAY_NAMES = {name: i for i, name in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}

# (name, low, high, names)
_FIELDS = [
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day", 1, 31, {}),
    ("month", 1, 12, MONTH_NAMES),
    ("day-of-week", 0, 7, DAY_NAMES),
]


class CronError(ValueError):
    """The schedule text is not a valid six-field NCRONTAB expression."""


def _parse_value(text: str, field: str, low: int, high: int, names: dict) -> int:
    upper = text.upper()
    if upper in names:
        return names[upper]
    if not text.isdigit():
        raise CronError(f"{field}: '{text}' is not a number" + (" or a name" if names else ""))
    value = int(text)
    if not low <= value <= high:
        raise CronError(f"{field}: {value} is outside {low}-{high}")
    return value


def _parse_field(text: str, field: str, low: int, high: int, names: dict) -> tuple[frozenset[int], bool]:
    """Return (allowed values, is_wildcard)."""
    values: set[int] = set()
    wildcard = False
    for part in text.split(","):
        if not part:
            raise CronError(f"{field}: empty list item in '{text}'")
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{field}: bad step '{step_text}'")
            step = int(step_text)
        if part == "*":
            start, end = low, high
            wildcard = wildcard or step == 1
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = _parse_value(a, field, low, high, names), _parse_value(b, field, low, high, names)
            if start > end:
                raise CronError(f"{field}: range {part} runs backwards")
        else:
            start = _parse_value(part, field, low, high, names)
            end = high if step != 1 else start
        values.update(range(start, end + 1, step))
    return frozenset(values), wildcard


@dataclass(frozen=True)
class CronSchedule:
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    day_is_wildcard: bool
    weekday_is_wildcard: bool
    text: str

    @classmethod
    def parse(cls, text: str) -> CronSchedule:
        parts = text.split()
        if len(parts) != 6:
            raise CronError(
                f"'{text}' has {len(parts)} fields; NCRONTAB needs six: second minute hour day month day-of-week")
        parsed = [_parse_field(part, *spec) for part, spec in zip(parts, _FIELDS)]
        weekdays = frozenset(d % 7 for d in parsed[5][0])
        return cls(parsed[0][0], parsed[1][0], parsed[2][0], parsed[3][0], parsed[4][0], weekdays,
                   parsed[3][1], parsed[5][1], text)

    def _day_matches(self, day: dt.date) -> bool:
        dom = day.day in self.days
        dow = ((day.weekday() + 1) % 7) in self.weekdays  # Python: Monday=0 → cron: Sunday=0
        if self.day_is_wildcard and self.weekday_is_wildcard:
            return True
        if self.day_is_wildcard:
            return dow
        if self.weekday_is_wildcard:
            return dom
        return dom or dow

    def next_after(self, after: dt.datetime) -> dt.datetime:
        """The first matching time strictly after `after` (same tzinfo, second resolution)."""
        t = after.replace(microsecond=0) + dt.timedelta(seconds=1)
        limit = t.year + 8  # a valid schedule always matches within a few years (e.g. Feb 29)
        while t.year <= limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0, second=0) + dt.timedelta(days=32)).replace(day=1)
                continue
            if not self._day_matches(t.date()):
                t = t.replace(hour=0, minute=0, second=0) + dt.timedelta(days=1)
                continue
            if t.hour not in self.hours:
                t = t.replace(minute=0, second=0) + dt.timedelta(hours=1)
                continue
            if t.minute not in self.minutes:
                t = t.replace(second=0) + dt.timedelta(minutes=1)
                continue
            if t.second not in self.seconds:
                t = t + dt.timedelta(seconds=1)
                continue
            return t
        raise CronError(f"'{self.text}' never matches")


def expand_settings(schedule: str, lookup) -> str:
    """Replace `%NAME%` with the app setting NAME, as the Functions host does for timer schedules."""
    text = schedule.strip()
    if len(text) > 2 and text.startswith("%") and text.endswith("%"):
        name = text[1:-1]
        value = lookup(name)
        if not value:
            raise CronError(f"timer schedule refers to app setting '{name}', which is not set")
        return value
    return text
