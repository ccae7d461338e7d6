"""compute_and_persist on a real registry (SQLite and PostgreSQL) and real Parquet files."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine, insert, select, update

from rpmpipe.errors import AsOfError, RpmpipeError
from rpmpipe.metrics.job import (
    compute,
    compute_and_persist,
    load_registry_snapshot,
)
from rpmpipe.metrics.sources import reading_batches
from rpmpipe.registry.db import open_registry
from rpmpipe.registry.models import (
    CareActivity,
    Device,
    DeviceAssignment,
    EngagementRow,
    Enrollment,
    Patient,
)
from rpmpipe.settings import Settings, load_settings

AS_OF = date(2026, 4, 5)


def _settings(tmp_path: Path, database_url: str) -> Settings:
    return load_settings(
        None, env={}, overrides={"data_dir": str(tmp_path / "data"), "database_url": database_url}
    )


def seed_registry(engine: Engine) -> None:
    """P1 (Chicago) with a cuff, 20 days of data and 45 minutes; P2 without consent."""
    patient = {
        "mrn": "M",
        "first_name": "Ann",
        "last_name": "Baker",
        "birth_date": date(1950, 1, 1),
        "sex": "F",
        "address1": "1 Main St",
        "city": "Springfield",
        "state": "IL",
        "zip": "62701",
        "payer_id": "MEDICARE",  # the default payer of the billing settings
        "payer_name": "MEDICARE PART B",
        "member_id": "1EG4TE5MK73",
        "icd10_codes": "I10",
    }
    with engine.begin() as conn:
        conn.execute(
            insert(Patient),
            [
                {**patient, "patient_id": "P1", "timezone": "America/Chicago"},
                {**patient, "patient_id": "P2", "timezone": "America/Los_Angeles"},
            ],
        )
        conn.execute(
            insert(Device),
            [
                {"device_id": "BP-1", "kind": "bp_cuff", "model": "m"},
                {"device_id": "BP-2", "kind": "bp_cuff", "model": "m"},
            ],
        )
        conn.execute(
            insert(DeviceAssignment),
            [
                {
                    "device_id": "BP-1",
                    "patient_id": "P1",
                    "start_date": date(2026, 2, 1),
                    "end_date": None,
                },
                {
                    "device_id": "BP-2",
                    "patient_id": "P2",
                    "start_date": date(2026, 2, 1),
                    "end_date": None,
                },
            ],
        )
        conn.execute(
            insert(Enrollment),
            [
                {
                    "patient_id": "P1",
                    "program": "RPM",
                    "start_date": date(2026, 3, 1),
                    "end_date": None,
                    "consent_date": date(2026, 3, 1),
                    "ordering_npi": "1234567893",
                },
                {
                    "patient_id": "P2",
                    "program": "RPM",
                    "start_date": date(2026, 3, 1),
                    "end_date": None,
                    "consent_date": None,
                    "ordering_npi": "1234567893",
                },
            ],
        )
        conn.execute(
            insert(CareActivity),
            [
                {
                    "activity_id": "A1",
                    "patient_id": "P1",
                    "staff_id": "S1",
                    "started_at": datetime(2026, 3, 10, 15, 0, tzinfo=UTC),
                    "minutes": Decimal("25"),
                    "kind": "phone_call",
                    "interactive": True,
                    "program": "RPM",
                },
                {
                    "activity_id": "A2",
                    "patient_id": "P1",
                    "staff_id": "S1",
                    "started_at": datetime(2026, 3, 11, 15, 0, tzinfo=UTC),
                    "minutes": Decimal("20.5"),
                    "kind": "data_review",
                    "interactive": False,
                    "program": "RPM",
                },
                {
                    "activity_id": "C1",
                    "patient_id": "P1",
                    "staff_id": "S1",  # counted for CCM, not RPM
                    "started_at": datetime(2026, 3, 12, 15, 0, tzinfo=UTC),
                    "minutes": Decimal("30"),
                    "kind": "phone_call",
                    "interactive": True,
                    "program": "CCM",
                },
            ],
        )


def write_readings(readings_dir: Path) -> None:
    """The ingest layout: one file per UTC day under date=YYYY-MM-DD."""
    start = datetime(2026, 3, 1, 18, 0, tzinfo=UTC)
    for i in range(20):
        when = start + timedelta(days=i)
        part = readings_dir / f"date={when.date().isoformat()}"
        part.mkdir(parents=True, exist_ok=True)
        table = pa.table(
            {
                "device_id": ["BP-1", "BP-1", "BP-2"],
                "reading_id": [f"r{i}a", f"r{i}b", f"r{i}c"],
                "type": ["blood_pressure", "blood_pressure", "blood_pressure"],
                "measured_at": pa.array([when, when, when], pa.timestamp("us", tz="UTC")),
                "manual_entry": [False, False, False],
                "clock_suspect": [False, False, False],
                "systolic_mmhg": [120.0, 121.0, 130.0],
            }
        )
        pq.write_table(table, part / "part-0.parquet")
    # Outside the window: if the partition filter did not prune it, reading it would fail.
    old = readings_dir / "date=2019-01-01"
    old.mkdir(parents=True)
    (old / "part-0.parquet").write_bytes(b"not parquet")


def _rows(engine: Engine) -> list[tuple[object, ...]]:
    t = EngagementRow.__table__
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(select(t).order_by(t.c.patient_id, t.c.kind, t.c.period_start))
        ]


def test_compute_and_persist_writes_final_records_idempotently(
    seeded: tuple[Settings, Engine],
) -> None:
    settings, engine = seeded
    now = datetime(2026, 4, 6, 7, 0, tzinfo=UTC)

    records = compute_and_persist(settings.metrics, engine, AS_OF, now)

    p1 = {(r.kind, r.period_start): r for r in records if r.patient_id == "P1"}
    assert p1[("device_supply", date(2026, 3, 1))].transmission_days == 20
    assert p1[("treatment_management", date(2026, 3, 1))].management_minutes == Decimal("45.5")
    assert p1[("treatment_management", date(2026, 3, 1))].interactive_minutes == Decimal("25")
    t = EngagementRow.__table__
    with engine.connect() as conn:
        stored = {(r.patient_id, r.kind, r.period_start): r for r in conn.execute(select(t))}
    # Final only: period 1 and March; the open period 2 (from Mar 31) is not persisted.
    assert set(stored) == {
        ("P1", "setup", date(2026, 3, 1)),
        ("P1", "device_supply", date(2026, 3, 1)),
        ("P1", "treatment_management", date(2026, 3, 1)),
    }
    supply = stored[("P1", "device_supply", date(2026, 3, 1))]
    assert supply.status == "billable"
    assert json.loads(supply.lines_json) == [
        {"code": "99454", "units": 1, "date_of_service": "2026-03-30"}
    ]
    evidence = json.loads(supply.evidence_json)
    assert evidence["dates"][0] == "2026-03-01" and len(evidence["dates"]) == 20
    month = stored[("P1", "treatment_management", date(2026, 3, 1))]
    assert json.loads(month.lines_json) == [
        {"code": "99457", "units": 1, "date_of_service": "2026-03-31"},
        {"code": "99458", "units": 1, "date_of_service": "2026-03-31"},
    ]
    assert json.loads(month.evidence_json) == {"dates": [], "activity_ids": ["A1", "A2"]}
    assert month.interactive_communications == 1
    assert month.management_minutes == Decimal("45.5")
    assert month.interactive_minutes == Decimal("25")
    assert month.ordering_npi == "1234567893"
    assert month.episode_start == date(2026, 3, 1)

    before = _rows(engine)
    compute_and_persist(settings.metrics, engine, AS_OF, now + timedelta(hours=5))
    assert _rows(engine) == before


def test_no_consent_patient_is_reported_but_not_persisted_while_open(
    seeded: tuple[Settings, Engine],
) -> None:
    settings, engine = seeded
    records = compute(settings.metrics, engine, AS_OF)
    p2 = [r for r in records if r.patient_id == "P2"]
    assert [(r.status, r.reason) for r in p2] == [
        (
            "not_billable",
            "no consent on file: 20 days with data would count once consent is on file",
        )
    ]
    assert load_registry_snapshot(engine).zone_of("P2", "UTC") == "America/Los_Angeles"


def test_reads_a_dataset_written_by_another_tool(tmp_path: Path) -> None:
    """No date partition, naive nanosecond timestamps, no flag columns, extra columns."""
    root = tmp_path / "other"
    root.mkdir()
    # Naive on purpose: another tool's UTC timestamps without a zone.
    when = [datetime(2026, 3, 1, 18) + timedelta(days=i) for i in range(4)]  # noqa: DTZ001
    pq.write_table(
        pa.table(
            {
                "measured_at": pa.array(when, pa.timestamp("ns")),
                "device_id": ["BP-1"] * 4,
                "type": ["blood_pressure", "blood_pressure", "battery", "body_weight"],
                "vendor": ["x"] * 4,
            }
        ),
        root / "export.parquet",
    )
    batches = list(reading_batches(root, date(2026, 3, 1), date(2026, 3, 31)))
    assert sum(b.num_rows for b in batches) == 4
    assert set(batches[0].schema.names) == {
        "device_id",
        "type",
        "measured_at",
        "manual_entry",
        "clock_suspect",
    }


def test_missing_readings_directory_yields_nothing(tmp_path: Path) -> None:
    assert list(reading_batches(tmp_path / "absent", date(2026, 3, 1), date(2026, 3, 2))) == []


def test_dataset_without_contract_columns_is_refused(tmp_path: Path) -> None:
    pq.write_table(pa.table({"x": [1]}), tmp_path / "a.parquet")
    with pytest.raises(ValueError, match="lacks columns"):
        list(reading_batches(tmp_path, date(2026, 3, 1), date(2026, 3, 2)))


def test_counts_readings_stored_by_the_ingest_sink(tmp_path: Path) -> None:
    """The real storage writer's files (its schema, partitions, temp-file names) are read."""
    sink_module = pytest.importorskip("rpmpipe.ingest.sink")
    from rpmpipe.records import Reading

    settings = _settings(tmp_path, f"sqlite:///{tmp_path / 'registry.db'}")
    engine = open_registry(settings.effective_database_url)
    seed_registry(engine)
    sink = sink_module.ReadingSink(settings.readings_dir, "test-writer")
    received = datetime(2026, 4, 1, tzinfo=UTC)
    readings = [
        Reading(
            "BP-1",
            "blood_pressure",
            datetime(2026, 3, d, 18, tzinfo=UTC),
            received,
            reading_id=f"r{d}",
            systolic_mmhg=120.0,
            diastolic_mmhg=80.0,
        )
        for d in range(1, 18)
    ]
    readings.append(
        Reading(
            "BP-1",
            "blood_pressure",
            datetime(2026, 3, 20, 18, tzinfo=UTC),
            received,
            reading_id="manual",
            manual_entry=True,
        )
    )
    readings.append(
        Reading(
            "BP-1",
            "blood_pressure",
            datetime(2026, 3, 21, 18, tzinfo=UTC),
            received,
            reading_id="future",
            clock_suspect=True,
        )
    )
    sink.write(readings)
    supply = [
        r
        for r in compute(settings.metrics, engine, AS_OF)
        if r.kind == "device_supply" and r.patient_id == "P1"
    ]
    assert supply[0].transmission_days == 17
    assert [x.code for x in supply[0].lines] == ["99454"]


def test_patient_without_a_zone_is_counted_in_the_organisations_zone(
    tmp_path: Path, database_url: str
) -> None:
    settings = _settings(tmp_path, database_url)  # organisation: America/New_York
    engine = open_registry(database_url)
    seed_registry(engine)
    zones = [""]
    if Patient.__table__.c.timezone.nullable:
        zones.append(None)  # type: ignore[arg-type]
    for zone in zones:
        with engine.begin() as conn:
            conn.execute(update(Patient).where(Patient.patient_id == "P1").values(timezone=zone))
        snapshot = load_registry_snapshot(engine)
        assert snapshot.zone_of("P1", settings.organization_timezone) == "America/New_York"
        # 03:30 UTC is the evening before in New York (Chicago, P1's old zone, agrees; UTC
        # would not): the day and the month follow the organisation's zone.
        part = settings.readings_dir / "date=2026-04-01"
        part.mkdir(parents=True, exist_ok=True)
        when = datetime(2026, 4, 1, 3, 30, tzinfo=UTC)
        pq.write_table(
            pa.table(
                {
                    "device_id": ["BP-1"],
                    "type": ["blood_pressure"],
                    "measured_at": pa.array([when], pa.timestamp("us", tz="UTC")),
                }
            ),
            part / "part-0.parquet",
        )
        with engine.begin() as conn:
            conn.execute(
                insert(CareActivity),
                [
                    {
                        "activity_id": f"late-{zones.index(zone)}",
                        "patient_id": "P1",
                        "staff_id": "S1",
                        "started_at": when,
                        "minutes": Decimal("5"),
                        "kind": "phone_call",
                        "interactive": True,
                        "program": "RPM",
                    }
                ],
            )
        records = compute(settings.metrics, engine, AS_OF)
        p1 = [r for r in records if r.patient_id == "P1"]
        supply = next(r for r in p1 if r.kind == "device_supply")
        assert supply.evidence_dates == (date(2026, 3, 31),)
        months = {r.period_start: r for r in p1 if r.kind == "treatment_management"}
        assert date(2026, 4, 1) not in months
        assert f"late-{zones.index(zone)}" in months[date(2026, 3, 1)].evidence_activity_ids


def test_compute_and_persist_refuses_an_as_of_after_today_and_saves_nothing(
    seeded: tuple[Settings, Engine],
) -> None:
    settings, engine = seeded  # organisation: America/New_York
    # 02:00 UTC on Apr 6 is still Apr 5 in New York: Apr 6 is tomorrow there.
    now = datetime(2026, 4, 6, 2, 0, tzinfo=UTC)
    with pytest.raises(AsOfError, match=r"as-of date 2026-04-06 is after today \(2026-04-05"):
        compute_and_persist(settings.metrics, engine, date(2026, 4, 6), now)
    assert issubclass(AsOfError, RpmpipeError)
    assert _rows(engine) == []
    # Today itself is accepted (only periods ended before it are final).
    assert compute_and_persist(settings.metrics, engine, date(2026, 4, 5), now)
    assert _rows(engine)


def test_compute_and_persist_needs_an_aware_clock(tmp_path: Path) -> None:
    settings = _settings(tmp_path, f"sqlite:///{tmp_path / 'registry.db'}")
    engine = open_registry(settings.effective_database_url)
    with pytest.raises(ValueError, match="timezone-aware"):
        compute_and_persist(settings.metrics, engine, AS_OF, datetime(2026, 4, 6, 7))  # noqa: DTZ001
