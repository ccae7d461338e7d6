"""``rpmpipe export``: charge CSV + 837P for final, billable, not-yet-exported lines."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rpmpipe.app.cli.common import settings_of
from rpmpipe.asof import check_as_of

if TYPE_CHECKING:
    from rpmpipe.billing_export.holds import Held, HeldGroup

_MAX_IDS = 10


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

    One run directory holds charges.csv, one .837 per receiver (claims.837 for
    billing.receiver_id, claims-RECEIVER.837 for a payer with its own receiver) and
    manifest.json; every line is recorded in the export ledger so it is never billed twice.
    The summary says whether the files are a test (ISA15 T) or production (P). The billing
    identity (billing.provider_npi and the rest) must be set: there is no built-in one. Changes to already exported periods go to
    corrections.csv. AS_OF may not be later than today in the organisation's time zone.

    Lines that cannot go on a valid claim yet (e.g. an ordering NPI without a name in
    billing.rendering_providers, a payer missing from billing.payers, an incomplete patient)
    are held back: the summary lists each reason with its line count and the settings to add;
    the next run exports them once fixed.

    Exit codes: 0 when something was exported or nothing was pending ("nothing new to
    export"); 3 when lines were held back (whether or not others went out); 1 on data errors;
    2 on bad options or settings (e.g. an AS_OF in the future); 4 when the registry database
    or the exports directory cannot be used.
    """
    from rpmpipe.app.cli.progress import steps
    from rpmpipe.app.cycle import run_billing_cycle
    from rpmpipe.asof import parse_day
    from rpmpipe.registry.db import open_registry

    settings = settings_of(ctx)
    day = parse_day(as_of)
    now = datetime.now(UTC)
    check_as_of(day, settings.org_zone, now)  # before opening (and migrating) the registry
    engine = open_registry(settings.effective_database_url)
    try:
        with steps("export") as progress:
            outcome = run_billing_cycle(
                settings, engine, day, now, out_dir=out, compute=not skip_metrics, progress=progress
            )
    finally:
        engine.dispose()
    result = outcome.export
    for run_id in result.recovered:
        typer.echo(f"recovered unfinished run {run_id}")
    if result.run_dir is None:
        typer.echo("nothing new to export")
    else:
        typer.echo(f"run dir:      {result.run_dir}")
        typer.echo(f"usage:        {_usage(result.usage)}")
        if result.claims_files:
            typer.echo(f"837 files:    {', '.join(result.claims_files)}")
        typer.echo(f"claims:       {result.claims}")
        typer.echo(f"lines:        {result.lines}")
        typer.echo(f"total charge: {result.total_charge:.2f}")
        if result.corrections:
            typer.echo(f"corrections:  {result.corrections} (see corrections.csv)")
    if result.held:
        typer.echo(held_summary(result.held_back))
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)


def _usage(usage: str) -> str:
    if usage == "P":
        return "production (ISA15 P): these claims are real"
    return "test (ISA15 T): a receiver will not adjudicate these claims"


def held_summary(held: Sequence[Held]) -> str:
    """The held-back lines grouped by reason, and the settings that would release them.

    Ids, codes and NPIs only: this goes to the terminal, never names or member ids.
    """
    from rpmpipe.billing_export.holds import group_held, settings_to_add

    groups = group_held(held)
    total = sum(g.lines for g in groups)
    label = f"held back {total} line{'s' if total != 1 else ''}"
    reasons = [f"{g.cause.text} ({g.lines}){_patients(g)}" for g in groups]
    out = (
        [f"{label}: {reasons[0]}"]
        if len(reasons) == 1
        else [f"{label}:", *(f"  {r}" for r in reasons)]
    )
    toml = settings_to_add(groups)
    if toml:
        out.append("to export them, add to the settings file (--config or RPMPIPE_CONFIG):")
        out.extend(f"  {ln}" if ln else "" for ln in toml.splitlines())
    if any(not g.cause.setting_table for g in groups):
        out.append(
            "fix the patients listed in the registry (rpmpipe import patients FILE), then rerun"
        )
    return "\n".join(out)


def _patients(group: HeldGroup) -> str:
    # Patient ids only where the fix is in the registry; capped so the summary stays short.
    if group.cause.setting_table:
        return ""
    ids = group.patient_ids
    more = f", +{len(ids) - _MAX_IDS} more" if len(ids) > _MAX_IDS else ""
    return f"; patients {', '.join(ids[:_MAX_IDS])}{more}"


def register(app: typer.Typer) -> None:
    """Attach this module's commands to ``app``."""
    app.command("export")(export)
