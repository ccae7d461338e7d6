"""``rpmpipe export``: charge CSV + 837P for final, billable, not-yet-exported lines."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer

from rpmpipe.cli import fail, settings_of
from rpmpipe.errors import RpmpipeError


def export(
    ctx: typer.Context,
    as_of: Annotated[
        str,
        typer.Option("--as-of", help="Export periods that ended before this date (YYYY-MM-DD)."),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Exports directory (default: DATA_DIR/exports)."),
    ] = None,
    skip_metrics: Annotated[
        bool,
        typer.Option(
            "--skip-metrics",
            help="Export the engagement records already persisted; do not recompute them first.",
        ),
    ] = False,
) -> None:
    """Write the charge CSV and X12 837P of every final, billable line not yet exported.

    One run directory holds charges.csv, claims.837 and manifest.json; every line is recorded
    in the export ledger so it is never billed twice. Changes to already exported periods go to
    corrections.csv. Prints a summary; "nothing new to export" (exit 0) when there is nothing
    to write.
    """
    settings = settings_of(ctx)
    try:
        day = date.fromisoformat(as_of)
    except ValueError:
        raise fail(f"--as-of: expected a date YYYY-MM-DD, got {as_of!r}", 2) from None
    from billing_export.export import run_export
    from rpmpipe.registry.db import open_registry

    now = datetime.now(UTC)
    try:
        engine = open_registry(settings.effective_database_url)
        try:
            if not skip_metrics:
                # Imported lazily: the metrics stage is heavy and optional with --skip-metrics.
                from metrics.job import compute_and_persist

                compute_and_persist(settings, engine, day, now)
            result = run_export(settings, engine, day, out_dir=out, now=now)
        finally:
            engine.dispose()
    except RpmpipeError as exc:
        raise fail(str(exc)) from None
    for run_id in result.recovered:
        typer.echo(f"recovered unfinished run {run_id}")
    if result.run_dir is None:
        typer.echo("nothing new to export")
    else:
        typer.echo(f"run dir:      {result.run_dir}")
        typer.echo(f"claims:       {result.claims}")
        typer.echo(f"lines:        {result.lines}")
        typer.echo(f"total charge: {result.total_charge:.2f}")
        if result.corrections:
            typer.echo(f"corrections:  {result.corrections} (see corrections.csv)")
    if result.held:
        typer.echo(f"held back:    {result.held} record(s) with incomplete claim data (see log)")


def register(app: typer.Typer) -> None:
    """Attach this module's commands to ``app``."""
    app.command("export")(export)
