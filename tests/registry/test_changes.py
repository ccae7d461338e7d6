"""Registry changes from the command line keep history: retire a device, end an assignment or
an enrollment (end dates set, nothing deleted), and show a patient (PHI on the terminal only)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from test_imports import PATIENT
from typer.testing import CliRunner

from rpmpipe.app.cli import app
from rpmpipe.errors import EXIT_DATA, RegistryRecordError
from rpmpipe.registry.changes import end_assignment, end_enrollment, retire_device
from rpmpipe.registry.db import open_registry
from rpmpipe.registry.imports import import_rows
from rpmpipe.registry.models import Device, DeviceAssignment, Enrollment
from rpmpipe.security.broker_config import registered_device_ids


@pytest.fixture
def engine(database_url: str) -> Engine:
    engine = open_registry(database_url)
    import_rows(engine, "patients", [PATIENT], source="t")
    devices = [{"device_id": d, "kind": "bp_cuff", "model": "X"} for d in ("BP-1", "BP-2")]
    import_rows(engine, "devices", devices, source="t")
    lent = {"device_id": "BP-1", "patient_id": "P-1", "start_date": "2026-01-05", "end_date": ""}
    import_rows(engine, "assignments", [lent], source="t")
    enrolled = {
        "patient_id": "P-1",
        "program": "RPM",
        "start_date": "2026-01-05",
        "end_date": "",
        "consent_date": "2026-01-05",
        "ordering_npi": "1234567893",
    }
    import_rows(engine, "enrollments", [enrolled], source="t")
    return engine


def _assignment_end(engine: Engine, device_id: str) -> date | None:
    with engine.connect() as conn:
        return conn.execute(
            select(DeviceAssignment.end_date).where(DeviceAssignment.device_id == device_id)
        ).scalar_one()


def test_retiring_a_device_ends_its_assignment_and_keeps_it(engine: Engine) -> None:
    change = retire_device(engine, "BP-1", date(2026, 3, 31))
    assert change.changed and "assignment ends" in change.detail
    assert _assignment_end(engine, "BP-1") == date(2026, 3, 31)
    with engine.connect() as conn:
        retired = conn.execute(select(Device.device_id, Device.retired_on)).all()
    assert sorted(retired) == [("BP-1", date(2026, 3, 31)), ("BP-2", None)]  # nothing deleted
    # Retired devices get no broker user; the same retirement again changes nothing.
    assert registered_device_ids(engine) == ["BP-2"]
    assert not retire_device(engine, "BP-1", date(2026, 3, 31)).changed
    with pytest.raises(RegistryRecordError) as caught:
        retire_device(engine, "BP-1", date(2026, 4, 2))
    assert caught.value.code == "already_retired"


def test_unknown_ids_and_impossible_end_dates_are_refused_with_codes(engine: Engine) -> None:
    cases = [
        (lambda: retire_device(engine, "NOPE", date(2026, 3, 1)), "not_found"),
        (lambda: end_assignment(engine, "BP-2", date(2026, 3, 1)), "no_assignment"),
        (lambda: end_assignment(engine, "BP-1", date(2026, 1, 1)), "ends_before_start"),
        (lambda: end_enrollment(engine, "P-1", "CCM", date(2026, 3, 1)), "no_enrollment"),
        (lambda: end_enrollment(engine, "P-1", "RPM", date(2025, 12, 1)), "ends_before_start"),
        (lambda: end_enrollment(engine, "P-404", "RPM", date(2026, 3, 1)), "not_found"),
    ]
    for change, code in cases:
        with pytest.raises(RegistryRecordError) as caught:
            change()
        assert caught.value.code == code
    assert _assignment_end(engine, "BP-1") is None


def test_ending_an_assignment_and_an_enrollment_sets_the_last_day(engine: Engine) -> None:
    assert end_assignment(engine, "BP-1", date(2026, 2, 28)).changed
    assert _assignment_end(engine, "BP-1") == date(2026, 2, 28)
    assert not end_assignment(engine, "BP-1", date(2026, 2, 28)).changed
    with pytest.raises(RegistryRecordError) as caught:
        end_assignment(engine, "BP-1", date(2026, 3, 5))
    assert caught.value.code == "no_open_assignment"

    assert end_enrollment(engine, "P-1", "RPM", date(2026, 2, 28)).changed
    with engine.connect() as conn:
        assert conn.execute(select(Enrollment.end_date)).scalar_one() == date(2026, 2, 28)


def _cli(database_url: str, tmp_path: Path, *args: str) -> object:
    return CliRunner().invoke(
        app,
        ["--data-dir", str(tmp_path / "data"), "--database-url", database_url, *args],
        env={"RPMPIPE_CONFIG": ""},
    )


def test_the_commands_change_the_registry_and_say_what_they_did(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    retired = _cli(database_url, tmp_path, "devices", "retire", "BP-1", "--on", "2026-03-31")
    assert retired.exit_code == 0, retired.output
    assert "device BP-1: retired on 2026-03-31; its assignment ends on that day" in retired.stdout
    ended = _cli(
        database_url,
        tmp_path,
        "enrollments",
        "end",
        "P-1",
        "--program",
        "rpm",
        "--on",
        "2026-03-31",
    )
    assert ended.exit_code == 0, ended.output
    assert "RPM enrollment of P-1 from 2026-01-05: ends on 2026-03-31" in ended.stdout
    unknown = _cli(database_url, tmp_path, "assignments", "end", "NOPE", "--on", "2026-03-31")
    assert unknown.exit_code == EXIT_DATA
    assert "error: device NOPE is not in the registry" in unknown.stderr


def test_patients_show_prints_the_record_to_the_operator_and_logs_no_phi(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    shown = _cli(database_url, tmp_path, "patients", "show", "P-1")
    assert shown.exit_code == 0, shown.output
    for value in ("O'Neil", "1950-02-03", "1EG4TE5MK72", "America/Chicago"):
        assert value in shown.stdout
    assert "BP-1" in shown.stdout and "to open" in shown.stdout
    assert "RPM    2026-01-05 to open, consent 2026-01-05" in shown.stdout
    logs = [json.loads(line) for line in shown.stderr.splitlines() if line.startswith("{")]
    assert logs  # the start-up line at least
    for value in ("O'Neil", "Ann", "1950", "1EG4TE5MK72", "Elm"):
        assert value not in shown.stderr
    missing = _cli(database_url, tmp_path, "patients", "show", "P-404")
    assert (
        missing.exit_code == EXIT_DATA and "patient P-404 is not in the registry" in missing.stderr
    )
