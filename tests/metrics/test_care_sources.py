"""Loading the registry's facts and care activities (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import Engine, insert

from rpmpipe.metrics.care_sources import load_all_activities, load_care_facts
from rpmpipe.metrics.job import load_registry_snapshot
from rpmpipe.registry.db import open_registry
from rpmpipe.registry.models import CareActivity, Device, DeviceAssignment, Enrollment, Patient


def _row(i: int, minutes: str) -> dict[str, object]:
    return {
        "activity_id": f"A{i:05d}",
        "patient_id": f"P{i % 3}",
        "staff_id": "S1",
        "started_at": datetime(2026, 10, 1 + i % 28, 15, i % 60, tzinfo=UTC),
        "minutes": Decimal(minutes),
        "kind": "phone_call",
        "interactive": i % 2 == 0,
        "program": "CCM" if i % 2 else "RPM",
        "performer": "clinical_staff",
        "voided_reason": "entered twice" if i == 7 else None,
    }


def test_activities_read_back_with_their_values_and_repeats_held_once(database_url: str) -> None:
    """Every row comes back as it was stored, over several fetches; a patient, staff member,
    kind, program, performer or number of minutes that repeats is one object for all the
    activities that share it (a fleet's activities repeat them hundreds of thousands of
    times)."""
    engine = open_registry(database_url)
    rows = [_row(i, "7.5" if i % 4 else "20") for i in range(25_000)]
    with engine.begin() as conn:
        conn.execute(insert(CareActivity), rows)
    loaded = sorted(load_all_activities(engine), key=lambda a: a.activity_id)
    engine.dispose()
    assert len(loaded) == len(rows)
    for row, a in zip(rows, loaded, strict=True):
        assert (a.activity_id, a.patient_id, a.staff_id, a.started_at, a.minutes) == (
            row["activity_id"],
            row["patient_id"],
            row["staff_id"],
            row["started_at"],
            row["minutes"],
        )
        assert (a.kind, a.interactive, a.program, a.performer, a.voided_reason) == (
            row["kind"],
            row["interactive"],
            row["program"],
            row["performer"],
            row["voided_reason"],
        )
        assert a.started_at.tzinfo is not None
    assert [str(a.minutes) for a in loaded[:5]] == ["20.00", "7.50", "7.50", "7.50", "20.00"]
    by_patient = {a.patient_id: a.patient_id for a in loaded}
    assert all(a.patient_id is by_patient[a.patient_id] for a in loaded)
    assert len({id(a.staff_id) for a in loaded}) == 1
    assert len({id(a.program) for a in loaded}) == 2
    assert len({id(a.minutes) for a in loaded}) == 2


def _seed_patients(database_url: str) -> Engine:
    """Six patients in two zones, each enrolled once and lent a cuff."""
    engine = open_registry(database_url)
    base = {
        "mrn": "M",
        "first_name": "Test",
        "last_name": "Patient",
        "birth_date": date(1950, 1, 1),
        "sex": "F",
        "address1": "1 Main St",
        "city": "Springfield",
        "state": "IL",
        "zip": "62701",
        "payer_name": "Medicare",
        "member_id": "1EG4TE5MK73",
    }
    patients = [
        {
            **base,
            "patient_id": f"P{i}",
            "timezone": " America/Chicago " if i % 2 else "America/Denver",
            "icd10_codes": "I10;E11.9" if i % 2 else "I10",
            "payer_id": "MCR",
        }
        for i in range(6)
    ]
    enrollments = [
        {
            "patient_id": f"P{i}",
            "program": "CCM" if i % 3 == 0 else "RPM",
            "start_date": date(2026, 8, 1),
            "end_date": None,
            "consent_date": date(2026, 8, 1 + i % 2),
            "ordering_npi": "1234567893",
        }
        for i in range(6)
    ]
    with engine.begin() as conn:
        conn.execute(insert(Patient), patients)
        conn.execute(insert(Enrollment), enrollments)
        conn.execute(
            insert(Device),
            [{"device_id": f"BP-{i}", "kind": "bp_cuff", "model": "x"} for i in range(6)],
        )
        conn.execute(
            insert(DeviceAssignment),
            [
                {"device_id": f"BP-{i}", "patient_id": f"P{i}", "start_date": date(2026, 8, 1)}
                for i in range(6)
            ],
        )
    return engine


def test_care_facts_hold_each_repeated_zone_code_and_date_once(database_url: str) -> None:
    """Patients sharing a zone, diagnoses, payer and enrollment dates share the objects too;
    each patient's own values are still theirs."""
    engine = _seed_patients(database_url)
    facts = load_care_facts(engine)
    engine.dispose()
    assert facts.zones == {
        f"P{i}": "America/Chicago" if i % 2 else "America/Denver" for i in range(6)
    }
    assert facts.icd10["P1"] == ("I10", "E11.9") and facts.icd10["P2"] == ("I10",)
    assert facts.icd10["P1"] is facts.icd10["P3"]
    assert facts.icd10["P1"][0] is facts.icd10["P2"][0]
    assert facts.zones["P1"] is facts.zones["P3"]
    assert facts.payer_of["P0"] is facts.payer_of["P5"]
    by_patient = {e.patient_id: e for e in facts.enrollments}
    assert [by_patient[f"P{i}"].consent_date for i in range(6)] == [
        date(2026, 8, 1 + i % 2) for i in range(6)
    ]
    assert by_patient["P0"].start_date is by_patient["P5"].start_date
    assert by_patient["P0"].consent_date is by_patient["P2"].consent_date
    assert by_patient["P1"].ordering_npi is by_patient["P4"].ordering_npi
    assert by_patient["P1"].patient_id is next(p for p in facts.zones if p == "P1")


def test_registry_snapshot_holds_each_repeated_zone_id_and_program_once(database_url: str) -> None:
    """The metrics snapshot: a zone, a program or a practitioner shared by patients is one
    object, and a patient's id is the same object in the zones, assignments and enrollments."""
    engine = _seed_patients(database_url)
    snapshot = load_registry_snapshot(engine)
    engine.dispose()
    zones = snapshot.patient_zones
    assert zones == {f"P{i}": "America/Chicago" if i % 2 else "America/Denver" for i in range(6)}
    assert zones["P1"] is zones["P3"] and zones["P0"] is zones["P2"]
    ids = {p: p for p in zones}
    assert all(a.patient_id is ids[a.patient_id] for a in snapshot.assignments)
    assert all(e.patient_id is ids[e.patient_id] for e in snapshot.enrollments)
    rpm = [e for e in snapshot.enrollments if e.program == "RPM"]
    assert len(rpm) == 4 and all(e.program is rpm[0].program for e in rpm)
    assert all(e.ordering_npi is rpm[0].ordering_npi for e in snapshot.enrollments)
    assert [
        (a.device_id, a.patient_id, a.start_date, a.end_date) for a in snapshot.assignments
    ] == [(f"BP-{i}", f"P{i}", date(2026, 8, 1), None) for i in range(6)]


def test_one_registry_read_gives_the_snapshot_and_the_care_facts_with_shared_ids(
    database_url: str,
) -> None:
    """The metrics job reads the patients and enrollments once for both its snapshot and the
    care programs' facts: the facts are those of their own read (QMB on file or not, a blank
    zone, an end date), and a patient's id is one object in both."""
    from sqlalchemy import update

    from rpmpipe.metrics.job import load_registry

    engine = _seed_patients(database_url)
    with engine.begin() as conn:
        conn.execute(update(Patient).where(Patient.patient_id == "P1").values(qmb=True))
        conn.execute(update(Patient).where(Patient.patient_id == "P2").values(qmb=False))
        conn.execute(update(Patient).where(Patient.patient_id == "P3").values(timezone=" "))
        conn.execute(
            update(Enrollment)
            .where(Enrollment.patient_id == "P4")
            .values(end_date=date(2026, 9, 30))
        )
    snapshot, facts = load_registry(engine)
    alone = load_care_facts(engine)
    engine.dispose()
    assert facts == alone
    assert facts.qmb["P1"] is True and facts.qmb["P2"] is False and facts.qmb["P0"] is None
    assert "P3" not in facts.zones and "P3" not in snapshot.patient_zones
    ids = {p: p for p in snapshot.patient_zones}
    assert all(p is ids[p] for p in facts.zones)
    enrolled = {e.patient_id: e.patient_id for e in snapshot.enrollments}
    assert all(e.patient_id is enrolled[e.patient_id] for e in facts.enrollments)
    by_patient = {e.patient_id: e for e in snapshot.enrollments}
    assert by_patient["P4"].end_date == date(2026, 9, 30)
    assert [
        (e.patient_id, e.program, e.start_date, e.end_date, e.consent_date)
        for e in facts.enrollments
    ] == [
        (e.patient_id, e.program, e.start_date, e.end_date, e.consent_date)
        for e in snapshot.enrollments
    ]
