"""A billable line is its final record plus one service line, and export words lines as the
record reasons do ("99457 + 2x 99458")."""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal

from rpmpipe.billing_export.claims import BillableLine, billable_lines
from rpmpipe.billing_export.plan import LedgerState, change_reason
from rpmpipe.records import (
    FinalRecord,
    LineKind,
    RecordKind,
    RecordStatus,
    ServiceLine,
    billed_text,
)

NOV_START, NOV_END = date(2026, 11, 1), date(2026, 11, 30)


def _month(minutes: str, *lines: ServiceLine) -> FinalRecord:
    return FinalRecord(
        patient_id="P-01",
        program="RPM",
        kind=RecordKind.TREATMENT_MANAGEMENT,
        period_start=NOV_START,
        period_end=NOV_END,
        status=RecordStatus.BILLABLE,
        reason="",
        rule_set="CY2026",
        interactive_minutes=Decimal(minutes),
        management_minutes=Decimal(minutes),
        lines=lines,
        rendering_npi="1234567893",
        episode_start=NOV_START,
    )


def test_a_billable_line_is_its_record_and_its_service_line() -> None:
    assert [f.name for f in dataclasses.fields(BillableLine)] == ["record", "line"]
    first, extra = ServiceLine("99457", 1, NOV_END), ServiceLine("99458", 2, NOV_END)
    record = _month("65.00", first, extra)
    lines = billable_lines(record)
    assert [(ln.record, ln.line) for ln in lines] == [(record, first), (record, extra)]
    # What pricing, the audit, the claims and the ledger read of a line is its record's.
    line = lines[1]
    assert (line.patient_id, line.program, line.record_kind, line.period_start) == record.key
    assert line.record_key == record.key
    assert (line.period_end, line.rule_set, line.rendering_npi) == (
        NOV_END,
        "CY2026",
        "1234567893",
    )
    assert (line.management_minutes, line.interactive_minutes) == (Decimal("65.00"),) * 2
    assert (line.episode_start, line.transmission_days) == (NOV_START, 0)
    assert (line.code, line.units, line.date_of_service) == ("99458", 2, NOV_END)


def test_a_record_that_is_not_billable_has_no_billable_lines() -> None:
    held = dataclasses.replace(_month("65.00", ServiceLine("99457", 1, NOV_END)), status="pending")
    assert billable_lines(held) == []


def test_a_correction_report_words_units_as_the_record_reasons_do() -> None:
    billed = (ServiceLine("99457", 1, NOV_END),)
    state = LedgerState(
        revision=1,
        claim_id="RP0000000001",
        line_kind=LineKind.ORIGINAL,
        lines=billed,
        period_end=NOV_END,
        management_minutes=Decimal("25.00"),
    )
    now = _month("65.00", *billed, ServiceLine("99458", 2, NOV_END))
    assert billed_text(now.lines) == "99457 + 2x 99458"  # the record reasons' wording
    assert change_reason(now, state) == (
        "25.00 → 65.00 minutes; billed 99457, now 99457 + 2x 99458"
    )
