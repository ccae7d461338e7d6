"""Sink, quarantine, backfill, replay and compaction on a real data dir (no broker)."""

from __future__ import annotations

import os
import stat
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from ingest_helpers import BASE_TIME, bp_payload, register_devices, stored_readings

from ingest.backfill import backfill_file
from ingest.compact import compact
from ingest.files import parquet_files, write_parquet_atomic
from ingest.pipeline import IngestPipeline, Message
from ingest.quarantine import QuarantineEntry, QuarantineStore, read_quarantine
from ingest.replay import replay
from ingest.schema import READINGS_SCHEMA, readings_table
from ingest.sink import ReadingSink
from rpmpipe.records import Reading
from rpmpipe.registry.db import open_registry
from rpmpipe.settings import Settings

NOW = datetime(2026, 11, 20, tzinfo=UTC)


def reading(n: int, device: str = "BP-1", reading_id: str | None = "auto", day: int = 0) -> Reading:
    return Reading(
        device_id=device,
        type="blood_pressure",
        measured_at=BASE_TIME + timedelta(days=day, minutes=n),
        received_at=NOW,
        reading_id=f"{device}-{n}" if reading_id == "auto" else reading_id,
        systolic_mmhg=120,
        diastolic_mmhg=80,
    )


def test_sink_writes_each_reading_once_within_a_batch_and_across_batches(tmp_path: Path) -> None:
    sink = ReadingSink(tmp_path / "readings", "w1")
    first = sink.write([reading(1), reading(2), reading(1)])
    second = sink.write([reading(2), reading(3)])
    assert (first.stored, first.duplicates) == (2, 1)
    assert (second.stored, second.duplicates) == (1, 1)
    table = pq.read_table(tmp_path / "readings", schema=READINGS_SCHEMA)
    assert sorted(table.column("reading_id").to_pylist()) == ["BP-1-1", "BP-1-2", "BP-1-3"]


def test_sink_dedup_survives_a_restart_and_sees_other_writers(tmp_path: Path) -> None:
    ReadingSink(tmp_path / "readings", "a").write([reading(1), reading(2, reading_id=None)])
    other = ReadingSink(tmp_path / "readings", "b")
    result = other.write([reading(1), reading(2, reading_id=None), reading(3)])
    assert (result.stored, result.duplicates) == (1, 2)
    # A third writer appearing after `other` cached the partition is still seen by it.
    ReadingSink(tmp_path / "readings", "c").write([reading(4)])
    assert other.write([reading(4)]).duplicates == 1


def test_sink_partitions_by_utc_measured_date_with_private_modes(tmp_path: Path) -> None:
    late_evening = Reading(
        device_id="BP-1",
        type="blood_pressure",
        received_at=NOW,
        reading_id="x",
        measured_at=datetime.fromisoformat("2026-11-03T22:30:00-05:00"),
        systolic_mmhg=120,
        diastolic_mmhg=80,
    )
    (path,) = ReadingSink(tmp_path / "readings", "w").write([late_evening]).files
    assert path.parent.name == "date=2026-11-04"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "readings").stat().st_mode) == 0o700
    table = pq.read_table(path)
    assert table.schema.field("measured_at").type == READINGS_SCHEMA.field("measured_at").type
    assert pq.ParquetFile(path).metadata.row_group(0).column(0).compression == "ZSTD"


def test_failed_write_leaves_no_visible_file_and_no_temp(tmp_path: Path) -> None:
    import pyarrow as pa

    directory = tmp_path / "readings" / "date=2026-11-03"
    # A real writer failure: Parquet has no type for this Arrow interval.
    unwritable = pa.table({"x": pa.array([(1, 2, 3)], pa.month_day_nano_interval())})
    with pytest.raises(pa.ArrowNotImplementedError):
        write_parquet_atomic(unwritable, directory, "part-x.parquet")
    assert os.listdir(directory) == []


def test_unique_names_never_collide_between_writers_of_one_process(tmp_path: Path) -> None:
    a = ReadingSink(tmp_path / "readings", "same-id")
    b = ReadingSink(tmp_path / "readings", "same-id")
    files = [
        *a.write([reading(1)]).files,
        *b.write([reading(2)]).files,
        *a.write([reading(3)]).files,
    ]
    assert len({f.name for f in files}) == 3


def test_quarantine_records_a_redelivered_payload_once(tmp_path: Path) -> None:
    store = QuarantineStore(tmp_path / "q", "w")
    entry = QuarantineEntry("rpm/v1/devices/X/readings", b"\x00junk", "bad_json", "not JSON", NOW)
    assert store.add([entry, entry]) == 1
    assert QuarantineStore(tmp_path / "q", "w2").add([entry]) == 0  # after a restart too
    table = read_quarantine(tmp_path / "q")
    assert table.num_rows == 1
    assert table.column("payload").to_pylist() == [b"\x00junk"]


@pytest.fixture
def registry(settings: Settings):  # type: ignore[no-untyped-def]
    engine = open_registry(settings.effective_database_url)
    register_devices(engine, ["BP-1", "BP-2"])
    yield engine
    engine.dispose()


def test_backfill_stores_good_lines_quarantines_bad_ones_with_line_numbers(
    settings: Settings,
    registry,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    lines = [
        bp_payload("BP-1", 1),
        b"",
        b"{not json",
        bp_payload("BP-3", 2),
        bp_payload("BP-1", 1),
        orjson.dumps([orjson.loads(bp_payload("BP-2", 5)), {"device_id": "BP-2", "type": "x"}]),
    ]
    path = tmp_path / "backfill.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    summary = backfill_file(settings, registry, path, NOW)
    assert (summary.lines, summary.stored, summary.duplicates) == (5, 2, 1)
    assert dict(summary.quarantined) == {"bad_json": 1, "unknown_device": 1, "unknown_type": 1}
    reasons = sorted(read_quarantine(settings.quarantine_dir).column("reason").to_pylist())
    assert reasons[0].startswith("line 3:") and reasons[1].startswith("line 4:")
    again = backfill_file(settings, registry, path, NOW)
    assert (again.stored, again.duplicates) == (0, 3)
    assert stored_readings(settings).num_rows == 2
    assert read_quarantine(settings.quarantine_dir).num_rows == 3


def test_replay_after_registering_the_device_stores_once_and_leaves_quarantine(
    settings: Settings,
    registry,  # type: ignore[no-untyped-def]
) -> None:
    topic = f"{settings.broker.topic_root}/devices/BP-7/readings"
    pipeline = IngestPipeline(settings, registry, "t", device_refresh=0)
    msgs = [Message(topic, bp_payload("BP-7", i), NOW) for i in range(3)]
    msgs.append(Message(topic, b"garbage", NOW))
    outcome = pipeline.handle(msgs)
    assert outcome.quarantined == {"unknown_device": 4}
    assert replay(settings, registry, "unknown_device").still_quarantined == 4
    register_devices(registry, ["BP-7"])
    summary = replay(settings, registry, "unknown_device")
    assert (summary.stored, summary.replayed, summary.still_quarantined) == (3, 3, 1)
    left = read_quarantine(settings.quarantine_dir)
    assert left.column("reason_code").to_pylist() == ["bad_json"]  # re-worded: the new reason
    again = replay(settings, registry)
    assert (again.stored, again.replayed) == (0, 0)
    assert stored_readings(settings).num_rows == 3


def test_compact_merges_closed_days_into_one_file_keeping_rows_once(tmp_path: Path) -> None:
    root = tmp_path / "readings"
    for i in range(4):
        ReadingSink(root, f"w{i}").write(
            [reading(i), reading(i + 1), reading(i, reading_id=None, day=10)]
        )
    # A duplicate that slipped in from a racing writer: compaction drops it.
    write_parquet_atomic(
        readings_table([reading(0)]), root / "date=2026-11-03", "part-race.parquet"
    )
    day = root / "date=2026-11-03"
    assert len(parquet_files(day)) == 5
    summary = compact(root, before=date(2026, 11, 10), now=1000.0)
    assert (summary.partitions, summary.duplicates_removed, summary.files_after) == (1, 1, 1)
    # Retired small files stay for the grace period, then a later run deletes them.
    assert len(parquet_files(day)) == 6
    assert compact(root, before=date(2026, 11, 10), now=1000.0 + 599).files_deleted == 0
    assert compact(root, before=date(2026, 11, 10), now=1000.0 + 600).files_deleted == 5
    (merged,) = parquet_files(day)
    assert sorted(pq.read_table(merged).column("reading_id").to_pylist()) == [
        f"BP-1-{i}" for i in range(5)
    ]
    assert len(parquet_files(root / "date=2026-11-13")) == 4  # an open day is left alone
    # Ingest after compaction still sees the compacted keys.
    assert ReadingSink(root, "late").write([reading(2)]).duplicates == 1


def test_compaction_during_writes_and_reads_never_loses_a_row(tmp_path: Path) -> None:
    import threading

    root = tmp_path / "readings"
    day = root / "date=2026-11-03"
    done = threading.Event()
    problems: list[str] = []

    def write() -> None:
        sink = ReadingSink(root, "writer")
        for b in range(60):
            sink.write([reading(b * 10 + i) for i in range(10)])
        done.set()

    def read() -> None:
        # Keys only ever get added: a reader must never see fewer distinct keys than before.
        best = 0
        while not done.is_set():
            try:
                keys = pq.read_table(day, columns=["dedup_key"]).column("dedup_key").to_pylist()
            except Exception as exc:  # noqa: BLE001 - any failure is a torn read
                problems.append(f"a reader failed: {exc!r}")
                continue
            if len(set(keys)) < best:
                problems.append(f"a reader saw {best - len(set(keys))} rows vanish")
            best = max(best, len(set(keys)))

    ReadingSink(root, "seed").write([reading(-1)])
    threads = [threading.Thread(target=write), threading.Thread(target=read)]
    for t in threads:
        t.start()
    while not done.is_set():
        compact(root, before=date(2030, 1, 1))
    for t in threads:
        t.join(60)
    compact(root, before=date(2030, 1, 1), grace_seconds=0)
    assert problems == []
    keys = pq.read_table(day, columns=["dedup_key"]).column("dedup_key").to_pylist()
    assert len(keys) == len(set(keys)) == 601
    assert len(parquet_files(day)) == 1
