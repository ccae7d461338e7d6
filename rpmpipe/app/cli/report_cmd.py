"""``rpmpipe report``: the worklist, month-end totals and a page per patient, as a site."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from rpmpipe.app.cli.common import fail, settings_of


def report(
    ctx: typer.Context,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Directory of the site (created 0700; a previous report there is replaced).",
        ),
    ],
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="Count data through the end of this local day (YYYY-MM-DD). "
            "Default: yesterday in the organisation's zone.",
        ),
    ] = None,
    serve: Annotated[
        bool,
        typer.Option("--serve", help="Then show it on http://127.0.0.1:PORT until Ctrl-C."),
    ] = False,
    port: Annotated[int, typer.Option("--port", help="Port for --serve (0: a free one).")] = 0,
) -> None:
    """Write the at-risk worklist, month-end totals and a page per patient as a static site.

    The site opens from disk, no server needed: OUT/index.html is the at-risk
    worklist (open periods and months, most urgent first; also OUT/worklist.csv),
    OUT/totals.html the month-end totals by code, program, rendering provider and payer with
    the held lines and the corrections waiting for review, and OUT/patient.html#NNNNNN a
    page per patient (patients numbered in id order). The pages hold PHI: every file is 0600 in 0700 directories. Exit 2 when OUT
    is a directory that holds something other than an earlier report."""
    from rpmpipe.app.report.build import build_report
    from rpmpipe.asof import future_warning, is_future, last_full_day, parse_day
    from rpmpipe.registry.db import open_registry

    settings = settings_of(ctx)
    now = datetime.now(UTC)
    zone = settings.org_zone
    day = parse_day(as_of) if as_of is not None else last_full_day(zone, now)
    if is_future(day, zone, now):
        typer.echo(f"warning: {future_warning(day, zone, now)}", err=True)
    engine = open_registry(settings.effective_database_url)
    try:
        result = build_report(settings, engine, day, out, now=now)
    except ValueError as exc:  # a readings file that is not what it should be
        raise fail(str(exc)) from None
    typer.echo(
        f"report as of {day.isoformat()}: {result.worklist_rows} worklist rows, "
        f"{result.patients} patient pages"
    )
    typer.echo(str(result.index))
    if serve:
        from rpmpipe.app.report.serve import make_server

        server = make_server(result.out, port)
        typer.echo(f"serving on http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C to stop)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()


def register(app: typer.Typer) -> None:
    app.command("report")(report)
