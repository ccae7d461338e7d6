"""Care time to program months: every minute counted once, for one program (pure).

Each activity is an interval (``started_at`` + ``minutes``). Per patient, across all programs,
the union of the intervals is what counts, and each instant belongs to the program of the
earliest-started activity covering it (ties by activity id):

- :func:`trim_across_programs` cuts from each activity the part an earlier activity of another
  program covers (always a prefix, so the rest is one interval); after it, activities of
  different programs never overlap, and each program's own counting (the union of its
  intervals, naming exact duplicates) sees only its time;
- :func:`counted_minutes` is that union (:func:`metrics.minutes.union_shares`, the one union RPM's
  months use too): each activity counts the part no earlier one covers.

The counted minutes go to the activity's own program, in the patient's local month of its
start, split by who performed them (:func:`metrics.care_table.month_groups`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

import numpy as np
import numpy.typing as npt

from rpmpipe.metrics.minutes import (
    NOT_COVERED,
    covered_before,
    micros,
    union_shares,
)
from rpmpipe.metrics.programs import CareMinutes
from rpmpipe.records import Program

_MICROS_PER_MINUTE = 60_000_000
INTERPRETATION_KIND = "data_review"
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class TimeEntry:
    """One care activity as the counting needs it."""

    activity_id: str
    patient_id: str
    program: str
    performer: str  # clinical_staff | physician
    kind: str
    started_at: datetime  # aware
    minutes: Decimal
    interactive: bool  # already decided: real-time two-way, per the settings


@dataclass(slots=True)
class ProgramMonth:
    """What counts for one program in one local month of one patient."""

    minutes: CareMinutes = field(default_factory=CareMinutes)
    interactive_minutes: Decimal = Decimal(0)  # the counted time of interactive entries
    interactive_communications: int = 0
    activity_ids: list[str] = field(default_factory=list)


def pool_codes(program: IntArray, interpretation: BoolArray) -> IntArray:
    """The time pool each activity counts in: its program (a code from 0), with 99091
    interpretation time a pool of its own (it is never treatment-management time)."""
    return np.where(interpretation, -1, program)


def trimmed_starts(start: IntArray, end: IntArray, pool: IntArray, first: BoolArray) -> IntArray:
    """Each activity's start once the part an earlier activity of another pool covers is cut
    (rows sorted by patient, start and id; ``first`` marks each patient's first row). A row
    whose trimmed start is not before its end has no time left."""
    others = np.full(len(start), NOT_COVERED, np.int64)
    for p in np.unique(pool).tolist():
        mine = pool == p
        before = covered_before(np.where(mine, end, NOT_COVERED), first)
        others = np.where(mine, others, np.maximum(others, before))
    return np.maximum(start, others)


def _ordered(entries: Iterable[TimeEntry]) -> list[TimeEntry]:
    """Each patient's entries (patients as first seen; repeats of an id once) by start and
    id."""
    by_patient: dict[str, dict[str, TimeEntry]] = {}
    for e in entries:
        by_patient.setdefault(e.patient_id, {}).setdefault(e.activity_id, e)
    return [
        e
        for mine in by_patient.values()
        for e in sorted(mine.values(), key=lambda x: (x.started_at, x.activity_id))
    ]


def _spans(ordered: list[TimeEntry]) -> tuple[IntArray, IntArray, BoolArray]:
    start = np.array([micros(e.started_at) for e in ordered], np.int64)
    length = np.array([int(e.minutes * _MICROS_PER_MINUTE) for e in ordered], np.int64)
    first = np.ones(len(ordered), np.bool_)
    first[1:] = [a.patient_id != b.patient_id for a, b in zip(ordered[1:], ordered, strict=False)]
    return start, start + length, first


def trim_across_programs(entries: Iterable[TimeEntry]) -> list[TimeEntry]:
    """Each activity without the part an earlier activity of another program covers (it then
    starts where that time ends, :func:`trimmed_starts`); activities left with no time are
    dropped. Repeats of an activity id count once."""
    ordered = _ordered(entries)
    start, end, first = _spans(ordered)
    names = {p: k for k, p in enumerate(sorted({e.program for e in ordered}))}
    program = np.array([names[e.program] for e in ordered], np.int64)
    interpretation = np.array([is_interpretation(e) for e in ordered], np.bool_)
    begin = trimmed_starts(start, end, pool_codes(program, interpretation), first)
    kept: list[TimeEntry] = []
    for e, s, b, t in zip(ordered, start.tolist(), begin.tolist(), end.tolist(), strict=True):
        if b >= t:
            continue
        if b == s:
            kept.append(e)
            continue
        kept.append(
            replace(
                e,
                started_at=e.started_at + timedelta(microseconds=b - s),
                minutes=Decimal(t - b) / _MICROS_PER_MINUTE,
            )
        )
    return kept


def counted_minutes(entries: Iterable[TimeEntry]) -> dict[str, Decimal]:
    """Minutes each activity adds to its patient's union of care time (0 when fully covered,
    :func:`metrics.minutes.union_shares`). Exact repeats of an activity id count once."""
    ordered = _ordered(entries)
    start, end, first = _spans(ordered)
    shares = union_shares(start, end, first).tolist()
    return {
        e.activity_id: Decimal(share) / _MICROS_PER_MINUTE
        for e, share in zip(ordered, shares, strict=True)
    }


def is_interpretation(entry: TimeEntry) -> bool:
    """RPM time a physician/QHP logs as data review is 99091 interpretation time."""
    return (
        entry.program == Program.RPM
        and entry.performer == "physician"
        and entry.kind == INTERPRETATION_KIND
    )
