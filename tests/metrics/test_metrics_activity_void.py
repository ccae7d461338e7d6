"""A mistaken time entry can be voided (command, import column, MQTT field): it is kept with
who, when and why, stops counting, and an exported month that changes gets a correction."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from pathlib import Path

import orjson
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from rpmpipe.app.cli import app
from rpmpipe.billing_export.export import run_export
from rpmpipe.ingest.activities import activity_items, store_activities
from rpmpipe.metrics.job import compute, compute_and_persist
from rpmpipe.registry.imports import import_csv
from rpmpipe.registry.models import CareActivity
from rpmpipe.settings import Settings

AS_OF = date(2026, 4, 5)
NOW = datetime(2026, 4, 6, 7, 0, tzinfo=UTC)
MARCH = date(2026, 3, 1)


def _march(settings: Settings, engine: Engine) -> object:
    (month,) = [
        r
        for r in compute(settings.metrics, engine, AS_OF)
        if r.patient_id == "P1" and r.kind == "treatment_management" and r.period_start == MARCH
    ]
    return month


def _void(settings: Settings, *args: str) -> str:
    result = CliRunner().invoke(
        app,
        ["--database-url", settings.effective_database_url, "activities", "void", *args],
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_void_command_keeps_the_entry_with_who_when_and_why_and_it_stops_counting(
    seeded: tuple[Settings, Engine],
) -> None:
    settings, engine = seeded
    before = _march(settings, engine)
    assert before.management_minutes == 45.5  # type: ignore[attr-defined]
    out = _void(settings, "A2", "--reason", "logged for the wrong patient", "--by", "alice")
    assert "voided A2" in out
    with engine.connect() as conn:
        row = conn.execute(select(CareActivity).where(CareActivity.activity_id == "A2")).one()
    assert (row.voided_by, row.voided_reason) == ("alice", "logged for the wrong patient")
    assert row.voided_at is not None and row.minutes == 20.5  # kept, not deleted
    after = _march(settings, engine)
    assert after.management_minutes == 25  # type: ignore[attr-defined]
    assert after.activities_not_counted == (  # type: ignore[attr-defined]
        ("A2", "voided: logged for the wrong patient"),
    )
    # A second void keeps the first one.
    again = _void(settings, "A2", "--reason", "other", "--by", "bob")
    assert "already voided by alice" in again
    result = CliRunner().invoke(
        app,
        [
            "--database-url",
            settings.effective_database_url,
            "activities",
            "void",
            "NOPE",
            "--reason",
            "x",
        ],
    )
    assert result.exit_code == 1 and "no care activity 'NOPE'" in result.output


def test_voiding_time_in_an_exported_month_writes_a_correction(
    seeded: tuple[Settings, Engine], tmp_path: Path
) -> None:
    settings, engine = seeded
    compute_and_persist(settings.metrics, engine, AS_OF, NOW)
    first = run_export(settings.export, engine, AS_OF, tmp_path / "first", now=NOW)
    assert first.lines > 0
    _void(settings, "A2", "--reason", "duplicate of the call", "--by", "alice")
    compute_and_persist(settings.metrics, engine, AS_OF, NOW)
    second = run_export(settings.export, engine, AS_OF, tmp_path / "second", now=NOW)
    assert second.corrections == 1 and second.run_dir is not None
    rows = list(csv.DictReader(io.StringIO((second.run_dir / "corrections.csv").read_text())))
    assert [(r["record_kind"], r["period_start"]) for r in rows] == [
        ("treatment_management", "2026-03-01")
    ]
    assert "45.50 → 25.00 minutes" in rows[0]["reason"]


def test_an_import_column_and_the_activity_topic_void_entries_the_same_way(
    seeded: tuple[Settings, Engine], tmp_path: Path
) -> None:
    settings, engine = seeded
    path = tmp_path / "activities.csv"
    path.write_text(
        "activity_id,patient_id,staff_id,started_at,minutes,kind,interactive,voided_reason\n"
        "A2,P1,S1,2026-03-11T15:00:00Z,20.5,data_review,false,entered twice\n"
    )
    import_csv(engine, "activities", path, now=NOW)
    import_csv(engine, "activities", path, now=datetime(2026, 4, 7, tzinfo=UTC))  # no rewrite
    payload = orjson.dumps(
        {
            "activity_id": "A1",
            "patient_id": "P1",
            "staff_id": "S1",
            "started_at": "2026-03-10T15:00:00Z",
            "minutes": 25,
            "kind": "phone_call",
            "interactive": True,
            "voided_reason": "wrong patient",
        }
    )
    items, rejects = activity_items(payload)
    assert rejects == []
    store_activities(engine, [[i.row for i in items]], "rpm/v1/activities", now=NOW)
    with engine.connect() as conn:
        rows = {
            r.activity_id: r
            for r in conn.execute(select(CareActivity).where(CareActivity.program == "RPM"))
        }
    assert rows["A2"].voided_reason == "entered twice"
    assert rows["A2"].voided_at == NOW and rows["A2"].voided_by.endswith("activities.csv")
    assert rows["A1"].voided_reason == "wrong patient"
    assert rows["A1"].voided_by == "rpm/v1/activities"
    month = _march(settings, engine)
    assert month.management_minutes == 0  # type: ignore[attr-defined]
    assert month.status == "not_billable"  # type: ignore[attr-defined]
