"""The run's evidence files are built by columns (the days with data never become Python
objects), and they are exactly what the line-by-line construction wrote: the same Parquet
table and the same CSV bytes, with formula-like ids, quoted device lists, repeated dates,
dates without readings and lines without facts."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from claim_samples import NOV_START, sample_claims, sample_settings
from evidence_reference import build_line_evidence, days_of, write_evidence_csv
from test_readings_by_day import reading, write

from rpmpipe.billing_export.evidence import (
    ActivityEvidence,
    AssignmentSpan,
    EnrollmentSpan,
    RecordFacts,
    RecordKey,
    evidence_table,
    readings_by_day,
)
from rpmpipe.billing_export.evidence_days import record_days
from rpmpipe.billing_export.evidence_files import run_evidence
from rpmpipe.billing_export.evidence_files import write_evidence_csv as write_columnar


def nov(d: int, h: int, m: int = 0) -> datetime:
    return datetime(2026, 11, d, h, m, tzinfo=UTC)


SUPPLY_1: RecordKey = ("P-0001", "RPM", "device_supply", NOV_START)
CARE_1: RecordKey = ("P-0001", "RPM", "treatment_management", NOV_START)
SUPPLY_2: RecordKey = ("P-0002", "RPM", "device_supply", NOV_START)
SETUP_2: RecordKey = ("P-0002", "RPM", "setup", NOV_START)
DATES = {
    # a repeated date, a date without readings, a formula-like id, two devices on one date
    SUPPLY_1: ["2026-11-03", "2026-11-05", "2026-11-04", "2026-11-03"],
    CARE_1: [],
    SUPPLY_2: ["2026-11-10", "2026-11-11"],
}
ZONES = {"P-0001": "America/Chicago", "P-0002": "Asia/Tokyo"}
SPANS = [
    AssignmentSpan("BP-1", "P-0001", date(2026, 11, 1), None),
    AssignmentSpan('BP,"2"', "P-0001", date(2026, 11, 1), None),
    AssignmentSpan("BP-3", "P-0002", date(2026, 11, 1), None),
]
CALL = ActivityEvidence(
    "A-1",
    nov(5, 16),
    Decimal("20.00"),
    "phone_call",
    "RN-8",
    True,
    performer="clinical_staff",
    goals_reviewed=("G-BP", "G-DIET"),
    note_ref="=HYPERLINK(1)",
)
REVIEW = ActivityEvidence("A-2", nov(12, 16), Decimal("25.50"), "data_review", "RN, 9", False)
SURVEY = ActivityEvidence(
    "A-3", nov(6, 1), Decimal("0.00"), "questionnaire", "", False, pro_instrument="PHQ-9",
    pro_score=Decimal("7"),
)  # fmt: skip
ENROLLED = EnrollmentSpan(date(2026, 1, 1), None, date(2026, 1, 1), "1234567893")


def _facts(days: dict[RecordKey, tuple]) -> dict[RecordKey, RecordFacts]:  # type: ignore[type-arg]
    return {
        SUPPLY_1: RecordFacts(days.get(SUPPLY_1, ()), (), ENROLLED),
        CARE_1: RecordFacts(
            days.get(CARE_1, ()), (CALL, REVIEW), ENROLLED, period_activities=(CALL, SURVEY)
        ),
        SUPPLY_2: RecordFacts(days.get(SUPPLY_2, ()), (), None),
        # SETUP_2 has no facts at all: no days, no activities, no enrollment
    }


def _write_readings(root: Path) -> None:
    write(
        root,
        [
            reading("R2", "BP-1", nov(3, 15)),
            reading("R1", "BP-1", nov(3, 14)),
            reading("=1+1", 'BP,"2"', nov(3, 16)),
            reading("-5", "BP-1", nov(4, 15)),
            reading("R9", "BP-3", nov(10, 1)),
        ],
    )


def test_the_columnar_evidence_is_the_line_by_line_evidence(tmp_path: Path) -> None:
    _write_readings(tmp_path)
    claims = sample_claims(sample_settings())
    keys = list(DATES)
    days = record_days(keys, [DATES[k] for k in keys], tmp_path, SPANS, ZONES)
    new = run_evidence(claims, "run-1", _facts({}), days)

    wanted: dict[str, set[date]] = {}
    for key, dates in DATES.items():
        wanted.setdefault(key[0], set()).update(date.fromisoformat(d) for d in dates)
    readings = readings_by_day(tmp_path, wanted, SPANS, ZONES)
    reference_days = {
        k: days_of([date.fromisoformat(d) for d in DATES[k]], k[0], readings) for k in keys
    }
    lines = build_line_evidence(claims, "run-1", _facts(reference_days))
    assert [len(e.days) for e in lines if e.code == "99454"] == [4]
    assert new.table.equals(evidence_table(lines))

    columnar = io.BytesIO()
    rows = write_columnar(columnar, new)
    expected = io.StringIO()
    write_evidence_csv(expected, lines)
    assert columnar.getvalue().decode("utf-8") == expected.getvalue()
    assert rows == len(expected.getvalue().splitlines()) - 1
    for lines_at_once in (1, 2, 3):  # the rows of a few lines at a time are the same bytes
        part = io.BytesIO()
        assert write_columnar(part, new, lines_at_once) == rows
        assert part.getvalue() == columnar.getvalue()
    text = expected.getvalue()
    # The formula-like id neutralised, the device list quoted, the plain number kept.
    assert ',"3 readings from BP,""2"", BP-1",\'=1+1;R1;R2\n' in text
    assert ",1 readings from BP-1,-5\n" in text

    # What the audit sees: dates named, and dates with readings behind them.
    assert days.counts(SUPPLY_1) == (4, 3) and days.counts(SUPPLY_2) == (2, 1)
    assert days.counts(CARE_1) == (0, 0) and days.counts(SETUP_2) == (0, 0)


def test_days_read_in_two_parts_are_the_days_read_at_once(tmp_path: Path) -> None:
    _write_readings(tmp_path)
    claims = sample_claims(sample_settings())
    keys = list(DATES)
    whole = record_days(keys, [DATES[k] for k in keys], tmp_path, SPANS, ZONES)
    first = record_days(keys[:1], [DATES[keys[0]]], tmp_path, SPANS, ZONES)
    rest = record_days(keys[1:], [DATES[k] for k in keys[1:]], tmp_path, SPANS, ZONES)
    merged = first.merged(rest)
    assert run_evidence(claims, "r", _facts({}), merged).table.equals(
        run_evidence(claims, "r", _facts({}), whole).table
    )
    assert [merged.counts(k) for k in keys] == [whole.counts(k) for k in keys]
