"""Sink, quarantine, backfill, replay and compaction on a real data dir (no broker)."""

from __future__ import annotations

import os
import stat
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from ingest_helpers import (
    BASE_TIME,
    bp_payload,
    register_devices,
    register_patient,
    stored_readings,
)
from sqlalchemy import Engine

from rpmpipe.ingest.backfill import backfill_file
from rpmpipe.ingest.compact import compact
from rpmpipe.ingest.files import parquet_files, write_parquet_atomic
from rpmpipe.ingest.pipeline import IngestPipeline, Message
from rpmpipe.ingest.quarantine import (
    QuarantineEntry,
    QuarantineStore,
    quarantine_table,
    read_quarantine,
)
from rpmpipe.ingest.replay import replay
from rpmpipe.ingest.schema import QUARANTINE_SCHEMA, READINGS_SCHEMA, readings_table
from rpmpipe.ingest.sink import ReadingSink
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
    registry: Engine,
    tmp_path: Path,
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
    summary = backfill_file(settings.ingest, registry, path, NOW)
    assert (summary.lines, summary.stored, summary.duplicates) == (5, 2, 1)
    assert dict(summary.quarantined) == {"bad_json": 1, "unknown_device": 1, "unknown_type": 1}
    reasons = sorted(read_quarantine(settings.quarantine_dir).column("reason").to_pylist())
    assert reasons[0].startswith("line 3:") and reasons[1].startswith("line 4:")
    again = backfill_file(settings.ingest, registry, path, NOW)
    assert (again.stored, again.duplicates) == (0, 3)
    assert stored_readings(settings).num_rows == 2
    assert read_quarantine(settings.quarantine_dir).num_rows == 3


def test_replay_after_registering_the_device_stores_once_and_leaves_quarantine(
    settings: Settings,
    registry: Engine,
) -> None:
    topic = f"{settings.broker.topic_root}/devices/BP-7/readings"
    pipeline = IngestPipeline(settings.ingest, registry, "t", device_refresh=0)
    msgs = [Message(topic, bp_payload("BP-7", i), NOW) for i in range(3)]
    msgs.append(Message(topic, b"garbage", NOW))
    outcome = pipeline.handle(msgs)
    assert outcome.quarantined == {"unknown_device": 4}
    assert replay(settings.ingest, registry, "unknown_device").still_quarantined == 4
    register_devices(registry, ["BP-7"])
    summary = replay(settings.ingest, registry, "unknown_device")
    assert (summary.stored, summary.replayed, summary.still_quarantined) == (3, 3, 1)
    left = read_quarantine(settings.quarantine_dir)
    # The first reason stays; the latest attempt's is recorded beside it.
    assert left.column("reason_code").to_pylist() == ["unknown_device"]
    assert left.column("last_reason_code").to_pylist() == ["bad_json"]
    again = replay(settings.ingest, registry)
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
    # Merged-away files are hidden at once (for open readers), deleted after the grace period.
    assert len(parquet_files(day)) == 1
    assert len([n for n in os.listdir(day) if ".retired-" in n]) == 5
    assert compact(root, before=date(2026, 11, 10), now=1000.0 + 599).files_deleted == 0
    assert compact(root, before=date(2026, 11, 10), now=1000.0 + 600).files_deleted == 5
    assert [n for n in os.listdir(day) if ".retired-" in n] == []
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
            except FileNotFoundError:
                # Listed before a merge, opened after its inputs were hidden: a loud,
                # retryable miss (documented in ingest.compact), never a silently short read.
                continue
            except Exception as exc:  # noqa: BLE001 - any other failure is a torn read
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
    assert [n for n in os.listdir(day) if not n.endswith(".parquet")] == []


def _pyarrow_dataset_counts(root: Path) -> tuple[int, int]:
    import pyarrow.dataset as ds

    table = ds.dataset(root, format="parquet", partitioning="hive").to_table(columns=["dedup_key"])
    return table.num_rows, len(set(table.column("dedup_key").to_pylist()))


def test_outside_readers_see_each_row_once_right_after_compaction(tmp_path: Path) -> None:
    import duckdb

    root = tmp_path / "readings"
    for i in range(3):
        ReadingSink(root, f"w{i}").write([reading(10 * i + n) for n in range(10)])
    assert _pyarrow_dataset_counts(root) == (30, 30)
    compact(root, before=date(2026, 11, 10), now=1000.0)  # inside the grace period
    assert _pyarrow_dataset_counts(root) == (30, 30)
    glob = str(root / "date=*" / "*.parquet")
    counted = duckdb.sql(f"select count(*), count(distinct dedup_key) from read_parquet('{glob}')")
    assert counted is not None and counted.fetchall() == [(30, 30)]


def test_open_handle_on_a_merged_away_file_keeps_reading(tmp_path: Path) -> None:
    root = tmp_path / "readings"
    for i in range(2):
        ReadingSink(root, f"w{i}").write([reading(i)])
    day = root / "date=2026-11-03"
    first = parquet_files(day)[0]
    with first.open("rb") as handle:
        compact(root, before=date(2026, 11, 10), now=1000.0)
        assert not first.exists()
        assert pq.read_table(handle).num_rows == 1


def test_crash_between_merge_and_hiding_is_healed_by_the_next_run(tmp_path: Path) -> None:
    from rpmpipe.ingest.compact import merge_tables

    root = tmp_path / "readings"
    for i in range(3):
        ReadingSink(root, f"w{i}").write([reading(i), reading(i + 1)])
    day = root / "date=2026-11-03"
    # Simulate the crash: the merged file was written, the inputs never hidden.
    merged, _ = merge_tables(parquet_files(day))
    write_parquet_atomic(merged, day, "part-compact-crashed.parquet")
    assert _pyarrow_dataset_counts(root) == (8, 4)  # the documented window
    # Ingest in the meantime still stores nothing twice.
    assert ReadingSink(root, "late").write([reading(1)]).duplicates == 1
    compact(root, before=date(2026, 11, 10), now=1000.0)
    assert _pyarrow_dataset_counts(root) == (4, 4)


def test_sink_relists_when_a_file_is_compacted_away_between_listing_and_reading(
    tmp_path: Path,
) -> None:
    root = tmp_path / "readings"
    ReadingSink(root, "a").write([reading(1)])
    ReadingSink(root, "b").write([reading(2)])
    day = root / "date=2026-11-03"
    sink = ReadingSink(root, "c")
    listed = parquet_files(day)
    compact(root, before=date(2026, 11, 10), now=1000.0)
    from rpmpipe.ingest.sink import read_keys

    vanished: set[str] = set()
    assert read_keys(listed, vanished) == set()
    assert vanished == {p.name for p in listed}
    # The sink itself lists again after a vanish and so still sees both stored keys.
    assert sink.write([reading(1), reading(2)]).duplicates == 2


def test_replay_failing_for_another_reason_keeps_the_first_reason(
    settings: Settings,
    registry: Engine,
) -> None:
    import dataclasses

    topic = f"{settings.broker.topic_root}/devices/BP-9/readings"
    IngestPipeline(settings.ingest, registry, "t").handle(
        [Message(topic, bp_payload("BP-9", 1), NOW)]
    )
    (first,) = read_quarantine(settings.quarantine_dir).to_pylist()
    assert (first["reason_code"], first["last_reason_code"]) == ("unknown_device", None)
    # Replayed under another topic root, the record now fails as unknown_topic.
    moved = dataclasses.replace(
        settings, broker=dataclasses.replace(settings.broker, topic_root="elsewhere/v1")
    )
    assert replay(moved.ingest, registry).still_quarantined == 1
    (after,) = read_quarantine(settings.quarantine_dir).to_pylist()
    assert (after["reason_code"], after["reason"]) == (first["reason_code"], first["reason"])
    assert after["last_reason_code"] == "unknown_topic"
    # Replayed again with the right root, the latest reason follows; the first stays.
    assert replay(settings.ingest, registry).still_quarantined == 1
    (again,) = read_quarantine(settings.quarantine_dir).to_pylist()
    assert (again["reason_code"], again["last_reason_code"]) == ("unknown_device", "unknown_device")


def test_quarantine_files_written_before_the_latest_reason_columns_still_read(
    tmp_path: Path,
) -> None:
    import pyarrow as pa

    old_schema = pa.schema([f for f in QUARANTINE_SCHEMA if not f.name.startswith("last_")])
    entry = QuarantineEntry("t", b"x", "bad_json", "not JSON", NOW)
    table = quarantine_table([entry]).select(old_schema.names).cast(old_schema)
    write_parquet_atomic(table, tmp_path / "q", "part-old.parquet")
    (row,) = read_quarantine(tmp_path / "q").to_pylist()
    assert (row["reason_code"], row["last_reason_code"]) == ("bad_json", None)
    QuarantineStore(tmp_path / "q", "w").remove(set(), {entry.quarantine_id: ("too_deep", "x")})
    (row,) = read_quarantine(tmp_path / "q").to_pylist()
    assert (row["reason_code"], row["last_reason_code"]) == ("bad_json", "too_deep")


def test_one_bad_activity_of_an_array_quarantines_only_itself(
    settings: Settings,
    registry: Engine,
) -> None:
    from sqlalchemy import select

    from rpmpipe.registry.models import CareActivity

    register_patient(registry)
    ok = {
        "activity_id": "A-1",
        "patient_id": "P1",
        "staff_id": "RN-1",
        "started_at": "2026-11-03T10:00:00-06:00",
        "minutes": 12.5,
        "kind": "phone_call",
        "interactive": True,
    }
    too_long = {**ok, "activity_id": "A-2", "minutes": 5000}
    not_object = 7
    topic = f"{settings.broker.topic_root}/activities"
    pipeline = IngestPipeline(settings.ingest, registry, "t")
    outcome = pipeline.handle(
        [
            Message(
                topic, orjson.dumps([ok, too_long, not_object, {**ok, "activity_id": "A-3"}]), NOW
            )
        ]
    )
    assert outcome.activities == 2
    assert outcome.quarantined == {"bad_activity": 2}
    with registry.connect() as conn:
        assert sorted(conn.execute(select(CareActivity.activity_id)).scalars()) == ["A-1", "A-3"]
    reasons = sorted(
        read_quarantine(settings.quarantine_dir).to_pylist(), key=lambda r: r["reason"]
    )
    assert [r["reason"][:11] for r in reasons] == ["item 2 of 4", "item 3 of 4"]
    assert orjson.loads(reasons[0]["payload"])["activity_id"] == "A-2"  # the item alone
    assert reasons[1]["payload"] == b"7"


def test_backfill_reports_quarantined_line_numbers_with_codes(
    settings: Settings,
    registry: Engine,
    tmp_path: Path,
) -> None:
    lines = [
        bp_payload("BP-1", 1),
        b"{not json",
        bp_payload("BP-3", 2),
        orjson.dumps([orjson.loads(bp_payload("BP-2", 5)), {"device_id": "BP-2", "type": "x"}]),
    ]
    path = tmp_path / "backfill.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    summary = backfill_file(settings.ingest, registry, path, NOW, batch_lines=2)
    assert summary.rejected_lines == [(2, "bad_json"), (3, "unknown_device"), (4, "unknown_type")]


def test_device_registered_just_after_start_is_accepted_in_the_next_batch(
    settings: Settings, registry: Engine
) -> None:
    # Devices registered moments before their first sync (as `rpmpipe simulate` does) must not
    # wait out the refresh interval in quarantine.
    pipeline = IngestPipeline(settings.ingest, registry, "t", device_refresh=3600)
    pipeline.devices.refresh()  # ingest read the registry at start-up, before the device existed
    register_devices(registry, ["BP-NEW"])
    topic = f"{settings.broker.topic_root}/devices/BP-NEW/readings"
    outcome = pipeline.handle([Message(topic, bp_payload("BP-NEW", 1), NOW)])
    assert outcome.quarantined == {}
    assert stored_readings(settings).column("device_id").to_pylist() == ["BP-NEW"]
    # An unknown device still costs at most one registry read per batch.
    stranger = f"{settings.broker.topic_root}/devices/BP-NOPE/readings"
    batch = [Message(stranger, bp_payload("BP-NOPE", n), NOW) for n in range(2, 6)]
    assert pipeline.handle(batch).quarantined == {"unknown_device": 4}


def test_replay_that_empties_a_quarantine_file_removes_it(
    settings: Settings, registry: Engine, tmp_path: Path
) -> None:
    jsonl = tmp_path / "one.jsonl"
    jsonl.write_bytes(bp_payload("BP-LATE", 1) + b"\n")
    backfill_file(settings.ingest, registry, jsonl, NOW)
    assert read_quarantine(settings.quarantine_dir).num_rows == 1
    register_devices(registry, ["BP-LATE"])
    replay(settings.ingest, registry)
    assert read_quarantine(settings.quarantine_dir).num_rows == 0
    assert stored_readings(settings).column("device_id").to_pylist() == ["BP-LATE"]
    replay(settings.ingest, registry)  # nothing left: a second replay is a no-op, not a crash
