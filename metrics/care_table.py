"""Care time as columns: one pass over every program's activities (pure, vectorised).

The activities come as columns (:class:`ActivityColumns`, :mod:`metrics.care_sources` reads
them from the registry without an object per row). :func:`care_entries` keeps what takes time
(counts at all, inside an enrollment of its program with consent, on or before the as-of date
in the patient's zone), cuts from each activity the part an earlier activity of another
program covers (:func:`metrics.care_time.trimmed_starts`) and gives each its share of the
patient's union of care time (:func:`metrics.minutes.union_shares`): the columns
:class:`CareEntries` from which :mod:`metrics.care_management` builds the table of months.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from rpmpipe.metrics.care_time import (
    INTERPRETATION_KIND,
    ProgramMonth,
    TimeEntry,
    is_interpretation,
    pool_codes,
    trim_across_programs,
    trimmed_starts,
)
from rpmpipe.metrics.day_numbers import DAY_US, local_days
from rpmpipe.metrics.minutes import (
    EARLIEST_ACTIVITY,
    LATEST_ACTIVITY,
    instant,
    micros,
    union_shares,
)
from rpmpipe.metrics.programs import CareMinutes
from rpmpipe.records import Activity, Program

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
ObjArray = npt.NDArray[np.object_]
MICROS_PER_MINUTE = 60_000_000
MICROS_PER_HUNDREDTH = 600_000
OPEN_DAY = 2**30  # an open enrollment's end, as a day number
NO_DAY = 2**30 + 1  # no consent on file
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def day_of(d: date) -> int:
    return d.toordinal() - _EPOCH_ORDINAL


def date_of(n: int) -> date:
    return date.fromordinal(n + _EPOCH_ORDINAL)


def objects(values: Sequence[Any]) -> ObjArray:
    out = np.empty(len(values), object)
    out[:] = values
    return out


def tuples(values: Sequence[tuple[Any, ...]]) -> ObjArray:
    """Tuples as an object column, one tuple per row (never read as a second dimension)."""
    out = np.empty(len(values), object)
    for i, v in enumerate(values):
        out[i] = v
    return out


def sorted_codes(values: ObjArray) -> tuple[list[str], IntArray]:
    """The distinct strings of ``values`` in order, and each value's index among them."""
    arr = pa.array(values.tolist(), pa.string())
    distinct = pc.unique(arr)
    distinct = distinct.take(pc.array_sort_indices(distinct))
    codes = pc.index_in(arr, value_set=distinct).to_numpy(zero_copy_only=False)
    return distinct.to_pylist(), np.asarray(codes, np.int64)


def ranks(values: ObjArray) -> IntArray:
    """Each string's rank in the sorted order of ``values`` (ties in no set order)."""
    order = pc.sort_indices(pa.array(values.tolist(), pa.string())).to_numpy()
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order), dtype=np.int64)
    return rank


def month_of_day(days: IntArray) -> IntArray:
    """The day number of the first day of each day's month."""
    months = days.astype("datetime64[D]").astype("datetime64[M]")
    return np.asarray(months.astype("datetime64[D]"), np.int64)


def month_end_of_day(days: IntArray) -> IntArray:
    """The day number of the last day of each day's month."""
    months = days.astype("datetime64[D]").astype("datetime64[M]") + 1
    return np.asarray(months.astype("datetime64[D]"), np.int64) - 1


@dataclass
class ActivityColumns:
    """Care activities as columns, one row each (ids unique, as the registry keys them)."""

    activity_id: ObjArray
    patient_id: ObjArray
    staff_id: ObjArray
    at: IntArray  # start, microseconds since 1970 (UTC)
    hundredths: IntArray  # minutes, in hundredths
    kind: ObjArray
    interactive: BoolArray
    program: ObjArray
    performer: ObjArray
    voided_reason: ObjArray  # None unless voided

    def take(self, rows: IntArray | BoolArray) -> ActivityColumns:
        return ActivityColumns(**{k: v[rows] for k, v in vars(self).items()})

    def activities(self, rows: IntArray) -> list[Activity]:
        """Rows ``rows`` as activities, for the rules that count them one by one (each
        column is taken as plain values once, not a numpy scalar per cell)."""
        columns = zip(
            self.activity_id[rows].tolist(),
            self.patient_id[rows].tolist(),
            self.staff_id[rows].tolist(),
            self.at[rows].tolist(),
            self.hundredths[rows].tolist(),
            self.kind[rows].tolist(),
            self.interactive[rows].tolist(),
            self.program[rows].tolist(),
            self.performer[rows].tolist(),
            self.voided_reason[rows].tolist(),
            strict=True,
        )
        return [
            Activity(
                aid,
                pid,
                staff,
                instant(at),
                hundredths_decimal(h),
                kind,
                talk,
                program,
                performer,
                void,
            )
            for aid, pid, staff, at, h, kind, talk, program, performer, void in columns
        ]


@lru_cache(maxsize=1 << 14)
def hundredths_decimal(h: int) -> Decimal:
    """Minutes of a whole number of hundredths, as the registry's two decimals give them
    (one value for each: they repeat over hundreds of thousands of rows)."""
    return Decimal(h).scaleb(-2)


@dataclass
class CareEntries:
    """Care time that takes time, every program's, as columns sorted by patient then start:
    each row trimmed across programs, with what it adds to the patient's union."""

    activity_id: ObjArray
    patient_id: ObjArray
    program: ObjArray
    performer: ObjArray
    kind: ObjArray
    start: IntArray  # microseconds (after the trim)
    end: IntArray
    interactive: BoolArray
    counted: IntArray  # microseconds this entry adds to the patient's union
    id_rank: IntArray  # the activity id's rank among the ids (orders rows by id)

    def take(self, rows: IntArray | BoolArray) -> CareEntries:
        return CareEntries(**{k: v[rows] for k, v in vars(self).items()})

    def interpretation(self) -> BoolArray:
        """99091 data-interpretation time (RPM time a physician/QHP logs as data review)."""
        return interpretation_rows(self.program, self.performer, self.kind)

    def entry(self, i: int) -> TimeEntry:
        """Row ``i`` as a time entry (its trimmed start and minutes)."""
        start, end = int(self.start[i]), int(self.end[i])
        return TimeEntry(
            self.activity_id[i],
            self.patient_id[i],
            self.program[i],
            self.performer[i],
            self.kind[i],
            instant(start),
            Decimal(end - start) / MICROS_PER_MINUTE,
            bool(self.interactive[i]),
        )


def interpretation_rows(program: ObjArray, performer: ObjArray, kind: ObjArray) -> BoolArray:
    """Rows of 99091 data-interpretation time (:func:`metrics.care_time.is_interpretation`)."""
    found: BoolArray = program == Program.RPM
    found &= performer == "physician"
    found &= kind == INTERPRETATION_KIND
    return found


def group_firsts(group: IntArray) -> BoolArray:
    """The first row of each run of equal values (rows sorted by group)."""
    first: BoolArray = np.ones(len(group), np.bool_)
    first[1:] = group[1:] != group[:-1]
    return first


def with_union(entries: CareEntries, patient: IntArray) -> CareEntries:
    """``entries`` sorted by patient, trimmed start and id, each with its share of the
    patient's union of care time."""
    order = np.lexsort((entries.id_rank, entries.start, patient))
    out = entries.take(order)
    out.counted = union_shares(out.start, out.end, group_firsts(patient[order]))
    return out


def entries_of(entries: Sequence[TimeEntry]) -> CareEntries:
    """Already trimmed time entries (repeats of an id count once) as columns, with their
    share of the union."""
    once = list({(e.patient_id, e.activity_id): e for e in reversed(entries)}.values())[::-1]
    start = np.array([micros(e.started_at) for e in once], np.int64)
    length = [int(e.minutes * MICROS_PER_MINUTE) for e in once]
    cols = CareEntries(
        objects([e.activity_id for e in once]),
        objects([e.patient_id for e in once]),
        objects([e.program for e in once]),
        objects([e.performer for e in once]),
        objects([e.kind for e in once]),
        start,
        start + np.array(length, np.int64),
        np.array([e.interactive for e in once], np.bool_),
        np.zeros(len(once), np.int64),
        np.zeros(len(once), np.int64),
    )
    cols.id_rank = ranks(cols.activity_id)
    return with_union(cols, sorted_codes(cols.patient_id)[1])


@lru_cache(maxsize=1 << 12)
def counted_hundredths(hundredths: int) -> Decimal:
    """Counted minutes of whole hundredths (0 as the count starts: no entry)."""
    return hundredths_decimal(hundredths) if hundredths else Decimal(0)


@dataclass
class MonthGroups:
    """Care time summed per patient, program and local month of the entries' (trimmed)
    start, sorted so; each entry's share of the union cut to whole hundredths (never
    rounded up)."""

    patient: ObjArray
    program: ObjArray
    month: IntArray  # first day
    staff: IntArray  # hundredths of clinical staff time
    physician: IntArray  # hundredths of physician/QHP time
    interactive: IntArray  # hundredths of interactive entries
    talks: IntArray  # interactive communications
    activity_ids: ObjArray  # tuple[str, ...], sorted


def month_groups(e: CareEntries, zone_of: Callable[[str], str]) -> MonthGroups:
    """``e``'s counted time per patient, program and month in the patient's zone."""
    names, pcode = sorted_codes(e.patient_id)
    month = month_of_day(local_days(e.start, pcode, [zone_of(p) for p in names]))
    programs, prog = sorted_codes(e.program)
    order = np.lexsort((e.id_rank, month, prog, pcode))
    e, month, key = e.take(order), month[order], (pcode * len(programs) + prog)[order]
    first = np.flatnonzero(group_firsts(key) | group_firsts(month))
    hundredths = e.counted // MICROS_PER_HUNDREDTH
    physician = e.performer == "physician"

    def total(values: IntArray) -> IntArray:
        return np.add.reduceat(values, first) if len(first) else np.zeros(0, np.int64)

    bounds = np.r_[first, len(e.start)].tolist()
    ids = e.activity_id.tolist()
    return MonthGroups(
        e.patient_id[first],
        e.program[first],
        month[first],
        total(np.where(physician, 0, hundredths)),
        total(np.where(physician, hundredths, 0)),
        total(np.where(e.interactive, hundredths, 0)),
        total(e.interactive.astype(np.int64)),
        objects([tuple(ids[x:y]) for x, y in zip(bounds, bounds[1:], strict=False)]),
    )


def program_months(
    entries: Iterable[TimeEntry], zone_of: Callable[[str], str]
) -> dict[tuple[str, str, date], ProgramMonth]:
    """(patient, program, first day of local month) -> counted minutes by performer, of
    entries trimmed across programs and counted once (:func:`month_groups`). 99091
    interpretation time is left out (it is counted per 30-day period, never as
    treatment-management time)."""
    cols = entries_of(trim_across_programs(list(entries)))
    g = month_groups(cols.take(np.flatnonzero(~cols.interpretation())), zone_of)
    return {
        (p, program, date_of(m)): ProgramMonth(
            CareMinutes(counted_hundredths(s), counted_hundredths(d)),
            counted_hundredths(i),
            t,
            list(ids),
        )
        for p, program, m, s, d, i, t, ids in zip(
            g.patient.tolist(),
            g.program.tolist(),
            g.month.tolist(),
            g.staff.tolist(),
            g.physician.tolist(),
            g.interactive.tolist(),
            g.talks.tolist(),
            g.activity_ids.tolist(),
            strict=True,
        )
    }


@dataclass(frozen=True)
class EnrollmentColumns:
    """Every program's enrollments as columns, sorted by (patient, program) key then start."""

    key: IntArray  # patient code * programs + program code
    start: IntArray
    end: IntArray  # OPEN_DAY when open
    consent: IntArray  # NO_DAY without consent
    row: IntArray  # index in the enrollments given


def enrollment_columns(
    enrollments: Sequence[Any], patients: Mapping[str, int], programs: Mapping[str, int]
) -> EnrollmentColumns:
    """Enrollments (anything with patient_id, program, start_date, end_date, consent_date) of
    the patients and programs given, keyed as :func:`keys_of`."""
    n = len(programs)
    rows = [
        i for i, e in enumerate(enrollments) if e.patient_id in patients and e.program in programs
    ]
    key = np.array(
        [patients[enrollments[i].patient_id] * n + programs[enrollments[i].program] for i in rows],
        np.int64,
    )
    start = np.array([day_of(enrollments[i].start_date) for i in rows], np.int64)
    end = np.array(
        [OPEN_DAY if (d := enrollments[i].end_date) is None else day_of(d) for i in rows], np.int64
    )
    consent = np.array(
        [NO_DAY if (d := enrollments[i].consent_date) is None else day_of(d) for i in rows],
        np.int64,
    )
    order = np.lexsort((start, key))
    return EnrollmentColumns(
        key[order], start[order], end[order], consent[order], np.array(rows, np.int64)[order]
    )


def latest_overlapping(e: EnrollmentColumns, key: IntArray, lo: IntArray, hi: IntArray) -> IntArray:
    """Per query, the position (in ``e``) of the latest-starting enrollment of ``key`` with a
    day inside ``lo .. hi``, or -1."""
    packed = e.key * (1 << 32) + e.start
    pos = np.searchsorted(packed, key * (1 << 32) + hi, side="right") - 1
    found = np.full(len(key), -1, np.int64)
    todo = np.flatnonzero(pos >= 0)
    while len(todo):
        p = pos[todo]
        same = e.key[p] == key[todo]
        hit = same & (e.end[p] >= lo[todo])
        found[todo[hit]] = p[hit]
        todo = todo[same & ~hit & (p > 0)]
        pos[todo] -= 1
    return found


def covered_by_any(e: EnrollmentColumns, key: IntArray, day: IntArray) -> BoolArray:
    """Per query, whether an enrollment of ``key`` with consent on file covers ``day``."""
    lo = np.searchsorted(e.key, key, side="left")
    hi = np.searchsorted(e.key, key, side="right")
    inside = np.zeros(len(key), np.bool_)
    k = 0
    while True:
        at = lo + k
        live = at < hi
        if not live.any():
            return inside
        p = np.where(live, at, 0)
        ok = live & (e.start[p] <= day) & (day <= e.end[p]) & (e.consent[p] <= day)
        inside |= ok
        k += 1


def counts_at_all(acts: ActivityColumns, max_activity_minutes: int) -> BoolArray:
    """Rows that count for some program: not voided, not over the one-entry limit, with a
    possible date (RPM's counting names the others with why)."""
    voided = np.array([v is not None for v in acts.voided_reason.tolist()], np.bool_)
    return (
        ~voided
        & (acts.hundredths <= max_activity_minutes * 100)
        & (acts.at >= micros(EARLIEST_ACTIVITY))
        & (acts.at < micros(LATEST_ACTIVITY))
    )


def decided_interactive(
    interactive: BoolArray, kind: ObjArray, secure_message_interactive: bool
) -> BoolArray:
    """Real-time two-way communication; secure messages only when the setting says so."""
    decided: BoolArray = interactive.copy()
    if not secure_message_interactive:
        decided &= kind != "secure_message"
    return decided


@dataclass
class CareTime:
    """The one pass over the activities: what takes time, and which rows it came from."""

    entries: CareEntries
    taking: BoolArray  # per activity row: it takes time (before the trim)
    kept_begin: IntArray  # per activity row: its trimmed start (-1: dropped or not taking)


def care_time(
    acts: ActivityColumns,
    enrollments: Sequence[Any],
    zone_of: Mapping[str, str],
    org_zone: str,
    as_of: date,
    max_activity_minutes: int,
    secure_message_interactive: bool,
) -> CareTime:
    """Every program's activities that take time, trimmed across programs and counted once
    (the union per patient), as :class:`CareEntries`."""
    names, patient = sorted_codes(acts.patient_id)
    live = np.flatnonzero(counts_at_all(acts, max_activity_minutes))
    # Instants two UTC days past the as-of date are past it in every zone: not converted, so
    # a stray far-future start does not stretch the clock's window.
    live = live[acts.at[live] < (day_of(as_of) + 2) * DAY_US]
    day = np.full(len(acts.at), NO_DAY, np.int64)
    day[live] = local_days(
        acts.at[live], patient[live], [zone_of.get(p) or org_zone for p in names]
    )
    program_names = sorted({*acts.program.tolist(), *(e.program for e in enrollments)})
    programs = {p: k for k, p in enumerate(program_names)}
    e = enrollment_columns(enrollments, {p: k for k, p in enumerate(names)}, programs)
    prog = np.array([programs[p] for p in acts.program.tolist()], np.int64)
    key = patient * len(programs) + prog
    taking = np.zeros(len(acts.at), np.bool_)
    inside = live[day[live] <= day_of(as_of)]
    taking[inside] = covered_by_any(e, key[inside], day[inside])
    rows = np.flatnonzero(taking)
    id_rank = ranks(acts.activity_id[rows])
    order = np.lexsort((id_rank, acts.at[rows], patient[rows]))
    rows, id_rank = rows[order], id_rank[order]
    start = acts.at[rows]
    end = start + acts.hundredths[rows] * MICROS_PER_HUNDREDTH
    sub = acts.take(rows)
    interpretation = interpretation_rows(sub.program, sub.performer, sub.kind)
    begin = trimmed_starts(
        start, end, pool_codes(prog[rows], interpretation), group_firsts(patient[rows])
    )
    keep = begin < end
    kept_begin = np.full(len(acts.at), -1, np.int64)
    kept_begin[rows[keep]] = begin[keep]
    cols = CareEntries(
        sub.activity_id[keep],
        sub.patient_id[keep],
        sub.program[keep],
        sub.performer[keep],
        sub.kind[keep],
        begin[keep],
        end[keep],
        decided_interactive(sub.interactive, sub.kind, secure_message_interactive)[keep],
        np.zeros(int(keep.sum()), np.int64),
        id_rank[keep],
    )
    return CareTime(with_union(cols, patient[rows][keep]), taking, kept_begin)


__all__ = ["is_interpretation"]
