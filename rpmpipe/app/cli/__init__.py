"""The ``rpmpipe`` command. Each stage registers its commands from its own module here."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from rpmpipe.errors import RpmpipeError
from rpmpipe.logs import configure_logging
from rpmpipe.settings import load_settings

app = typer.Typer(
    name="rpmpipe",
    help=(
        "Turn remote-patient-monitoring device syncs into billing-ready engagement metrics.\n\n"
        "Devices publish readings over MQTT; `rpmpipe ingest` stores them in Parquet; "
        "`rpmpipe metrics` counts days with data and management minutes under the CMS rules; "
        "`rpmpipe export` writes a charge CSV and an X12 837P. `rpmpipe demo` runs it all."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _global_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Settings file (TOML). Default: $RPMPIPE_CONFIG, else built-in defaults.",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Where readings, quarantine and exports live. [env: RPMPIPE_DATA_DIR]",
        ),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="Registry SQLAlchemy URL; default a SQLite file under the data dir. [env: RPMPIPE_DATABASE_URL]",
        ),
    ] = None,
    broker_url: Annotated[
        str | None,
        typer.Option(
            "--broker-url", help="mqtt://host:port or mqtts://host:port. [env: RPMPIPE_BROKER_URL]"
        ),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR. [env: RPMPIPE_LOG_LEVEL]"),
    ] = None,
) -> None:
    overrides = {
        "data_dir": data_dir,
        "database_url": database_url,
        "broker.url": broker_url,
        "log_level": log_level,
    }
    try:
        settings = load_settings(config, overrides=overrides)
    except RpmpipeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings.log_level, settings.log_format)
    ctx.obj = settings


def _register() -> None:
    from rpmpipe.app.cli import (
        demo_cmd,
        export_cmds,
        ingest_cmds,
        metrics_cmds,
        registry_cmds,
        security_cmds,
        simulate_cmds,
    )

    for module in (
        registry_cmds,
        ingest_cmds,
        simulate_cmds,
        metrics_cmds,
        export_cmds,
        security_cmds,
        demo_cmd,
    ):
        module.register(app)


_register()


def main() -> None:
    try:
        app()
    except RpmpipeError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
