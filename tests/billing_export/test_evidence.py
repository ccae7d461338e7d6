"""Evidence frozen with every export: evidence.parquet (+ CSV) per claim line, hashed in the
manifest, read back with pyarrow, never rewritten by later runs."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
from billed_world import (
    ACTIVITIES,
    NOW,
    activity,
    bill,
    build_world,
    day,
    first_days,
    world_settings,
)
from sqlalchemy import Engine

from rpmpipe.billing_export.evidence import EVIDENCE_SCHEMA, evidence_from_table
from rpmpipe.registry.imports import import_rows


def _billed(tmp_path: Path, database_url: str) -> tuple[Path, Engine]:
    settings = world_settings(tmp_path, database_url)
    engine = build_world(settings)
    result = bill(settings, engine)
    assert result.run_dir is not None and result.lines == 6 and not result.held_back
    return result.run_dir, engine


def test_export_freezes_the_readings_and_activities_behind_each_line(
    tmp_path: Path, database_url: str
) -> None:
    run, engine = _billed(tmp_path, database_url)
    engine.dispose()
    table = pq.read_table(run / "evidence.parquet")
    assert table.schema.equals(EVIDENCE_SCHEMA)
    lines = {(e.patient_id, e.code): e for e in evidence_from_table(table)}
    assert len(lines) == 6 and len({e.line_control_number for e in lines.values()}) == 6
    # Keyed by the line control numbers the 837P sends in REF*6R.
    sent = re.findall(r"REF\*6R\*([^~]+)~", "".join(p.read_text() for p in run.glob("*.837")))
    assert sorted(sent) == sorted(e.line_control_number for e in lines.values())

    supply = lines[("P-01", "99454")]
    assert [d.day for d in supply.days] == first_days(20)
    assert [d.reading_ids for d in supply.days] == [(f"R-P-01-{n:02d}",) for n in range(1, 21)]
    assert {d.device_ids for d in supply.days} == {("BP-01",)}
    assert supply.transmission_days == 20 and supply.activities == ()
    assert (supply.consent_date, supply.enrollment_start) == (day(1).replace(month=9, day=25),) * 2
    assert supply.ordering_npi == "1234567893" and supply.rule_set == "CY2026"
    assert supply.rpmpipe_version

    management = lines[("P-01", "99457")]
    counted = {a.activity_id: a for a in management.activities}
    assert set(counted) >= {"A-01-1", "A-01-2", "A-01-3"}
    assert sum(counted[a].minutes for a in ("A-01-1", "A-01-2", "A-01-3")) == Decimal(29)
    assert counted["A-01-1"].goals_reviewed == ("G-BP", "G-DIET")
    assert counted["A-01-1"].note_ref == "N-1001" and counted["A-01-2"].staff_id == "RN-8"
    assert all(counted[a].interactive for a in ("A-01-1", "A-01-2", "A-01-3"))
    pros = [a for a in (*management.activities, *management.documentation) if a.pro_instrument]
    assert [(a.pro_instrument, a.pro_score) for a in pros] == [("PHQ-9", Decimal(7))]

    manifest = json.loads((run / "manifest.json").read_text())
    digests = {f["name"]: f["sha256"] for f in manifest["files"]}
    for name in ("evidence.parquet", "evidence.csv"):
        assert hashlib.sha256((run / name).read_bytes()).hexdigest() == digests[name]
        assert (run / name).stat().st_mode & 0o777 == 0o600
    with (run / "evidence.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    days = [r for r in rows if r["fact"] == "day_with_data" and r["code"] == "99454"]
    assert len(days) == 20 + 18
    assert {r["line_control_number"] for r in rows} == {
        e.line_control_number for e in lines.values()
    }


def test_a_later_run_never_rewrites_an_earlier_runs_evidence(
    tmp_path: Path, database_url: str
) -> None:
    run, engine = _billed(tmp_path, database_url)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    # Late data for October and new November care time, then the next nightly run.
    late = activity("A-01-9", "P-01", 27, "25", "phone_call", True)
    import_rows(engine, "activities", [*ACTIVITIES, late], source="late", now=NOW)
    settings = world_settings(tmp_path, database_url)
    second = bill(settings, engine, now=datetime(2026, 12, 1, 0, 30, tzinfo=UTC))
    engine.dispose()
    assert second.run_dir != run
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_metrics_known_at_reproduces_what_an_earlier_run_knew(tmp_path: Path) -> None:
    """Readings keep received_at: days 15-20 arrived on 2026-11-02, after a run on 11-01."""
    from typer.testing import CliRunner

    from rpmpipe.app.cli import app

    db = f"sqlite:///{tmp_path / 'r.db'}"
    build_world(world_settings(tmp_path, db)).dispose()
    base = ["--data-dir", str(tmp_path / "data"), "--database-url", db, "metrics"]
    args = [*base, "--as-of", "2026-11-05", "--format", "json"]
    runner = CliRunner()

    def supply(*extra: str) -> dict[str, object]:
        out = runner.invoke(app, [*args, *extra], env={"RPMPIPE_CONFIG": ""})
        assert out.exit_code == 0, out.output
        [record] = [
            r
            for r in json.loads(out.stdout)
            if (r["patient_id"], r["kind"], r["period_start"])
            == ("P-01", "device_supply", "2026-10-01")
        ]
        return record  # type: ignore[no-any-return]

    now = supply()
    then = supply("--known-at", "2026-11-01T00:00:00-05:00")
    assert (now["transmission_days"], [ln["code"] for ln in now["lines"]]) == (20, ["99454"])  # type: ignore[union-attr]
    assert (then["transmission_days"], [ln["code"] for ln in then["lines"]]) == (14, ["99445"])  # type: ignore[union-attr]
    naive = runner.invoke(
        app, [*args, "--known-at", "2026-11-01T00:00:00"], env={"RPMPIPE_CONFIG": ""}
    )
    assert naive.exit_code == 2 and "no time zone offset" in naive.output


def test_the_audit_and_the_frozen_evidence_read_the_facts_once(
    tmp_path: Path, database_url: str
) -> None:
    from sqlalchemy import event

    settings = world_settings(tmp_path, database_url)
    engine = build_world(settings)
    reads: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        reading = statement.lstrip().startswith("SELECT")
        if reading and ("evidence_json" in statement or "activity_id IN" in statement):
            reads.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        result = bill(settings, engine)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    engine.dispose()
    assert result.lines == 6 and not result.held_back
    evidence = [s for s in reads if "evidence_json" in s]
    # One read of the records' evidence (one chunk of patients), and none of the activities
    # they name by id (they come with the patients' activities of the period): the audit's
    # facts are the evidence frozen with the run.
    assert len(evidence) == 1, evidence
    assert len(reads) == 1, reads


def test_evidence_table_round_trips_every_field_and_matches_a_row_by_row_table() -> None:
    from datetime import date

    import pyarrow as pa

    from rpmpipe.billing_export.evidence import (
        ActivityEvidence,
        DayEvidence,
        LineEvidence,
        evidence_table,
    )

    call = ActivityEvidence(
        "A-1",
        datetime(2026, 11, 5, 16, tzinfo=UTC),
        Decimal("20.5"),
        "phone_call",
        "RN-8",
        True,
        performer="clinical_staff",
        goals_reviewed=("G-BP", "G-DIET"),
        pro_instrument="PHQ-9",
        pro_score=Decimal(7),
        note_ref="N-1",
    )
    survey = ActivityEvidence(
        "A-2", datetime(2026, 11, 6, 16, tzinfo=UTC), Decimal(0), "questionnaire", "", False
    )

    def line(n: int, **fields: object) -> LineEvidence:
        base: dict[str, object] = dict(
            line_control_number=f"RP1-{n}",
            claim_id="RP1",
            line_no=n,
            run_id="run",
            patient_id="P-01",
            program="RPM",
            record_kind="device_supply",
            code="99454",
            units=1,
            charge=Decimal("47.1"),
            date_of_service=date(2026, 11, 30),
            period_start=date(2026, 11, 1),
            period_end=date(2026, 11, 30),
            rule_set="CY2026",
            transmission_days=2,
            interactive_minutes=Decimal(0),
            ordering_npi="1234567893",
            consent_date=None,
            enrollment_start=date(2026, 1, 1),
            enrollment_end=None,
        )
        base.update(fields)
        return LineEvidence(**base)  # type: ignore[arg-type]

    lines = [
        line(
            1,
            days=(
                DayEvidence(date(2026, 11, 1), ("R-1", "R-2"), ("BP-1",)),
                DayEvidence(date(2026, 11, 2), (), ()),
            ),
        ),
        line(2, code="99457", activities=(call,), documentation=(survey,)),
        line(3, consent_date=date(2026, 1, 1), enrollment_end=date(2026, 12, 31)),
    ]
    table = evidence_table(lines)
    assert table.schema.equals(EVIDENCE_SCHEMA)
    assert evidence_from_table(table) == lines
    rows = table.to_pylist()
    assert pa.Table.from_pylist(rows, schema=EVIDENCE_SCHEMA).equals(table)
    assert rows[0]["days"][1] == {"day": date(2026, 11, 2), "reading_ids": [], "device_ids": []}
    assert evidence_table([]).num_rows == 0


def test_an_activity_a_record_names_outside_its_patients_period_is_still_read_by_id(
    tmp_path: Path, database_url: str
) -> None:
    # The facts take the activities a record names from its patient's activities of the
    # period; one found nowhere there (another patient's, or outside the period) is read by id.
    from sqlalchemy import insert

    from rpmpipe.billing_export.evidence_load import collect_facts
    from rpmpipe.registry.models import EngagementRow

    settings = world_settings(tmp_path, database_url)
    engine = build_world(settings)
    key = ("P-02", "RPM", "treatment_management", date(2026, 10, 1))
    with engine.begin() as conn:
        conn.execute(
            insert(EngagementRow).values(
                patient_id="P-02",
                program="RPM",
                kind="treatment_management",
                period_start=date(2026, 10, 1),
                period_end=date(2026, 10, 31),
                status="billable",
                rule_set="CY2026",
                lines_json="[]",
                evidence_json=json.dumps({"dates": [], "activity_ids": ["A-02-1", "A-01-1"]}),
                as_of=date(2026, 11, 5),
                computed_at=datetime(2026, 11, 5, tzinfo=UTC),
            )
        )
    facts = collect_facts(engine, settings.readings_dir, [(key, date(2026, 10, 31))])[key]
    engine.dispose()
    assert [a.activity_id for a in facts.activities] == ["A-02-1", "A-01-1"]
    assert [a.activity_id for a in facts.period_activities] == ["A-02-1", "A-02-2"]
    assert facts.activities[1].goals_reviewed == ("G-BP", "G-DIET")


def test_the_facts_of_all_patients_read_in_one_pass_equal_those_read_by_patient_ids(
    tmp_path: Path, database_url: str
) -> None:
    # More than half the registry's patients are read in one pass over each table, fewer by
    # lists of their ids: the facts are the same either way.
    from sqlalchemy import select

    from rpmpipe.billing_export.evidence_load import collect_facts
    from rpmpipe.registry.models import EngagementRow

    settings = world_settings(tmp_path, database_url)
    engine = build_world(settings)
    bill(settings, engine)
    e = EngagementRow
    with engine.connect() as conn:
        keys = [
            ((r.patient_id, r.program, r.kind, r.period_start), r.period_end)
            for r in conn.execute(
                select(e.patient_id, e.program, e.kind, e.period_start, e.period_end)
            )
        ]
    everyone = collect_facts(engine, settings.readings_dir, keys)
    by_patient = {}
    for patient_id in ("P-01", "P-02"):
        mine = [(k, end) for k, end in keys if k[0] == patient_id]
        by_patient.update(collect_facts(engine, settings.readings_dir, mine))
    engine.dispose()
    assert len(everyone) == len(keys) >= 4
    assert any(f.activities and f.period_activities for f in everyone.values())
    assert any(f.day_counts and f.day_counts[0] for f in everyone.values())
    assert everyone == by_patient
