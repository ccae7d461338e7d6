"""Treatment-management minutes per patient per local calendar month (pure).

Care time is counted once: per patient, the union of the entries' time intervals
(``started_at`` + ``minutes``), so two staff members on the same call, or two entries of the
same call, count the call once. An entry's share (the part of its interval no earlier entry
covers) belongs to the local month in which the entry starts. Entries that do not count at all
(an exact duplicate, a voided entry, one over ``max_activity_minutes``, one with an impossible
date) are named with why in the month's record.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt

from rpmpipe.metrics.report import format_minutes
from rpmpipe.metrics.snapshot import Assignment, Enrollment, RegistrySnapshot
from rpmpipe.records import Activity, Program

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


def is_interactive(activity: Activity, secure_message_interactive: bool) -> bool:
    """Real-time two-way communication; secure messages only when the setting says so."""
    if not activity.interactive:
        return False
    return activity.kind != "secure_message" or secure_message_interactive


def _enrollment_on(enrollments: Sequence[Enrollment], day: date) -> Enrollment | None:
    for e in enrollments:
        if e.covers(day):
            return e
    return None


def _why_outside(enrollments: Sequence[Enrollment], day: date) -> str:
    """Why an entry on ``day`` is outside every consented enrollment of the program."""
    for e in enrollments:
        if e.start_date <= day and (e.end_date is None or day <= e.end_date):
            if e.consent_date is None:
                return "no consent on file"
            return f"before consent on {e.consent_date.isoformat()}"
    return "no RPM enrollment on the entry's date"


def micros(moment: datetime) -> int:
    """An aware instant as exact microseconds since 1970 (no float rounding)."""
    return (moment - _UNIX) // timedelta(microseconds=1)


def _to_minutes(micros: int) -> Decimal:
    """Exact when the time is a whole number of hundredths of a minute; else cut down (never
    rounded up)."""
    value = Decimal(micros) / _MICROS_PER_MINUTE
    return value if value == value.quantize(_CENT) else value.quantize(_CENT, ROUND_DOWN)


@dataclass
class _Month:
    counted: list[tuple[int, int, bool]]  # (start, end, interactive) micros
    would_count: list[tuple[int, int, bool]]
    ids: list[str]
    would_ids: list[str]
    communications: int
    would_communications: int
    enrollment: Enrollment | None
    blocked: str
    not_counted: list[tuple[str, str]]
    outside: list[tuple[str, str]]


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


def _union_shares(
    entries: dict[str, list[tuple[int, int, bool, date]]],
) -> dict[str, dict[date, tuple[int, int]]]:
    """Per patient and month: (micros of the union, micros of the union of the interactive
    entries), each entry's new share credited to its own month; every patient in one pass."""
    flat = [(k, *e) for k, mine in enumerate(entries.values()) for e in mine]
    if not flat:
        return {}
    who = np.array([x[0] for x in flat], np.int64)
    start = np.array([x[1] for x in flat], np.int64)
    end = np.array([x[2] for x in flat], np.int64)
    talk = np.array([x[3] for x in flat], np.bool_)
    month = np.array([x[4].toordinal() for x in flat], np.int64)
    order = np.lexsort((month, talk, end, start, who))
    who, start, end, talk, month = who[order], start[order], end[order], talk[order], month[order]
    first = np.ones(len(who), np.bool_)
    first[1:] = who[1:] != who[:-1]
    total = union_shares(start, end, first)
    inter = np.zeros(len(who), np.int64)
    if talk.any():
        t = np.flatnonzero(talk)
        lead = np.ones(len(t), np.bool_)
        lead[1:] = who[t][1:] != who[t][:-1]
        inter[t] = union_shares(start[t], end[t], lead)
    names = list(entries)
    out: dict[str, dict[date, tuple[int, int]]] = {}
    sums: dict[tuple[int, int], list[int]] = {}
    for k, m, a, b in zip(
        who.tolist(), month.tolist(), total.tolist(), inter.tolist(), strict=True
    ):
        slot = sums.get((k, m))
        if slot is None:
            sums[(k, m)] = [a, b]
        else:
            slot[0] += a
            slot[1] += b
    for (k, m), (a, b) in sums.items():
        out.setdefault(names[k], {})[date.fromordinal(m)] = (a, b)
    return out


def _has_device(assignments: Sequence[Assignment], month: date, month_end: date) -> bool:
    return any(
        a.start_date <= month_end and (a.end_date is None or a.end_date >= month)
        for a in assignments
    )


def _month_end(month: date) -> date:
    nxt = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
    return nxt - timedelta(days=1)


def monthly_minutes(
    activities: Iterable[Activity],
    snapshot: RegistrySnapshot,
    as_of: date,
    org_zone: str,
    program: str = Program.RPM,
    secure_message_interactive: bool = False,
    max_activity_minutes: Decimal = Decimal(120),
) -> list[MonthMinutes]:
    """Minutes and interactive communications per patient-month with time entries, up to
    ``as_of``: one value for every such month, counted or not (``blocked`` says why not).

    An activity counts once (a repeated id is ignored; an exact duplicate, same staff, start
    and minutes under another id, is named and not added), in the month of its local start
    date, only inside an enrollment of ``program`` with consent on file by that date.
    """
    tally = _Tally(snapshot, as_of, org_zone, program, secure_message_interactive)
    for a in sorted(activities, key=lambda a: a.activity_id):
        tally.add(a, max_activity_minutes)
    return tally.results()


class _Tally:
    """Care time entries sorted into patient-months: counted, would count, or named why not."""

    def __init__(
        self,
        snapshot: RegistrySnapshot,
        as_of: date,
        org_zone: str,
        program: str,
        secure_message_interactive: bool,
    ) -> None:
        self.by_patient: dict[str, list[Enrollment]] = {}
        for e in snapshot.enrollments:
            if e.program == program:
                self.by_patient.setdefault(e.patient_id, []).append(e)
        for enrollments in self.by_patient.values():
            enrollments.sort(key=lambda e: e.start_date)
        self.devices: dict[str, list[Assignment]] = {}
        for held in snapshot.assignments:
            self.devices.setdefault(held.patient_id, []).append(held)
        self.snapshot, self.as_of, self.org_zone = snapshot, as_of, org_zone
        self.secure = secure_message_interactive
        self.zones: dict[str, ZoneInfo] = {}
        self.seen: set[str] = set()
        self.first_of: dict[tuple[str, str, datetime, Decimal], str] = {}
        self.months: dict[tuple[str, date], _Month] = {}
        self.entries: dict[str, list[tuple[int, int, bool, date]]] = {}
        self.would: dict[str, list[tuple[int, int, bool, date]]] = {}

    def month_of(self, pid: str, month: date) -> _Month:
        m = self.months.get((pid, month))
        if m is None:
            m = self.months[(pid, month)] = _Month([], [], [], [], 0, 0, None, "", [], [])
        return m

    def _local_day(self, a: Activity) -> date:
        zone_name = self.snapshot.zone_of(a.patient_id, self.org_zone)
        zone = self.zones.get(zone_name) or self.zones.setdefault(zone_name, ZoneInfo(zone_name))
        return a.started_at.astimezone(zone).date()

    def _left_out(self, a: Activity, max_activity_minutes: Decimal) -> str:
        """Why an entry of a month counts not at all ("" when it may count)."""
        if a.voided_reason is not None:
            return f"voided: {a.voided_reason}"
        if a.minutes > max_activity_minutes:
            return (
                f"held for review: {format_minutes(a.minutes)} minutes in one entry, over the "
                f"{format_minutes(max_activity_minutes)} allowed"
            )
        original = self.first_of.get((a.patient_id, a.staff_id, a.started_at, a.minutes))
        if original is not None:
            return f"exact duplicate of {original}"
        return ""

    def add(self, a: Activity, max_activity_minutes: Decimal) -> None:
        if a.activity_id in self.seen:
            return
        self.seen.add(a.activity_id)
        if not EARLIEST_ACTIVITY <= a.started_at < LATEST_ACTIVITY:
            # No month can hold it: said on the patient's month of the as-of date.
            self.month_of(a.patient_id, self.as_of.replace(day=1)).not_counted.append(
                (
                    a.activity_id,
                    f"impossible start {a.started_at.isoformat()} (outside "
                    f"{EARLIEST_ACTIVITY.date().isoformat()} to "
                    f"{(LATEST_ACTIVITY.date() - timedelta(days=1)).isoformat()})",
                )
            )
            return
        local_day = self._local_day(a)
        if local_day > self.as_of:
            return
        key = local_day.replace(day=1)
        entry_month = self.month_of(a.patient_id, key)
        why = self._left_out(a, max_activity_minutes)
        if why:
            entry_month.not_counted.append((a.activity_id, why))
            return
        self.first_of[(a.patient_id, a.staff_id, a.started_at, a.minutes)] = a.activity_id
        start = micros(a.started_at)
        interval = (start, start + int(a.minutes * _MICROS_PER_MINUTE))
        interactive = is_interactive(a, self.secure)
        enrollments = self.by_patient.get(a.patient_id, [])
        enrollment = _enrollment_on(enrollments, local_day)
        if enrollment is None:
            entry_month.would_ids.append(a.activity_id)
            entry_month.would_communications += int(interactive)
            outside = _why_outside(enrollments, local_day)
            entry_month.outside.append((a.activity_id, outside))
            if not entry_month.blocked:
                entry_month.blocked = outside
            self.would.setdefault(a.patient_id, []).append((*interval, interactive, key))
            return
        if entry_month.enrollment is None:
            entry_month.enrollment = enrollment
        entry_month.ids.append(a.activity_id)
        entry_month.communications += int(interactive)
        self.entries.setdefault(a.patient_id, []).append((*interval, interactive, key))

    def results(self) -> list[MonthMinutes]:
        counted_shares = _union_shares(self.entries)
        would_shares = _union_shares(self.would)
        out: list[MonthMinutes] = []
        for (pid, month), m in sorted(self.months.items()):
            assigned = _has_device(self.devices.get(pid, ()), month, _month_end(month))
            counted = m.enrollment is not None or not m.would_ids
            shares = counted_shares if counted else would_shares
            total, inter = shares.get(pid, {}).get(month, (0, 0))
            if counted:
                blocked = "" if m.enrollment is not None else "no time entry counts this month"
                ids, talks, not_counted = m.ids, m.communications, m.not_counted + m.outside
            else:
                blocked = m.blocked
                ids, talks, not_counted = m.would_ids, m.would_communications, m.not_counted
            out.append(
                MonthMinutes(
                    pid,
                    month,
                    _to_minutes(total),
                    talks,
                    tuple(sorted(ids)),
                    m.enrollment if counted else None,
                    _to_minutes(inter),
                    tuple(sorted(not_counted)),
                    blocked,
                    assigned,
                )
            )
        return out
