"""`rpmpipe import readings`, `quarantine list|replay` and `compact` through the CLI."""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow.dataset
from ingest_helpers import bp_payload, register_devices, stored_readings
from typer.testing import CliRunner

from rpmpipe.app.cli import app
from rpmpipe.ingest.files import parquet_files
from rpmpipe.registry.db import open_registry
from rpmpipe.settings import Settings


def run(settings: Settings, *args: str) -> str:
    result = CliRunner().invoke(
        app,
        [
            "--data-dir",
            str(settings.data_dir),
            "--database-url",
            settings.effective_database_url,
            *args,
        ],
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def test_import_readings_then_replay_after_registering_the_device(
    settings: Settings, tmp_path: Path
) -> None:
    engine = open_registry(settings.effective_database_url)
    register_devices(engine, ["BP-1"])
    jsonl = tmp_path / "sync.jsonl"
    jsonl.write_bytes(b"\n".join([bp_payload("BP-1", 1), bp_payload("BP-2", 2), b"[1, 2"]) + b"\n")

    out = run(settings, "import", "readings", str(jsonl))
    assert "3 lines, 1 readings stored" in out
    assert "bad_json: 1" in out and "unknown_device: 1" in out

    listed = orjson.loads(run(settings, "quarantine", "list", "--format", "json"))
    assert sorted(r["reason_code"] for r in listed) == ["bad_json", "unknown_device"]
    assert all("payload" not in r for r in listed)  # never print payloads (PHI)
    assert all(r["last_reason_code"] is None for r in listed)  # no replay yet
    assert "line 2:" in next(r["reason"] for r in listed if r["reason_code"] == "unknown_device")

    register_devices(engine, ["BP-2"])
    out = run(settings, "quarantine", "replay", "--reason", "unknown_device")
    assert "1 readings stored" in out and "1 left quarantine" in out
    assert "1 quarantined (bad_json: 1)" in run(settings, "quarantine", "list")
    assert sorted(stored_readings(settings).column("reading_id").to_pylist()) == [
        "BP-1-1",
        "BP-2-2",
    ]
    engine.dispose()


def test_compact_command_merges_old_days(settings: Settings, tmp_path: Path) -> None:
    engine = open_registry(settings.effective_database_url)
    register_devices(engine, ["BP-1"])
    for i in range(3):
        jsonl = tmp_path / f"part{i}.jsonl"
        jsonl.write_bytes(bp_payload("BP-1", i) + b"\n")
        run(settings, "import", "readings", str(jsonl))
    day = settings.readings_dir / "date=2026-11-03"
    assert len(parquet_files(day)) == 3
    out = run(settings, "compact", "--before", "2026-11-04")
    assert "3 files -> 1" in out
    # The small files are hidden at once (outside readers see each row once) and deleted
    # by a run after the grace period.
    assert len(parquet_files(day)) == 1
    assert stored_readings(settings).num_rows == 3
    table = pyarrow.dataset.dataset(settings.readings_dir, partitioning="hive").to_table()
    assert table.num_rows == len(set(table.column("dedup_key").to_pylist())) == 3
    out = run(settings, "compact", "--before", "2026-11-04", "--grace-minutes", "0")
    assert "3 merged-away files deleted" in out
    assert len(parquet_files(day)) == 1
    assert stored_readings(settings).num_rows == 3
    engine.dispose()


def test_unknown_reason_code_fails_with_the_known_codes(settings: Settings) -> None:
    for command in (["quarantine", "list"], ["quarantine", "replay"]):
        result = CliRunner().invoke(
            app,
            [
                "--data-dir",
                str(settings.data_dir),
                "--database-url",
                settings.effective_database_url,
                *command,
                "--reason",
                "bogus",
            ],
        )
        assert result.exit_code != 0
        assert "unknown reason code 'bogus'" in result.output
        assert "unknown_device" in result.output and "bad_json" in result.output


def test_import_readings_prints_each_quarantined_line_number_and_code_without_payload(
    settings: Settings, tmp_path: Path
) -> None:
    engine = open_registry(settings.effective_database_url)
    register_devices(engine, ["BP-1"])
    secret = b'{"device_id": "BP-1", "note": "Jane Doe'  # bad JSON holding would-be PHI
    lines = [bp_payload("BP-1", 1), secret, bp_payload("BP-2", 2)] + [b"[1,"] * 25
    jsonl = tmp_path / "sync.jsonl"
    jsonl.write_bytes(b"\n".join(lines) + b"\n")
    out = run(settings, "import", "readings", str(jsonl))
    assert "  line 2: bad_json\n" in out and "  line 3: unknown_device\n" in out
    assert "  line 21: bad_json\n" in out and "line 22:" not in out  # the first 20 lines
    assert "... and 7 more line(s)" in out
    assert "Jane" not in out
    engine.dispose()
