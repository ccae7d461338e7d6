"""Helpers for ingest tests: registering devices, publishing with paho, reading the store."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pyarrow as pa
import pyarrow.dataset as ds
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import Engine

from rpmpipe.ingest.files import parquet_files
from rpmpipe.ingest.schema import READINGS_SCHEMA
from rpmpipe.mqtt import make_client, parse_broker
from rpmpipe.registry.imports import import_rows
from rpmpipe.settings import Settings

BASE_TIME = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)


def register_devices(engine: Engine, device_ids: Iterable[str]) -> None:
    rows = [
        {"device_id": d, "kind": "bp_cuff" if d.startswith("BP") else "scale", "model": "test"}
        for d in device_ids
    ]
    import_rows(engine, "devices", rows, source="test")


def register_patient(engine: Engine, patient_id: str = "P1") -> None:
    """One patient, so that care activities for ``patient_id`` are accepted."""
    row = {
        "patient_id": patient_id,
        "mrn": "1",
        "first_name": "A",
        "last_name": "B",
        "birth_date": "1950-01-01",
        "sex": "F",
        "address1": "1 A St",
        "city": "X",
        "state": "IL",
        "zip": "62701",
        "timezone": "America/Chicago",
        "payer_id": "MCR",
        "payer_name": "Medicare",
        "member_id": "1EG4TE5MK73",
        "icd10_codes": "I10",
    }
    import_rows(engine, "patients", [row], source="test")


def bp_payload(device_id: str, n: int, **extra: object) -> bytes:
    doc = {
        "device_id": device_id,
        "reading_id": f"{device_id}-{n}",
        "measured_at": (BASE_TIME + timedelta(minutes=n)).isoformat(),
        "type": "blood_pressure",
        "systolic_mmhg": 110 + n % 40,
        "diastolic_mmhg": 70 + n % 15,
        "pulse_bpm": 60 + n % 30,
        **extra,
    }
    return orjson.dumps(doc)


def reading_topic(settings: Settings, device_id: str) -> str:
    return f"{settings.broker.topic_root}/devices/{device_id}/readings"


def publish(
    settings: Settings, messages: Sequence[tuple[str, bytes]], client_id: str | None = None
) -> None:
    """Publish ``(topic, payload)`` pairs at QoS 1 and wait until the broker has them all."""
    address = parse_broker(settings.broker)
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or f"pub-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv311,
    )
    client.username_pw_set("rpmpipe-test")
    client.max_inflight_messages_set(100)
    client.max_queued_messages_set(0)
    client.connect(address.host, address.port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(30)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def stored_readings(settings: Settings) -> pa.Table:
    """Every stored reading (all partitions), or an empty table."""
    root = settings.readings_dir
    if not root.exists():
        return READINGS_SCHEMA.empty_table()
    return ds.dataset(
        root, format="parquet", partitioning="hive", schema=READINGS_SCHEMA
    ).to_table()


def all_parquet(root: Path) -> list[Path]:
    return [p for d in sorted(root.glob("date=*")) for p in parquet_files(d)]


def drop_session(settings: Settings, client_id: str, protocol: str) -> None:
    """End a persistent session on the broker so tests leave no queues behind."""
    address = parse_broker(settings.broker)
    if protocol == "5":
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        client.username_pw_set("rpmpipe-test")
        client.connect(address.host, address.port, clean_start=True)
    else:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        client.username_pw_set("rpmpipe-test")
        client.connect(address.host, address.port)
    client.loop_start()
    for _ in range(100):
        if client.is_connected():
            break
        time.sleep(0.02)
    client.disconnect()
    client.loop_stop()


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for an ``rpmpipe`` subprocess that sees the same settings as the test."""
    b = settings.broker
    env = {
        **os.environ,
        "RPMPIPE_DATA_DIR": str(settings.data_dir),
        "RPMPIPE_DATABASE_URL": settings.effective_database_url,
        "RPMPIPE_BROKER_URL": b.url,
        "RPMPIPE_BROKER_PROTOCOL": b.protocol,
        "RPMPIPE_BROKER_CLIENT_ID": b.client_id,
        "RPMPIPE_BROKER_USERNAME": b.username,
        "RPMPIPE_BROKER_TOPIC_ROOT": b.topic_root,
        "RPMPIPE_BROKER_FLUSH_SECONDS": str(b.flush_seconds),
        "RPMPIPE_BROKER_BATCH_SIZE": str(b.batch_size),
        "RPMPIPE_LOG_LEVEL": "WARNING",
    }
    env.pop("RPMPIPE_CONFIG", None)
    env.update(extra)
    return env


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def session_client(
    settings: Settings,
    protocol: str,
    client_id: str,
    on_message: Callable[[mqtt.Client, object, mqtt.MQTTMessage], None],
    *,
    client_class: type[mqtt.Client] = mqtt.Client,
    manual_ack: bool = False,
) -> mqtt.Client:
    """A connected client resuming (or creating) the persistent session ``client_id``."""
    client, address = make_client(
        settings.broker,
        client_id,
        protocol=mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311,
        clean=False,
        manual_ack=manual_ack,
        client_class=client_class,
    )
    client.on_message = on_message
    if protocol == "5":
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 300
        # A window for the whole backlog (without one, Mosquitto keeps 20 messages in flight).
        props.ReceiveMaximum = 65535
        client.connect(address.host, address.port, clean_start=False, properties=props)
    else:
        client.connect(address.host, address.port)
    loop_until(client, client.is_connected, 10)
    return client


def loop_until(client: mqtt.Client, done: Callable[[], bool], seconds: float) -> None:
    """Drive ``client``'s network loop until ``done()`` or ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    while not done() and time.monotonic() < deadline:
        client.loop(timeout=0.05)
