"""No PHI in logs: a whole scenario at DEBUG level leaves no name, birth date, address or member id.

The scenario runs every stage: registry imports (including a rejected file), ingest
from the broker (including quarantined payloads that carry PHI), metrics and the 837P/CSV export,
whose files legitimately hold that PHI. The captured log must hold none of it, in JSON and text
format. Database and broker URLs must be logged without their passwords.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import stat
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from billing_identity import OTHER_ORGANISATION_NPI, with_identity
from sqlalchemy import Engine

from rpmpipe.billing_export.export import run_export
from rpmpipe.errors import RegistryImportError
from rpmpipe.ingest.subscriber import IngestService
from rpmpipe.logs import configure_logging
from rpmpipe.metrics.job import compute_and_persist
from rpmpipe.mqtt import make_client
from rpmpipe.registry.db import open_registry
from rpmpipe.registry.imports import KINDS, import_csv
from rpmpipe.settings import Settings, redact_url

# Distinctive values that cannot appear in a log by coincidence.
PHI = {
    "first_name": "Zebulonia",
    "last_name": "Quackenbush-Ferreira",
    "birth_date": "1931-07-19",
    "address1": "4417 Wolfsbane Hollow Rd",
    "city": "Pennyroyal",
    "zip": "59873",
    "member_id": "7QX4MK2RP91",  # an MBI: Medicare claims need one
    "mrn": "MRN88231774",
}
# The same facts as the 837P and the charge CSV spell them.
PHI_SPELLINGS = [*PHI.values(), "19310719", "07/19/1931", "ZEBULONIA", "QUACKENBUSH", "WOLFSBANE"]
PATIENT_ID = "P-PHI-1"
DEVICE_ID = "BP-PHI001"
AS_OF = date(2026, 11, 5)
WAIT = 30.0  # hang guard only


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Route all logging to a buffer; restore the previous logging setup afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    saved_levels = {name: logging.getLogger(name).level for name in logging.root.manager.loggerDict}
    buffer = io.StringIO()
    yield buffer
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved_handlers:
        root.addHandler(handler)
    root.setLevel(saved_level)
    for name, level in saved_levels.items():
        logging.getLogger(name).setLevel(level)


def _write_csv(path: Path, kind: str, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=KINDS[kind].columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _patient(**changes: str) -> dict[str, str]:
    row = {
        "patient_id": PATIENT_ID, "sex": "F", "state": "MT", "timezone": "America/Denver",
        "payer_id": "MEDICARE", "payer_name": "Medicare Part B", "icd10_codes": "I10",
        **PHI,
    }  # fmt: skip
    row.update(changes)
    return row


def _import_registry(engine: Engine, tmp: Path) -> None:
    files = {
        "patients": [_patient()],
        "devices": [{"device_id": DEVICE_ID, "kind": "bp_cuff", "model": "UA-651"}],
        "assignments": [
            {"device_id": DEVICE_ID, "patient_id": PATIENT_ID, "start_date": "2026-10-01",
             "end_date": ""},
        ],
        "enrollments": [
            {"patient_id": PATIENT_ID, "program": "RPM", "start_date": "2026-10-01",
             "end_date": "", "consent_date": "2026-10-01", "ordering_npi": "1234567893"},
        ],
        "activities": [
            {"activity_id": f"A-{n}", "patient_id": PATIENT_ID, "staff_id": "S-1",
             "started_at": f"2026-10-{10 + n:02d}T10:00:00-06:00", "minutes": "12",
             "kind": "phone_call", "interactive": "true"}
            for n in range(3)
        ],
    }  # fmt: skip
    for kind, rows in files.items():
        import_csv(
            engine,
            kind,
            _write_csv(tmp / f"{kind}.csv", kind, rows),
            now=datetime(2026, 11, 3, tzinfo=UTC),
        )
    # A rejected file whose bad cell is itself PHI (an impossible birth date next to a name).
    bad = _write_csv(
        tmp / "bad.csv", "patients", [_patient(patient_id="P-PHI-2", birth_date="1931-02-30")]
    )
    with pytest.raises(RegistryImportError):
        import_csv(engine, "patients", bad)


def _payloads() -> list[bytes]:
    good = [
        orjson.dumps({
            "device_id": DEVICE_ID, "reading_id": f"{DEVICE_ID}-{day}",
            "measured_at": f"2026-10-{day:02d}T07:30:00-06:00", "type": "blood_pressure",
            "systolic_mmhg": 131, "diastolic_mmhg": 84, "pulse_bpm": 66,
            "note": f"{PHI['first_name']} {PHI['last_name']}",  # kept as an extra field
        })
        for day in range(1, 21)
    ]  # fmt: skip
    truncated = f'{{"device_id": "{DEVICE_ID}", "patient": "{PHI["last_name"]}", '
    naive_time = {
        "device_id": DEVICE_ID,
        "type": "blood_pressure",
        "measured_at": PHI["birth_date"],
        "member_id": PHI["member_id"],
    }
    bad = [truncated.encode(), orjson.dumps(naive_time)]
    return good + bad


def _ingest(settings: Settings, engine: Engine, payloads: list[bytes]) -> None:
    service = IngestService(settings.ingest, engine)
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + WAIT
        while service.stats.subscribed < 1:
            assert time.monotonic() < deadline and thread.is_alive(), "ingest never subscribed"
            time.sleep(0.02)
        protocol = mqtt.MQTTv5 if settings.broker.protocol == "5" else mqtt.MQTTv311
        client, address = make_client(settings.broker, f"{settings.broker.client_id}-pub",
                                      protocol=protocol)  # fmt: skip
        client.connect(address.host, address.port)
        client.loop_start()
        topic = f"{settings.broker.topic_root}/devices/{DEVICE_ID}/readings"
        infos = [client.publish(topic, p, qos=1) for p in payloads]
        for info in infos:
            info.wait_for_publish(WAIT)
        client.disconnect()
        client.loop_stop()
        while service.stats.processed < len(payloads):
            assert time.monotonic() < deadline and thread.is_alive(), f"stats {service.stats}"
            time.sleep(0.02)
    finally:
        stop.set()
        thread.join(WAIT)
    assert service.stats.stored == 20
    assert service.stats.quarantined_total == 2


@pytest.mark.services
@pytest.mark.parametrize("fmt", ["json", "text"])
def test_whole_scenario_at_debug_logs_no_phi(
    stack: Any, fmt: str, tmp_path: Path, captured_logs: io.StringIO
) -> None:
    # The seed enrollment is ordered under 1234567893: a practitioner of the clinic.
    settings: Settings = with_identity(stack.settings, OTHER_ORGANISATION_NPI, "1234567893")
    configure_logging("DEBUG", fmt, stream=captured_logs)
    engine = open_registry(settings.effective_database_url)
    try:
        _import_registry(engine, tmp_path)
        _ingest(settings, engine, _payloads())
        records = compute_and_persist(
            settings.metrics, engine, AS_OF, datetime(2026, 11, 5, 9, tzinfo=UTC)
        )
        assert any(r.status == "billable" for r in records)
        result = run_export(
            settings.export, engine, AS_OF, now=datetime(2026, 11, 5, 9, 5, tzinfo=UTC)
        )
        assert result.claims >= 1
        assert result.run_dir is not None
        files = [p for p in result.run_dir.rglob("*") if p.is_file()]
        exported = b"".join(p.read_bytes() for p in files)
        assert PHI["last_name"].upper().encode() in exported.upper()  # PHI is in the files...
    finally:
        engine.dispose()

    text = captured_logs.getvalue()
    assert "registry_import" in text  # the capture works and saw the stages
    for event in ("ingest_stopped", "engagement_computed", "export_finished"):
        assert event in text
    for value in PHI_SPELLINGS:  # ...and nowhere in the logs
        assert value.lower() not in text.lower(), f"{value!r} leaked into the {fmt} log"
    assert "debug" in text.lower()  # DEBUG really was on


@pytest.mark.services
def test_data_and_export_files_are_private(
    stack: Any, tmp_path: Path, captured_logs: io.StringIO
) -> None:
    """Readings, quarantine and export files are 0600 in 0700 directories."""
    settings: Settings = with_identity(stack.settings, OTHER_ORGANISATION_NPI, "1234567893")
    configure_logging("WARNING", "json", stream=captured_logs)
    engine = open_registry(settings.effective_database_url)
    try:
        _import_registry(engine, tmp_path)
        _ingest(settings, engine, _payloads())
        compute_and_persist(settings.metrics, engine, AS_OF, datetime(2026, 11, 5, 9, tzinfo=UTC))
        run_export(settings.export, engine, AS_OF, now=datetime(2026, 11, 5, 9, 5, tzinfo=UTC))
    finally:
        engine.dispose()
    checked = {"readings": 0, "quarantine": 0, "exports": 0}
    for base in (settings.readings_dir, settings.quarantine_dir, settings.exports_dir):
        for dirpath, _dirs, files in os.walk(base):
            assert stat.S_IMODE(os.stat(dirpath).st_mode) == 0o700, dirpath
            for name in files:
                mode = stat.S_IMODE(os.stat(os.path.join(dirpath, name)).st_mode)
                assert mode == 0o600, os.path.join(dirpath, name)
                checked[base.name] += 1
    assert checked["readings"] >= 1 and checked["quarantine"] >= 1 and checked["exports"] >= 1


@pytest.mark.parametrize(
    "url, secret",
    [
        ("postgresql+psycopg://rpm:S3cr3t-Pg@db.internal:5432/rpm", "S3cr3t-Pg"),
        ("postgresql://rpm:p%40ss%3Aword@db/rpm", "p%40ss%3Aword"),
        ("mqtts://ingest:Br0ker-Pw@broker.example:8883", "Br0ker-Pw"),
        ("mqtt://:only-a-password@127.0.0.1:1883", "only-a-password"),
    ],
)
def test_redact_url_hides_passwords(url: str, secret: str) -> None:
    redacted = redact_url(url)
    assert secret not in redacted
    assert "***" in redacted
    assert redacted.split("@")[-1] == url.split("@")[-1]  # host, port and path still shown


def test_redact_url_leaves_password_free_urls_alone() -> None:
    assert (
        redact_url("sqlite:////var/lib/rpmpipe/registry.db")
        == "sqlite:////var/lib/rpmpipe/registry.db"
    )
    assert redact_url("mqtts://broker:8883") == "mqtts://broker:8883"


def test_settings_problems_are_reported_without_the_password() -> None:
    from rpmpipe.errors import ConfigError
    from rpmpipe.settings import load_settings

    with pytest.raises(ConfigError) as info:
        load_settings(None, env={"RPMPIPE_BROKER_URL": "http://ingest:Sup3rSecret@broker"})
    assert "Sup3rSecret" not in str(info.value)


def test_default_sqlite_registry_is_private(tmp_path: Path) -> None:
    from sqlalchemy import text

    from rpmpipe.settings import load_settings

    settings = load_settings(None, env={"RPMPIPE_DATA_DIR": str(tmp_path / "data")})
    engine = open_registry(settings.effective_database_url)
    with engine.begin() as conn:
        conn.execute(text("SELECT 1"))
    try:
        files = sorted((tmp_path / "data").glob("registry.db*"))
        assert [f.name for f in files][:1] == ["registry.db"]
        for f in files:
            assert stat.S_IMODE(f.stat().st_mode) == 0o600, f.name
        assert stat.S_IMODE((tmp_path / "data").stat().st_mode) == 0o700
    finally:
        engine.dispose()
