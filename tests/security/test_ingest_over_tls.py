"""Ingest over mqtts with the ingest credentials stores a device's own readings, and only those.

End to end on a real Mosquitto configured by broker-config: the ACL stops a reading published
on another device's topic at the broker (PUBACK "not authorized"), and ingest quarantines a
reading whose payload names another device than its topic.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mosquitto_harness import DEVICES, WAIT, SecuredBroker, open_session

from rpmpipe.ingest.files import parquet_files
from rpmpipe.ingest.subscriber import IngestService
from rpmpipe.registry.db import open_registry
from rpmpipe.registry.imports import import_rows
from rpmpipe.settings import Settings, load_settings

pytestmark = pytest.mark.services

NOT_AUTHORIZED = 0x87


def _reading(device_id: str, n: int) -> bytes:
    measured = datetime(2026, 11, 3, 12, 0, tzinfo=UTC) + timedelta(minutes=n)
    return orjson.dumps({
        "device_id": device_id, "reading_id": f"{device_id}-{n}",
        "measured_at": measured.isoformat(), "type": "blood_pressure",
        "systolic_mmhg": 120, "diastolic_mmhg": 80, "pulse_bpm": 70,
    })  # fmt: skip


def _ingest_settings(broker: SecuredBroker, tmp_path: Path) -> Settings:
    overrides = {
        "data_dir": str(tmp_path / "data"),
        "database_url": f"sqlite:///{tmp_path / 'registry.db'}",
        "broker.url": broker.url,
        "broker.protocol": "5",
        "broker.client_id": f"ingest-{uuid.uuid4().hex[:8]}",
        "broker.username": "ingest",
        "broker.password": broker.password("ingest"),
        "broker.ca": str(broker.directory / "ca.crt"),
        "broker.topic_root": broker.topic_root,
        "broker.flush_seconds": 0.2,
    }
    return load_settings(None, env={}, overrides=overrides)


def _stored_device_ids(settings: Settings) -> list[str]:
    files = [f for d in settings.readings_dir.rglob("*") if d.is_dir() for f in parquet_files(d)]
    if not files:
        return []
    table = pa.concat_tables([pq.read_table(f, columns=["device_id"]) for f in files])
    return sorted(str(d) for d in table.column("device_id").to_pylist())


def test_ingest_over_tls_stores_own_readings_and_never_forged_ones(
    secured_broker: SecuredBroker, tmp_path: Path
) -> None:
    settings = _ingest_settings(secured_broker, tmp_path)
    engine = open_registry(settings.effective_database_url)
    devices = [{"device_id": d, "kind": "bp_cuff", "model": "t"} for d in DEVICES]
    import_rows(engine, "devices", devices, source="test")
    service = IngestService(settings.ingest, engine)
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    device = None
    try:
        deadline = time.monotonic() + WAIT
        while service.stats.subscribed < 1:
            assert time.monotonic() < deadline and thread.is_alive(), "ingest never subscribed"
            time.sleep(0.02)

        root = secured_broker.topic_root
        device = open_session(secured_broker.settings(DEVICES[0]))
        forged = device.publish(f"{root}/devices/{DEVICES[1]}/readings", _reading(DEVICES[1], 1))
        assert forged.value == NOT_AUTHORIZED
        spoofed = device.publish(f"{root}/devices/{DEVICES[0]}/readings", _reading(DEVICES[1], 2))
        assert not spoofed.is_failure  # allowed topic; ingest must catch the payload's claim
        own = device.publish(f"{root}/devices/{DEVICES[0]}/readings", _reading(DEVICES[0], 3))
        assert not own.is_failure

        while service.stats.processed < 2:
            assert time.monotonic() < deadline and thread.is_alive(), f"stats {service.stats}"
            time.sleep(0.02)
    finally:
        if device is not None:
            device.close()
        stop.set()
        thread.join(WAIT)
        engine.dispose()

    stats = service.stats
    assert stats.received == 2  # the forged reading never left the broker
    assert stats.stored == 1
    assert stats.quarantined == {"device_mismatch": 1}
    assert _stored_device_ids(settings) == [DEVICES[0]]
