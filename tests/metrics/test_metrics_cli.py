"""``rpmpipe metrics``: the contract's JSON, CSV, the table and one patient's detail."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from sqlalchemy import select
from test_metrics_job import seed_registry, write_readings
from typer.testing import CliRunner

from rpmpipe.app.cli import app
from rpmpipe.registry.db import open_registry
from rpmpipe.registry.models import EngagementRow

CONTRACT = {
    "patient_id",
    "program",
    "kind",
    "period_start",
    "period_end",
    "status",
    "reason",
    "transmission_days",
    "interactive_minutes",
    "interactive_communications",
    "lines",
}


def _invoke(tmp_path: Path, *args: str) -> str:
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    if not (tmp_path / "registry.db").exists():
        seed_registry(open_registry(db))
        write_readings(tmp_path / "data" / "readings")
    result = CliRunner().invoke(
        app, ["--data-dir", str(tmp_path / "data"), "--database-url", db, "metrics", *args]
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def test_json_output_has_the_contract_fields_evidence_and_forecast(tmp_path: Path) -> None:
    records = json.loads(_invoke(tmp_path, "--as-of", "2026-04-05", "--format", "json"))
    assert all(CONTRACT <= set(r) for r in records)
    supply = [r for r in records if r["patient_id"] == "P1" and r["kind"] == "device_supply"]
    assert supply[0]["lines"] == [{"code": "99454", "units": 1, "date_of_service": "2026-03-30"}]
    assert supply[0]["evidence"]["dates"][:2] == ["2026-03-01", "2026-03-02"]
    assert supply[1]["status"] == "pending"
    assert supply[1]["forecast"]["days_still_possible"] == 24
    month = next(r for r in records if r["kind"] == "treatment_management")
    assert month["management_minutes"] == 45.5
    assert month["interactive_minutes"] == 25
    assert month["evidence"]["activity_ids"] == ["A1", "A2"]


def test_csv_output_has_one_row_per_record(tmp_path: Path) -> None:
    text = _invoke(tmp_path, "--as-of", "2026-04-05", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {r["kind"] for r in rows} == {"setup", "device_supply", "treatment_management"}
    supply = next(r for r in rows if r["kind"] == "device_supply" and r["status"] == "billable")
    assert supply["lines"] == "99454x1@2026-03-30"
    assert supply["transmission_days"] == "20"


def test_csv_from_the_bulk_path_equals_the_csv_of_the_saved_records(tmp_path: Path) -> None:
    # --save goes through the record objects; plain --format csv does not.
    bulk = _invoke(tmp_path, "--as-of", "2026-04-05", "--format", "csv")
    saved = _invoke(tmp_path, "--as-of", "2026-04-05", "--format", "csv", "--save")
    assert bulk.count("\n") > 3
    assert bulk == saved


def test_patient_detail_lists_dates_and_activities(tmp_path: Path) -> None:
    out = _invoke(tmp_path, "--as-of", "2026-04-05", "--patient", "P1")
    assert "device_supply 2026-03-01..2026-03-30 [CY2026] BILLABLE" in out
    assert "2026-03-20" in out
    assert "activities: A1, A2" in out
    assert "P2" not in out


def test_unknown_patient_and_bad_date_fail_with_a_message(tmp_path: Path) -> None:
    _invoke(tmp_path, "--as-of", "2026-04-05")
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    base = ["--data-dir", str(tmp_path / "data"), "--database-url", db, "metrics"]
    bad = CliRunner().invoke(app, [*base, "--as-of", "April"])
    assert bad.exit_code == 2 and "--as-of: expected a date YYYY-MM-DD" in bad.output
    nobody = CliRunner().invoke(app, [*base, "--as-of", "2026-04-05", "--patient", "NOPE"])
    assert nobody.exit_code == 1 and "no engagement records for patient NOPE" in nobody.output


def test_csv_quotes_fields_with_commas_and_quotes() -> None:
    from datetime import date

    from rpmpipe.metrics.report import write_csv
    from rpmpipe.records import EngagementRecord

    record = EngagementRecord(
        patient_id='P,"1"',
        program="RPM",
        kind="device_supply",
        period_start=date(2026, 3, 1),
        period_end=date(2026, 3, 30),
        status="not_billable",
        reason="1 day with data, 2 needed",
        rule_set="CY2026",
        transmission_days=1,
        evidence_dates=(date(2026, 3, 1),),
    )
    out = io.StringIO()
    write_csv([record], out)
    (row,) = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert row["patient_id"] == 'P,"1"'
    assert row["reason"] == "1 day with data, 2 needed"
    assert row["evidence_dates"] == "2026-03-01"
    assert None not in row


def test_future_as_of_warns_on_stderr_and_save_refuses_it(tmp_path: Path) -> None:
    # Far in the future whatever the machine's clock says.
    _invoke(tmp_path, "--as-of", "2026-04-05")
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    base = ["--data-dir", str(tmp_path / "data"), "--database-url", db, "metrics"]
    for fmt in ("table", "csv"):
        shown = CliRunner().invoke(app, [*base, "--as-of", "2099-03-01", "--format", fmt])
        assert shown.exit_code == 0, shown.output
        assert "warning: as-of date 2099-03-01 is after today" in shown.stderr
        assert "warning" not in shown.stdout
    saved = CliRunner().invoke(app, [*base, "--as-of", "2099-03-01", "--save"])
    assert saved.exit_code != 0
    assert "as-of date 2099-03-01 is after today" in saved.output
    assert "nothing was saved" in saved.output
    with open_registry(db).connect() as conn:
        assert conn.execute(select(EngagementRow.__table__)).all() == []
    past = CliRunner().invoke(app, [*base, "--as-of", "2026-04-05"])
    assert "warning" not in past.stderr
