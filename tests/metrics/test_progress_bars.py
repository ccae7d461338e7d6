"""Progress bars of ``metrics`` and ``export``: the metrics stage reports each step and the
readings scanned out of those stored, a billing cycle reports both stages' steps; on a
terminal the commands draw the bars, piped they write nothing extra."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

from billing_identity import OTHER_ORGANISATION_NPI, write_billing_toml
from progress_recorder import Recorder
from sqlalchemy import Engine, func, select
from terminal import clean_env, plain, run_on_a_terminal, run_piped
from test_metrics_job import seed_registry, write_readings

from rpmpipe.app.cycle import run_billing_cycle
from rpmpipe.metrics.job import compute, compute_and_persist
from rpmpipe.registry.db import open_registry
from rpmpipe.registry.models import CareActivity
from rpmpipe.settings import Settings

AS_OF = date(2026, 4, 5)
STORED_READINGS = 60  # write_readings: 20 days, 3 readings a day, in the window


def test_compute_reports_each_step_and_every_reading_scanned(
    seeded: tuple[Settings, Engine],
) -> None:
    settings, engine = seeded
    progress = Recorder()
    records = compute(settings.metrics, engine, AS_OF, progress=progress)
    assert records == compute(settings.metrics, engine, AS_OF)  # watching changes nothing
    assert progress.labels == [
        "reading the registry",
        "reading care activities",
        "counting care time",
        "placing care time in programs and months",
        "scanning readings",
        "counting days and periods",
        "counting care-management months",
        "building the engagement records",
        "applying the exclusions between programs",
    ]
    scan = progress.named("scanning readings")
    assert (scan.total, scan.done) == (STORED_READINGS, STORED_READINGS)
    with engine.connect() as conn:
        activities = conn.execute(select(func.count()).select_from(CareActivity)).scalar_one()
    care = progress.named("counting care time")
    assert (care.total, care.done) == (activities, activities)
    assert activities > 0


def test_persisting_reports_the_final_records_saved(seeded: tuple[Settings, Engine]) -> None:
    settings, engine = seeded
    progress = Recorder()
    records = compute_and_persist(
        settings.metrics, engine, AS_OF, datetime(2026, 4, 6, 7, tzinfo=UTC), progress
    )
    final = sum(1 for r in records if r.period_end < AS_OF)
    saved = progress.named("saving the final records")
    assert (saved.total, saved.done) == (final, final)
    assert final > 0


def test_a_billing_cycle_reports_the_steps_of_metrics_then_export(
    seeded: tuple[Settings, Engine],
) -> None:
    settings, engine = seeded
    progress = Recorder()
    cycle = run_billing_cycle(
        settings, engine, AS_OF, datetime(2026, 4, 6, 7, tzinfo=UTC), progress=progress
    )
    assert cycle.export.lines == 4
    labels = progress.labels
    assert labels.index("scanning readings") < labels.index("saving the final records")
    assert labels.index("saving the final records") < labels.index(
        "loading the final records and the ledger"
    )
    recorded = progress.named("recording the lines in the ledger")
    assert (recorded.total, recorded.done) == (4, 4)


def _world(tmp_path: Path) -> list[str]:
    db = f"sqlite:///{tmp_path / 'registry.db'}"
    seed_registry(open_registry(db))
    write_readings(tmp_path / "data" / "readings")
    return ["--data-dir", str(tmp_path / "data"), "--database-url", db]


def test_metrics_shows_a_bar_on_a_terminal_and_nothing_extra_when_piped(tmp_path: Path) -> None:
    args = [*_world(tmp_path), "metrics", "--as-of", AS_OF.isoformat()]
    shown, on_terminal_stdout = run_on_a_terminal(*args, env=clean_env())
    shown = plain(shown)
    # What a person sees: numbered steps, the readings scanned out of those stored, and a
    # check mark on each finished step (the bar is cleared when the command ends).
    assert "metrics [5] scanning readings" in shown
    assert f"{STORED_READINGS}/{STORED_READINGS}" in shown
    assert "✓ metrics [1] reading the registry" in shown
    assert "━" in shown

    piped = run_piped(*args, env=clean_env())
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == on_terminal_stdout  # the bar never reaches stdout
    assert "records as of 2026-04-05" in piped.stdout
    # Off a terminal, stderr holds the JSON log lines and nothing else: no bar, no escapes.
    events = [json.loads(line)["event"] for line in piped.stderr.splitlines()]
    assert events == ["rpmpipe_started", "engagement_computed"]
    assert "\x1b" not in piped.stderr and "scanning" not in piped.stderr


def test_metrics_csv_shows_the_scan_on_a_terminal_and_the_same_bytes_piped(
    tmp_path: Path,
) -> None:
    args = [*_world(tmp_path), "metrics", "--as-of", AS_OF.isoformat(), "--format", "csv"]
    shown, on_terminal_stdout = run_on_a_terminal(*args, env=clean_env())
    assert "scanning readings" in shown and f"{STORED_READINGS}/{STORED_READINGS}" in shown
    piped = run_piped(*args, env=clean_env(RPMPIPE_LOG_LEVEL="WARNING"))
    assert piped.returncode == 0, piped.stderr
    assert piped.stderr == ""
    assert piped.stdout == on_terminal_stdout and piped.stdout.count("\n") > 3


def _export_args(tmp_path: Path) -> list[str]:
    tmp_path.mkdir()
    config = write_billing_toml(
        tmp_path / "rpmpipe.toml", provider_npi=OTHER_ORGANISATION_NPI, rendering_npi="1234567893"
    )
    return [
        "--config",
        str(config),
        *_world(tmp_path),
        "export",
        "--as-of",
        AS_OF.isoformat(),
        "--out",
        str(tmp_path / "exports"),
    ]


def _summary(stdout: str) -> list[str]:
    # The run directory's name holds the clock: the rest of the summary is the same.
    return [line for line in stdout.splitlines() if not line.startswith("run dir:")]


def test_export_shows_a_bar_on_a_terminal_and_nothing_extra_when_piped(tmp_path: Path) -> None:
    shown, on_terminal_stdout = run_on_a_terminal(*_export_args(tmp_path / "tty"), env=clean_env())
    shown = plain(shown)
    # The metrics steps first (the export recomputes engagement), then the export's own.
    assert "export [5] scanning readings" in shown
    assert f"{STORED_READINGS}/{STORED_READINGS}" in shown
    assert "] recording the lines in the ledger" in shown
    assert "4/4" in shown  # the 4 lines recorded in the ledger
    assert "lines:        4" in on_terminal_stdout

    piped = run_piped(*_export_args(tmp_path / "pipe"), env=clean_env())
    assert piped.returncode == 0, piped.stderr
    assert _summary(piped.stdout) == _summary(on_terminal_stdout)
    # Off a terminal, stderr holds the JSON log lines and nothing else: no bar, no escapes.
    events = [json.loads(line)["event"] for line in piped.stderr.splitlines()]
    assert events[0] == "rpmpipe_started" and events[-1] == "export_finished"
    assert "\x1b" not in piped.stderr and "recording the lines" not in piped.stderr
