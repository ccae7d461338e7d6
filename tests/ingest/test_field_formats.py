"""Ingest end to end for the shapes the field sends: impossible activity dates, gateway
Bundles naming their device by serial number, and files imported for one device."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from ingest_helpers import register_patient, stored_readings
from sqlalchemy import Engine, select
from typer.testing import CliRunner, Result

from rpmpipe.app.cli import app
from rpmpipe.ingest.backfill import backfill_file
from rpmpipe.ingest.pipeline import IngestPipeline, Message
from rpmpipe.ingest.quarantine import read_quarantine
from rpmpipe.ingest.replay import replay
from rpmpipe.registry.db import open_registry
from rpmpipe.registry.imports import import_rows
from rpmpipe.registry.models import CareActivity
from rpmpipe.settings import Settings

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


@pytest.fixture
def registry(settings: Settings):  # type: ignore[no-untyped-def]
    engine = open_registry(settings.effective_database_url)
    yield engine
    engine.dispose()


def activity(activity_id: str, started_at: str) -> dict[str, object]:
    return {
        "activity_id": activity_id,
        "patient_id": "P1",
        "staff_id": "RN-1",
        "started_at": started_at,
        "minutes": 12,
        "kind": "phone_call",
        "interactive": True,
    }


def test_activity_with_an_impossible_date_is_quarantined_as_bad_time_and_the_rest_stored(
    settings: Settings, registry: Engine
) -> None:
    register_patient(registry)
    topic = f"{settings.broker.topic_root}/activities"
    messages = [
        Message(topic, orjson.dumps(activity("A-1", "2026-11-20T09:00:00-06:00")), NOW),
        Message(topic, orjson.dumps(activity("A-2", "9999-12-31T23:59:59-14:00")), NOW),
        Message(topic, orjson.dumps(activity("A-3", "0001-01-01T00:00:00Z")), NOW),
        Message(topic, orjson.dumps(activity("A-4", "2026-11-22T00:00:00Z")), NOW),
        Message(
            topic,
            orjson.dumps(
                [
                    activity("A-5", "2026-11-19T10:00:00Z"),
                    activity("A-6", "0001-01-01T00:30:00+01:00"),
                ]
            ),
            NOW,
        ),
    ]
    outcome = IngestPipeline(settings.ingest, registry, "t").handle(messages)
    assert outcome.activities == 2
    assert outcome.quarantined == {"bad_time": 4}
    with registry.connect() as conn:
        stored = sorted(conn.execute(select(CareActivity.activity_id)).scalars())
    assert stored == ["A-1", "A-5"]
    reasons = sorted(read_quarantine(settings.quarantine_dir).column("reason").to_pylist())
    assert all("started_at: is outside the accepted range" in r for r in reasons)
    assert any(r.startswith("item 2 of 2: ") for r in reasons)


LOINC = "http://loinc.org"
MDC = "urn:iso:std:iso:11073:10101"
DEVICE_URN = "urn:uuid:3c9a1d2e-4f5b-4a6c-8d7e-9f0a1b2c3d4e"


def gateway_upload(serial: str, minute: int) -> bytes:
    """A PHD gateway Bundle: Patient, the cuff's Device (by urn:uuid) and one BP Observation."""
    bp = {
        "resourceType": "Observation",
        "status": "final",
        "identifier": [{"value": f"{serial}-{minute}"}],
        "code": {"coding": [{"system": MDC, "code": "150020"}]},
        "subject": {"reference": "urn:uuid:patient"},
        "device": {"reference": DEVICE_URN},
        "effectiveDateTime": f"2026-11-19T07:{minute:02d}:00-06:00",
        "component": [
            {
                "code": {"coding": [{"system": MDC, "code": code}]},
                "valueQuantity": {
                    "value": value,
                    "system": "http://unitsofmeasure.org",
                    "code": "mm[Hg]",
                },
            }
            for code, value in (("150021", 128), ("150022", 81))
        ],
    }
    device = {
        "resourceType": "Device",
        "serialNumber": serial,
        "identifier": [
            {
                "system": "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680",
                "value": "00-09-1F-FF-FE-80-01-17",
            }
        ],
    }
    return orjson.dumps(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"fullUrl": "urn:uuid:patient", "resource": {"resourceType": "Patient"}},
                {"fullUrl": DEVICE_URN, "resource": device},
                {"fullUrl": "urn:uuid:obs", "resource": bp},
            ],
        }
    )


def register_device(engine: Engine, device_id: str, serial: str | None = None) -> None:
    row = {"device_id": device_id, "kind": "bp_cuff", "model": "test"}
    if serial is not None:
        row["serial_number"] = serial
    import_rows(engine, "devices", [row], source="test")


def test_gateway_bundle_is_stored_under_the_device_its_serial_number_names(
    settings: Settings, registry: Engine, tmp_path: Path
) -> None:
    register_device(registry, "BP-000123", "SN-44107")
    register_device(registry, "BP-000999")
    jsonl = tmp_path / "gateway.jsonl"
    jsonl.write_bytes(gateway_upload("SN-44107", 1) + b"\n" + gateway_upload("SN-55555", 2) + b"\n")
    summary = backfill_file(settings.ingest, registry, jsonl, NOW)
    assert (summary.stored, dict(summary.quarantined)) == (1, {"unknown_device": 1})
    topic = f"{settings.broker.topic_root}/devices/BP-000123/readings"
    other = f"{settings.broker.topic_root}/devices/BP-000999/readings"
    outcome = IngestPipeline(settings.ingest, registry, "t").handle(
        [
            Message(topic, gateway_upload("SN-44107", 3), NOW),
            Message(other, gateway_upload("SN-44107", 4), NOW),
        ]
    )
    assert (outcome.stored, dict(outcome.quarantined)) == (1, {"device_mismatch": 1})
    table = stored_readings(settings)
    assert table.column("device_id").to_pylist() == ["BP-000123", "BP-000123"]
    assert table.column("systolic_mmhg").to_pylist() == [128, 128]
    # Registering the unknown cuff's serial number lets a replay store its upload.
    register_device(registry, "BP-000555", "SN-55555")
    assert replay(settings.ingest, registry, "unknown_device").stored == 1
    assert "BP-000555" in stored_readings(settings).column("device_id").to_pylist()


def fhir_weight(minute: int, device: dict[str, object] | None = None) -> bytes:
    doc: dict[str, object] = {
        "resourceType": "Observation",
        "id": f"w-{minute}",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "29463-7"}]},
        "effectiveDateTime": f"2026-11-19T06:{minute:02d}:00Z",
        "valueQuantity": {"value": 182, "unit": "pounds", "code": "[lb_av]"},
    }
    if device is not None:
        doc["device"] = device
    return orjson.dumps(doc)


def import_readings(settings: Settings, *args: str) -> Result:
    return CliRunner().invoke(
        app,
        [
            "--data-dir",
            str(settings.data_dir),
            "--database-url",
            settings.effective_database_url,
            "import",
            "readings",
            *args,
        ],
    )


def test_import_readings_for_one_device_stores_payloads_that_name_no_device(
    settings: Settings, registry: Engine, tmp_path: Path
) -> None:
    register_device(registry, "SC-1")
    register_device(registry, "SC-2")
    jsonl = tmp_path / "export.jsonl"
    lines = [fhir_weight(1), fhir_weight(2), fhir_weight(3, {"reference": "Device/SC-2"})]
    jsonl.write_bytes(b"\n".join(lines) + b"\n")
    # Without --device, lines that name no device cannot be stored.
    result = import_readings(settings, str(jsonl))
    assert result.exit_code == 0 and "1 readings stored" in result.output
    assert "line 1: missing_field" in result.output and "line 2: missing_field" in result.output
    result = import_readings(settings, str(jsonl), "--device", "SC-1")
    assert result.exit_code == 0, result.output
    assert "2 readings stored" in result.output and "line 3: device_mismatch" in result.output
    table = stored_readings(settings).sort_by("measured_at")
    assert table.column("device_id").to_pylist() == ["SC-1", "SC-1", "SC-2"]
    assert table.column("weight_kg").to_pylist() == [82.554, 82.554, 82.554]


def test_import_readings_for_an_unregistered_device_imports_nothing(
    settings: Settings, registry: Engine, tmp_path: Path
) -> None:
    jsonl = tmp_path / "export.jsonl"
    jsonl.write_bytes(fhir_weight(1) + b"\n")
    for device in ("SC-404", "../x"):
        result = import_readings(settings, str(jsonl), "--device", device)
        assert result.exit_code != 0
        assert "--device" in result.output and "nothing was imported" in result.output
    assert stored_readings(settings).num_rows == 0
    assert (
        not settings.quarantine_dir.exists()
        or read_quarantine(settings.quarantine_dir).num_rows == 0
    )
