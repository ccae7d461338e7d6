"""Care time to program months: every minute counted once, for one program (pure).

Each activity is an interval (``started_at`` + ``minutes``). Per patient, across all programs,
the union of the intervals is what counts, and each instant belongs to the program of the
earliest-started activity covering it (ties by activity id):

- :func:`trim_across_programs` cuts from each activity the part an earlier activity of another
  program covers (always a prefix, so the rest is one interval); after it, activities of
  different programs never overlap, and each program's own counting (the union of its
  intervals, naming exact duplicates) sees only its time;
- :func:`counted_minutes` is that union (:func:`metrics.minutes.new_shares`, the one union RPM's
  months use too): each activity counts the part no earlier one covers.

The counted minutes go to the activity's own program, in the patient's local month of its
start, split by who performed them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from zoneinfo import ZoneInfo

from rpmpipe.metrics.minutes import (
    EARLIEST_ACTIVITY,
    LATEST_ACTIVITY,
    is_interactive,
    micros,
    new_shares,
)
from rpmpipe.metrics.programs import CareMinutes
from rpmpipe.records import Activity, Program

_MICROS_PER_MINUTE = 60_000_000
INTERPRETATION_KIND = "data_review"
_CENT = Decimal("0.01")


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


def _pool(entry: TimeEntry) -> str:
    """The time pool an activity counts in: its program, with 99091 interpretation time a
    pool of its own (it is never treatment-management time)."""
    return "RPM:99091" if is_interpretation(entry) else entry.program


def trim_across_programs(entries: Iterable[TimeEntry]) -> list[TimeEntry]:
    """Each activity without the part an earlier activity of another program covers (it then
    starts where that time ends); activities left with no time are dropped. Repeats of an
    activity id count once."""
    by_patient: dict[str, dict[str, TimeEntry]] = {}
    for e in entries:
        by_patient.setdefault(e.patient_id, {}).setdefault(e.activity_id, e)
    kept: list[TimeEntry] = []
    for mine in by_patient.values():
        ends: dict[str, int] = {}  # pool -> latest end so far
        for e in sorted(mine.values(), key=lambda x: (x.started_at, x.activity_id)):
            start = micros(e.started_at)
            end = start + int(e.minutes * _MICROS_PER_MINUTE)
            pool = _pool(e)
            others = max((t for p, t in ends.items() if p != pool), default=start)
            ends[pool] = max(ends.get(pool, end), end)
            begin = max(start, others)
            if begin >= end:
                continue
            if begin == start:
                kept.append(e)
                continue
            kept.append(
                replace(
                    e,
                    started_at=e.started_at + timedelta(microseconds=begin - start),
                    minutes=Decimal(end - begin) / _MICROS_PER_MINUTE,
                )
            )
    return kept


def counted_minutes(entries: Iterable[TimeEntry]) -> dict[str, Decimal]:
    """Minutes each activity adds to its patient's union of care time (0 when fully covered).

    Exact repeats of an activity id count once.
    """
    by_patient: dict[str, dict[str, TimeEntry]] = {}
    for e in entries:
        by_patient.setdefault(e.patient_id, {}).setdefault(e.activity_id, e)
    counted: dict[str, Decimal] = {}
    for mine in by_patient.values():
        ordered = sorted(mine.values(), key=lambda x: (x.started_at, x.activity_id))
        spans = [(micros(e.started_at), int(e.minutes * _MICROS_PER_MINUTE)) for e in ordered]
        shares = new_shares((start, start + length) for start, length in spans)
        for e, share in zip(ordered, shares, strict=True):
            counted[e.activity_id] = Decimal(share) / _MICROS_PER_MINUTE
    return counted


def is_interpretation(entry: TimeEntry) -> bool:
    """RPM time a physician/QHP logs as data review is 99091 interpretation time."""
    return (
        entry.program == Program.RPM
        and entry.performer == "physician"
        and entry.kind == INTERPRETATION_KIND
    )


def program_months(
    entries: Iterable[TimeEntry],
    zone_of: Callable[[str], str],
    counted: Mapping[str, Decimal] | None = None,
) -> dict[tuple[str, str, date], ProgramMonth]:
    """(patient, program, first day of local month) -> counted minutes by performer.

    99091 interpretation time is left out (it is counted per 30-day period, never as
    treatment-management time). ``counted``: the :func:`counted_minutes` of ``entries``
    when they are already :func:`trim_across_programs`'d.
    """
    originals = list(entries)
    began = {e.activity_id: e.started_at for e in reversed(originals)}  # first of a repeat
    if counted is None:
        items = trim_across_programs(originals)
        counted = counted_minutes(items)
    else:
        items = originals
    zones: dict[str, ZoneInfo] = {}
    months: dict[tuple[str, str, date], ProgramMonth] = {}
    seen: set[str] = set()
    for e in items:
        if e.activity_id in seen or is_interpretation(e):
            continue
        seen.add(e.activity_id)
        name = zone_of(e.patient_id)
        zone = zones.get(name) or zones.setdefault(name, ZoneInfo(name))
        month = began[e.activity_id].astimezone(zone).date().replace(day=1)
        slot = months.setdefault((e.patient_id, e.program, month), ProgramMonth())
        # Counted time is exact; a month's figures keep whole hundredths (never rounded up).
        add = counted[e.activity_id].quantize(_CENT, rounding=ROUND_DOWN)
        m = slot.minutes
        slot.minutes = (
            CareMinutes(m.clinical_staff, m.physician + add)
            if e.performer == "physician"
            else CareMinutes(m.clinical_staff + add, m.physician)
        )
        slot.interactive_communications += int(e.interactive)
        if e.interactive:
            slot.interactive_minutes += add
        slot.activity_ids.append(e.activity_id)
    return months


def entry_of(activity: Activity, secure_message_interactive: bool) -> TimeEntry:
    """The counting's view of a care activity (interactive as the settings decide)."""
    return TimeEntry(
        activity.activity_id,
        activity.patient_id,
        activity.program,
        activity.performer,
        activity.kind,
        activity.started_at,
        activity.minutes,
        is_interactive(activity, secure_message_interactive),
    )


def counts_at_all(activity: Activity, max_activity_minutes: Decimal) -> bool:
    """False for an entry that counts for no program: voided, over the one-entry limit, or
    with an impossible date (RPM's counting names these with why)."""
    return (
        activity.voided_reason is None
        and activity.minutes <= max_activity_minutes
        and EARLIEST_ACTIVITY <= activity.started_at < LATEST_ACTIVITY
    )


def rpm_management_activities(
    trimmed: Iterable[TimeEntry], taking: set[str], activities: Iterable[Activity]
) -> list[Activity]:
    """RPM's treatment-management activities for its own counting: an entry that takes time
    (id in ``taking``) as :func:`trim_across_programs` left it (dropped when another program's
    earlier time covers it all), every other RPM entry as it is, for RPM to name why it does
    not count; 99091 interpretation time left out."""
    cut = {e.activity_id: e for e in trimmed}
    out = []
    for a in activities:
        if a.program != Program.RPM or (
            a.performer == "physician" and a.kind == INTERPRETATION_KIND
        ):
            continue
        if a.activity_id not in taking:
            out.append(a)
            continue
        e = cut.get(a.activity_id)
        if e is None:
            continue
        minutes = e.minutes.quantize(_CENT, rounding=ROUND_DOWN)
        if (e.started_at, e.minutes) == (a.started_at, a.minutes):
            out.append(a)
        elif minutes > 0:
            out.append(replace(a, started_at=e.started_at, minutes=minutes))
    return out
