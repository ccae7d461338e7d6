"""The at-risk worklist: per patient, the open supply period and the open management month,
with what can still be reached and how urgent a call is (pure: records in, rows out).

The figures are the engagement records' own (``metrics --format json``): days so far and
days still possible come from the open period's forecast, minutes and interactive
communications from the open month. Only :func:`minutes_of` and :func:`contacts_of` read the
record's minute fields, so a change of those fields is a change here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import IntEnum
from typing import IO, Any

from rpmpipe.csv_cells import csv_field
from rpmpipe.metrics.programs import program_rules_for
from rpmpipe.metrics.report import format_minutes
from rpmpipe.metrics.rules import rule_set_for
from rpmpipe.records import EngagementRecord, Program, RecordKind, RecordStatus

SUPPLY = RecordKind.DEVICE_SUPPLY
MANAGEMENT = RecordKind.TREATMENT_MANAGEMENT


def minutes_of(record: EngagementRecord) -> Decimal:
    """The month's management minutes (all care time that counts)."""
    return record.management_minutes


def contacts_of(record: EngagementRecord) -> int:
    """The month's interactive communications (real-time, two-way)."""
    return record.interactive_communications


class Urgency(IntEnum):
    """Worklist order, most urgent first. The names are what the worklist shows."""

    CALL_TODAY = 1  # 16 days still reachable but behind pace: every day counts now
    NO_DATA = 2  # enrolled, no qualifying reading yet
    SHORT_CODE_ONLY = 3  # 16 out of reach; the short code (2 days) not yet reached
    ON_PACE = 4  # 16 reachable and on pace
    NOTHING_MORE = 5  # 16 out of reach; the short code is earned or out of reach too
    FULL_REACHED = 6  # 16 days reached this period
    NO_OPEN_PERIOD = 7  # only an open management month

    @property
    def label(self) -> str:
        return {
            Urgency.CALL_TODAY: "call today: behind pace for 16",
            Urgency.NO_DATA: "no readings yet",
            Urgency.SHORT_CODE_ONLY: "16 out of reach, 2 still open",
            Urgency.ON_PACE: "on pace for 16",
            Urgency.NOTHING_MORE: "16 out of reach",
            Urgency.FULL_REACHED: "16 reached",
            Urgency.NO_OPEN_PERIOD: "month only, no open period",
        }[self]


AT_RISK = frozenset({Urgency.CALL_TODAY, Urgency.NO_DATA, Urgency.SHORT_CODE_ONLY})


@dataclass(frozen=True, slots=True)
class WorklistRow:
    """One patient's open period and open month, as of the worklist's date."""

    patient_id: str
    program: str
    urgency: Urgency
    period_start: date | None  # the open supply period (None: only a month is open)
    period_end: date | None
    days_so_far: int
    days_left: int | None  # days after the as-of date still in the period (None: not started)
    full_days: int  # days for the full supply code (16 for 99454)
    short_days: int  # days for the short supply code (2 for 99445); == full_days when none
    can_reach_full: bool
    can_reach_short: bool
    last_day_with_data: date | None
    days_since_data: int | None
    month_start: date | None  # the open management month
    minutes_so_far: Decimal
    interactive_contacts: int
    slack: int | None  # days that may still be missed with 16 reached (None: not applicable)

    @property
    def at_risk(self) -> bool:
        return self.urgency in AT_RISK

    @property
    def interactive_contact(self) -> bool:
        return self.interactive_contacts > 0


def build_worklist(records: Iterable[EngagementRecord], as_of: date) -> list[WorklistRow]:
    """One row per patient with an open (pending) supply period or management month, most
    urgent first (then fewest days to spare, longest without data, patient id)."""
    supply: dict[tuple[str, str], EngagementRecord] = {}
    month: dict[tuple[str, str], EngagementRecord] = {}
    last_day: dict[str, date] = {}
    for r in records:
        if r.kind == SUPPLY:
            if r.evidence_dates:
                seen = last_day.get(r.patient_id)
                if seen is None or r.evidence_dates[-1] > seen:
                    last_day[r.patient_id] = r.evidence_dates[-1]
            if r.status == RecordStatus.PENDING:
                key = (r.patient_id, r.program)
                held = supply.get(key)
                if held is None or r.period_start > held.period_start:
                    supply[key] = r
        elif r.kind == MANAGEMENT and r.status == RecordStatus.PENDING:
            key = (r.patient_id, r.program)
            held = month.get(key)
            if held is None or r.period_start > held.period_start:
                month[key] = r
    rows = [
        _row(pid, program, supply.get((pid, program)), month.get((pid, program)), last_day, as_of)
        for pid, program in sorted(supply.keys() | month.keys())
    ]
    rows.sort(key=urgency_key)
    return rows


def urgency_key(row: WorklistRow) -> tuple[int, int, int, int, str]:
    """Sort key: urgency, then no interactive contact first, fewest spare days, longest
    without data."""
    return (
        int(row.urgency),
        0 if row.interactive_contacts == 0 else 1,
        row.slack if row.slack is not None else 1 << 20,
        -(row.days_since_data if row.days_since_data is not None else 1 << 20),
        row.patient_id,
    )


def _row(
    pid: str,
    program: str,
    period: EngagementRecord | None,
    month: EngagementRecord | None,
    last_day: dict[str, date],
    as_of: date,
) -> WorklistRow:
    full, short = supply_thresholds(program, period.period_end if period is not None else as_of)
    last = last_day.get(pid)
    since = (as_of - last).days if last is not None else None
    days, left, reach_full, reach_short, slack = 0, None, True, True, None
    forecast = period.forecast if period is not None else None
    if period is None:
        urgency = Urgency.NO_OPEN_PERIOD
    elif forecast is None:
        # No qualifying reading yet: the first period starts with the first one.
        urgency = Urgency.NO_DATA
    else:
        days = _int(forecast["days_so_far"])
        left = _int(forecast["days_still_possible"])
        reach_full = bool(forecast["can_reach_16"])
        reach_short = days + left >= short
        if days >= full:
            urgency = Urgency.FULL_REACHED
        elif reach_full:
            slack = days + left - full
            urgency = Urgency.CALL_TODAY if forecast["at_risk"] else Urgency.ON_PACE
        elif days < short and reach_short:
            urgency = Urgency.SHORT_CODE_ONLY
        else:
            urgency = Urgency.NOTHING_MORE
    return WorklistRow(
        patient_id=pid,
        program=program,
        urgency=urgency,
        period_start=period.period_start if period is not None else None,
        period_end=period.period_end if period is not None else None,
        days_so_far=days,
        days_left=left,
        full_days=full,
        short_days=short,
        can_reach_full=reach_full,
        can_reach_short=reach_short,
        last_day_with_data=last,
        days_since_data=since,
        month_start=month.period_start if month is not None else None,
        minutes_so_far=minutes_of(month) if month is not None else Decimal(0),
        interactive_contacts=contacts_of(month) if month is not None else 0,
        slack=slack,
    )


def supply_thresholds(program: str, day: date) -> tuple[int, int]:
    """Days for the full and the short supply code of ``program`` on ``day`` (16 and 2 for
    RPM in 2026); a program without supply codes is shown against RPM's."""
    rules = program_rules_for(program, day)
    minimums = [int(t.minimum) for tiers in (rules.supply.values() if rules else ()) for t in tiers]
    if not minimums:
        rs = rule_set_for(Program.RPM, day)
        return rs.supply_full_days, rs.supply_min_days
    return max(minimums), min(minimums)


def _int(value: object) -> int:
    assert isinstance(value, int)
    return value


# --- output ----------------------------------------------------------------------------------

COLUMNS = (
    "patient_id",
    "program",
    "urgency",
    "at_risk",
    "period_start",
    "period_end",
    "days_so_far",
    "days_left",
    "can_reach_16",
    "can_reach_2",
    "days_since_data",
    "last_day_with_data",
    "month_start",
    "minutes_so_far",
    "interactive_contact",
)


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day is not None else None


def row_to_dict(row: WorklistRow) -> dict[str, Any]:
    """The row as JSON values, keyed by :data:`COLUMNS` (``can_reach_16``/``can_reach_2``
    name the full and short thresholds of the row's rule set)."""
    minutes = row.minutes_so_far
    return {
        "patient_id": row.patient_id,
        "program": row.program,
        "urgency": row.urgency.label,
        "at_risk": row.at_risk,
        "period_start": _iso(row.period_start),
        "period_end": _iso(row.period_end),
        "days_so_far": row.days_so_far,
        "days_left": row.days_left,
        "can_reach_16": row.can_reach_full,
        "can_reach_2": row.can_reach_short,
        "days_since_data": row.days_since_data,
        "last_day_with_data": _iso(row.last_day_with_data),
        "month_start": _iso(row.month_start),
        "minutes_so_far": int(minutes)
        if minutes == minutes.to_integral_value()
        else float(minutes),
        "interactive_contact": row.interactive_contact,
    }


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def write_worklist_csv(rows: Iterable[WorklistRow], out: IO[str]) -> None:
    """The worklist as CSV (yes/no for flags, empty for not applicable)."""
    out.write(",".join(COLUMNS) + "\n")
    for row in rows:
        values = row_to_dict(row)
        values["minutes_so_far"] = format_minutes(row.minutes_so_far)
        out.write(",".join(csv_field(_text(values[c])) for c in COLUMNS) + "\n")


def render_worklist(rows: Sequence[WorklistRow]) -> str:
    """A fixed-width table for a terminal."""
    head = (
        "patient",
        "period",
        "days",
        "left",
        "16?",
        "2?",
        "no data for",
        "minutes",
        "contact",
        "urgency",
    )
    body = [
        (
            r.patient_id,
            f"{_iso(r.period_start)}..{_iso(r.period_end)}" if r.period_start else "-",
            str(r.days_so_far),
            "-" if r.days_left is None else str(r.days_left),
            _text(r.can_reach_full),
            _text(r.can_reach_short),
            "never" if r.days_since_data is None else f"{r.days_since_data} d",
            format_minutes(r.minutes_so_far),
            _text(r.interactive_contact),
            r.urgency.label,
        )
        for r in rows
    ]
    widths = [max([len(h)] + [len(b[i]) for b in body]) for i, h in enumerate(head[:-1])]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(line[:-1], widths, strict=True)) + "  " + line[-1]
        for line in (head, *body)
    ]
    return "\n".join(lines) + "\n"
