import datetime as dt

import pytest

from devhost.ncrontab import CronError, CronSchedule, expand_settings

UTC = dt.timezone.utc


def nxt(expr: str, after: dt.datetime) -> dt.datetime:
    return CronSchedule.parse(expr).next_after(after)


def t(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def test_every_second_and_step():
    assert nxt("* * * * * *", t(2026, 1, 1, 0, 0, 0)) == t(2026, 1, 1, 0, 0, 1)
    assert nxt("*/15 * * * * *", t(2026, 1, 1, 0, 0, 59)) == t(2026, 1, 1, 0, 1, 0)
    assert nxt("*/15 * * * * *", t(2026, 1, 1, 0, 0, 15)) == t(2026, 1, 1, 0, 0, 30)


def test_strictly_after_and_microseconds():
    assert nxt("0 * * * * *", t(2026, 1, 1, 0, 0, 0)) == t(2026, 1, 1, 0, 1, 0)
    assert nxt("0 * * * * *", dt.datetime(2026, 1, 1, 0, 0, 59, 999999, tzinfo=UTC)) == t(2026, 1, 1, 0, 1, 0)


def test_every_five_minutes_default_mlpipe_style():
    assert nxt("0 */5 * * * *", t(2026, 3, 4, 10, 7, 3)) == t(2026, 3, 4, 10, 10, 0)


def test_ranges_lists_and_names():
    weekday_930 = "0 30 9 * * MON-FRI"
    assert nxt(weekday_930, t(2026, 11, 21, 10, 0, 0)) == t(2026, 11, 23, 9, 30, 0)  # Sat -> Mon
    assert nxt("0 0 8,12,18 * * *", t(2026, 1, 1, 12, 0, 0)) == t(2026, 1, 1, 18, 0, 0)
    assert nxt("0 0 0 1 JAN,jul *", t(2026, 2, 1)) == t(2026, 7, 1)
    assert nxt("0 0 0 * * 0", t(2026, 11, 23)) == nxt("0 0 0 * * 7", t(2026, 11, 23)) == t(2026, 11, 29)


def test_range_with_step_and_value_with_step():
    assert nxt("10-20/5 * * * * *", t(2026, 1, 1, 0, 0, 16)) == t(2026, 1, 1, 0, 0, 20)
    assert nxt("10/20 * * * * *", t(2026, 1, 1, 0, 0, 31)) == t(2026, 1, 1, 0, 0, 50)


def test_month_rollover_and_leap_day():
    assert nxt("0 0 0 31 * *", t(2026, 4, 1)) == t(2026, 5, 31)
    assert nxt("0 0 0 29 2 *", t(2026, 3, 1)) == t(2028, 2, 29)
    assert nxt("59 59 23 31 12 *", t(2026, 12, 31, 23, 59, 59)) == t(2027, 12, 31, 23, 59, 59)


def test_day_of_month_or_day_of_week_when_both_restricted():
    # the 13th OR a Friday: 2026-11-20 is a Friday, before the 13th of December
    assert nxt("0 0 0 13 * FRI", t(2026, 11, 14)) == t(2026, 11, 20)


@pytest.mark.parametrize("bad", ["* * * * *", "60 * * * * *", "* * 24 * * *", "*/0 * * * * *", "5-1 * * * * *",
                                 "x * * * * *", "* * * * FOO *", "0 0 0 30 2 *"])
def test_invalid_expressions(bad):
    with pytest.raises(CronError):
        CronSchedule.parse(bad).next_after(t(2026, 1, 1))


def test_setting_expansion():
    settings = {"MY_CRON": "0 */5 * * * *"}
    assert expand_settings("%MY_CRON%", settings.get) == "0 */5 * * * *"
    assert expand_settings("0 * * * * *", settings.get) == "0 * * * * *"
    with pytest.raises(CronError):
        expand_settings("%MISSING%", settings.get)
