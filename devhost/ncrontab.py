"""The NCRONTAB parser lives in shared/ncrontab.py (schedules need it too); devhost imports it from there."""

from shared.ncrontab import DAY_NAMES, MONTH_NAMES, CronError, CronSchedule, expand_settings

__all__ = ["CronError", "CronSchedule", "DAY_NAMES", "MONTH_NAMES", "expand_settings"]
