"""Treatment-management minutes per patient per local calendar month (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from zoneinfo import ZoneInfo

from rpmpipe.metrics.snapshot import Enrollment, RegistrySnapshot
from rpmpipe.records import Activity


@dataclass(frozen=True, slots=True)
class MonthMinutes:
    """What one patient's care team logged in one month of the patient's zone."""

    patient_id: str
    month: date  # first day of the month
    minutes: Decimal
    interactive_communications: int
    activity_ids: tuple[str, ...]
    enrollment: Enrollment


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


def monthly_minutes(
    activities: Iterable[Activity],
    snapshot: RegistrySnapshot,
    as_of: date,
    org_zone: str,
    program: str = "RPM",
    secure_message_interactive: bool = False,
) -> list[MonthMinutes]:
    """Minutes and interactive communications per patient-month, up to ``as_of``.

    An activity counts once (duplicates by id are ignored), in the month of its local start
    date, only inside an enrollment of ``program`` with consent on file by that date.
    """
    by_patient: dict[str, list[Enrollment]] = {}
    for e in snapshot.enrollments:
        if e.program == program:
            by_patient.setdefault(e.patient_id, []).append(e)
    zones: dict[str, ZoneInfo] = {}
    seen: set[str] = set()
    sums: dict[tuple[str, date], tuple[Decimal, int, list[str], Enrollment]] = {}
    for a in activities:
        if a.activity_id in seen:
            continue
        seen.add(a.activity_id)
        enrollments = by_patient.get(a.patient_id)
        if not enrollments:
            continue
        zone_name = snapshot.zone_of(a.patient_id, org_zone)
        zone = zones.get(zone_name) or zones.setdefault(zone_name, ZoneInfo(zone_name))
        local_day = a.started_at.astimezone(zone).date()
        if local_day > as_of:
            continue
        enrollment = _enrollment_on(enrollments, local_day)
        if enrollment is None:
            continue
        key = (a.patient_id, local_day.replace(day=1))
        minutes, count, ids, _ = sums.get(key, (Decimal(0), 0, [], enrollment))
        ids.append(a.activity_id)
        sums[key] = (
            minutes + a.minutes,
            count + int(is_interactive(a, secure_message_interactive)),
            ids,
            enrollment,
        )
    return [
        MonthMinutes(p, m, total, count, tuple(sorted(ids)), enr)
        for (p, m), (total, count, ids, enr) in sorted(sums.items())
    ]
