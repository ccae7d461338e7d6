"""The nightly job: trigger times, job settings, job_runs rows, ``schedule --run-now``."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from billing_identity import OTHER_ORGANISATION_NPI, write_billing_toml
from sqlalchemy import Engine, select, update
from test_metrics_job import seed_registry, write_readings
from typer.testing import CliRunner

from rpmpipe.app.cli import app
from rpmpipe.app.schedule import build_scheduler, make_trigger, run_job
from rpmpipe.asof import last_full_day
from rpmpipe.registry.db import open_registry
from rpmpipe.registry.models import EngagementRow, JobRun, Patient
from rpmpipe.settings import Settings, load_settings

NY = ZoneInfo("America/New_York")


def test_as_of_is_yesterday_in_the_schedule_zone() -> None:
    # 03:00 UTC on Dec 1 is still Nov 30 in New York.
    assert last_full_day(NY, datetime(2026, 12, 1, 3, 0, tzinfo=UTC)) == date(2026, 11, 29)
    assert last_full_day(NY, datetime(2026, 12, 1, 6, 0, tzinfo=UTC)) == date(2026, 11, 30)


def test_trigger_fires_at_the_configured_local_time_across_dst(tmp_path: Path) -> None:
    settings = load_settings(
        None,
        env={},
        overrides={"data_dir": str(tmp_path), "schedule.hour": 2, "schedule.minute": 30},
    )
    trigger = make_trigger(settings)
    summer = trigger.get_next_fire_time(None, datetime(2026, 7, 1, 12, 0, tzinfo=UTC))
    winter = trigger.get_next_fire_time(None, datetime(2026, 12, 1, 12, 0, tzinfo=UTC))
    assert summer is not None and winter is not None
    assert summer.astimezone(UTC) == datetime(2026, 7, 2, 6, 30, tzinfo=UTC)
    assert winter.astimezone(UTC) == datetime(2026, 12, 2, 7, 30, tzinfo=UTC)


def test_trigger_zone_setting_overrides_the_organisation_zone(tmp_path: Path) -> None:
    settings = load_settings(
        None, env={}, overrides={"data_dir": str(tmp_path), "schedule.timezone": "UTC"}
    )
    fire = make_trigger(settings).get_next_fire_time(None, datetime(2026, 7, 1, 12, 0, tzinfo=UTC))
    assert fire == datetime(2026, 7, 2, 2, 0, tzinfo=UTC)


def test_scheduler_job_coalesces_runs_one_instance_and_has_misfire_grace(tmp_path: Path) -> None:
    settings = load_settings(None, env={}, overrides={"data_dir": str(tmp_path)})
    engine = open_registry(settings.effective_database_url)
    scheduler = build_scheduler(settings, engine)
    (job,) = scheduler.get_jobs()
    assert job.id == "nightly_metrics_export"
    assert (job.coalesce, job.max_instances) == (True, 1)
    assert job.misfire_grace_time == settings.schedule.misfire_grace_seconds
    assert str(job.trigger.timezone) == "America/New_York"
    assert scheduler._jobstores["default"].__class__.__name__ == "SQLAlchemyJobStore"


def test_run_job_records_each_run_and_a_rerun_changes_no_records(
    seeded: tuple[Settings, Engine],
) -> None:
    settings, engine = seeded
    clock = lambda: datetime(2026, 4, 6, 7, 0, tzinfo=UTC)  # noqa: E731

    first = run_job(settings, engine, clock)
    t = EngagementRow.__table__
    with engine.connect() as conn:
        rows = conn.execute(select(t).order_by(t.c.id)).all()
    second = run_job(settings, engine, clock)

    assert (first.as_of, first.status) == (date(2026, 4, 5), "succeeded")
    assert first.records == second.records > 0
    assert first.billable_lines == second.billable_lines == 4  # 99453, 99454, 99457, 99458
    with engine.connect() as conn:
        assert conn.execute(select(t).order_by(t.c.id)).all() == rows
        runs = conn.execute(select(JobRun.__table__).order_by(JobRun.id)).all()
    assert [(r.status, r.as_of, r.records, r.billable_lines) for r in runs] == [
        ("succeeded", date(2026, 4, 5), first.records, 4),
        ("succeeded", date(2026, 4, 5), first.records, 4),
    ]
    assert all(r.finished_at is not None for r in runs)


def test_failed_run_is_recorded_as_failed(tmp_path: Path) -> None:
    settings = load_settings(None, env={}, overrides={"data_dir": str(tmp_path / "data")})
    engine = open_registry(settings.effective_database_url)
    seed_registry(engine)
    bad = settings.readings_dir / "date=2026-03-02"
    bad.mkdir(parents=True)
    (bad / "part-0.parquet").write_bytes(b"truncated")
    clock = lambda: datetime(2026, 4, 6, 7, 0, tzinfo=UTC)  # noqa: E731
    try:
        run_job(settings, engine, clock)
    except Exception:  # noqa: BLE001, S110 - the row is what this test checks
        pass
    with engine.connect() as conn:
        (run,) = conn.execute(select(JobRun.__table__)).all()
    assert run.status == "failed"
    assert run.finished_at is not None
    assert "parquet" in run.message.lower()


def test_schedule_run_now_runs_once_and_writes_job_runs(tmp_path: Path, database_url: str) -> None:
    engine = open_registry(database_url)
    seed_registry(engine)
    data = tmp_path / "data"
    write_readings(data / "readings")
    config = write_billing_toml(
        tmp_path / "rpmpipe.toml",
        provider_npi=OTHER_ORGANISATION_NPI,
        rendering_npi="1234567893",  # the seed enrollments' ordering NPI
    )
    command = ["--config", str(config), "--data-dir", str(data), "--database-url", database_url]
    result = CliRunner().invoke(app, [*command, "schedule", "--run-now"])
    assert result.exit_code == 0, result.output
    assert "succeeded" in result.output
    with engine.connect() as conn:
        (run,) = conn.execute(select(JobRun.__table__)).all()
        persisted = conn.execute(select(EngagementRow.__table__)).all()
    assert run.status == "succeeded"
    assert run.job == "nightly_metrics_export"
    assert run.records > 0
    assert len(persisted) > 0

    # The same day again: nothing new is exported and the records stay as they were.
    again = CliRunner().invoke(app, [*command, "schedule", "--run-now"])
    assert again.exit_code == 0, again.output
    with engine.connect() as conn:
        runs = conn.execute(select(JobRun.__table__).order_by(JobRun.id)).all()
        assert conn.execute(select(EngagementRow.__table__)).all() == persisted
    assert [r.status for r in runs] == ["succeeded", "succeeded"]
    assert runs[0].exported_lines == runs[0].billable_lines > 0
    assert runs[1].exported_lines == 0


def test_a_run_whose_lines_are_held_says_so_with_the_reason(
    seeded: tuple[Settings, Engine],
) -> None:
    settings, engine = seeded
    with engine.begin() as conn:
        conn.execute(update(Patient).values(payer_id="AETNA"))  # a payer billing does not know
    outcome = run_job(settings, engine, lambda: datetime(2026, 4, 6, 7, 0, tzinfo=UTC))
    assert outcome.status == "held"
    assert outcome.exported_lines == 0
    assert (
        "held back 4 lines: payer AETNA is not configured in billing.payers (4)" in outcome.message
    )
    with engine.connect() as conn:
        (run,) = conn.execute(select(JobRun.__table__)).all()
    assert (run.status, run.message) == ("held", outcome.message)
