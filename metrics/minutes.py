"""Treatment-management minutes per patient per local calendar month (pure).

Care time is counted once: per patient, the union of the entries' time intervals
(``started_at`` + ``minutes``), so two staff members on the same call, or two entries of the
same call, count the call once. An entry's share (the part of its interval no earlier entry
covers) belongs to the local month in which the entry starts. Entries that do not count at all
(an exact duplicate, a voided entry, one over ``max_activity_minutes``, one with an impossible
date) are named with why in the month's record. The months are built as columns by
:func:`metrics.management_months.management_months`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal

import numpy as np
import numpy.typing as npt

from rpmpipe.metrics.snapshot import Enrollment

# Stored dates outside this range are data errors (refused at the import and MQTT edge); the
# engine leaves such an entry out, with a reason, rather than fail on it.
EARLIEST_ACTIVITY = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_ACTIVITY = datetime(2100, 1, 1, tzinfo=UTC)

_UNIX = datetime(1970, 1, 1, tzinfo=UTC)
_MICROS_PER_MINUTE = 60_000_000
_CENT = Decimal("0.01")
NOT_COVERED = np.iinfo(np.int64).min  # before a group's first interval: nothing covered
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class MonthMinutes:
    """What one patient's care team logged in one month of the patient's zone.

    ``enrollment`` is the enrollment the month's time counts under; None when no entry of the
    month lies inside an RPM enrollment with consent on file, and then ``minutes`` are what
    would count once it does, and ``blocked`` says why they do not.
    """

    patient_id: str
    month: date  # first day of the month
    minutes: Decimal  # management minutes: all care time that counts
    interactive_communications: int
    activity_ids: tuple[str, ...]
    enrollment: Enrollment | None
    interactive_minutes: Decimal = Decimal(0)
    not_counted: tuple[tuple[str, str], ...] = ()  # (activity id, why), by id
    blocked: str = ""
    device_assigned: bool = True


def micros(moment: datetime) -> int:
    """An aware instant as exact microseconds since 1970 (no float rounding)."""
    return (moment - _UNIX) // timedelta(microseconds=1)


def instant(micros: int) -> datetime:
    """Microseconds since 1970 as an aware instant in UTC (the inverse of :func:`micros`)."""
    return _UNIX + timedelta(microseconds=micros)


def to_minutes(micros: int) -> Decimal:
    """Exact when the time is a whole number of hundredths of a minute; else cut down (never
    rounded up)."""
    value = Decimal(micros) / _MICROS_PER_MINUTE
    return value if value == value.quantize(_CENT) else value.quantize(_CENT, ROUND_DOWN)


def running_max(values: IntArray, first: BoolArray) -> IntArray:
    """The running maximum of ``values`` within each group of consecutive rows (``first``
    marks each group's first row), in log2(n) vector passes."""
    out = values.copy()
    group = np.cumsum(first)
    shift = 1
    while shift < len(out):
        same = group[shift:] == group[:-shift]
        out[shift:] = np.maximum(out[shift:], np.where(same, out[:-shift], out[shift:]))
        shift *= 2
    return out


def covered_before(end: IntArray, first: BoolArray) -> IntArray:
    """Per row, the latest end of the earlier rows of its group (``NOT_COVERED`` for a
    group's first row)."""
    before = np.full(len(end), NOT_COVERED, np.int64)
    if len(end) > 1:
        before[1:] = running_max(end, first)[:-1]
    before[first] = NOT_COVERED
    return before


def union_shares(start: IntArray, end: IntArray, first: BoolArray) -> IntArray:
    """Each interval's share of the union of its group's intervals (rows sorted by group,
    then start): the part no earlier interval of the group covers. The one union of care
    time: a minute is counted once, for the earliest entry covering it."""
    lo = np.maximum(start, covered_before(end, first))
    return np.maximum(end - lo, 0)


def new_shares(intervals: Iterable[tuple[int, int]]) -> list[int]:
    """Each interval's share of the union of ``intervals`` (start, end; taken in the order
    given, by start), by :func:`union_shares`."""
    spans = np.array(list(intervals), np.int64).reshape(-1, 2)
    first = np.zeros(len(spans), np.bool_)
    first[:1] = True
    return [int(x) for x in union_shares(spans[:, 0], spans[:, 1], first).tolist()]
