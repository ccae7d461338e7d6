"""The shared record types: the status/kind/program vocabulary and the service line's text."""

from __future__ import annotations

import csv
import io
import re
from datetime import date
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rpmpipe.records import (
    PROGRAMS,
    RECORD_KINDS,
    STATUSES,
    EngagementRecord,
    Program,
    RecordKind,
    RecordStatus,
    ServiceLine,
    billed_text,
    line_infix,
)

README = Path(__file__).resolve().parents[2] / "README.md"


def _contract_choices(name: str) -> list[str]:
    """The values the README's engagement-record contract lists for ``name``."""
    text = README.read_text(encoding="utf-8")
    contract = text.split("**Engagement records**", 1)[1].split("\n\n", 1)[0]
    found = re.search(rf"\b{name} \(([^)]*)\)", contract.replace("\n", " "))
    assert found is not None, f"README contract lost the values of {name}"
    return [v.strip() for v in re.split(r"[|,]", found.group(1))]


def test_enum_values_are_the_documented_json_and_csv_values() -> None:
    assert [s.value for s in RecordStatus] == _contract_choices("status")
    assert [k.value for k in RecordKind] == _contract_choices("kind")
    assert [p.value for p in Program] == _contract_choices("program")
    assert (STATUSES, RECORD_KINDS, PROGRAMS) == (
        tuple(RecordStatus),
        tuple(RecordKind),
        tuple(Program),
    )


def test_enum_members_write_as_their_plain_values_in_json_and_csv() -> None:
    record = EngagementRecord(
        patient_id="p1",
        program=Program.RPM,
        kind=RecordKind.DEVICE_SUPPLY,
        period_start=date(2026, 11, 1),
        period_end=date(2026, 11, 30),
        status=RecordStatus.BILLABLE,
        reason="16 days with data",
        rule_set="CY2026",
    )
    assert orjson.dumps([record.status, record.kind, record.program]) == (
        b'["billable","device_supply","RPM"]'
    )
    out = io.StringIO()
    csv.writer(out).writerow([record.status, record.kind, record.program])
    assert out.getvalue() == "billable,device_supply,RPM\r\n"
    assert f"{record.status}|{record.kind:<15}|" == "billable|device_supply  |"
    # Read back from the registry as plain text, a status still equals (and hashes as) its member.
    assert {RecordStatus.PENDING: 1}["pending"] == 1
    assert "not_billable" == RecordStatus.NOT_BILLABLE


def test_a_record_refuses_an_unknown_status_or_kind() -> None:
    base = dict(
        patient_id="p1",
        program="RPM",
        period_start=date(2026, 11, 1),
        period_end=date(2026, 11, 30),
        reason="",
        rule_set="CY2026",
    )
    with pytest.raises(ValueError, match="unknown status"):
        EngagementRecord(kind="setup", status="billed", **base)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown record kind"):
        EngagementRecord(kind="supply", status="pending", **base)  # type: ignore[arg-type]


_codes = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWYZ0123456789", min_size=1, max_size=7)
_lines = st.builds(
    ServiceLine,
    _codes,
    st.integers(min_value=0, max_value=10_000),
    st.dates(min_value=date(2000, 1, 1), max_value=date(9999, 12, 31)),
)


@given(_lines)
def test_service_line_text_and_json_read_back_as_the_same_line(line: ServiceLine) -> None:
    assert ServiceLine.parse(str(line)) == line
    assert ServiceLine.from_json(orjson.loads(orjson.dumps(line.to_json()))) == line


def test_service_line_text_form_is_code_x_units_at_iso_date() -> None:
    line = ServiceLine("99458", 2, date(2026, 11, 30))
    assert str(line) == "99458x2@2026-11-30"
    assert line.to_json() == {"code": "99458", "units": 2, "date_of_service": "2026-11-30"}
    assert sorted([ServiceLine("99458", 1, date(2026, 11, 2)), line]) == [
        ServiceLine("99458", 1, date(2026, 11, 2)),
        line,
    ]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "99454",
        "99454x1",
        "99454@2026-11-30",
        "x1@2026-11-30",
        "99454x@2026-11-30",
        "99454x-1@2026-11-30",
        "99454x1@2026-13-01",
        "99 54x1@2026-11-30",
        "9945;x1@2026-11-30",
    ],
)
def test_service_line_parse_refuses_other_text(text: str) -> None:
    with pytest.raises(ValueError):
        ServiceLine.parse(text)


def test_lines_are_worded_for_a_biller_as_code_or_units_x_code() -> None:
    day = date(2026, 11, 30)
    assert ServiceLine("99490", 1, day).billed == "99490"
    assert ServiceLine("99439", 2, day).billed == "2x 99439"
    assert billed_text([ServiceLine("99490", 1, day), ServiceLine("99439", 2, day)]) == (
        "99490 + 2x 99439"
    )
    assert billed_text([]) == ""


@given(st.lists(_lines, max_size=20))
def test_the_vectorised_text_of_lines_is_their_text_form(lines: list[ServiceLine]) -> None:
    # metrics/periods.py writes the CSV lines of a whole table at once, joining a code column
    # and a date column with line_infix: the same text as str() of each line.
    for units in {line.units for line in lines}:
        same = [line for line in lines if line.units == units]
        codes = pa.array([line.code for line in same], pa.string())
        days = pa.array([line.date_of_service.isoformat() for line in same], pa.string())
        joined = pc.binary_join_element_wise(codes, days, line_infix(units))
        assert joined.to_pylist() == [str(line) for line in same]
