"""The nightly job: the billing cycle as of yesterday, recorded in job_runs.

The job is thin: it takes the clock as an argument, runs ``rpmpipe.app.cycle``'s billing
cycle and writes one ``job_runs`` row. APScheduler keeps its job in
the registry DB; the job's arguments are only a name, so no settings (or secrets) are pickled
into the job store — the running process hands its settings over through ``_RUNTIME``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import Engine, insert, update

from rpmpipe.app.cycle import CycleStatus, run_billing_cycle
from rpmpipe.asof import last_full_day
from rpmpipe.logs import get_logger
from rpmpipe.records import EngagementRecord
from rpmpipe.registry.models import JobRun
from rpmpipe.settings import Settings

log = get_logger("rpmpipe.schedule")

JOB_NAME = "nightly_metrics_export"
JOBSTORE_TABLE = "apscheduler_jobs"
Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


def schedule_zone(settings: Settings) -> ZoneInfo:
    """The zone of the cron time: ``schedule.timezone``, else the organisation's."""
    return ZoneInfo(settings.schedule.timezone or settings.organization_timezone)


def make_trigger(settings: Settings) -> CronTrigger:
    return CronTrigger(
        hour=settings.schedule.hour,
        minute=settings.schedule.minute,
        timezone=schedule_zone(settings),
    )


@dataclass(frozen=True)
class JobOutcome:
    """One run of the nightly job, as its ``job_runs`` row records it."""

    run_id: int
    as_of: date
    status: str  # running, succeeded, held (lines held back, see message) or failed
    records: int = 0
    billable_lines: int = 0
    exported_lines: int = 0
    message: str = ""
    report: Path | None = None  # the day's report index, next to the export


def report_dir(settings: Settings, as_of: date) -> Path:
    """Where the nightly job writes the report of ``as_of``: beside the export runs."""
    return settings.exports_dir / f"report-{as_of.isoformat()}"


def run_job(
    settings: Settings, engine: Engine, clock: Clock = system_clock, report: bool = True
) -> JobOutcome:
    """Run the billing cycle as of yesterday in the schedule's zone, then write the day's
    report (:func:`report_dir`); record the run.

    Rerunning the same day is idempotent: the records upsert unchanged and the export ledger
    never bills a line twice. Every run (also a failed one) leaves a ``job_runs`` row.
    """
    started = clock()
    as_of = last_full_day(schedule_zone(settings), started)
    with engine.begin() as conn:
        run_id = conn.execute(
            insert(JobRun)
            .values(
                job=JOB_NAME,
                as_of=as_of,
                started_at=started,
                status=CycleStatus.RUNNING,
                records=0,
                billable_lines=0,
                exported_lines=0,
                message="",
            )
            .returning(JobRun.id)
        ).scalar_one()
    log.info("job_started", run_id=run_id, as_of=as_of.isoformat())
    try:
        cycle = run_billing_cycle(settings, engine, as_of, started)
    except Exception as exc:  # noqa: BLE001 - the run row must say it failed, then re-raise
        failed = JobOutcome(
            run_id, as_of, CycleStatus.FAILED, message=f"{type(exc).__name__}: {exc}"[:2000]
        )
        log.error(
            "job_failed", run_id=run_id, as_of=as_of.isoformat(), error_type=type(exc).__name__
        )
        _finish(engine, failed, clock())
        raise
    message, index = cycle.held_message, None
    if report:
        index, problem = _write_report(settings, engine, as_of, started, cycle.records, run_id)
        if problem:
            message = f"{message}; {problem}" if message else problem
    outcome = JobOutcome(
        run_id,
        as_of,
        cycle.status.value,
        records=len(cycle.records),
        billable_lines=cycle.billable_lines,
        exported_lines=cycle.export.lines,
        # Held lines are money not yet claimed: the run says so, with the reasons.
        message=message,
        report=index,
    )
    _finish(engine, outcome, clock())
    log.info(
        "job_finished",
        run_id=run_id,
        as_of=as_of.isoformat(),
        status=outcome.status,
        records=outcome.records,
        billable_lines=outcome.billable_lines,
        exported_lines=outcome.exported_lines,
    )
    return outcome


def _write_report(
    settings: Settings,
    engine: Engine,
    as_of: date,
    now: datetime,
    records: Sequence[EngagementRecord],
    run_id: int,
) -> tuple[Path | None, str]:
    """The day's report, after the export so it shows tonight's claims. The billing is done
    by then: a report that fails is said in the run's message, never undoes the run."""
    from rpmpipe.app.report.build import build_report

    try:
        site = build_report(
            settings, engine, as_of, report_dir(settings, as_of), now=now, records=records
        )
    except Exception as exc:  # noqa: BLE001 - recorded in the run's message and the log
        log.error("job_report_failed", run_id=run_id, error_type=type(exc).__name__)
        return None, f"report not written: {type(exc).__name__}: {exc}"[:500]
    return site.index, ""


def _finish(engine: Engine, outcome: JobOutcome, finished: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(JobRun)
            .where(JobRun.id == outcome.run_id)
            .values(
                finished_at=finished,
                status=outcome.status,
                records=outcome.records,
                billable_lines=outcome.billable_lines,
                exported_lines=outcome.exported_lines,
                message=outcome.message,
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
