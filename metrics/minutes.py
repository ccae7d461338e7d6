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

from rpmpipe.metrics.report import format_minutes
from rpmpipe.metrics.snapshot import Assignment, Enrollment, RegistrySnapshot
from rpmpipe.records import Activity

# Stored dates outside this range are data errors (refused at the import and MQTT edge); the
# engine leaves such an entry out, with a reason, rather than fail on it.
EARLIEST_ACTIVITY = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_ACTIVITY = datetime(2100, 1, 1, tzinfo=UTC)

_UNIX = datetime(1970, 1, 1, tzinfo=UTC)
_MICROS_PER_MINUTE = 60_000_000
_CENT = Decimal("0.01")


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


def _micros(moment: datetime) -> int:
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


def _union_shares(
    entries: list[tuple[int, int, bool, date]],
) -> dict[date, tuple[int, int]]:
    """Per month: (micros of the union, micros of the union of the interactive entries), each
    entry's new share credited to its own month."""
    out: dict[date, tuple[int, int]] = {}
    covered = covered_interactive = None
    for start, end, interactive, month in sorted(entries):
        total, inter = out.get(month, (0, 0))
        lo = start if covered is None else max(start, covered)
        if end > lo:
            total += end - lo
        covered = end if covered is None else max(covered, end)
        if interactive:
            lo = start if covered_interactive is None else max(start, covered_interactive)
            if end > lo:
                inter += end - lo
            covered_interactive = (
                end if covered_interactive is None else max(covered_interactive, end)
            )
        out[month] = (total, inter)
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
    program: str = "RPM",
    secure_message_interactive: bool = False,
    max_activity_minutes: Decimal = Decimal(120),
) -> list[MonthMinutes]:
    """Minutes and interactive communications per patient-month with time entries, up to
    ``as_of``: one value for every such month, counted or not (``blocked`` says why not).

    An activity counts once (a repeated id is ignored; an exact duplicate, same staff, start
    and minutes under another id, is named and not added), in the month of its local start
    date, only inside an enrollment of ``program`` with consent on file by that date.
    """
    by_patient: dict[str, list[Enrollment]] = {}
    for e in snapshot.enrollments:
        if e.program == program:
            by_patient.setdefault(e.patient_id, []).append(e)
    for enrollments in by_patient.values():
        enrollments.sort(key=lambda e: e.start_date)
    devices: dict[str, list[Assignment]] = {}
    for held in snapshot.assignments:
        devices.setdefault(held.patient_id, []).append(held)
    zones: dict[str, ZoneInfo] = {}
    seen: set[str] = set()
    first_of: dict[tuple[str, str, datetime, Decimal], str] = {}
    months: dict[tuple[str, date], _Month] = {}
    entries: dict[str, list[tuple[int, int, bool, date]]] = {}
    would: dict[str, list[tuple[int, int, bool, date]]] = {}
    as_of_month = as_of.replace(day=1)

    def month_of(pid: str, month: date) -> _Month:
        m = months.get((pid, month))
        if m is None:
            m = months[(pid, month)] = _Month([], [], [], [], 0, 0, None, "", [], [])
        return m

    for a in sorted(activities, key=lambda a: a.activity_id):
        if a.activity_id in seen:
            continue
        seen.add(a.activity_id)
        if not EARLIEST_ACTIVITY <= a.started_at < LATEST_ACTIVITY:
            # No month can hold it: said on the patient's month of the as-of date.
            month_of(a.patient_id, as_of_month).not_counted.append(
                (
                    a.activity_id,
                    f"impossible start {a.started_at.isoformat()} (outside "
                    f"{EARLIEST_ACTIVITY.date().isoformat()} to "
                    f"{(LATEST_ACTIVITY.date() - timedelta(days=1)).isoformat()})",
                )
            )
            continue
        zone_name = snapshot.zone_of(a.patient_id, org_zone)
        zone = zones.get(zone_name) or zones.setdefault(zone_name, ZoneInfo(zone_name))
        local_day = a.started_at.astimezone(zone).date()
        if local_day > as_of:
            continue
        entry_month = month_of(a.patient_id, local_day.replace(day=1))
        if a.voided_reason is not None:
            entry_month.not_counted.append((a.activity_id, f"voided: {a.voided_reason}"))
            continue
        if a.minutes > max_activity_minutes:
            entry_month.not_counted.append(
                (
                    a.activity_id,
                    f"held for review: {format_minutes(a.minutes)} minutes in one entry, over the "
                    f"{format_minutes(max_activity_minutes)} allowed",
                )
            )
            continue
        same = (a.patient_id, a.staff_id, a.started_at, a.minutes)
        original = first_of.get(same)
        if original is not None:
            entry_month.not_counted.append((a.activity_id, f"exact duplicate of {original}"))
            continue
        first_of[same] = a.activity_id
        start = _micros(a.started_at)
        interval = (start, start + int(a.minutes * _MICROS_PER_MINUTE))
        interactive = is_interactive(a, secure_message_interactive)
        enrollments = by_patient.get(a.patient_id, [])
        enrollment = _enrollment_on(enrollments, local_day)
        key = local_day.replace(day=1)
        if enrollment is None:
            entry_month.would_ids.append(a.activity_id)
            entry_month.would_communications += int(interactive)
            why = _why_outside(enrollments, local_day)
            entry_month.outside.append((a.activity_id, why))
            if not entry_month.blocked:
                entry_month.blocked = why
            would.setdefault(a.patient_id, []).append((*interval, interactive, key))
            continue
        if entry_month.enrollment is None:
            entry_month.enrollment = enrollment
        entry_month.ids.append(a.activity_id)
        entry_month.communications += int(interactive)
        entries.setdefault(a.patient_id, []).append((*interval, interactive, key))
    counted_shares = {p: _union_shares(v) for p, v in entries.items()}
    would_shares = {p: _union_shares(v) for p, v in would.items()}
    out: list[MonthMinutes] = []
    for (pid, month), m in sorted(months.items()):
        end = _month_end(month)
        assigned = _has_device(devices.get(pid, ()), month, end)
        if m.enrollment is not None or not m.would_ids:
            total, inter = counted_shares.get(pid, {}).get(month, (0, 0))
            out.append(
                MonthMinutes(
                    pid,
                    month,
                    _to_minutes(total),
                    m.communications,
                    tuple(sorted(m.ids)),
                    m.enrollment,
                    _to_minutes(inter),
                    tuple(sorted(m.not_counted + m.outside)),
                    "" if m.enrollment is not None else "no time entry counts this month",
                    assigned,
                )
            )
            continue
        total, inter = would_shares.get(pid, {}).get(month, (0, 0))
        out.append(
            MonthMinutes(
                pid,
                month,
                _to_minutes(total),
                m.would_communications,
                tuple(sorted(m.would_ids)),
                None,
                _to_minutes(inter),
                tuple(sorted(m.not_counted)),
                m.blocked,
                assigned,
            )
        )
    return out
