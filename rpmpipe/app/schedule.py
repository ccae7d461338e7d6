"""The nightly job: engagement as of yesterday, then the billing export, recorded in job_runs.

The job is thin: it takes the clock as an argument, calls ``compute_and_persist`` and
``billing_export.run_export`` and writes one ``job_runs`` row. APScheduler keeps its job in
the registry DB; the job's arguments are only a name, so no settings (or secrets) are pickled
into the job store — the running process hands its settings over through ``_RUNTIME``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import Engine, insert, update

from rpmpipe.logs import get_logger
from rpmpipe.metrics.job import compute_and_persist
from rpmpipe.registry.models import JobRun
from rpmpipe.settings import Settings

log = get_logger("metrics.schedule")

JOB_NAME = "nightly_metrics_export"
JOBSTORE_TABLE = "apscheduler_jobs"
Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def schedule_zone(settings: Settings) -> ZoneInfo:
    """The zone of the cron time: ``schedule.timezone``, else the organisation's."""
    return ZoneInfo(settings.schedule.timezone or settings.organization_timezone)


def yesterday(now: datetime, zone: ZoneInfo) -> date:
    """The last full day in ``zone`` at ``now`` (the job's as-of date)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(zone).date() - timedelta(days=1)


def make_trigger(settings: Settings) -> CronTrigger:
    return CronTrigger(
        hour=settings.schedule.hour,
        minute=settings.schedule.minute,
        timezone=schedule_zone(settings),
    )


@dataclass(frozen=True)
class JobOutcome:
    run_id: int
    as_of: date
    status: str  # succeeded, held (lines held back, see message) or failed
    records: int
    billable_lines: int
    exported_lines: int
    message: str


def run_job(
    settings: Settings, engine: Engine, clock: Clock = system_clock, export: bool = True
) -> JobOutcome:
    """Compute engagement as of yesterday, persist it, run the export; record the run.

    Rerunning the same day is idempotent: the records upsert unchanged and the export ledger
    never bills a line twice. Every run (also a failed one) leaves a ``job_runs`` row.
    """
    started = clock()
    as_of = yesterday(started, schedule_zone(settings))
    with engine.begin() as conn:
        run_id = conn.execute(
            insert(JobRun)
            .values(
                job=JOB_NAME,
                as_of=as_of,
                started_at=started,
                status="running",
                records=0,
                billable_lines=0,
                exported_lines=0,
                message="",
            )
            .returning(JobRun.id)
        ).scalar_one()
    log.info("job_started", run_id=run_id, as_of=as_of.isoformat())
    status, message, n_records, billable, exported = "succeeded", "", 0, 0, 0
    try:
        records = compute_and_persist(settings, engine, as_of, started)
        n_records = len(records)
        billable = sum(len(r.lines) for r in records if r.status == "billable")
        if export:
            from rpmpipe.billing_export.export import run_export
            from rpmpipe.billing_export.holds import group_held

            result = run_export(settings, engine, as_of, now=started)
            exported = result.lines
            if result.held:
                # Held lines are money not yet claimed: the run says so, with the reasons.
                status = "held"
                message = f"held back {result.held} lines: " + "; ".join(
                    f"{g.cause.text} ({g.lines})" for g in group_held(result.held_back)
                )
    except Exception as exc:  # noqa: BLE001 - the run row must say it failed, then re-raise
        status, message = "failed", f"{type(exc).__name__}: {exc}"[:2000]
        log.error(
            "job_failed", run_id=run_id, as_of=as_of.isoformat(), error_type=type(exc).__name__
        )
        _finish(engine, run_id, clock(), status, n_records, billable, exported, message)
        raise
    _finish(engine, run_id, clock(), status, n_records, billable, exported, message)
    log.info(
        "job_finished",
        run_id=run_id,
        as_of=as_of.isoformat(),
        records=n_records,
        billable_lines=billable,
        exported_lines=exported,
    )
    return JobOutcome(run_id, as_of, status, n_records, billable, exported, message)


def _finish(
    engine: Engine,
    run_id: int,
    finished: datetime,
    status: str,
    records: int,
    billable: int,
    exported: int,
    message: str,
) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(JobRun)
            .where(JobRun.id == run_id)
            .values(
                finished_at=finished,
                status=status,
                records=records,
                billable_lines=billable,
                exported_lines=exported,
                message=message,
            )
        )


# The settings and engine of the process running the scheduler (see module docstring).
_RUNTIME: dict[str, Any] = {}


def scheduled_run() -> None:
    """Entry point APScheduler stores by reference."""
    run_job(_RUNTIME["settings"], _RUNTIME["engine"])


def build_scheduler(settings: Settings, engine: Engine) -> BlockingScheduler:
    """A blocking scheduler with its job store in the registry DB and the nightly job added."""
    _RUNTIME.update(settings=settings, engine=engine)
    scheduler = BlockingScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=engine, tablename=JOBSTORE_TABLE)},
        timezone=schedule_zone(settings),
    )
    scheduler.add_job(
        scheduled_run,
        trigger=make_trigger(settings),
        id=JOB_NAME,
        name=JOB_NAME,
        replace_existing=True,
        coalesce=True,
        max_instances=1,
        misfire_grace_time=settings.schedule.misfire_grace_seconds,
    )
    return scheduler
