"""Registry additions for every program: enrollments, care plans, QMB status, activities'
program and performer (CSV and MQTT), and the migration that adds them."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime
from pathlib import Path

import orjson
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, select, text

from rpmpipe.errors import RegistryImportError
from rpmpipe.ingest.activities import activity_items, store_activities
from rpmpipe.registry.db import (
    MIGRATIONS,
    SCHEMA_HEAD,
    current_revision,
    make_engine,
    open_registry,
)
from rpmpipe.registry.imports import KINDS, import_csv
from rpmpipe.registry.models import CareActivity, CarePlan, Enrollment, Patient

NOW = datetime(2026, 12, 1, tzinfo=UTC)

PATIENT = {
    "patient_id": "P-1",
    "mrn": "M1",
    "first_name": "Ann",
    "last_name": "Lee",
    "birth_date": "1950-02-03",
    "sex": "F",
    "address1": "1 Elm St",
    "city": "Austin",
    "state": "TX",
    "zip": "78701",
    "timezone": "America/Chicago",
    "payer_id": "MEDICARE",
    "payer_name": "Medicare Part B",
    "member_id": "1EG4TE5MK72",
    "icd10_codes": "I10;E11.9",
}
ACTIVITY = {
    "activity_id": "A-1",
    "patient_id": "P-1",
    "staff_id": "S-1",
    "started_at": "2026-11-03T09:00:00-05:00",
    "minutes": "21",
    "kind": "phone_call",
    "interactive": "true",
}


def write_csv(path: Path, kind: str, rows: list[dict[str, str]]) -> Path:
    return write_rows(path, list(KINDS[kind].columns), rows)


def write_rows(path: Path, header: list[str], rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def engine(database_url: str, tmp_path: Path) -> Engine:
    engine = open_registry(database_url)
    import_csv(engine, "patients", write_csv(tmp_path / "p.csv", "patients", [PATIENT]))
    return engine


@pytest.mark.parametrize("program", ["RPM", "RTM", "CCM", "PCM", "APCM", "BHI"])
def test_enrollments_accept_every_program(engine: Engine, tmp_path: Path, program: str) -> None:
    row = {
        "patient_id": "P-1",
        "program": program,
        "start_date": "2026-01-05",
        "end_date": "",
        "consent_date": "2026-01-05",
        "ordering_npi": "1234567893",
    }
    import_csv(engine, "enrollments", write_csv(tmp_path / "e.csv", "enrollments", [row]))
    with engine.connect() as conn:
        assert conn.execute(select(Enrollment.program)).scalars().all() == [program]


def test_enrollment_of_an_unknown_program_names_the_field(engine: Engine, tmp_path: Path) -> None:
    row = {
        "patient_id": "P-1",
        "program": "TCM",
        "start_date": "2026-01-05",
        "end_date": "",
        "consent_date": "",
        "ordering_npi": "1234567893",
    }
    with pytest.raises(RegistryImportError, match="program.*'TCM' is not one of"):
        import_csv(engine, "enrollments", write_csv(tmp_path / "e.csv", "enrollments", [row]))


def test_activities_without_program_or_performer_are_rpm_staff_time(
    engine: Engine, tmp_path: Path
) -> None:
    import_csv(
        engine, "activities", write_csv(tmp_path / "a.csv", "activities", [ACTIVITY]), now=NOW
    )
    with engine.connect() as conn:
        assert conn.execute(select(CareActivity.program, CareActivity.performer)).one() == (
            "RPM",
            "clinical_staff",
        )


def test_activity_program_and_performer_columns_are_imported_and_checked(
    engine: Engine, tmp_path: Path
) -> None:
    header = [*KINDS["activities"].columns, "program", "performer"]
    row = {**ACTIVITY, "program": "CCM", "performer": "physician"}
    import_csv(engine, "activities", write_rows(tmp_path / "a.csv", header, [row]), now=NOW)
    with engine.connect() as conn:
        assert conn.execute(select(CareActivity.program, CareActivity.performer)).one() == (
            "CCM",
            "physician",
        )
    bad = {**ACTIVITY, "activity_id": "A-2", "performer": "nurse"}
    with pytest.raises(RegistryImportError, match=r"row 2.*performer.*'nurse' is not one of"):
        import_csv(engine, "activities", write_rows(tmp_path / "b.csv", header, [bad]), now=NOW)


def test_mqtt_activity_carries_program_and_performer(engine: Engine) -> None:
    payload = orjson.dumps(
        [
            {**ACTIVITY, "interactive": True, "program": "PCM", "performer": "physician"},
            {**ACTIVITY, "activity_id": "A-2", "interactive": False},
            {**ACTIVITY, "activity_id": "A-3", "interactive": False, "program": "XYZ"},
        ]
    )
    good, rejects = activity_items(payload)
    committed, failed = store_activities(engine, [[g.row] for g in good], source="mqtt", now=NOW)
    assert rejects == []
    assert committed == 2
    assert [(index, code) for index, code, _ in failed] == [(2, "bad_activity")]
    assert "program" in failed[0][2]
    with engine.connect() as conn:
        rows = conn.execute(
            select(CareActivity.activity_id, CareActivity.program, CareActivity.performer).order_by(
                CareActivity.activity_id
            )
        ).all()
    assert rows == [("A-1", "PCM", "physician"), ("A-2", "RPM", "clinical_staff")]


def test_patients_qmb_is_optional_and_kept_when_a_file_leaves_it_out(
    engine: Engine, tmp_path: Path
) -> None:
    header = [*KINDS["patients"].columns, "qmb"]
    import_csv(
        engine, "patients", write_rows(tmp_path / "q.csv", header, [{**PATIENT, "qmb": "true"}])
    )
    import_csv(engine, "patients", write_csv(tmp_path / "p2.csv", "patients", [PATIENT]))
    with engine.connect() as conn:
        assert conn.execute(select(Patient.qmb)).scalar_one() is True
    import_csv(engine, "patients", write_rows(tmp_path / "e.csv", header, [{**PATIENT, "qmb": ""}]))
    with engine.connect() as conn:
        assert conn.execute(select(Patient.qmb)).scalar_one() is None
    with pytest.raises(RegistryImportError) as err:
        import_csv(
            engine,
            "patients",
            write_rows(tmp_path / "b.csv", header, [{**PATIENT, "qmb": "maybe"}]),
        )
    assert err.value.field == "qmb" and "maybe" not in str(err.value)


def care_plan(**values: str) -> dict[str, str]:
    base = {
        "patient_id": "P-1",
        "program": "CCM",
        "established_on": "2026-03-10",
        "revised_on": "",
        "shared_with_patient_on": "2026-03-12",
    }
    return {**base, **values}


def test_care_plans_import_versions_idempotently(engine: Engine, tmp_path: Path) -> None:
    rows = [care_plan(), care_plan(revised_on="2026-05-02", shared_with_patient_on="2026-05-02")]
    path = write_csv(tmp_path / "c.csv", "care-plans", rows)
    assert import_csv(engine, "care-plans", path).inserted == 2
    again = import_csv(engine, "care-plans", path)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 2)
    with engine.connect() as conn:
        versions = conn.execute(
            select(CarePlan.version_on, CarePlan.revised_on).order_by(CarePlan.version_on)
        ).all()
    assert versions == [(date(2026, 3, 10), None), (date(2026, 5, 2), date(2026, 5, 2))]


@pytest.mark.parametrize(
    ("values", "field", "words"),
    [
        ({"revised_on": "2026-03-01"}, "revised_on", "before established_on"),
        ({"shared_with_patient_on": "2026-03-01"}, "shared_with_patient_on", "before established"),
        ({"program": "TCM"}, "program", "is not one of"),
        ({"patient_id": "P-404"}, "patient_id", "not in the registry"),
        ({"established_on": ""}, "established_on", "is empty"),
    ],
)
def test_bad_care_plan_row_names_row_and_field_and_writes_nothing(
    engine: Engine, tmp_path: Path, values: dict[str, str], field: str, words: str
) -> None:
    path = write_csv(tmp_path / "c.csv", "care-plans", [care_plan(), care_plan(**values)])
    with pytest.raises(RegistryImportError) as err:
        import_csv(engine, "care-plans", path)
    assert (err.value.row, err.value.field) == (3, field)
    assert words in str(err.value)
    with engine.connect() as conn:
        assert conn.execute(select(CarePlan.id)).all() == []


def test_migration_from_the_previous_head_keeps_activities_as_rpm_staff_time(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO care_activities VALUES "
                "('A-0', 'P-0', 'S-0', '2026-01-02 10:00:00', 12, 'phone_call', 1, 'RPM')"
            )
        )
    open_registry(url)
    assert current_revision(engine) == SCHEMA_HEAD
    with engine.connect() as conn:
        assert conn.execute(select(CareActivity.performer)).scalar_one() == "clinical_staff"
        assert conn.execute(text("SELECT count(*) FROM care_plans")).scalar_one() == 0
