"""``rpmpipe simulate``: register a synthetic fleet, publish its device syncs and care activity."""

from __future__ import annotations

from datetime import UTC, datetime, time
from pathlib import Path
from typing import Annotated

import typer

from rpmpipe.app.cli.common import fail, settings_of
from rpmpipe.errors import RpmpipeError, UsageError
from rpmpipe.settings import redact_url

_HELP = (
    "Publish simulated BP-cuff and scale syncs and care-team activity to the broker.\n\n"
    "By default the fleet (patients across US time zones, devices, assignments, RPM "
    "enrollments with consent, a few without) is first registered in the registry, "
    "idempotently, so that ingest accepts its readings. Readings go to "
    "TOPIC_ROOT/devices/DEVICE_ID/readings and activity to TOPIC_ROOT/activities, "
    "with QoS 1; the command ends when the broker has acknowledged every message.\n\n"
    "The same --seed and --start give the same fleet and messages."
)


def simulate(
    ctx: typer.Context,
    patients: Annotated[int, typer.Option("--patients", min=1, help="Patients in the fleet.")] = 20,
    days: Annotated[int, typer.Option("--days", min=1, help="Days of traffic.")] = 30,
    start: Annotated[
        str | None,
        typer.Option(
            "--start", help="First day (YYYY-MM-DD). Default: DAYS days before today (UTC)."
        ),
    ] = None,
    speed: Annotated[
        str,
        typer.Option(
            "--speed",
            help="max (as fast as the broker acknowledges), realtime, or a "
            "factor such as 3600 (one simulated hour per second).",
        ),
    ] = "max",
    faults: Annotated[
        bool,
        typer.Option(
            "--faults",
            help="Inject duplicates, late and out-of-order syncs, clock skew, "
            "malformed payloads, unregistered devices and a burst.",
        ),
    ] = False,
    seed: Annotated[
        int, typer.Option("--seed", help="Same seed and start: same fleet, same messages.")
    ] = 1,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="Payload format: native, omh (Open mHealth), fhir (R4 "
            "Observation) or mixed (a format per device).",
        ),
    ] = "native",
    rate: Annotated[
        float | None,
        typer.Option(
            "--rate",
            help="At most this many messages per second; more than one "
            "connection can give is spread over several connections.",
        ),
    ] = None,
    no_register: Annotated[
        bool,
        typer.Option("--no-register", help="Do not add the fleet to the registry first."),
    ] = False,
    manifest: Annotated[
        Path | None,
        typer.Option(
            "--manifest",
            help="Where to write the fault manifest (JSON). Default with "
            "--faults: DATA_DIR/simulator/faults-SEED.json.",
        ),
    ] = None,
) -> None:
    """Publish simulated device syncs and care activity (help text: ``_HELP``)."""
    from rpmpipe.asof import parse_day
    from rpmpipe.simulators import build_fleet, default_start
    from rpmpipe.simulators import simulate as make_traffic
    from rpmpipe.simulators.publisher import PublishStats, parse_speed, publish, write_manifest
    from rpmpipe.simulators.traffic import WIRE_FORMATS

    settings = settings_of(ctx)
    if fmt not in WIRE_FORMATS:
        raise UsageError(f"--format must be one of {', '.join(WIRE_FORMATS)}, got {fmt!r}")
    try:
        parse_speed(speed)
    except ValueError as exc:
        raise UsageError(f"--speed: {exc}") from None
    if rate is not None and rate <= 0:
        raise UsageError("--rate must be a positive number of messages per second")
    now = datetime.now(UTC)
    first_day = parse_day(start, "--start") if start else default_start(now, days)

    fleet = build_fleet(patients, first_day, days, seed)
    try:
        if not no_register:
            from rpmpipe.registry.db import open_registry
            from rpmpipe.registry.imports import import_rows

            engine = open_registry(settings.effective_database_url)
            for kind, rows in fleet.registry_rows().items():
                result = import_rows(engine, kind, rows, source="simulator")
                typer.echo(
                    f"registered {kind}: {result.rows} ({result.inserted} new, "
                    f"{result.updated} updated, {result.unchanged} unchanged)"
                )
            engine.dispose()
        # The start of today (UTC), not "now": the same seed gives the same messages all day.
        horizon = datetime.combine(now.date(), time(0), UTC)
        sim = make_traffic(
            fleet, topic_root=settings.broker.topic_root, fmt=fmt, faults=faults, until=horizon
        )
        if sim.manifest is not None:
            path = manifest or settings.data_dir / "simulator" / f"faults-{seed}.json"
            write_manifest(path, sim.manifest)
            typer.echo(f"fault manifest: {path} ({len(sim.manifest.faults)} faults)")

        def show(stats: PublishStats) -> None:
            typer.echo(
                f"  {stats.messages}/{len(sim.messages)} messages, {stats.acked} acknowledged, "
                f"{stats.messages_per_second:.0f}/s",
                err=True,
            )

        typer.echo(
            f"publishing {len(sim.messages)} messages for {patients} patients, "
            f"{first_day} to {fleet.end}, to {redact_url(settings.broker.url)}"
        )
        stats = publish(settings.broker, sim.messages, speed=speed, rate=rate, progress=show)
    except RpmpipeError as exc:
        raise fail(str(exc), exc.exit_code) from None
    typer.echo(
        f"published {stats.messages} messages ({stats.readings} readings, {stats.activities} "
        f"activities) over {stats.connections} connection(s) in {stats.elapsed_seconds:.1f}s"
    )
    typer.echo("  by type: " + ", ".join(f"{k}={v}" for k, v in sorted(stats.by_type.items())))
    typer.echo("  by format: " + ", ".join(f"{k}={v}" for k, v in sorted(stats.by_format.items())))
    if stats.faults:
        typer.echo("  faults: " + ", ".join(f"{k}={v}" for k, v in sorted(stats.faults.items())))


def register(app: typer.Typer) -> None:
    """Attach this module's commands to ``app``."""
    app.command("simulate", help=_HELP)(simulate)
