"""The root group of the ``rpmpipe`` command: ``COMMANDS`` names each command's module and its
one-line help (``tests/rpmpipe/test_cli_startup.py`` checks that it matches the modules); a
command's module is imported when it runs or when its own ``--help`` is asked for.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from rpmpipe import __version__
from rpmpipe.app.cli.common import EXIT_CODES_HELP, EdgeGroup
from rpmpipe.errors import RpmpipeError


@dataclass(frozen=True)
class CommandEntry:
    module: str  # under rpmpipe.app.cli
    help: str  # the one line `rpmpipe --help` shows


COMMANDS: dict[str, CommandEntry] = {
    "demo": CommandEntry(
        "demo_cmd", "Run the whole pipeline on embedded defaults and print a summary."
    ),
    "ingest": CommandEntry(
        "ingest_cmds",
        "Subscribe to device readings and care activity and store them, exactly once.",
    ),
    "import": CommandEntry(
        "registry_cmds",
        "Load registry CSVs (patients, devices, assignments, enrollments, activities, care-plans) "
        "or backfill readings.",
    ),
    "patients": CommandEntry("registry_change_cmds", "Look up a patient's registry record."),
    "devices": CommandEntry("registry_change_cmds", "Retire a device (history is kept)."),
    "assignments": CommandEntry(
        "registry_change_cmds", "End a device's assignment to a patient (history is kept)."
    ),
    "enrollments": CommandEntry(
        "registry_change_cmds", "End a patient's enrollment in a program (history is kept)."
    ),
    "quarantine": CommandEntry(
        "ingest_cmds",
        "Inspect and re-ingest quarantined payloads (bad JSON, unknown devices, implausible values, ...).",
    ),
    "compact": CommandEntry(
        "ingest_cmds", "Merge the small Parquet files of closed days into one file per day."
    ),
    "simulate": CommandEntry(
        "simulate_cmds",
        "Publish simulated BP-cuff and scale syncs and care-team activity to the broker.",
    ),
    "metrics": CommandEntry(
        "metrics_cmds",
        "Engagement records as of a date: days with data per 30-day period, management minutes "
        "per month, the CMS codes they earn, status and the reason.",
    ),
    "export": CommandEntry(
        "export_cmds",
        "Write the charge CSV and X12 837P of every final, billable line not yet exported.",
    ),
    "audit": CommandEntry(
        "evidence_cmds",
        "The documentation readiness report: lines ready, lines held by reason, the patients.",
    ),
    "remit": CommandEntry("evidence_cmds", "Remittance advice (X12 835) from payers."),
    "denials": CommandEntry("evidence_cmds", "Denied claim lines and their evidence."),
    "appeal": CommandEntry(
        "evidence_cmds",
        "Write an appeal packet (PDF and HTML): the letter and the evidence behind the claim.",
    ),
    "schedule": CommandEntry(
        "metrics_cmds", "Run the nightly job: engagement as of yesterday, then the billing export."
    ),
    "report": CommandEntry(
        "report_cmd",
        "Write the at-risk worklist, month-end totals and a page per patient as a static site.",
    ),
    "broker-config": CommandEntry(
        "security_cmds", "Write a Mosquitto 2 configuration for every device in the registry."
    ),
    "db": CommandEntry("registry_cmds", "Registry database maintenance."),
    "activities": CommandEntry(
        "activity_cmds", "Care-team time entries: void a mistaken one (kept, no longer counted)."
    ),
}

_CONTEXT = {"help_option_names": ["-h", "--help"]}


class _Placeholder(TyperCommand):
    """Stands for a command whose module is not imported yet (name and one-line help only)."""


class RootGroup(EdgeGroup):
    """The root group: commands are imported when used; failures end at the edge."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self._listing = False
        for name, entry in COMMANDS.items():
            self.commands.setdefault(name, _Placeholder(name=name, help=entry.help))

    def format_help(self, ctx: Any, formatter: Any) -> None:
        # Listing the commands needs only their names and one-line help.
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = self.commands.get(cmd_name)
        if isinstance(command, _Placeholder) and not self._listing:
            command = load_command(cmd_name)
            self.commands[cmd_name] = command
        return command


def load_command(name: str) -> Any:
    """Import the module of command ``name`` and build its click command."""
    entry = COMMANDS[name]
    module = importlib.import_module(f"rpmpipe.app.cli.{entry.module}")
    holder = typer.Typer(rich_markup_mode="markdown", context_settings=_CONTEXT)
    module.register(holder)
    group = typer.main.get_group(holder)
    command = group.commands.get(name)
    if command is None:
        raise LookupError(f"rpmpipe.app.cli.{entry.module} does not register {name!r}")
    return command


app = typer.Typer(
    name="rpmpipe",
    cls=RootGroup,
    help=(
        "Turn remote-patient-monitoring device syncs into billing-ready engagement metrics.\n\n"
        "Devices publish readings over MQTT; `rpmpipe ingest` stores them in Parquet; "
        "`rpmpipe metrics` counts days with data and management minutes under the CMS rules; "
        "`rpmpipe export` writes a charge CSV and an X12 837P. `rpmpipe demo` runs it all.\n\n"
        + EXIT_CODES_HELP
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    context_settings=_CONTEXT,
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"rpmpipe {__version__}")
        raise typer.Exit(0)


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
    version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_show_version, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    from rpmpipe.logs import configure_logging, get_logger
    from rpmpipe.settings import load_settings

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
        raise typer.Exit(exc.exit_code) from None
    configure_logging(settings.log_level, settings.log_format)
    get_logger("rpmpipe").info(
        "rpmpipe_started", version=__version__, command=ctx.invoked_subcommand
    )
    ctx.obj = settings


def main() -> None:
    try:
        app()
    except RpmpipeError as exc:  # raised outside a command (the edge handles those)
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
