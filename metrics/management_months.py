"""RPM's treatment-management months (99457/99458) as columns (pure).

The entries of :func:`management_months` are sorted into patient-months in a few vector
passes: each entry's local day, whether it counts at all (the first of its id; not voided,
over the one-entry limit or an exact duplicate), the enrollment that covers it, and each
month's minutes as the union of its patient's intervals (:func:`metrics.minutes.union_shares`,
the one union of care time). The rules are those :mod:`metrics.minutes` states.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np

from rpmpipe.metrics.care_table import (
    MICROS_PER_HUNDREDTH,
    MICROS_PER_MINUTE,
    ActivityColumns,
    BoolArray,
    CareTime,
    IntArray,
    ObjArray,
    date_of,
    day_of,
    decided_interactive,
    hundredths_decimal,
    interpretation_rows,
    month_end_of_day,
    month_of_day,
    objects,
    sorted_codes,
)
from rpmpipe.metrics.day_numbers import DAY_US, local_days
from rpmpipe.metrics.minutes import (
    EARLIEST_ACTIVITY,
    LATEST_ACTIVITY,
    MonthMinutes,
    instant,
    micros,
    to_minutes,
    union_shares,
)
from rpmpipe.metrics.reasons import (
    NO_CONSENT,
    NO_ENROLLMENT,
    NO_ENTRY_COUNTS,
    entry_before_consent,
    entry_duplicate,
    entry_held_for_review,
    entry_impossible_start,
    entry_voided,
)
from rpmpipe.metrics.snapshot import Assignment, Enrollment, RegistrySnapshot
from rpmpipe.records import Activity, Program

_NONE = -1


@dataclass(frozen=True)
class MonthEntries:
    """The time entries a program's management months are counted from, as columns, one
    row per entry: exact instants and lengths (microseconds), minutes as entered."""

    activity_id: ObjArray
    patient_id: ObjArray
    staff_id: ObjArray
    at: IntArray  # start, microseconds since 1970 (UTC)
    length: IntArray  # microseconds
    minutes: ObjArray  # Decimal
    kind: ObjArray
    interactive: BoolArray
    voided_reason: ObjArray  # None unless voided
    # The starts as given, in their own zones (entries made from activities), for the text
    # of an impossible start; None: UTC instants from ``at``.
    started: ObjArray | None = None

    def __len__(self) -> int:
        return len(self.at)

    def take(self, rows: IntArray) -> MonthEntries:
        columns: dict[str, Any] = {k: None if v is None else v[rows] for k, v in vars(self).items()}
        return MonthEntries(**columns)

    def started_at(self, row: int) -> datetime:
        if self.started is not None:
            return self.started[row]  # type: ignore[no-any-return]
        return instant(int(self.at[row]))

    @classmethod
    def of(cls, activities: Sequence[Activity]) -> MonthEntries:
        """Activities as entries (each as it is: any precision of minutes, any zone)."""
        return cls(
            objects([a.activity_id for a in activities]),
            objects([a.patient_id for a in activities]),
            objects([a.staff_id for a in activities]),
            np.array([micros(a.started_at) for a in activities], np.int64),
            np.array([int(a.minutes * MICROS_PER_MINUTE) for a in activities], np.int64),
            objects([a.minutes for a in activities]),
            objects([a.kind for a in activities]),
            np.array([a.interactive for a in activities], np.bool_),
            objects([a.voided_reason for a in activities]),
            objects([a.started_at for a in activities]),
        )


def rpm_management_entries(acts: ActivityColumns, time: CareTime) -> MonthEntries:
    """RPM's treatment-management entries for its own counting: an entry that takes time as
    the trim across programs left it (its start moved past another program's earlier time,
    dropped when that time covers it all), every other RPM entry as it is, for RPM to name
    why it does not count; 99091 interpretation time left out."""
    rpm = (acts.program == Program.RPM) & ~interpretation_rows(
        acts.program, acts.performer, acts.kind
    )
    rows = np.flatnonzero(rpm)
    taking, begin = time.taking[rows], time.kept_begin[rows]
    at, hundredths = acts.at[rows], acts.hundredths[rows]
    moved = taking & (begin >= 0) & (begin != at)
    cut = (at + hundredths * MICROS_PER_HUNDREDTH - begin) // MICROS_PER_HUNDREDTH
    keep = ~taking | ((begin >= 0) & (~moved | (cut > 0)))
    at = np.where(moved, begin, at)[keep]
    hundredths = np.where(moved, cut, hundredths)[keep]
    rows = rows[keep]
    return MonthEntries(
        acts.activity_id[rows],
        acts.patient_id[rows],
        acts.staff_id[rows],
        at,
        hundredths * MICROS_PER_HUNDREDTH,
        objects([hundredths_decimal(h) for h in hundredths.tolist()]),
        acts.kind[rows],
        acts.interactive[rows],
        acts.voided_reason[rows],
    )


@dataclass
class _Rows:
    """The first entry of each id, in id order (``acts`` the entries themselves)."""

    acts: MonthEntries
    patient: IntArray  # code into the sorted patient ids
    names: list[str]
    at: IntArray
    end: IntArray
    day: IntArray  # local day number; -1 for an impossible start (_FAR: past the as-of date)


def _first_of_each_id(
    entries: MonthEntries, snapshot: RegistrySnapshot, org_zone: str, as_of: date
) -> _Rows:
    """The entries in id order, a repeated id's later entries left out."""
    ids = entries.activity_id
    _, code = sorted_codes(ids) if len(ids) else ([], np.zeros(0, np.int64))
    order = np.argsort(code, kind="stable")
    keep = np.ones(len(order), np.bool_)
    keep[1:] = code[order][1:] != code[order][:-1]
    acts = entries.take(order[keep])
    names, patient = sorted_codes(acts.patient_id)
    at = acts.at
    end = at + acts.length
    possible = (at >= micros(EARLIEST_ACTIVITY)) & (at < micros(LATEST_ACTIVITY))
    day = np.where(possible, _FAR, -1)
    # Instants two UTC days past the as-of date are past it in every zone: not converted, so
    # a stray far-future start does not stretch the clock's window.
    live = np.flatnonzero(possible & (at < (day_of(as_of) + 2) * DAY_US))
    zones = [snapshot.zone_of(p, org_zone) for p in names]
    day[live] = local_days(at[live], patient[live], zones)
    return _Rows(acts, patient, names, at, end, day)


def _left_out(r: _Rows, rows: IntArray, max_minutes: Decimal) -> ObjArray:
    """Per row (possible, on or before the as-of date), why it counts not at all ("" when
    it may count): voided, over the one-entry limit, an exact duplicate of an earlier id."""
    why = objects([""] * len(rows))
    minutes = r.acts.minutes[rows].tolist()
    for k, (void, m) in enumerate(zip(r.acts.voided_reason[rows].tolist(), minutes, strict=True)):
        if void is not None:
            why[k] = entry_voided(void)
        elif m > max_minutes:
            why[k] = entry_held_for_review(m, max_minutes)
    first_of: dict[tuple[str, str, int, Decimal], str] = {}
    may = np.flatnonzero(why == "")
    for k, pid, staff, at, aid in zip(
        may.tolist(),
        r.acts.patient_id[rows[may]].tolist(),
        r.acts.staff_id[rows[may]].tolist(),
        r.at[rows[may]].tolist(),
        r.acts.activity_id[rows[may]].tolist(),
        strict=True,
    ):
        original = first_of.setdefault((pid, staff, at, minutes[k]), aid)
        if original != aid:
            why[k] = entry_duplicate(original)
    return why


_FAR = 1 << 40  # an open end, or no consent, as a day number


def _enrollment_columns(
    snapshot: RegistrySnapshot, program: str, names: list[str]
) -> tuple[list[Enrollment], tuple[IntArray, IntArray, IntArray], IntArray]:
    """The program's enrollments of these patients, by patient then start (stable): the
    objects, their (patient code, start, end) and consent (day numbers)."""
    code = {p: k for k, p in enumerate(names)}
    mine = [e for e in snapshot.enrollments if e.program == program and e.patient_id in code]
    mine.sort(key=lambda e: (code[e.patient_id], e.start_date))
    consent = np.array(
        [_FAR if e.consent_date is None else day_of(e.consent_date) for e in mine], np.int64
    )
    return mine, _spans(mine, code), consent


def _spans(
    held: Sequence[Assignment | Enrollment], code: dict[str, int]
) -> tuple[IntArray, IntArray, IntArray]:
    """(patient code, start, end) of enrollments or device assignments sorted so."""
    return (
        np.array([code[e.patient_id] for e in held], np.int64),
        np.array([day_of(e.start_date) for e in held], np.int64),
        np.array([_FAR if e.end_date is None else day_of(e.end_date) for e in held], np.int64),
    )


def _first_holding(
    spans: tuple[IntArray, IntArray, IntArray],
    consent: IntArray | None,
    patient: IntArray,
    lo: IntArray,
    hi: IntArray,
) -> IntArray:
    """Per row, the position of the first span (patient code, start, end; by patient then
    start) of its patient with a day in ``lo .. hi``, with consent on file by ``hi`` unless
    ``consent`` is None; -1 when none."""
    pid, start, end = spans
    first = np.searchsorted(pid, patient, side="left")
    past = np.searchsorted(pid, patient, side="right")
    found = np.full(len(patient), _NONE, np.int64)
    k = 0
    while True:
        at = first + k
        live = (at < past) & (found == _NONE)
        if not live.any():
            return found
        p = np.where(live, at, 0)
        ok = live & (start[p] <= hi) & (lo <= end[p])
        if consent is not None:
            ok &= consent[p] <= hi
        found[ok] = p[ok]
        k += 1


def _month_shares(
    month: IntArray, patient: IntArray, start: IntArray, end: IntArray, talk: BoolArray
) -> tuple[IntArray, IntArray]:
    """Per row, its share of its patient's union of these rows' intervals, and of the union
    of the interactive rows' (0 for the others)."""
    order = np.lexsort((month, talk, end, start, patient))
    p, s, e, t = patient[order], start[order], end[order], talk[order]
    first = np.ones(len(p), np.bool_)
    first[1:] = p[1:] != p[:-1]
    total = np.zeros(len(p), np.int64)
    inter = np.zeros(len(p), np.int64)
    total[order] = union_shares(s, e, first)
    tk = np.flatnonzero(t)
    if len(tk):
        lead = np.ones(len(tk), np.bool_)
        lead[1:] = p[tk][1:] != p[tk][:-1]
        inter[order[tk]] = union_shares(s[tk], e[tk], lead)
    return total, inter


@dataclass
class _Events:
    """What each entry adds to its month, in id order: 0 not counted (``text`` says why),
    1 counted (``holder`` its enrollment), 2 would count (``text`` why it does not)."""

    row: IntArray
    month: IntArray  # day number of the month's first day
    what: IntArray
    text: ObjArray
    holder: IntArray
    talk: BoolArray
    total: IntArray
    inter: IntArray


def _events(
    r: _Rows,
    as_of: date,
    program: str,
    secure: bool,
    max_minutes: Decimal,
    snapshot: RegistrySnapshot,
) -> tuple[_Events, list[Enrollment]]:
    """Every entry's part in its month (an impossible start in the as-of date's month)."""
    impossible = np.flatnonzero(r.day < 0)
    rows = np.flatnonzero((r.day >= 0) & (r.day <= day_of(as_of)))
    why = _left_out(r, rows, max_minutes)
    ok = rows[why == ""]
    enrollments, spans, consent = _enrollment_columns(snapshot, program, r.names)
    day = r.day[ok]
    holder = _first_holding(spans, consent, r.patient[ok], day, day)
    talk = decided_interactive(r.acts.interactive[ok], r.acts.kind[ok], secure)
    month = month_of_day(r.day[ok]) if len(ok) else np.zeros(0, np.int64)
    total = np.zeros(len(ok), np.int64)
    inter = np.zeros(len(ok), np.int64)
    text = objects([""] * len(ok))
    for counted in (True, False):
        k = np.flatnonzero((holder >= 0) == counted)
        i = ok[k]
        total[k], inter[k] = _month_shares(month[k], r.patient[i], r.at[i], r.end[i], talk[k])
    out = np.flatnonzero(holder < 0)
    inside = _first_holding(spans, None, r.patient[ok[out]], day[out], day[out])
    for j, pos in zip(out.tolist(), inside.tolist(), strict=True):
        text[j] = (
            NO_ENROLLMENT
            if pos < 0
            else NO_CONSENT
            if consent[pos] == _FAR
            else entry_before_consent(date_of(int(consent[pos])))
        )
    latest = LATEST_ACTIVITY.date() - timedelta(days=1)
    never = objects(
        [
            entry_impossible_start(
                r.acts.started_at(i).isoformat(), EARLIEST_ACTIVITY.date(), latest
            )
            for i in impossible.tolist()
        ]
    )
    left = rows[why != ""]
    n_none = len(impossible) + len(left)
    ev = _Events(
        np.concatenate([impossible, left, ok]),
        np.concatenate(
            [
                np.full(len(impossible), day_of(as_of.replace(day=1)), np.int64),
                month_of_day(r.day[left]) if len(left) else np.zeros(0, np.int64),
                month,
            ]
        ),
        np.concatenate([np.zeros(n_none, np.int64), np.where(holder >= 0, 1, 2)]),
        np.concatenate([never, why[why != ""], text]),
        np.concatenate([np.full(n_none, _NONE, np.int64), holder]),
        np.concatenate([np.zeros(n_none, np.bool_), talk]),
        np.concatenate([np.zeros(n_none, np.int64), total]),
        np.concatenate([np.zeros(n_none, np.int64), inter]),
    )
    return ev, enrollments


def _devices(
    snapshot: RegistrySnapshot, names: list[str], patient: IntArray, month: IntArray
) -> BoolArray:
    """Per (patient code, month first day): a device assigned to the patient in the month."""
    code = {p: k for k, p in enumerate(names)}
    held = [a for a in snapshot.assignments if a.patient_id in code]
    held.sort(key=lambda a: (code[a.patient_id], a.start_date))
    found = _first_holding(_spans(held, code), None, patient, month, month_end_of_day(month))
    return found >= 0


def management_months(
    activities: MonthEntries,
    snapshot: RegistrySnapshot,
    as_of: date,
    org_zone: str,
    program: str,
    secure_message_interactive: bool,
    max_activity_minutes: Decimal,
) -> list[MonthMinutes]:
    """Minutes and interactive communications per patient-month with time entries, up to
    ``as_of``, by (patient, month): one value for every such month, counted or not
    (``blocked`` says why not).

    An activity counts once (a repeated id is ignored; an exact duplicate, same staff, start
    and minutes under another id, is named and not added), in the month of its local start
    date, only inside an enrollment of ``program`` with consent on file by that date.
    """
    if not len(activities):
        return []
    r = _first_of_each_id(activities, snapshot, org_zone, as_of)
    ev, enrollments = _events(
        r, as_of, program, secure_message_interactive, max_activity_minutes, snapshot
    )
    order = np.lexsort((ev.row, ev.month, r.patient[ev.row]))
    patient, month = r.patient[ev.row][order], ev.month[order]
    first = np.ones(len(order), np.bool_)
    first[1:] = (patient[1:] != patient[:-1]) | (month[1:] != month[:-1])
    starts = np.flatnonzero(first)
    device = _devices(snapshot, r.names, patient[starts], month[starts])
    return _months(r, ev, order, starts, month[starts], enrollments, device)


def _months(
    r: _Rows,
    ev: _Events,
    order: IntArray,
    starts: IntArray,
    month: IntArray,
    enrollments: list[Enrollment],
    device: BoolArray,
) -> list[MonthMinutes]:
    """The patient-months of the events ``order`` lists (by patient, month, then id; a
    month's events from ``starts``): a month counts its counted entries, or, with none,
    those that would count (and says why they do not); every other entry is a note. The
    sums are vector passes; only each month's ids and notes are gathered one by one."""
    what = ev.what[order]
    counted, would = what == 1, what == 2
    ends = np.append(starts, len(order))
    sizes = np.diff(ends)
    has_counted = np.add.reduceat(counted.astype(np.int64), starts) > 0
    use = np.where(np.repeat(has_counted, sizes), counted, would)
    total = np.add.reduceat(np.where(use, ev.total[order], 0), starts).tolist()
    talk = np.add.reduceat((use & ev.talk[order]).astype(np.int64), starts).tolist()
    inter = np.add.reduceat(np.where(use, ev.inter[order], 0), starts).tolist()
    holder = _first_in_each(counted, starts, ev.holder[order])
    why_not = _first_in_each(would, starts, ev.text[order])
    ids = r.acts.activity_id[ev.row[order]].tolist()
    texts, kinds, used = ev.text[order].tolist(), what.tolist(), use.tolist()
    bounds = ends.tolist()
    patients = r.patient[ev.row[order[starts]]].tolist()
    out = []
    for g, (patient, day, any_counted) in enumerate(
        zip(patients, month.tolist(), has_counted.tolist(), strict=True)
    ):
        span = range(bounds[g], bounds[g + 1])
        noted = (0, 2) if any_counted else (0,)
        enrollment = enrollments[holder[g]] if any_counted else None
        out.append(
            MonthMinutes(
                r.names[patient],
                date_of(day),
                to_minutes(total[g]),
                talk[g],
                tuple(sorted(ids[k] for k in span if used[k])),
                enrollment,
                to_minutes(inter[g]),
                tuple(sorted((ids[k], texts[k]) for k in span if kinds[k] in noted)),
                ""
                if any_counted
                else (str(why_not[g]) if why_not[g] is not None else NO_ENTRY_COUNTS),
                bool(device[g]),
            )
        )
    return out


def _first_in_each(flag: BoolArray, starts: IntArray, values: Any) -> list[Any]:
    """Per group (from ``starts``): the value of its first flagged row; None without one."""
    rows = np.flatnonzero(flag)
    group = np.searchsorted(starts, rows, side="right") - 1
    found: list[Any] = [None] * len(starts)
    firsts, at = np.unique(group, return_index=True)
    for g, v in zip(firsts.tolist(), values[rows[at]].tolist(), strict=True):
        found[g] = v
    return found
