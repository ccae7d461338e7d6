"""Registry CSV imports: validation names row and field, atomic, idempotent, fast enough."""

from __future__ import annotations

import csv
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from rpmpipe.errors import RegistryImportError
from rpmpipe.registry.db import open_registry
from rpmpipe.registry.imports import KINDS, import_csv
from rpmpipe.registry.models import CareActivity, DeviceAssignment, Enrollment, Patient

PATIENT = {
    "patient_id": "P-1",
    "mrn": "M1",
    "first_name": "Ann",
    "last_name": "O'Neil",
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


def write_csv(path: Path, kind: str, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=KINDS[kind].columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def patients(n: int) -> list[dict[str, str]]:
    return [dict(PATIENT, patient_id=f"P-{i:06d}", member_id=f"M{i:09d}") for i in range(n)]


def count(engine: Engine, model: type) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(model)).scalar_one())


@pytest.fixture
def engine(database_url: str) -> Engine:
    return open_registry(database_url)


def test_reimporting_the_same_file_changes_nothing(engine: Engine, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "p.csv", "patients", patients(3))
    first = import_csv(engine, "patients", path)
    second = import_csv(engine, "patients", path)
    assert (first.inserted, first.updated) == (3, 0)
    assert (second.inserted, second.updated, second.unchanged) == (0, 0, 3)
    assert count(engine, Patient) == 3


def test_changed_row_is_updated_in_place(engine: Engine, tmp_path: Path) -> None:
    import_csv(engine, "patients", write_csv(tmp_path / "a.csv", "patients", patients(2)))
    rows = patients(2)
    rows[1]["city"] = "Dallas"
    result = import_csv(engine, "patients", write_csv(tmp_path / "b.csv", "patients", rows))
    assert (result.inserted, result.updated, result.unchanged) == (0, 1, 1)
    with engine.connect() as conn:
        assert (
            conn.execute(select(Patient.city).where(Patient.patient_id == "P-000001")).scalar_one()
            == "Dallas"
        )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("birth_date", "1950-13-01", "the value is not a date"),
        ("timezone", "Mars/Olympus", "IANA"),
        ("icd10_codes", "I10;XYZ", "ICD-10"),
        ("sex", "Q", "not one of"),
        ("patient_id", "../etc", "not a valid id"),
        ("zip", "1234", "ZIP"),
    ],
)
def test_bad_row_names_row_and_field_and_writes_nothing(
    engine: Engine, tmp_path: Path, field: str, value: str, message: str
) -> None:
    rows = patients(5)
    rows[3][field] = value
    path = write_csv(tmp_path / "p.csv", "patients", rows)
    with pytest.raises(RegistryImportError) as err:
        import_csv(engine, "patients", path)
    # header is line 1, rows[3] is line 5
    assert err.value.row == 5
    assert err.value.field == field
    assert message in str(err.value)
    if field == "birth_date":
        assert value not in str(err.value)  # PHI is named, never echoed
    assert count(engine, Patient) == 0


def test_missing_column_is_reported(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("device_id,model\nBP-1,X\n", encoding="utf-8")
    with pytest.raises(RegistryImportError, match="missing column"):
        import_csv(engine, "devices", path)


def test_assignment_to_unknown_patient_stops_import(engine: Engine, tmp_path: Path) -> None:
    import_csv(engine, "patients", write_csv(tmp_path / "p.csv", "patients", patients(1)))
    import_csv(
        engine,
        "devices",
        write_csv(
            tmp_path / "d.csv", "devices", [{"device_id": "BP-1", "kind": "bp_cuff", "model": "X"}]
        ),
    )
    rows = [
        {"device_id": "BP-1", "patient_id": "P-000000", "start_date": "2026-01-01", "end_date": ""},
        {"device_id": "BP-1", "patient_id": "P-404", "start_date": "2027-01-01", "end_date": ""},
    ]
    with pytest.raises(RegistryImportError) as err:
        import_csv(engine, "assignments", write_csv(tmp_path / "a.csv", "assignments", rows))
    assert (err.value.row, err.value.field) == (3, "patient_id")
    assert count(engine, DeviceAssignment) == 0


def test_overlapping_assignments_are_refused(engine: Engine, tmp_path: Path) -> None:
    import_csv(engine, "patients", write_csv(tmp_path / "p.csv", "patients", patients(2)))
    import_csv(
        engine,
        "devices",
        write_csv(
            tmp_path / "d.csv", "devices", [{"device_id": "BP-1", "kind": "bp_cuff", "model": "X"}]
        ),
    )
    ok = [
        {
            "device_id": "BP-1",
            "patient_id": "P-000000",
            "start_date": "2026-01-01",
            "end_date": "2026-01-31",
        },
        {"device_id": "BP-1", "patient_id": "P-000001", "start_date": "2026-02-01", "end_date": ""},
    ]
    import_csv(engine, "assignments", write_csv(tmp_path / "a.csv", "assignments", ok))
    bad = [
        {"device_id": "BP-1", "patient_id": "P-000000", "start_date": "2026-03-01", "end_date": ""}
    ]
    with pytest.raises(RegistryImportError, match="must not overlap"):
        import_csv(engine, "assignments", write_csv(tmp_path / "b.csv", "assignments", bad))
    assert count(engine, DeviceAssignment) == 2


def test_enrollment_with_bad_npi_is_refused(engine: Engine, tmp_path: Path) -> None:
    import_csv(engine, "patients", write_csv(tmp_path / "p.csv", "patients", patients(1)))
    rows = [
        {
            "patient_id": "P-000000",
            "program": "RPM",
            "start_date": "2026-01-01",
            "end_date": "",
            "consent_date": "2026-01-01",
            "ordering_npi": "1234567890",
        }
    ]
    with pytest.raises(RegistryImportError) as err:
        import_csv(engine, "enrollments", write_csv(tmp_path / "e.csv", "enrollments", rows))
    assert err.value.field == "ordering_npi"
    rows[0]["ordering_npi"] = "1234567893"
    import_csv(engine, "enrollments", write_csv(tmp_path / "e2.csv", "enrollments", rows))
    assert count(engine, Enrollment) == 1


def test_activity_needs_an_offset_and_counts_once(engine: Engine, tmp_path: Path) -> None:
    import_csv(engine, "patients", write_csv(tmp_path / "p.csv", "patients", patients(1)))
    row = {
        "activity_id": "A-1",
        "patient_id": "P-000000",
        "staff_id": "S-1",
        "started_at": "2026-11-03T09:00:00",
        "minutes": "12.5",
        "kind": "phone_call",
        "interactive": "true",
    }
    with pytest.raises(RegistryImportError, match="no time zone"):
        import_csv(
            engine, "activities", write_csv(tmp_path / "a.csv", "activities", [row]), now=NOW
        )
    row["started_at"] = "2026-11-03T09:00:00-05:00"
    path = write_csv(tmp_path / "a2.csv", "activities", [row, row])
    assert import_csv(engine, "activities", path, now=NOW).rows == 1
    assert import_csv(engine, "activities", path, now=NOW).unchanged == 1
    assert count(engine, CareActivity) == 1


NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "started_at",
    [
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:30:00+01:00",  # before year 1 in UTC: not representable
        "9999-12-31T23:59:59-14:00",  # after year 9999 in UTC: not representable
        "9999-12-31T23:59:59Z",
        "1999-12-31T23:59:59Z",
        "2026-11-21T15:00:01Z",  # more than one day after the clock
    ],
)
def test_activity_dated_outside_2000_to_a_day_after_the_clock_stops_the_import(
    engine: Engine, tmp_path: Path, started_at: str
) -> None:
    import_csv(engine, "patients", write_csv(tmp_path / "p.csv", "patients", patients(1)))
    good = {
        "activity_id": "A-1",
        "patient_id": "P-000000",
        "staff_id": "S-1",
        "started_at": "2026-11-03T09:00:00-05:00",
        "minutes": "12",
        "kind": "phone_call",
        "interactive": "true",
    }
    rows = [good, {**good, "activity_id": "A-2", "started_at": started_at}]
    with pytest.raises(RegistryImportError) as caught:
        import_csv(engine, "activities", write_csv(tmp_path / "a.csv", "activities", rows), now=NOW)
    assert (caught.value.row, caught.value.field) == (3, "started_at")
    assert caught.value.code == "out_of_range"  # what ingest recognises it by (bad_time)
    assert "outside the accepted range (2000-01-01 to one day after 2026-11-20)" in str(
        caught.value
    )
    assert count(engine, CareActivity) == 0  # nothing of the file is written


def test_activity_up_to_a_day_after_the_clock_is_imported(engine: Engine, tmp_path: Path) -> None:
    import_csv(engine, "patients", write_csv(tmp_path / "p.csv", "patients", patients(1)))
    row = {
        "activity_id": "A-1",
        "patient_id": "P-000000",
        "staff_id": "S-1",
        "started_at": "2026-11-21T15:00:00Z",
        "minutes": "12",
        "kind": "phone_call",
        "interactive": "true",
    }
    path = write_csv(
        tmp_path / "a.csv",
        "activities",
        [row, {**row, "activity_id": "A-2", "started_at": "2000-01-01T00:00:00Z"}],
    )
    assert import_csv(engine, "activities", path, now=NOW).inserted == 2


def test_hundred_thousand_patients_import(tmp_path: Path) -> None:
    """100k rows import in seconds; the figure is printed, not asserted (shared machines)."""
    engine = open_registry(f"sqlite:///{tmp_path / 'big.db'}")
    path = write_csv(tmp_path / "p.csv", "patients", patients(100_000))
    started = time.perf_counter()
    result = import_csv(engine, "patients", path)
    print(f"100k patients imported in {time.perf_counter() - started:.1f}s")
    assert result.inserted == 100_000
    assert count(engine, Patient) == 100_000


def test_empty_time_zone_is_accepted_for_the_organisation_fallback(
    engine: Engine, tmp_path: Path
) -> None:
    rows = patients(1)
    rows[0]["timezone"] = ""
    assert (
        import_csv(engine, "patients", write_csv(tmp_path / "p.csv", "patients", rows)).inserted
        == 1
    )
    with engine.connect() as conn:
        assert conn.execute(select(Patient.timezone)).scalar_one() == ""


def test_file_that_is_not_utf8_names_the_file_without_a_row(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(",".join(KINDS["devices"].columns).encode() + b"\nBP-1,bp_cuff,Caf\xe9\n")
    with pytest.raises(RegistryImportError) as err:
        import_csv(engine, "devices", path)
    assert "not UTF-8" in str(err.value)
    assert "row" not in str(err.value)


def write_devices(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def serials(engine: Engine) -> dict[str, str | None]:
    from rpmpipe.registry.models import Device

    with engine.connect() as conn:
        return dict(conn.execute(select(Device.device_id, Device.serial_number)).all())


def test_import_devices_takes_an_optional_serial_number_column(
    engine: Engine, tmp_path: Path
) -> None:
    header = ["device_id", "kind", "model", "serial_number"]
    path = write_devices(
        tmp_path / "d.csv",
        header,
        [["BP-1", "bp_cuff", "UA-651", "SN-44107"], ["OX-1", "pulse_oximeter", "", ""]],
    )
    assert import_csv(engine, "devices", path).inserted == 2
    assert serials(engine) == {"BP-1": "SN-44107", "OX-1": None}
    # A file without the column leaves the serial numbers on file alone.
    plain = write_devices(tmp_path / "p.csv", header[:3], [["BP-1", "bp_cuff", "UA-651B"]])
    assert import_csv(engine, "devices", plain).updated == 1
    assert serials(engine)["BP-1"] == "SN-44107"


@pytest.mark.parametrize(
    "rows",
    [
        [["BP-2", "bp_cuff", "", "SN-44107"]],  # another device's serial number
        [["BP-2", "bp_cuff", "", "BP-1"]],  # another device's id
        [["BP-2", "bp_cuff", "", "SN-9"], ["BP-3", "bp_cuff", "", "SN-9"]],  # twice in the file
    ],
)
def test_a_serial_number_names_one_device_and_a_clash_writes_nothing(
    engine: Engine, tmp_path: Path, rows: list[list[str]]
) -> None:
    header = ["device_id", "kind", "model", "serial_number"]
    import_csv(
        engine,
        "devices",
        write_devices(tmp_path / "a.csv", header, [["BP-1", "bp_cuff", "", "SN-44107"]]),
    )
    with pytest.raises(RegistryImportError) as caught:
        import_csv(engine, "devices", write_devices(tmp_path / "b.csv", header, rows))
    assert caught.value.field == "serial_number"
    assert caught.value.row == len(rows) + 1
    assert "SN-" not in str(caught.value)  # a serial number is an identifier: never echoed
    assert serials(engine) == {"BP-1": "SN-44107"}


@pytest.mark.parametrize("member_id", ["1EG4*TE5MK72", "1EG4TE5:MK72", "1EG4~TE5MK72", "1EG4^TE5"])
def test_a_member_id_with_an_x12_separator_is_refused_naming_the_row(
    engine: Engine, tmp_path: Path, member_id: str
) -> None:
    rows = patients(3)
    rows[2]["member_id"] = member_id
    with pytest.raises(RegistryImportError) as err:
        import_csv(engine, "patients", write_csv(tmp_path / "p.csv", "patients", rows))
    assert (err.value.row, err.value.field) == (4, "member_id")
    assert "X12 separator" in str(err.value) and member_id not in str(err.value)
    assert count(engine, Patient) == 0


def test_a_medicare_patient_without_an_mbi_is_imported_with_a_warning_naming_the_row(
    engine: Engine, tmp_path: Path
) -> None:
    rows = [dict(PATIENT, patient_id=f"P-{i}") for i in range(3)]
    rows[1]["member_id"] = "123456789A"  # an old HICN-style number
    rows[2].update(payer_id="AETNA", member_id="W123456789")  # not Medicare: no MBI needed
    path = write_csv(tmp_path / "p.csv", "patients", rows)
    result = import_csv(engine, "patients", path, medicare_payers={"MEDICARE"})
    assert result.inserted == 3
    [warning] = result.warnings
    assert warning.startswith(f"{path}, row 3, field 'member_id': not a Medicare Beneficiary")
    assert "123456789A" not in warning
