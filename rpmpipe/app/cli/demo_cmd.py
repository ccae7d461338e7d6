"""``rpmpipe demo``: the whole pipeline on embedded defaults, with a summary table."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from rpmpipe.app.cli.common import fail, settings_of
from rpmpipe.errors import RpmpipeError


def demo(
    ctx: typer.Context,
    out: Annotated[
        Path, typer.Option("--out", help="Output directory (replaced if a previous demo made it).")
    ] = Path("demo-output"),
    patients: Annotated[
        int, typer.Option("--patients", min=1, max=5000, help="Simulated patients.")
    ] = 25,
    days: Annotated[
        int, typer.Option("--days", min=31, max=120, help="Days of device syncs to simulate.")
    ] = 40,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the simulated fleet (same seed, same fleet).")
    ] = 7,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Also print the pipeline's JSON logs.")
    ] = False,
) -> None:
    """Run the whole pipeline on embedded defaults and print a summary.

    Starts an in-process MQTT broker on a free loopback port, registers a simulated fleet
    (a mix of adherent and non-adherent patients) in a SQLite registry, publishes DAYS of
    BP-cuff and scale syncs and care-team activity in accelerated time (with injected faults),
    ingests them over MQTT into OUT/data/readings/ (Parquet), computes engagement as of today,
    and exports OUT/exports/RUN/ (charges.csv, claims.837, evidence.parquet, manifest.json),
    then writes an appeal packet for one demo claim to OUT/appeals/.
    """
    from rpmpipe.app.demo import run_demo
    from rpmpipe.app.demo_report import render_summary
    from rpmpipe.logs import configure_logging

    settings = settings_of(ctx)
    if not verbose:
        configure_logging("ERROR", settings.log_format)
    started = time.monotonic()

    def progress(message: str) -> None:
        typer.echo(f"[{time.monotonic() - started:5.1f}s] {message}", err=True)

    try:
        summary = run_demo(
            settings,
            out,
            patients=patients,
            days=days,
            seed=seed,
            now=datetime.now(UTC),
            progress=progress,
        )
    except RpmpipeError as exc:
        raise fail(str(exc), exc.exit_code) from None
    typer.echo(render_summary(summary))


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
