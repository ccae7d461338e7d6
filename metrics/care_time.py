"""Care time to program months: every minute counted once, for one program (pure).

Each activity is an interval (``started_at`` + ``minutes``). Per patient, across all programs,
the union of the intervals is what counts: activities are taken in order of start (ties by
activity id) and each counts only the part of its interval no earlier activity covers, so
overlapping contacts of two staff members, or a CCM call overlapping an RPM call, never count
the shared minutes twice. The counted minutes go to the activity's own program, in the
patient's local month of its start, split by who performed them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from rpmpipe.metrics.programs import CareMinutes

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROS_PER_MINUTE = 60_000_000
INTERPRETATION_KIND = "data_review"


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
    interactive_communications: int = 0
    activity_ids: list[str] = field(default_factory=list)


def _micros(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(microseconds=1)


def counted_minutes(entries: Iterable[TimeEntry]) -> dict[str, Decimal]:
    """Minutes each activity adds to its patient's union of care time (0 when fully covered).

    Exact repeats of an activity id count once.
    """
    by_patient: dict[str, dict[str, TimeEntry]] = {}
    for e in entries:
        by_patient.setdefault(e.patient_id, {}).setdefault(e.activity_id, e)
    counted: dict[str, Decimal] = {}
    for mine in by_patient.values():
        covered_until: int | None = None
        for e in sorted(mine.values(), key=lambda x: (x.started_at, x.activity_id)):
            start = _micros(e.started_at)
            end = start + int(e.minutes * _MICROS_PER_MINUTE)
            begin = start if covered_until is None else max(start, covered_until)
            extra = max(0, end - begin)
            counted[e.activity_id] = Decimal(extra) / _MICROS_PER_MINUTE
            covered_until = end if covered_until is None else max(covered_until, end)
    return counted


def is_interpretation(entry: TimeEntry) -> bool:
    """RPM time a physician/QHP logs as data review is 99091 interpretation time."""
    return (
        entry.program == "RPM"
        and entry.performer == "physician"
        and entry.kind == INTERPRETATION_KIND
    )


def program_months(
    entries: Iterable[TimeEntry], zone_of: Callable[[str], str]
) -> dict[tuple[str, str, date], ProgramMonth]:
    """(patient, program, first day of local month) -> counted minutes by performer.

    99091 interpretation time is left out (it is counted per 30-day period, never as
    treatment-management time).
    """
    items = list(entries)
    counted = counted_minutes(items)
    zones: dict[str, ZoneInfo] = {}
    months: dict[tuple[str, str, date], ProgramMonth] = {}
    seen: set[str] = set()
    for e in items:
        if e.activity_id in seen or is_interpretation(e):
            continue
        seen.add(e.activity_id)
        name = zone_of(e.patient_id)
        zone = zones.get(name) or zones.setdefault(name, ZoneInfo(name))
        month = e.started_at.astimezone(zone).date().replace(day=1)
        slot = months.setdefault((e.patient_id, e.program, month), ProgramMonth())
        add = counted[e.activity_id]
        m = slot.minutes
        slot.minutes = (
            CareMinutes(m.clinical_staff, m.physician + add)
            if e.performer == "physician"
            else CareMinutes(m.clinical_staff + add, m.physician)
        )
        slot.interactive_communications += int(e.interactive)
        slot.activity_ids.append(e.activity_id)
    return months
