"""``rpmpipe import ...`` (registry loads) and ``rpmpipe db upgrade``."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from rpmpipe.app.cli.common import fail, settings_of
from rpmpipe.app.cli.ingest_cmds import import_readings
from rpmpipe.app.cli.progress import progress_bar
from rpmpipe.errors import RpmpipeError
from rpmpipe.registry.import_columns import COLUMNS

import_app = typer.Typer(
    help=(
        "Load registry CSVs (patients, devices, assignments, enrollments, activities, care-plans) "
        "or backfill "
        "readings. Imports are idempotent and atomic: a bad row stops the import with its row "
        "number and field, and nothing of that file is written."
    ),
    no_args_is_help=True,
)
db_app = typer.Typer(help="Registry database maintenance.", no_args_is_help=True)

_FileArg = Annotated[
    Path,
    typer.Argument(exists=True, dir_okay=False, readable=True, help="CSV file with a header row."),
]


def _make_import(kind: str) -> None:
    columns = ",".join(COLUMNS[kind].required)
    if COLUMNS[kind].optional:
        columns += f" (optional: {','.join(COLUMNS[kind].optional)})"

    def command(ctx: typer.Context, file: _FileArg) -> None:
        from rpmpipe.registry.db import open_registry
        from rpmpipe.registry.imports import import_csv

        settings = settings_of(ctx)
        started = time.perf_counter()
        try:
            engine = open_registry(settings.effective_database_url)
            medicare = {
                key
                for key, payer in settings.billing.payers.items()
                if payer.claim_filing_indicator == "MB"
            }
            with progress_bar(f"checking {kind}") as bar:
                result = import_csv(
                    engine,
                    kind,
                    file,
                    now=datetime.now(UTC),
                    progress=bar,
                    medicare_payers=medicare,
                )
        except RpmpipeError as exc:
            raise fail(f"{exc}\nnothing from {file} was written", exc.exit_code) from None
        typer.echo(
            f"{kind}: {result.rows} rows ({result.inserted} new, {result.updated} updated, "
            f"{result.unchanged} unchanged) in {time.perf_counter() - started:.2f}s"
        )
        for warning in result.warnings:
            typer.echo(f"warning: {warning}", err=True)

    optional = ",".join(COLUMNS[kind].optional)
    more = f"; optional: {optional}" if optional else ""
    command.__doc__ = f"Import {kind} from FILE.csv. Columns: {columns}{more}."
    import_app.command(kind)(command)


for _kind in COLUMNS:
    _make_import(_kind)
import_app.command("readings")(import_readings)


@db_app.command("upgrade")
def upgrade(ctx: typer.Context) -> None:
    """Create or migrate the registry schema to the current version (idempotent)."""
    from rpmpipe.registry.db import open_registry
    from rpmpipe.settings import redact_url

    settings = settings_of(ctx)
    open_registry(settings.effective_database_url)
    typer.echo(f"registry at {redact_url(settings.effective_database_url)} is up to date")


def register(app: typer.Typer) -> None:
    app.add_typer(import_app, name="import")
    app.add_typer(db_app, name="db")
