"""The evidence of a run built line by line, as the export built it before it kept the days
in Arrow: the independent reference the columnar evidence files are compared with."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date
from typing import TextIO

from rpmpipe.billing_export.claims import Claim, line_control_number_for
from rpmpipe.billing_export.evidence import (
    EVIDENCE_CSV_COLUMNS,
    DayEvidence,
    LineEvidence,
    RecordFacts,
    RecordKey,
    documentation_of,
)
from rpmpipe.csv_cells import SafeCsvWriter


def days_of(
    dates: Sequence[date],
    patient_id: str,
    readings: Mapping[tuple[str, date], tuple[list[str], list[str]]],
) -> tuple[DayEvidence, ...]:
    """A record's days from ``readings_by_day``'s mapping, as the export looked them up."""
    out = []
    for day in dates:
        ids, devices = readings.get((patient_id, day), ([], []))
        out.append(DayEvidence(day, tuple(ids), tuple(sorted(set(devices)))))
    return tuple(out)


def build_line_evidence(
    claims: Sequence[Claim],
    run_id: str,
    facts: Mapping[RecordKey, RecordFacts],
) -> list[LineEvidence]:
    """One LineEvidence per claim line (pure)."""
    out = []
    for claim in claims:
        for cl in claim.lines:
            ln = cl.line
            f = facts.get(ln.record_key, RecordFacts((), (), None))
            span = f.enrollment
            lcn = cl.line_control_number or line_control_number_for(claim.claim_id, cl.line_no)
            out.append(
                LineEvidence(
                    line_control_number=lcn,
                    claim_id=claim.claim_id,
                    line_no=cl.line_no,
                    run_id=run_id,
                    patient_id=ln.patient_id,
                    program=ln.program,
                    record_kind=ln.record_kind,
                    code=ln.code,
                    units=ln.units,
                    charge=cl.charge,
                    date_of_service=ln.date_of_service,
                    period_start=ln.period_start,
                    period_end=ln.period_end,
                    rule_set=ln.rule_set,
                    transmission_days=ln.transmission_days,
                    interactive_minutes=ln.interactive_minutes,
                    ordering_npi=span.ordering_npi if span else ln.rendering_npi,
                    consent_date=span.consent_date if span else None,
                    enrollment_start=span.start if span else None,
                    enrollment_end=span.end if span else None,
                    days=f.days,
                    activities=f.activities,
                    documentation=documentation_of(f),
                )
            )
    return out


def write_evidence_csv(out: TextIO, lines: Sequence[LineEvidence]) -> int:
    """One row per fact behind each line (a day with data, an activity, the enrollment)."""
    writer = SafeCsvWriter(out)
    writer.writerow(EVIDENCE_CSV_COLUMNS)
    rows = 0
    for e in lines:
        head = [e.line_control_number, e.claim_id, str(e.line_no), e.patient_id, e.code]
        head.append(e.date_of_service.isoformat())
        facts: list[list[str]] = [
            [
                "enrollment",
                e.enrollment_start.isoformat() if e.enrollment_start else "",
                "",
                f"consent {e.consent_date.isoformat() if e.consent_date else 'none'}; ordering "
                f"NPI {e.ordering_npi}; rule set {e.rule_set}; rpmpipe {e.rpmpipe_version}",
                "",
            ]
        ]
        for d in e.days:
            facts.append(
                [
                    "day_with_data",
                    d.day.isoformat(),
                    "",
                    f"{len(d.reading_ids)} readings from {', '.join(d.device_ids)}",
                    ";".join(d.reading_ids),
                ]
            )
        for a in (*e.activities, *e.documentation):
            detail = [f"{a.minutes:f} min {a.kind}", f"staff {a.staff_id}"]
            if a.performer:
                detail.append(a.performer)
            if a.interactive:
                detail.append("interactive")
            if a.goals_reviewed:
                detail.append("goals " + ",".join(a.goals_reviewed))
            if a.pro_instrument:
                detail.append(f"{a.pro_instrument} {a.pro_score}")
            if a.note_ref:
                detail.append(f"note {a.note_ref}")
            started = a.started_at.astimezone(UTC)
            facts.append(
                [
                    "activity",
                    started.date().isoformat(),
                    started.strftime("%H:%M:%SZ"),
                    "; ".join(detail),
                    a.activity_id,
                ]
            )
        rows += writer.writerows_after(head, facts)
    return rows
