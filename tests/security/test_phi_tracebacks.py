"""No traceback of rpmpipe prints bound parameters: registry errors are rpmpipe's own, with
rows and fields, and never carry names, birth dates, addresses or member ids. SQLite and
PostgreSQL.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from rpmpipe.errors import RegistryImportError
from rpmpipe.registry.db import open_registry
from rpmpipe.registry.imports import import_rows
from rpmpipe.registry.models import Patient

RPMPIPE = str(Path(sys.executable).parent / "rpmpipe")
PHI = ("Zelda", "Quixote", "1931-07-04", "77 Hidden Lane", "9ZZ9ZZ9ZZ99")


def patient_row(i: int, **changes: str) -> dict[str, str]:
    row = {
        "patient_id": f"P{i:05d}",
        "mrn": str(i),
        "first_name": "Zelda",
        "last_name": "Quixote",
        "birth_date": "1931-07-04",
        "sex": "F",
        "address1": "77 Hidden Lane",
        "city": "Springfield",
        "state": "IL",
        "zip": "62701",
        "timezone": "America/Chicago",
        "payer_id": "MEDICARE",
        "payer_name": "Medicare",
        "member_id": "9ZZ9ZZ9ZZ99",
        "icd10_codes": "I10",
    }
    row.update(changes)
    return row


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def no_phi(text: str) -> None:
    leaked = [v for v in PHI if v in text]
    assert not leaked, f"PHI in output: {leaked}"


def test_a_failed_statement_never_shows_its_parameters(database_url: str) -> None:
    engine = open_registry(database_url)
    import_rows(engine, "patients", [patient_row(1)], source="test")
    values = {k: v for k, v in patient_row(1).items() if k in ("patient_id", "mrn")}
    row = {
        **values,
        "first_name": "Zelda",
        "last_name": "Quixote",
        "sex": "F",
        "address1": "77 Hidden Lane",
        "city": "X",
        "state": "IL",
        "zip": "1",
        "timezone": "UTC",
        "payer_id": "M",
        "payer_name": "M",
        "member_id": "9ZZ9ZZ9ZZ99",
        "icd10_codes": "I10",
    }
    from datetime import date

    row["birth_date"] = date(1931, 7, 4)  # type: ignore[assignment]
    with pytest.raises(IntegrityError) as caught, engine.begin() as conn:
        conn.execute(insert(Patient), [row])  # the same patient_id again
    engine.dispose()
    no_phi(str(caught.value))


@pytest.mark.parametrize("field", ["first_name", "address1", "member_id"])
def test_a_nul_byte_is_refused_at_import_with_its_row_and_field(
    database_url: str, tmp_path: Path, field: str
) -> None:
    engine = open_registry(database_url)
    rows = [patient_row(1), patient_row(2, **{field: "Zel\x00da"})]
    with pytest.raises(RegistryImportError) as caught:
        import_rows(engine, "patients", rows, source="patients.csv")
    assert (caught.value.row, caught.value.field) == (2, field)
    no_phi(str(caught.value))
    with engine.connect() as conn:
        assert conn.execute(Patient.__table__.select()).first() is None  # nothing half written
    engine.dispose()


def test_a_nul_byte_in_a_csv_cell_is_one_line_naming_row_and_field(
    database_url: str, tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "patients.csv", [patient_row(1, last_name="Qui\x00xote")])
    env = {k: v for k, v in os.environ.items() if not k.startswith("RPMPIPE_")}
    env.update({"RPMPIPE_DATA_DIR": str(tmp_path / "data"), "RPMPIPE_DATABASE_URL": database_url})
    done = subprocess.run(
        [RPMPIPE, "import", "patients", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "row 2" in done.stderr and "last_name" in done.stderr and "NUL" in done.stderr
    assert "Traceback" not in done.stderr
    no_phi(done.stderr + done.stdout)


def test_two_concurrent_imports_of_the_same_patients_both_succeed(database_url: str) -> None:
    engine = open_registry(database_url)
    errors: list[BaseException] = []
    for round_ in range(5):
        rows = [patient_row(round_ * 1000 + i) for i in range(400)]
        barrier = threading.Barrier(2)

        def load(rows: list[dict[str, str]] = rows, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                import_rows(engine, "patients", rows, source="patients.csv")
            except BaseException as exc:  # noqa: BLE001 - collected for the assertions
                errors.append(exc)

        threads = [threading.Thread(target=load) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    with engine.connect() as conn:
        stored = len(conn.execute(Patient.__table__.select()).all())
    engine.dispose()
    for exc in errors:  # a clear message is acceptable; a raw database error is not
        assert isinstance(exc, RegistryImportError), repr(exc)
        assert "another import" in str(exc)
        no_phi(str(exc))
    assert stored == 5 * 400
