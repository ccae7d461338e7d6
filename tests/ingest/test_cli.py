"""`rpmpipe import readings`, `quarantine list|replay` and `compact` through the CLI."""

from __future__ import annotations

from pathlib import Path

import orjson
from ingest_helpers import bp_payload, register_devices, stored_readings
from typer.testing import CliRunner

from ingest.files import parquet_files
from rpmpipe.cli import app
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
    return result.output


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
    # The small files stay (retired) for the grace period; a run after it deletes them.
    assert len(parquet_files(day)) == 4
    assert len(set(stored_readings(settings).column("dedup_key").to_pylist())) == 3
    out = run(settings, "compact", "--before", "2026-11-04", "--grace-minutes", "0")
    assert "3 merged-away files deleted" in out
    assert len(parquet_files(day)) == 1
    assert stored_readings(settings).num_rows == 3
    engine.dispose()
