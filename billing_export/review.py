"""What the billing team reviews, without exporting anything: the ledger's lines, and what an
export of the current engagement records would hold back or report as a correction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date
from decimal import Decimal

from sqlalchemy import Connection, Engine, select

from rpmpipe.billing_export.charge_csv import CorrectionAction
from rpmpipe.billing_export.holds import Held
from rpmpipe.billing_export.ledger import ledger_states, load_patients, ordering_npi
from rpmpipe.billing_export.plan import build_plan, final_record, select_work
from rpmpipe.billing_export.totals import LedgerLine, ReviewItem
from rpmpipe.records import EngagementRecord, FinalRecord
from rpmpipe.registry.models import Enrollment, ExportLedgerEntry
from rpmpipe.settings import BillingSettings

Span = tuple[date, date | None, str]  # an enrollment's start, end and ordering NPI


@dataclass(frozen=True, slots=True)
class ExportPreview:
    """What an export as of the date would do with the lines not exported yet."""

    held: tuple[Held, ...]
    pending_reviews: tuple[ReviewItem, ...]  # changes the next export will report


def load_rendering_spans(conn: Connection) -> dict[tuple[str, str], list[Span]]:
    """Each (patient, program)'s enrollments as (start, end, ordering NPI)."""
    e = Enrollment
    spans: dict[tuple[str, str], list[Span]] = {}
    for pid, program, start, end, npi in conn.execute(
        select(e.patient_id, e.program, e.start_date, e.end_date, e.ordering_npi)
    ):
        spans.setdefault((pid, program), []).append((start, end, npi))
    return spans


def load_ledger_lines(conn: Connection) -> list[LedgerLine]:
    """Every ledger row with the rendering NPI of its record (the enrollment's ordering NPI)."""
    spans = load_rendering_spans(conn)
    t = ExportLedgerEntry
    rows = conn.execute(
        select(
            t.run_id,
            t.claim_id,
            t.patient_id,
            t.program,
            t.record_kind,
            t.period_start,
            t.period_end,
            t.revision,
            t.line_kind,
            t.code,
            t.units,
            t.charge,
            t.date_of_service,
            t.exported_at,
            t.transmission_days,
            t.interactive_minutes,
            t.management_minutes,
            t.line_control_number,
            t.payer_claim_control_number,
            t.episode_start,
        ).order_by(t.id)
    )
    cent = Decimal("0.01")
    npi_of: dict[tuple[str, str, date], str] = {}
    lines = []
    for r in rows:
        key = (r.patient_id, r.program, r.period_end)
        npi = npi_of.get(key)
        if npi is None:
            npi = npi_of[key] = ordering_npi(spans.get(key[:2], []), r.period_end)
        lines.append(
            LedgerLine(
                run_id=r.run_id,
                claim_id=r.claim_id,
                patient_id=r.patient_id,
                program=r.program,
                record_kind=r.record_kind,
                period_start=r.period_start,
                period_end=r.period_end,
                revision=r.revision,
                line_kind=r.line_kind,
                code=r.code,
                units=r.units,
                charge=Decimal(r.charge).quantize(cent),
                date_of_service=r.date_of_service,
                exported_at=r.exported_at,
                rendering_npi=npi,
                transmission_days=r.transmission_days or 0,
                interactive_minutes=Decimal(r.interactive_minutes or 0).quantize(cent),
                management_minutes=Decimal(r.management_minutes or 0).quantize(cent),
                line_control_number=r.line_control_number or "",
                payer_claim_control_number=r.payer_claim_control_number or "",
                episode_start=r.episode_start,
            )
        )
    return lines


def final_records(
    records: Iterable[EngagementRecord],
    as_of: date,
    spans: Mapping[tuple[str, str], Sequence[Span]],
) -> list[FinalRecord]:
    """The records whose period ended before ``as_of``, as the export reads them."""
    return [
        # The enrollment that owns the record, as the saved records name it.
        final_record(
            r,
            r.ordering_npi or ordering_npi(spans.get((r.patient_id, r.program), []), r.period_end),
        )
        for r in records
        if r.period_end < as_of
    ]


def preview_export(
    billing: BillingSettings,
    engine: Engine,
    as_of: date,
    records: Sequence[EngagementRecord],
    lines: Sequence[LedgerLine],
) -> ExportPreview:
    """The held lines and the corrections an export of ``records`` (the engagement as of
    ``as_of``; the final ones count) would produce against the ledger's ``lines`` (from
    :func:`load_ledger_lines`); nothing is written."""
    ledger = ledger_states(lines)
    with engine.connect() as conn:
        final = final_records(records, as_of, load_rendering_spans(conn))
        patients = load_patients(conn, {r.patient_id for r in final})
    work = select_work(final, ledger, patients, billing, as_of=as_of)
    # The plan of the changes alone (new lines need no pricing here): its corrections and
    # holds are exactly what the export would report.
    changes = build_plan(replace(work, originals=()), patients, billing, first_claim_number=1)
    pending = [
        ReviewItem(
            c.patient_id,
            c.record_kind,
            c.period_start,
            c.original_claim_id,
            c.reason,
            "the next export reports it"
            + (f" ({c.action.replace('_', ' ')})" if c.action != CorrectionAction.REVIEW else ""),
        )
        for c in changes.corrections
    ]
    return ExportPreview(
        changes.held, tuple(sorted(pending, key=lambda i: (i.patient_id, i.period_start)))
    )
