"""Everything one report shows, gathered from the stages and the registry as plain values.

This is the one place that reads: engagement records (metrics), the worklist built from
them, the export ledger and what the next export would hold or correct (billing export), and
the registry's patients, devices, assignments and enrollments. The site writer only formats.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy import Engine, select

from rpmpipe.billing_export.review import ExportPreview, load_ledger_lines, preview_export
from rpmpipe.billing_export.totals import (
    HeldSummary,
    LedgerLine,
    LineStatus,
    MonthTotals,
    ReviewItem,
    held_summary,
    line_statuses,
    month_totals,
    reported_reviews,
)
from rpmpipe.metrics.worklist import WorklistRow, build_worklist
from rpmpipe.records import EngagementRecord
from rpmpipe.registry.models import Device, DeviceAssignment, Enrollment, Patient
from rpmpipe.settings import Settings


@dataclass(frozen=True, slots=True)
class PatientFacts:
    """What a patient page says about who the patient is (PHI: pages only, never logs)."""

    patient_id: str
    name: str
    birth_date: date | None
    mrn: str
    timezone: str
    payer_id: str
    payer_name: str
    member_id: str
    icd10: str


@dataclass(frozen=True, slots=True)
class DeviceSpan:
    device_id: str
    kind: str
    model: str
    start_date: date
    end_date: date | None


@dataclass(frozen=True, slots=True)
class EnrollmentSpan:
    program: str
    start_date: date
    end_date: date | None
    consent_date: date | None
    ordering_npi: str


@dataclass(frozen=True)
class ReportInputs:
    as_of: date
    generated_at: datetime
    records: Sequence[EngagementRecord]
    worklist: Sequence[WorklistRow]
    patients: dict[str, PatientFacts]
    devices: dict[str, list[DeviceSpan]]
    enrollments: dict[str, list[EnrollmentSpan]]
    ledger: Sequence[LedgerLine]
    statuses: Sequence[LineStatus]
    totals: MonthTotals
    held: Sequence[HeldSummary]
    reviews: Sequence[ReviewItem]  # reported and still open, then those the next export reports
    rule_note: str = field(default="")


def gather(
    settings: Settings,
    engine: Engine,
    as_of: date,
    records: Sequence[EngagementRecord],
    generated_at: datetime,
) -> ReportInputs:
    """The report's inputs for ``as_of``, given the engagement records as of that date."""
    patients, devices, enrollments = _registry(engine)
    with engine.connect() as conn:
        ledger = load_ledger_lines(conn)
    preview: ExportPreview = preview_export(settings.billing, engine, as_of, records, ledger)
    payer_of = {pid: p.payer_id for pid, p in patients.items()}
    return ReportInputs(
        as_of=as_of,
        generated_at=generated_at,
        records=records,
        worklist=build_worklist(records, as_of),
        patients=patients,
        devices=devices,
        enrollments=enrollments,
        ledger=ledger,
        statuses=line_statuses(ledger),
        totals=month_totals(ledger, payer_of),
        held=held_summary(preview.held),
        reviews=[*reported_reviews(ledger), *preview.pending_reviews],
    )


def _registry(
    engine: Engine,
) -> tuple[dict[str, PatientFacts], dict[str, list[DeviceSpan]], dict[str, list[EnrollmentSpan]]]:
    p, d, a, e = Patient, Device, DeviceAssignment, Enrollment
    with engine.connect() as conn:
        patients = {
            r.patient_id: PatientFacts(
                r.patient_id,
                ", ".join(x for x in (r.last_name, r.first_name) if x),
                r.birth_date,
                r.mrn or "",
                r.timezone or "",
                r.payer_id or "",
                r.payer_name or "",
                r.member_id or "",
                (r.icd10_codes or "").replace(";", ", "),
            )
            for r in conn.execute(
                select(
                    p.patient_id,
                    p.first_name,
                    p.last_name,
                    p.birth_date,
                    p.mrn,
                    p.timezone,
                    p.payer_id,
                    p.payer_name,
                    p.member_id,
                    p.icd10_codes,
                )
            )
        }
        kinds = {
            r.device_id: (r.kind, r.model or "")
            for r in conn.execute(select(d.device_id, d.kind, d.model))
        }
        devices: dict[str, list[DeviceSpan]] = {}
        for s in conn.execute(
            select(a.device_id, a.patient_id, a.start_date, a.end_date).order_by(
                a.patient_id, a.start_date, a.device_id
            )
        ):
            kind, model = kinds.get(s.device_id, ("", ""))
            devices.setdefault(s.patient_id, []).append(
                DeviceSpan(s.device_id, kind, model, s.start_date, s.end_date)
            )
        enrollments: dict[str, list[EnrollmentSpan]] = {}
        for n in conn.execute(
            select(
                e.patient_id, e.program, e.start_date, e.end_date, e.consent_date, e.ordering_npi
            ).order_by(e.patient_id, e.start_date)
        ):
            enrollments.setdefault(n.patient_id, []).append(
                EnrollmentSpan(n.program, n.start_date, n.end_date, n.consent_date, n.ordering_npi)
            )
    return patients, devices, enrollments
