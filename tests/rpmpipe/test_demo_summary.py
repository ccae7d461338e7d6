"""The demo's summary: per patient the last final period and month with status and reason,
no simulator profile names, minutes in one format, and the next commands to try."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path

from rpmpipe.app.demo import DemoSummary, FinalPeriod, PatientRow, final_period
from rpmpipe.app.demo_report import render_summary
from rpmpipe.records import (
    EngagementRecord,
    Program,
    RecordKind,
    RecordStatus,
    ServiceLine,
    billed_text,
)
from rpmpipe.simulators.fleet import PROFILES

AS_OF = date(2026, 12, 1)


def _summary(tmp: Path) -> DemoSummary:
    supply = FinalPeriod(
        date(2026, 10, 22), date(2026, 11, 20), 9, Decimal(0), "99445", "billable",
        "9 days with data, 16 needed for 99454 (billed 99445)",
    )  # fmt: skip
    month = FinalPeriod(
        date(2026, 11, 1), date(2026, 11, 30), 0, Decimal("52.00"), "99457 + 99458", "billable",
        "52 minutes with 2 interactive communications (billed 99457 + 99458)", Decimal("61.50"),
    )  # fmt: skip
    quiet = FinalPeriod(
        date(2026, 10, 1), date(2026, 10, 31), 0, Decimal(0), "-", "not_billable",
        "no management time this month",
    )  # fmt: skip
    return DemoSummary(
        out=tmp / "demo-output",
        as_of=AS_OF,
        patients=2,
        devices=3,
        messages=100,
        readings_stored=90,
        duplicates=3,
        quarantined={"bad_json": 2},
        activities=5,
        transmission_days=9,
        interactive_minutes=Decimal("52.00"),
        management_minutes=Decimal("61.50"),
        lines_by_code={"99445": 1, "99457": 1, "99458": 1},
        status_by_kind={"device_supply": {"billable": 1}},
        export_dir=tmp / "demo-output" / "exports" / "RUN",
        claims=1,
        exported_lines=3,
        total_charge=Decimal("140.00"),
        seconds=12.3,
        per_patient=(PatientRow("P-000001", supply, month), PatientRow("P-000002", None, quiet)),
    )


def test_each_patient_shows_the_last_final_period_and_month_with_status_and_reason(
    tmp_path: Path,
) -> None:
    text = render_summary(_summary(tmp_path))
    assert (
        "  P-000001     2026-10-22 to 2026-11-20     9  99445         billable      "
        "9 days with data, 16 needed for 99454 (billed 99445)"
    ) in text
    assert (
        "  P-000001     2026-11         61.5         52.0  99457 + 99458 billable      "
        "52 minutes with 2 interactive communications (billed 99457 + 99458)"
    ) in text
    assert "  P-000002     (no final period yet)" in text
    assert (
        "  P-000002     2026-10          0.0          0.0  -             not billable  no management"
        in text
    )
    # Months and periods are separate rows: no codes of two months merged into one cell.
    assert "99470 99457" not in text


def test_a_months_codes_are_worded_as_the_record_reasons_word_them(tmp_path: Path) -> None:
    day = date(2026, 11, 30)
    lines = (ServiceLine("99457", 1, day), ServiceLine("99458", 2, day))
    record = EngagementRecord(
        "P-000001", Program.RPM, RecordKind.TREATMENT_MANAGEMENT, date(2026, 11, 1), day,
        RecordStatus.BILLABLE, f"61 minutes (billed {billed_text(lines)})", "cms-2026",
        interactive_minutes=Decimal("61.00"), interactive_communications=2, lines=lines,
        management_minutes=Decimal("61.00"),
    )  # fmt: skip
    month = final_period(record)
    assert month is not None and month.codes == "99457 + 2x 99458"
    assert final_period(replace(record, status=RecordStatus.NOT_BILLABLE, lines=())) == replace(
        month, codes="-", status="not_billable"
    )
    text = render_summary(
        replace(_summary(tmp_path), per_patient=(PatientRow("P-1", None, month),))
    )
    header = next(line for line in text.splitlines() if "management  interactive" in line)
    row = next(line for line in text.splitlines() if line.startswith("  P-1          2026-11"))
    assert "  99457 + 2x 99458 billable      61 minutes (billed 99457 + 2x 99458)" in row
    # The cell is wider than 13 characters: the column grows with it, so the columns after
    # it keep their place under their headers.
    codes = header.index("codes")
    assert header.index("status") - codes == row.index("billable") - row.index("99457")
    assert header.index("reason") - codes == row.index("61 minutes") - row.index("99457")


def test_no_profile_names_and_minutes_in_one_format(tmp_path: Path) -> None:
    text = render_summary(_summary(tmp_path))
    for profile in PROFILES:
        assert profile not in text
    assert "interactive minutes           52.0" in text
    assert "management minutes            61.5" in text
    assert "52.00" not in text and "61.50" not in text


def test_the_summary_ends_with_the_next_commands_to_try(tmp_path: Path) -> None:
    text = render_summary(_summary(tmp_path))
    tail = text[text.index("next, try:") :]
    data = tmp_path / "demo-output" / "data"
    assert f"rpmpipe --data-dir {data} metrics --as-of 2026-12-01 --patient P-000001" in tail
    assert f"rpmpipe --data-dir {data} metrics --as-of 2026-12-01\n" in tail
    assert f"ls {tmp_path / 'demo-output' / 'exports' / 'RUN'}" in tail
    assert text.rstrip().endswith(
        "the charge CSV, the 837P and the manifest the billing team picks up"
    )
