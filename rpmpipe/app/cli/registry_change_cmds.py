"""``rpmpipe devices retire``, ``assignments end``, ``enrollments end`` and ``patients show``.

Registry changes without SQL, keeping history: nothing is deleted, end dates are set. The
terminal may show a patient's record to the operator; the logs get ids only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from rpmpipe.app.cli.common import settings_of

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from rpmpipe.registry.changes import Change

devices_app = typer.Typer(help="Retire a device (history is kept).", no_args_is_help=True)
assignments_app = typer.Typer(
    help="End a device's assignment to a patient (history is kept).", no_args_is_help=True
)
enrollments_app = typer.Typer(
    help="End a patient's enrollment in a program (history is kept).", no_args_is_help=True
)
patients_app = typer.Typer(help="Look up a patient's registry record.", no_args_is_help=True)

_On = Annotated[
    str | None,
    typer.Option(
        "--on",
        help="The last day, inclusive (YYYY-MM-DD). Default: today in the organisation's zone.",
    ),
]


def _day(ctx: typer.Context, on: str | None) -> date:
    from rpmpipe.asof import parse_day, today_in

    if on is None:
        return today_in(settings_of(ctx).org_zone, datetime.now(UTC))
    return parse_day(on, "--on")


@contextmanager
def _registry(ctx: typer.Context) -> Iterator[Engine]:
    from rpmpipe.registry.db import open_registry

    engine = open_registry(settings_of(ctx).effective_database_url)
    try:
        yield engine
    finally:
        engine.dispose()


def _change(ctx: typer.Context, on: str | None, make: Callable[[Engine, date], Change]) -> None:
    """Make one registry change as of ON (default today) and say what it did."""
    day = _day(ctx, on)
    with _registry(ctx) as engine:
        change = make(engine, day)
    typer.echo(f"{change.subject}: {change.detail}" + ("" if change.changed else " (unchanged)"))


@devices_app.command("retire")
def retire(
    ctx: typer.Context,
    device_id: Annotated[str, typer.Argument(help="The device to retire.")],
    on: _On = None,
) -> None:
    """Retire DEVICE_ID: its open assignment ends ON that day and readings after it do not
    count. The device stays in the registry (claims may point to it); broker-config leaves
    it out of the broker's users."""
    from rpmpipe.registry.changes import retire_device

    _change(ctx, on, lambda engine, day: retire_device(engine, device_id, day))


@assignments_app.command("end")
def end_assignment(
    ctx: typer.Context,
    device_id: Annotated[str, typer.Argument(help="The device whose assignment ends.")],
    on: _On = None,
) -> None:
    """End DEVICE_ID's open assignment ON that day (its last day, inclusive)."""
    from rpmpipe.registry.changes import end_assignment as end

    _change(ctx, on, lambda engine, day: end(engine, device_id, day))


@enrollments_app.command("end")
def end_enrollment(
    ctx: typer.Context,
    patient_id: Annotated[str, typer.Argument(help="The patient whose enrollment ends.")],
    program: Annotated[str, typer.Option("--program", help="RPM, RTM, CCM, ...")],
    on: _On = None,
) -> None:
    """End PATIENT_ID's open enrollment in PROGRAM ON that day (its last day, inclusive)."""
    from rpmpipe.registry.changes import end_enrollment as end

    _change(ctx, on, lambda engine, day: end(engine, patient_id, program.upper(), day))


@patients_app.command("show")
def show(
    ctx: typer.Context,
    patient_id: Annotated[str, typer.Argument(help="The patient to show.")],
) -> None:
    """Show PATIENT_ID's registry record, devices and enrollments.

    The output holds PHI (name, birth date, address, member id) for the operator at the
    terminal; nothing of it is logged.
    """
    from rpmpipe.registry.changes import patient_record

    with _registry(ctx) as engine:
        record = patient_record(engine, patient_id)
    width = max(len(k) for k in record.patient)
    for key, value in record.patient.items():
        typer.echo(f"{key:<{width}}  {_text(value)}")
    typer.echo("\ndevices")
    for a in record.assignments:
        retired = f", device retired {a['retired_on']}" if a["retired_on"] else ""
        typer.echo(
            f"  {a['device_id']:<14} {a['kind']:<14} {a['start_date']} to "
            f"{_text(a['end_date'], 'open')}{retired}"
        )
    if not record.assignments:
        typer.echo("  (none)")
    typer.echo("\nenrollments")
    for e in record.enrollments:
        typer.echo(
            f"  {e['program']:<6} {e['start_date']} to {_text(e['end_date'], 'open')}, "
            f"consent {_text(e['consent_date'], 'not on file')}, ordering NPI {e['ordering_npi']}"
        )
    if not record.enrollments:
        typer.echo("  (none)")


def _text(value: object, empty: str = "") -> str:
    return empty if value is None or value == "" else str(value)


def register(app: typer.Typer) -> None:
    """Attach ``devices``, ``assignments``, ``enrollments`` and ``patients`` to ``app``."""
    app.add_typer(devices_app, name="devices")
    app.add_typer(assignments_app, name="assignments")
    app.add_typer(enrollments_app, name="enrollments")
    app.add_typer(patients_app, name="patients")
