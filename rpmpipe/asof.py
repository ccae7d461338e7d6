"""The as-of rule, in one place: "today" and "the last full day" in a zone, and the check.

An as-of date counts data through the end of that local day. A period is final only when it
ended before the as-of date, so an as-of after today would treat periods that are still
running as over: metrics refuse to save one, export refuses to bill one. The clock (``now``)
is always the caller's, timezone-aware.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from rpmpipe.errors import AsOfError, UsageError


def _zone(zone: ZoneInfo | str) -> ZoneInfo:
    return zone if isinstance(zone, ZoneInfo) else ZoneInfo(zone)


def today_in(zone: ZoneInfo | str, now: datetime) -> date:
    """Today's date in ``zone`` at ``now``."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(_zone(zone)).date()


def last_full_day(zone: ZoneInfo | str, now: datetime) -> date:
    """Yesterday in ``zone`` at ``now``: the nightly job's and ``metrics``' default as-of."""
    return today_in(zone, now) - timedelta(days=1)


def is_future(as_of: date, zone: ZoneInfo | str, now: datetime) -> bool:
    """Whether ``as_of`` is after today in ``zone`` (its periods are not over)."""
    return as_of > today_in(zone, now)


def check_as_of(as_of: date, zone: ZoneInfo | str, now: datetime) -> None:
    """Raise :class:`AsOfError` when ``as_of`` is after today in ``zone`` at ``now``."""
    today = today_in(zone, now)
    if as_of > today:
        name = str(_zone(zone).key)
        raise AsOfError(
            f"as-of date {as_of.isoformat()} is after today ({today.isoformat()} in {name}): "
            "periods ending on or after today have not ended and cannot be final or billed; "
            "nothing was saved (use today's date or an earlier one)",
            as_of=as_of,
            today=today,
            zone=name,
        )


def future_warning(as_of: date, zone: ZoneInfo | str, now: datetime) -> str:
    """The warning shown when a future as-of is only displayed (never saved)."""
    today = today_in(zone, now)
    return (
        f"as-of date {as_of.isoformat()} is after today ({today.isoformat()} in "
        f"{_zone(zone).key}): periods that have not ended are shown as if they had; "
        "nothing about them is final"
    )


def parse_day(text: str, option: str = "--as-of") -> date:
    """A YYYY-MM-DD date from the command line; :class:`UsageError` naming ``option``."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"{option}: expected a date YYYY-MM-DD, got {text!r}", code="bad_date", option=option
        ) from None
