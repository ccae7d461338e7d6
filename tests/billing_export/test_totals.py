"""Month-end totals and line statuses from ledger lines (pure)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from rpmpipe.billing_export.holds import Held, HoldReason
from rpmpipe.billing_export.totals import (
    LedgerLine,
    held_summary,
    line_statuses,
    month_totals,
    reported_reviews,
)

AT = datetime(2026, 12, 1, 7, tzinfo=UTC)


def _line(
    pid: str,
    code: str,
    charge: str,
    dos: date,
    *,
    revision: int = 0,
    kind: str = "original",
    record: str = "device_supply",
    start: date = date(2026, 10, 22),
    npi: str = "1555123458",
    run: str = "run-1",
) -> LedgerLine:
    return LedgerLine(
        run_id=run,
        claim_id=f"{pid}-claim",
        patient_id=pid,
        program="RPM",
        record_kind=record,
        period_start=start,
        period_end=dos,
        revision=revision,
        line_kind=kind,
        code=code,
        units=1,
        charge=Decimal(charge),
        date_of_service=dos,
        exported_at=AT,
        rendering_npi=npi,
    )


def test_totals_count_each_records_latest_billed_revision_once() -> None:
    nov, oct_ = date(2026, 11, 20), date(2026, 10, 31)
    lines = [
        _line("p1", "99445", "47.00", nov),
        _line("p1", "99454", "47.00", nov, revision=1, kind="replacement", run="run-2"),
        _line("p2", "99454", "47.00", nov),
        _line("p2", "99445", "47.00", nov, revision=1, kind="correction", run="run-2"),
        _line("p3", "99457", "52.00", oct_, record="treatment_management", start=date(2026, 10, 1)),
    ]
    totals = month_totals(lines, {"p1": "MEDICARE", "p2": "MEDICARE", "p3": "ACME"})
    assert [(r.month, r.group, r.lines, r.charges) for r in totals.by_month] == [
        ("2026-11", "all", 2, Decimal("94.00")),
        ("2026-10", "all", 1, Decimal("52.00")),
    ]
    assert [(r.month, r.group, r.units) for r in totals.by_code] == [
        ("2026-11", "99454", 2),
        ("2026-10", "99457", 1),
    ]
    assert {(r.month, r.group) for r in totals.by_payer} == {
        ("2026-11", "MEDICARE"),
        ("2026-10", "ACME"),
    }
    assert {r.group for r in totals.by_provider} == {"1555123458"}
    assert {r.group for r in totals.by_program} == {"RPM"}


def test_line_statuses_say_replaced_billed_and_waiting_for_review() -> None:
    nov = date(2026, 11, 20)
    lines = [
        _line("p1", "99445", "47.00", nov),
        _line("p1", "99454", "47.00", nov, revision=1, kind="replacement", run="run-2"),
        _line("p2", "99454", "47.00", nov),
        _line("p2", "99445", "47.00", nov, revision=1, kind="correction", run="run-2"),
    ]
    status = {(s.line.patient_id, s.line.revision): s.status for s in line_statuses(lines)}
    assert status == {
        ("p1", 0): "replaced by a replacement claim",
        ("p1", 1): "billed (replacement claim)",
        ("p2", 0): "billed; a correction waits for review",
        ("p2", 1): "correction reported, waiting for review",
    }
    (review,) = reported_reviews(lines)
    assert (review.patient_id, review.claim_id) == ("p2", "p2-claim")
    assert "run-2" in review.where


def test_held_lines_are_grouped_by_reason_with_the_setting_that_fixes_them() -> None:
    npi = HoldReason(
        "ordering NPI 1234567893 has no name in billing.rendering_providers",
        "billing.rendering_providers",
        '1234567893 = "<LAST>, <FIRST>"',
    )
    icd = HoldReason("no ICD-10 code on file")
    held = [
        Held("p1", "device_supply", date(2026, 10, 1), npi, 1),
        Held("p1", "setup", date(2026, 10, 1), npi, 1),
        Held("p2", "device_supply", date(2026, 10, 3), icd, 1),
    ]
    first, second = held_summary(held)
    assert (first.reason, first.lines, first.patients) == (npi.text, 2, 1)
    assert first.setting == '[billing.rendering_providers]\n1234567893 = "<LAST>, <FIRST>"'
    assert (second.reason, second.setting) == (icd.text, "")


def test_a_void_claim_takes_the_record_out_of_the_totals() -> None:
    nov = date(2026, 11, 20)
    lines = [
        _line("p1", "99454", "47.00", nov),
        _line("p1", "-", "0.00", nov, revision=1, kind="void_claim", run="run-2"),
        _line("p2", "99454", "47.00", nov),
    ]
    totals = month_totals(lines, {})
    assert [(r.group, r.lines, r.charges) for r in totals.by_month] == [
        ("all", 1, Decimal("47.00"))
    ]
    status = {(s.line.patient_id, s.line.revision): s.status for s in line_statuses(lines)}
    assert status[("p1", 0)] == "voided by a void claim"
    assert status[("p1", 1)].startswith("void claim sent")
