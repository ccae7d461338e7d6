"""Readers see each reading once: with 2 and 4 shared-group workers given every reading twice,
after a compaction killed mid-way, and when a device resends a reading id with another time.
Real Mosquitto and PostgreSQL; real processes killed with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson
import pyarrow as pa
import pytest
from ingest_helpers import (
    bp_payload,
    drop_session,
    publish,
    reading_topic,
    register_devices,
    settings_env,
    stored_readings,
    wait_for,
)
from sqlalchemy import Engine

from rpmpipe.embedded_broker import free_port
from rpmpipe.ingest.files import parquet_files
from rpmpipe.ingest.pipeline import IngestPipeline, Message
from rpmpipe.ingest.quarantine import read_quarantine
from rpmpipe.metrics.sources import reading_batches
from rpmpipe.registry.db import open_registry
from rpmpipe.settings import Settings, load_settings

pytestmark = pytest.mark.services

RPMPIPE = str(Path(sys.executable).parent / "rpmpipe")
DEVICES = [f"BP-{i:03d}" for i in range(20)]
TEST_BROKER_URL = os.environ.get("RPMPIPE_TEST_BROKER_URL", "")


def settings_for(tmp_path: Path, database_url: str) -> Settings:
    tag = uuid.uuid4().hex[:10]
    return load_settings(
        None,
        env={},
        overrides={
            "data_dir": str(tmp_path / "data"),
            "database_url": database_url,
            "broker.url": TEST_BROKER_URL,
            "broker.protocol": "5",
            "broker.client_id": f"rpmpipe-test-{tag}",
            "broker.username": "rpmpipe-test",
            "broker.topic_root": f"rpmtest/{tag}/rpm/v1",
            "broker.flush_seconds": 0.2,
        },
    )


@pytest.fixture
def registry(pg_schema_url: str) -> Iterator[Engine]:
    engine = open_registry(pg_schema_url)
    register_devices(engine, DEVICES)
    yield engine
    engine.dispose()


def read_once(settings: Settings) -> pa.Table:
    """What metrics, export and the nightly job read (the one readings reader)."""
    batches = list(reading_batches(settings.readings_dir, date(2026, 10, 1), date(2026, 12, 31)))
    return pa.Table.from_batches(batches) if batches else pa.table({})


def metric(port: int, name: str) -> float:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1).read().decode()
    except OSError:
        return -1
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return -1


# --- 9. shared groups ----------------------------------------------------------------------


@pytest.mark.parametrize("workers", [2, 4])
def test_shared_group_workers_given_every_reading_twice_store_and_show_each_once(
    tmp_path: Path, pg_schema_url: str, registry: Engine, workers: int
) -> None:
    settings = settings_for(tmp_path, pg_schema_url)
    ids = [f"{settings.broker.client_id}-{k}" for k in range(workers)]
    ports = [free_port() for _ in ids]
    procs = [
        subprocess.Popen(
            [RPMPIPE, "ingest", "--metrics-port", str(p), "--shared-group", "g"],
            env=settings_env(settings, RPMPIPE_BROKER_CLIENT_ID=c, RPMPIPE_BROKER_BATCH_SIZE="50"),
        )
        for p, c in zip(ports, ids, strict=True)
    ]
    n = 2500
    try:
        for p in ports:
            wait_for(lambda p=p: metric(p, "rpmpipe_ingest_connected") == 1, 30, "ingest up")
        once = [
            (reading_topic(settings, DEVICES[i % 20]), bp_payload(DEVICES[i % 20], i))
            for i in range(n)
        ]
        # Every reading twice, the copies close together so that different workers get them.
        twice = [m for pair in zip(once, once, strict=True) for m in pair]

        def handled() -> float:
            return sum(metric(p, "rpmpipe_ingest_messages_processed_total") for p in ports)

        # In steps below the stock Mosquitto's 1000-message queue per client (a full queue
        # drops messages; that is the broker's limit, not what this test is about).
        for i in range(0, len(twice), 500):
            publish(settings, twice[i : i + 500])
            wait_for(lambda i=i: handled() >= i + 500, 60, "the step handled")
        shares = [metric(p, "rpmpipe_ingest_messages_processed_total") for p in ports]
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        assert [proc.wait(30) for proc in procs] == [0] * workers
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for c in ids:
            drop_session(settings, c, "5")
    assert all(s > 0 for s in shares), f"every worker should get messages: {shares}"
    stored = stored_readings(settings)
    seen = read_once(settings)
    counts = {"published": 2 * n, "readings": n, "stored": stored.num_rows, "read": seen.num_rows}
    assert seen.num_rows == n, counts
    assert stored.num_rows == n, counts  # the store itself holds each reading once


# --- 10. compaction killed mid-way ----------------------------------------------------------


def test_a_compaction_killed_after_writing_its_merged_file_shows_no_reading_twice(
    tmp_path: Path,
) -> None:
    settings = load_settings(None, env={}, overrides={"data_dir": str(tmp_path / "data")})
    engine = open_registry(settings.effective_database_url)
    register_devices(engine, DEVICES)
    pipeline = IngestPipeline(settings.ingest, engine, "test")
    topic_of = {d: reading_topic(settings, d) for d in DEVICES}
    n = 600  # minutes after 12:00 UTC: one day
    received = datetime(2026, 11, 4, tzinfo=UTC)
    for start in range(0, n, 120):  # five files in one closed day
        pipeline.handle(
            [
                Message(topic_of[DEVICES[i % 20]], bp_payload(DEVICES[i % 20], i), received)
                for i in range(start, start + 120)
            ]
        )
    engine.dispose()
    day = settings.readings_dir / "date=2026-11-03"
    assert len(parquet_files(day)) == 5
    script = (
        "import sys; from datetime import date; from pathlib import Path\n"
        "from rpmpipe.ingest.compact import compact\n"
        "compact(Path(sys.argv[1]), date(2026, 11, 10), settle_seconds=30)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(settings.readings_dir)])
    try:
        wait_for(lambda: len(parquet_files(day)) == 6, 30, "the merged file")
        os.kill(proc.pid, signal.SIGKILL)  # between the merged file and hiding its inputs
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(parquet_files(day)) == 6  # 600 rows twice on disk
    seen = read_once(settings)
    assert seen.num_rows == n, f"{seen.num_rows - n} readings seen twice"


# --- issue 10, point 11: one reading id is one reading ---------------------------------------


def test_a_reading_id_resent_with_other_times_is_quarantined_and_counted_once(
    tmp_path: Path, pg_schema_url: str, registry: Engine
) -> None:
    from rpmpipe.ingest.subscriber import IngestService

    settings = settings_for(tmp_path, pg_schema_url)
    device = DEVICES[0]
    base = datetime(2026, 11, 3, 12, 0, tzinfo=UTC)

    def doc(day: int) -> bytes:
        return orjson.dumps(
            {
                "device_id": device,
                "reading_id": "R-1",
                "measured_at": (base - timedelta(days=day)).isoformat(),
                "type": "blood_pressure",
                "systolic_mmhg": 120,
                "diastolic_mmhg": 80,
            }
        )

    topic = reading_topic(settings, device)
    # The original, then 16 resends of the same id dated on 16 other days, and one true copy.
    messages = [(topic, doc(0))] + [(topic, doc(d)) for d in range(1, 17)] + [(topic, doc(0))]
    service = IngestService(settings.ingest, registry)
    import threading

    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: service.stats.subscribed > 0, 15, "ingest to subscribe")
        publish(settings, messages[:1])
        wait_for(lambda: service.stats.processed >= 1, 15, "the original")
        publish(settings, messages[1:])
        wait_for(lambda: service.stats.processed >= len(messages), 30, "the resends")
    finally:
        stop.set()
        thread.join(30)
        drop_session(settings, settings.broker.client_id, "5")
    seen = read_once(settings)
    assert seen.num_rows == 1
    assert stored_readings(settings).num_rows == 1
    q = read_quarantine(settings.quarantine_dir).to_pylist()
    assert [r["reason_code"] for r in q] == ["conflicting_duplicate"] * 16
    first = base.isoformat()
    for r in q:
        assert first in r["reason"]  # the stored time, and this copy's own
        assert "R-1" in r["reason"] and device in r["reason"]
    assert len({r["reason"] for r in q}) == 16
    # A late import of the same resend is refused the same way (one store-wide rule).
    line = tmp_path / "late.jsonl"
    line.write_bytes(doc(20) + b"\n")
    done = subprocess.run(
        [RPMPIPE, "import", "readings", str(line)],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert read_once(settings).num_rows == 1, done.stderr
    assert "conflicting_duplicate" in done.stdout + done.stderr
