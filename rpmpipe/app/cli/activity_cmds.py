"""``rpmpipe activities void``: take back a mistaken time entry without SQL."""

from __future__ import annotations

import getpass
from datetime import UTC, datetime
from typing import Annotated

import typer

from rpmpipe.app.cli.common import fail, settings_of
from rpmpipe.errors import RpmpipeError

activities_app = typer.Typer(
    help="Care-team time entries: void a mistaken one (kept, no longer counted).",
    no_args_is_help=True,
)


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@activities_app.command("void")
def void(
    ctx: typer.Context,
    activity_id: Annotated[str, typer.Argument(help="The activity_id of the time entry.")],
    reason: Annotated[str, typer.Option("--reason", help="Why the entry is voided (kept).")],
    by: Annotated[
        str | None,
        typer.Option("--by", help="Who voids it (default: the login name)."),
    ] = None,
) -> None:
    """Void a time entry: it stays in the registry with who, when and why, and no longer counts.

    The next `rpmpipe metrics --save` or `rpmpipe export` recounts its month; a month already
    exported whose lines change gets a correction record in corrections.csv.
    """
    from rpmpipe.registry.activities import void_activity
    from rpmpipe.registry.db import open_registry

    settings = settings_of(ctx)
    who = (by or _login()).strip()[:64] or "unknown"
    try:
        engine = open_registry(settings.effective_database_url)
        outcome = void_activity(engine, activity_id, reason, who, datetime.now(UTC))
    except RpmpipeError as exc:
        raise fail(str(exc), exc.exit_code) from None
    when = outcome.voided_at.isoformat(timespec="seconds")
    if outcome.new:
        typer.echo(
            f"voided {outcome.activity_id} (by {outcome.voided_by} at {when}): its time no longer counts"
        )
    else:
        typer.echo(
            f"{outcome.activity_id} was already voided by {outcome.voided_by} at {when}: "
            f"{outcome.voided_reason}"
        )


def register(app: typer.Typer) -> None:
    """Attach this module's commands to ``app``."""
    app.add_typer(activities_app, name="activities")
