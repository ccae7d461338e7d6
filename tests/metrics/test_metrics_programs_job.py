"""Every program through the nightly job and the export, on a real registry (SQLite and
PostgreSQL) and real Parquet: records and CSV agree, charge lines carry the program, and the
837P of every program's lines passes pyx12."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from billing_identity import OTHER_ORGANISATION_NPI, with_identity
from sqlalchemy import Engine, update
from x12_validation import assert_valid_837

from rpmpipe.billing_export.export import run_export
from rpmpipe.metrics import job
from rpmpipe.metrics.report import write_csv
from rpmpipe.records import EngagementRecord
from rpmpipe.registry.db import open_registry
from rpmpipe.registry.imports import import_rows
from rpmpipe.registry.models import CareActivity
from rpmpipe.settings import Settings, load_settings

AS_OF = date(2026, 12, 1)
CLOCK = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
NPI = "1234567893"
PATIENTS = {
    "P-CCM": "I10;E11.9;N18.30",
    "P-PCM": "I50.9",
    "P-BHI": "F32.9",
    "P-APCM": "I10;E11.9",
    "P-RTM": "M54.50",
    "P-BOTH": "I10;E78.5",
}


def patient(pid: str, icd10: str) -> dict[str, str]:
    return {
        "patient_id": pid,
        "mrn": "M",
        "first_name": "Ann",
        "last_name": "Baker",
        "birth_date": "1950-01-01",
        "sex": "F",
        "address1": "1 Main St",
        "city": "Springfield",
        "state": "IL",
        "zip": "62701",
        "timezone": "America/Chicago",
        "payer_id": "MEDICARE",
        "payer_name": "MEDICARE PART B",
        "member_id": "1EG4TE5MK73",
        "icd10_codes": icd10,
        "qmb": "true" if pid == "P-APCM" else "",
    }


def enrollment(pid: str, program: str, start: str = "2026-10-01") -> dict[str, str]:
    return {
        "patient_id": pid,
        "program": program,
        "start_date": start,
        "end_date": "",
        "consent_date": start,
        "ordering_npi": NPI,
    }


def activity(
    aid: str,
    pid: str,
    program: str,
    at: str,
    minutes: int,
    performer: str = "clinical_staff",
    interactive: bool = False,
    kind: str = "phone_call",
) -> dict[str, str]:
    return {
        "activity_id": aid,
        "patient_id": pid,
        "staff_id": "S1",
        "started_at": at,
        "minutes": str(minutes),
        "kind": kind,
        "interactive": "true" if interactive else "false",
        "program": program,
        "performer": performer,
    }


def care_plan(pid: str, program: str) -> dict[str, str]:
    return {
        "patient_id": pid,
        "program": program,
        "established_on": "2026-10-05",
        "revised_on": "",
        "shared_with_patient_on": "2026-10-06",
    }


def seed(engine: Engine, readings_dir: Path) -> None:
    import_rows(engine, "patients", [patient(p, c) for p, c in PATIENTS.items()], "test")
    import_rows(engine, "devices", [{"device_id": "BP-9", "kind": "bp_cuff", "model": "m"}], "t")
    assignment = {"device_id": "BP-9", "patient_id": "P-BOTH", "start_date": "2026-10-01"}
    import_rows(engine, "assignments", [{**assignment, "end_date": ""}], "test")
    import_rows(
        engine,
        "enrollments",
        [
            enrollment("P-CCM", "CCM"),
            enrollment("P-PCM", "PCM"),
            enrollment("P-BHI", "BHI"),
            enrollment("P-APCM", "APCM"),
            enrollment("P-RTM", "RTM"),
            enrollment("P-BOTH", "RPM"),
            enrollment("P-BOTH", "CCM"),
        ],
        "test",
    )
    import_rows(
        engine,
        "care-plans",
        [
            care_plan("P-CCM", "CCM"),
            care_plan("P-PCM", "PCM"),
            care_plan("P-BOTH", "CCM"),
            # APCM is billed only with a care plan on file (the documentation audit).
            care_plan("P-APCM", "APCM"),
        ],
        "test",
    )
    nov = "2026-11-{:02d}T{}:00-06:00"
    import_rows(
        engine,
        "activities",
        [
            activity("C1", "P-CCM", "CCM", nov.format(3, "10:00"), 25),
            activity("C2", "P-CCM", "CCM", nov.format(10, "10:00"), 20),
            activity("PC1", "P-PCM", "PCM", nov.format(4, "09:00"), 35, "physician"),
            activity("B1", "P-BHI", "BHI", nov.format(5, "09:00"), 22),
            activity("T1", "P-RTM", "RTM", nov.format(6, "09:00"), 25, interactive=True),
            # P-BOTH: an RPM call 10:00-10:25 and a CCM call 10:10-10:40 overlap by 15
            # minutes; they count once, for the earlier call: RPM 25, CCM 15.
            activity("R1", "P-BOTH", "RPM", nov.format(7, "10:00"), 25, interactive=True),
            activity("C3", "P-BOTH", "CCM", nov.format(7, "10:10"), 30),
        ],
        "test",
        now=CLOCK,
    )
    start = datetime(2026, 11, 1, 18, 0, tzinfo=UTC)
    for i in range(20):
        when = start + timedelta(days=i)
        part = readings_dir / f"date={when.date().isoformat()}"
        part.mkdir(parents=True, exist_ok=True)
        table = pa.table(
            {
                "device_id": ["BP-9"],
                "type": ["blood_pressure"],
                "measured_at": pa.array([when], pa.timestamp("us", tz="UTC")),
                "manual_entry": [False],
                "clock_suspect": [False],
            }
        )
        pq.write_table(table, part / "part-0.parquet")


@pytest.fixture
def world(tmp_path: Path, database_url: str) -> tuple[Settings, Engine]:
    settings = load_settings(
        None, env={}, overrides={"data_dir": str(tmp_path / "data"), "database_url": database_url}
    )
    engine = open_registry(database_url)
    seed(engine, settings.readings_dir)
    return settings, engine


def billed(
    records: list[EngagementRecord],
    pid: str,
    program: str,
    start: date,
    kinds: tuple[str, ...] = ("treatment_management", "data_interpretation"),
) -> list[str]:
    found = [
        r
        for r in records
        if (r.patient_id, r.program, r.period_start) == (pid, program, start) and r.kind in kinds
    ]
    assert len(found) == 1, found
    return [f"{x.code}x{x.units}" for x in found[0].lines]


NOV = date(2026, 11, 1)


def test_every_program_bills_its_month_from_its_own_time(world: tuple[Settings, Engine]) -> None:
    settings, engine = world
    records = job.compute(settings.metrics, engine, AS_OF)
    assert billed(records, "P-CCM", "CCM", NOV) == ["99490x1", "99439x1"]
    assert billed(records, "P-PCM", "PCM", NOV) == ["99424x1"]
    assert billed(records, "P-BHI", "BHI", NOV) == ["99484x1"]
    assert billed(records, "P-RTM", "RTM", NOV) == ["98980x1"]
    assert billed(records, "P-APCM", "APCM", NOV) == ["G0558x1"]
    assert billed(records, "P-APCM", "APCM", date(2026, 10, 1)) == ["G0558x1"]
    # The shared 15 minutes count for RPM only: CCM is left with 15, under 20.
    assert billed(records, "P-BOTH", "RPM", NOV) == ["99457x1"]
    assert billed(records, "P-BOTH", "CCM", NOV) == []
    ccm = next(r for r in records if (r.patient_id, r.program) == ("P-BOTH", "CCM"))
    assert ccm.management_minutes == 15 and ccm.status == "not_billable"
    december = [r for r in records if r.period_start == date(2026, 12, 1)]
    assert december and all(r.status == "pending" and not r.lines for r in december)


def test_record_and_csv_renderings_agree(world: tuple[Settings, Engine]) -> None:
    settings, engine = world
    text = io.StringIO()
    write_csv(job.compute(settings.metrics, engine, AS_OF), text)
    pieces = job.compute_csv(settings.metrics, engine, AS_OF)
    assert b"".join(bytes(p) for p in pieces).decode() == text.getvalue().split("\n", 1)[1]


def test_rpm_and_rtm_overlapping_hold_the_later_and_both_renderings_agree(
    world: tuple[Settings, Engine],
) -> None:
    settings, engine = world
    import_rows(engine, "enrollments", [enrollment("P-BOTH", "RTM", "2026-10-15")], "test")
    nov7 = "2026-11-08T10:00:00-06:00"
    t2 = activity("T2", "P-BOTH", "RTM", nov7, 25, interactive=True)
    import_rows(engine, "activities", [t2], "t", now=CLOCK)
    records = job.compute(settings.metrics, engine, AS_OF)
    rtm = next(
        r
        for r in records
        if (r.patient_id, r.program) == ("P-BOTH", "RTM") and r.period_start == NOV
    )
    assert rtm.status == "not_billable" and not rtm.lines
    assert rtm.reason.startswith("held: RPM and RTM are never billed for one patient")
    # RTM's own supply and setup from the same device days (20 in November) are held too.
    by_kind = {
        r.kind: r
        for r in records
        if (r.patient_id, r.program) == ("P-BOTH", "RTM") and r.period_start == NOV
    }
    assert set(by_kind) == {"setup", "device_supply", "treatment_management"}
    for r in by_kind.values():
        assert r.status == "not_billable" and not r.lines
        assert r.reason.startswith("held: RPM and RTM are never billed for one patient")
    assert "(billed 98977)" in by_kind["device_supply"].reason
    rpm = [r for r in records if (r.patient_id, r.program) == ("P-BOTH", "RPM") and r.lines]
    assert {x.code for r in rpm for x in r.lines} == {"99453", "99454", "99457"}
    text = io.StringIO()
    write_csv(records, text)
    pieces = job.compute_csv(settings.metrics, engine, AS_OF)
    assert b"".join(bytes(p) for p in pieces).decode() == text.getvalue().split("\n", 1)[1]


def test_99091_from_physician_data_review_is_held_beside_99457_unless_the_payer_allows(
    world: tuple[Settings, Engine],
) -> None:
    settings, engine = world
    at = "2026-11-09T08:00:00-06:00"
    review = activity("I1", "P-BOTH", "RPM", at, 35, "physician", kind="data_review")
    import_rows(engine, "activities", [review], "test", now=CLOCK)
    records = job.compute(settings.metrics, engine, AS_OF)
    interp = [r for r in records if r.kind == "data_interpretation"]
    # The 30-day period of the supply periods: from the first day with data (2026-11-01),
    # not from the enrollment start (2026-10-01).
    supply = [r for r in records if r.kind == "device_supply" and r.patient_id == "P-BOTH"]
    assert [(r.period_start, r.period_end) for r in supply][0] == (NOV, date(2026, 11, 30))
    assert len(interp) == 1
    assert (interp[0].period_start, interp[0].period_end) == (NOV, date(2026, 11, 30))
    assert (
        interp[0].status == "not_billable" and "99091 is not billed with 99457" in interp[0].reason
    )
    # Review time is not 99457 time.
    assert billed(records, "P-BOTH", "RPM", NOV, ("treatment_management",)) == ["99457x1"]
    allowing = load_settings(
        None,
        env={},
        overrides={
            "data_dir": str(settings.data_dir),
            "database_url": settings.database_url,
            "billing.payers": {
                "MEDICARE": {
                    "name": "MEDICARE PART B",
                    "claim_filing_indicator": "MB",
                    "bill_99091_with_99457": True,
                }
            },
        },
    )
    interp = [
        r for r in job.compute(allowing.metrics, engine, AS_OF) if r.kind == "data_interpretation"
    ]
    assert [x.code for x in interp[0].lines] == ["99091"]
    for each in (settings, allowing):  # both renderings, with a 99091 line held or billed
        text = io.StringIO()
        write_csv(job.compute(each.metrics, engine, AS_OF), text)
        pieces = job.compute_csv(each.metrics, engine, AS_OF)
        assert b"".join(bytes(p) for p in pieces).decode() == text.getvalue().split("\n", 1)[1]


def test_export_carries_every_program_and_its_837p_passes_pyx12(
    world: tuple[Settings, Engine], tmp_path: Path
) -> None:
    plain, engine = world
    # The enrollments are ordered by a practitioner (NPI), the clinic bills under its own.
    settings = with_identity(plain, provider_npi=OTHER_ORGANISATION_NPI, rendering_npi=NPI)
    job.compute_and_persist(settings.metrics, engine, AS_OF, CLOCK)
    result = run_export(settings.export, engine, AS_OF, tmp_path / "out", now=CLOCK)
    assert result.run_dir is not None
    with (result.run_dir / "charges.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    programs = {r["program"] for r in rows}
    assert programs == {"RPM", "CCM", "PCM", "BHI", "RTM", "APCM"}
    codes = {r["cpt"] for r in rows}
    assert {"99490", "99439", "99424", "99484", "98980", "G0558", "99457", "99454"} <= codes
    assert_valid_837(result.run_dir / "claims.837")


def test_a_voided_entry_counts_for_no_program(world: tuple[Settings, Engine]) -> None:
    settings, engine = world
    with engine.begin() as conn:
        conn.execute(
            update(CareActivity)
            .where(CareActivity.activity_id.in_(["C2", "R1"]))
            .values(voided_reason="entered twice", voided_by="S9", voided_at=CLOCK)
        )
    records = job.compute(settings.metrics, engine, AS_OF)
    assert billed(records, "P-CCM", "CCM", NOV) == ["99490x1"]
    # With the RPM call voided, the CCM call keeps all its 30 minutes.
    assert billed(records, "P-BOTH", "CCM", NOV) == ["99490x1"]
    ccm = next(r for r in records if (r.patient_id, r.program) == ("P-BOTH", "CCM"))
    assert ccm.management_minutes == 30
    rpm = next(
        r
        for r in records
        if (r.patient_id, r.program, r.kind) == ("P-BOTH", "RPM", "treatment_management")
    )
    assert ("R1", "voided: entered twice") in rpm.activities_not_counted
