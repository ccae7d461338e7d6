"""A wrong or empty readings store is an error naming the directory, never "no readings": no
run deletes stored records because readings are missing."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from rpmpipe.app.cli import app
from rpmpipe.app.schedule import run_job
from rpmpipe.metrics.job import ReadingsStoreError, compute, compute_and_persist, compute_csv
from rpmpipe.registry.models import EngagementRow, JobRun
from rpmpipe.settings import Settings

AS_OF = date(2026, 4, 5)
NOW = datetime(2026, 4, 6, 7, 0, tzinfo=UTC)


def _stored(engine: Engine) -> list[tuple[object, ...]]:
    t = EngagementRow.__table__
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(t).order_by(t.c.id))]


def _elsewhere(settings: Settings, path: Path) -> Settings:
    return dataclasses.replace(settings, data_dir=path)


@pytest.mark.parametrize("empty", [False, True], ids=["missing", "empty"])
def test_metrics_refuse_a_missing_or_empty_readings_store_naming_it(
    seeded: tuple[Settings, Engine], tmp_path: Path, empty: bool
) -> None:
    settings, engine = seeded
    compute_and_persist(settings.metrics, engine, AS_OF, NOW)
    before = _stored(engine)
    assert before
    wrong = _elsewhere(settings, tmp_path / "typo")
    if empty:
        (wrong.readings_dir / "date=2026-03-02").mkdir(parents=True)
    for run in (
        lambda: compute(wrong.metrics, engine, AS_OF),
        lambda: compute_csv(wrong.metrics, engine, AS_OF),
        lambda: compute_and_persist(wrong.metrics, engine, AS_OF, NOW),
    ):
        with pytest.raises(ReadingsStoreError) as caught:
            run()
        assert str(wrong.readings_dir) in str(caught.value)
    assert _stored(engine) == before


def test_the_nightly_job_fails_on_an_empty_readings_store_and_keeps_the_records(
    seeded: tuple[Settings, Engine], tmp_path: Path
) -> None:
    settings, engine = seeded
    run_job(settings, engine, lambda: NOW)
    before = _stored(engine)
    wrong = _elsewhere(settings, tmp_path / "typo")
    with pytest.raises(ReadingsStoreError):
        run_job(wrong, engine, lambda: NOW)
    assert _stored(engine) == before
    with engine.connect() as conn:
        runs = conn.execute(select(JobRun.__table__).order_by(JobRun.id)).all()
    assert runs[-1].status == "failed" and str(wrong.readings_dir) in runs[-1].message


def test_metrics_and_export_commands_exit_1_naming_the_readings_directory(
    seeded: tuple[Settings, Engine], tmp_path: Path
) -> None:
    settings, engine = seeded
    compute_and_persist(settings.metrics, engine, AS_OF, NOW)
    before = _stored(engine)
    wrong = tmp_path / "typo"
    base = ["--data-dir", str(wrong), "--database-url", settings.effective_database_url]
    for args in (
        ["metrics", "--as-of", AS_OF.isoformat(), "--format", "json"],
        ["metrics", "--as-of", AS_OF.isoformat(), "--format", "csv"],
        ["export", "--as-of", AS_OF.isoformat(), "--out", str(tmp_path / "out")],
    ):
        result = CliRunner().invoke(app, base + args)
        assert result.exit_code == 1, (args, result.output)
        assert str(wrong / "readings") in result.output
        assert "nothing new" not in result.output
    assert _stored(engine) == before
