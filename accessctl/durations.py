"""Budget and expiry durations: "30s", "5m", "1h", "7d", "2w", "1mo" (LiteLLM's format)."""
from __future__ import annotations

import datetime
import re

from dateutil.relativedelta import relativedelta

_DURATION = re.compile(r"^\s*(\d{1,12})\s*(s|m|h|d|w|mo)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# A century: anything longer is a typo, and every date computed from a duration stays far inside
# datetime's range (a duration of 9999999999d would overflow it: a 500 before this bound).
MAX_MONTHS = 1200
MAX_SECONDS = 36525 * 86400


class DurationError(ValueError):
    pass


def parse_duration(text: str) -> tuple[int, str]:
    """(count, unit) of a duration; raises DurationError naming the accepted forms."""
    match = _DURATION.match(text or "")
    if not match or int(match.group(1)) <= 0:
        raise DurationError(f"Invalid duration {text!r}: use a positive number followed by s, m, h, d, w or mo.")
    count, unit = int(match.group(1)), match.group(2)
    if count > MAX_MONTHS if unit == "mo" else count * _UNIT_SECONDS[unit] > MAX_SECONDS:
        raise DurationError(f"Invalid duration {text!r}: at most 100 years (36525d, 1200mo).")
    return count, unit


def duration_delta(text: str, start: datetime.datetime) -> datetime.datetime:
    """`start` plus the duration, exactly (used for key expiry); months end on the target month's last day
    when it is shorter (Jan 31 + 1mo = Feb 28 or 29)."""
    count, unit = parse_duration(text)
    if unit == "mo":
        return start + relativedelta(months=count)
    return start + datetime.timedelta(seconds=count * _UNIT_SECONDS[unit])


def next_reset_at(text: str, now: datetime.datetime) -> datetime.datetime:
    """When a budget with this duration next resets, snapped to boundaries as LiteLLM does.

    1d → next midnight; 7d → next Monday; 30d and 1mo → the 1st of next month; 1h → top of next hour;
    other durations → now + duration.
    """
    count, unit = parse_duration(text)
    if unit == "mo" or (unit == "d" and count == 30):
        first_of_month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        return first_of_month + relativedelta(months=1 if unit == "d" else count)
    if unit == "d" and count == 7 or unit == "w" and count == 1:
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return midnight + datetime.timedelta(days=7 - midnight.weekday())
    if unit == "d" and count == 1:
        return now.replace(hour=0, minute=0, second=0, microsecond=0) + datetime.timedelta(days=1)
    if unit == "h" and count == 1:
        return now.replace(minute=0, second=0, microsecond=0) + datetime.timedelta(hours=1)
    return duration_delta(text, now)
