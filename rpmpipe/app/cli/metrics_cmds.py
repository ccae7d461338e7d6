"""``rpmpipe metrics`` (engagement records as of a date) and ``rpmpipe schedule`` (nightly job)."""

from __future__ import annotations

import signal
import sys
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated

import typer

from rpmpipe.app.cli.common import as_edge_error, fail, settings_of
from rpmpipe.errors import EXIT_HELD, RpmpipeError
from rpmpipe.records import EngagementRecord, RecordStatus


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def metrics(
    ctx: typer.Context,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Count data through the end of this local day (YYYY-MM-DD). "
            "Default: yesterday in the organisation's zone. A date after today is shown "
            "with a warning and refused with --save.",
        ),
    ] = None,
    output: Annotated[
        OutputFormat,
        typer.Option("--format", help="table (terminal), json (the contract's records) or csv."),
    ] = OutputFormat.table,
    patient: Annotated[
        str | None,
        typer.Option(
            "--patient",
            help="Only this patient, in detail: every period and month with the dates and "
            "activities behind each number (for answering a payer).",
        ),
    ] = None,
    save: Annotated[
        bool,
        typer.Option("--save", help="Also persist the final records (what the nightly job does)."),
    ] = False,
    known_at: Annotated[
        str | None,
        typer.Option(
            "--known-at",
            help="Only what was known at this time (ISO 8601 with offset, e.g. "
            "2026-11-02T02:00:00-05:00): readings received by then, activities started by "
            "then. Reproduces what an earlier run billed. Not with --save.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Processes that count a large fleet (10,000 or more enrolled patients) in "
            "blocks of patients for --format csv, in parallel. Default: the CPUs this "
            "process may use, at most 4; 1 counts everything in this process.",
        ),
    ] = None,
    at_risk: Annotated[
        bool,
        typer.Option(
            "--at-risk",
            help="Instead of the records, the at-risk worklist: patients whose open period can "
            "still reach 16 days but is behind pace, has no readings yet, or can reach only 2; "
            "most urgent first (days so far, days left, days since data, minutes this month, "
            "interactive contact). With --format json or csv, every open row with its flags.",
        ),
    ] = False,
) -> None:
    """Engagement records as of a date: days with data per 30-day period, management minutes
    per month, the CMS codes they earn, status and the reason (billable, pending or
    not_billable)."""
    from rpmpipe.app.cli.progress import steps
    from rpmpipe.asof import check_as_of, future_warning, is_future, last_full_day, parse_day
    from rpmpipe.collector import gc_paused
    from rpmpipe.metrics.job import compute, compute_and_persist, compute_csv
    from rpmpipe.registry.db import open_registry

    settings = settings_of(ctx)
    now = datetime.now(UTC)
    zone = settings.org_zone
    day = parse_day(as_of) if as_of is not None else last_full_day(zone, now)
    known = _parse_known_at(known_at) if known_at is not None else None
    if known is not None and save:
        raise fail("--known-at shows what was known then; it cannot be saved (drop --save)", 2)
    if save:
        check_as_of(day, zone, now)
    elif is_future(day, zone, now):
        typer.echo(f"warning: {future_warning(day, zone, now)}", err=True)
    if (
        output is OutputFormat.csv
        and patient is None
        and not save
        and known is None
        and not at_risk
    ):
        # The bulk CSV path: the same bytes without a record object per row.
        import pyarrow as pa

        from rpmpipe.metrics.report import write_csv_pieces

        # Arrow's default pool (mimalloc) hands freed memory back to the OS within
        # milliseconds, and this run builds and drops hundreds of MB of columns: on our
        # hosts the page faults cost more than the work (benchmarks/metrics.py: about
        # 0.5 s of 4.5 s). The system allocator keeps and reuses it. This process only.
        pa.set_memory_pool(pa.system_memory_pool())

        try:
            with steps("metrics") as progress:
                engine = open_registry(settings.effective_database_url)
                pieces = compute_csv(settings.metrics, engine, day, progress, workers)
                # Rendered as written, a block of patients at a time (the last step's bar).
                sys.stdout.flush()
                write_csv_pieces(pieces, sys.stdout.buffer)
        except ValueError as exc:  # a readings file that is not what it should be
            raise fail(str(exc)) from None
        sys.stdout.buffer.flush()
        return
    engine = open_registry(settings.effective_database_url)
    try:
        with steps("metrics") as progress:
            if save:
                records = compute_and_persist(settings.metrics, engine, day, now, progress)
            else:
                records = compute(settings.metrics, engine, day, known, progress)
    except ValueError as exc:  # a readings file that is not what it should be
        raise fail(str(exc)) from None
    if at_risk:
        with gc_paused():
            _print_worklist(records, output, patient, day)
        return
    if patient is not None:
        records = [r for r in records if r.patient_id == patient]
        if not records:
            raise fail(f"no engagement records for patient {patient} as of {day.isoformat()}")
    with gc_paused():
        _print(records, output, patient, day)


def _parse_known_at(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise fail(f"--known-at: expected an ISO 8601 time, got {text!r}", 2) from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise fail(f"--known-at: {text!r} has no time zone offset (add Z or -05:00)", 2)
    return value


def _print(
    records: list[EngagementRecord], output: OutputFormat, patient: str | None, day: date
) -> None:
    from rpmpipe.metrics.report import render_patient_detail, render_table, write_csv, write_json

    if output is OutputFormat.json:
        write_json(records, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    elif output is OutputFormat.csv:
        write_csv(records, sys.stdout)
    elif patient is not None:
        typer.echo(f"patient {patient}, as of {day.isoformat()}\n")
        typer.echo(render_patient_detail(records), nl=False)
    else:
        typer.echo(render_table(records), nl=False)
        counts = {s: sum(1 for r in records if r.status == s) for s in RecordStatus}
        typer.echo(
            f"\n{len(records)} records as of {day.isoformat()}: "
            + ", ".join(f"{v} {k}" for k, v in counts.items())
        )


def _print_worklist(
    records: list[EngagementRecord], output: OutputFormat, patient: str | None, day: date
) -> None:
    import orjson

    from rpmpipe.metrics.worklist import (
        build_worklist,
        render_worklist,
        row_to_dict,
        write_worklist_csv,
    )

    rows = build_worklist(records, day)
    if patient is not None:
        rows = [r for r in rows if r.patient_id == patient]
    if output is OutputFormat.json:
        sys.stdout.buffer.write(
            orjson.dumps([row_to_dict(r) for r in rows], option=orjson.OPT_INDENT_2) + b"\n"
        )
        sys.stdout.buffer.flush()
    elif output is OutputFormat.csv:
        write_worklist_csv(rows, sys.stdout)
    else:
        risky = [r for r in rows if r.at_risk]
        if risky:
            typer.echo(render_worklist(risky), nl=False)
        typer.echo(f"\n{len(risky)} of {len(rows)} open periods at risk as of {day.isoformat()}")


def schedule(
    ctx: typer.Context,
    run_now: Annotated[
        bool,
        typer.Option("--run-now", help="Run the nightly job once in the foreground, then exit."),
    ] = False,
) -> None:
    """Run the nightly job: engagement as of yesterday, then the billing export.

    APScheduler keeps the job in the registry DB; time and zone come from the schedule
    settings (default 02:00 in the organisation's zone). After the export it writes the
    day's report (see `rpmpipe report`) to EXPORTS/report-DATE/. Each run is recorded in the job_runs
    table with status succeeded, held (lines held back: the reasons are in its message) or
    failed. With --run-now the exit code is 0, 3 when lines were held, or 1 when it failed.
    """
    from rpmpipe.app.cycle import CycleStatus
    from rpmpipe.app.schedule import build_scheduler, make_trigger, run_job, schedule_zone
    from rpmpipe.registry.db import open_registry

    settings = settings_of(ctx)
    try:
        engine = open_registry(settings.effective_database_url)
    except RpmpipeError as exc:
        raise fail(str(exc), exc.exit_code) from None
    if run_now:
        try:
            outcome = run_job(settings, engine)
        except Exception as exc:  # noqa: BLE001 - reported, and recorded in job_runs
            known = as_edge_error(exc, settings)
            if known is not None:
                raise fail(f"job failed: {known}", known.exit_code) from None
            raise fail(f"job failed: {type(exc).__name__}: {exc}") from None
        typer.echo(
            f"job run {outcome.run_id} as of {outcome.as_of.isoformat()}: {outcome.status}, "
            f"{outcome.records} records, {outcome.billable_lines} billable lines, "
            f"{outcome.exported_lines} exported lines"
            + (f" ({outcome.message})" if outcome.message else "")
        )
        if outcome.report is not None:
            typer.echo(f"report: {outcome.report}")
        if outcome.status == CycleStatus.HELD:
            raise typer.Exit(EXIT_HELD)
        return
    scheduler = build_scheduler(settings, engine)
    zone = schedule_zone(settings)
    upcoming = make_trigger(settings).get_next_fire_time(None, datetime.now(zone))
    when = upcoming.isoformat() if upcoming else "never"
    typer.echo(f"scheduler started; next run {when} (Ctrl-C to stop)")

    def _stop(_signum: int, _frame: object) -> None:
        raise SystemExit(0)

    # SIGTERM (service managers) stops as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, _stop)
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        scheduler.shutdown(wait=True)


def register(app: typer.Typer) -> None:
    """Attach ``metrics`` and ``schedule`` to ``app``."""
    app.command("metrics")(metrics)
    app.command("schedule")(schedule)
