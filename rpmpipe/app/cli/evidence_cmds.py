"""``rpmpipe audit``, ``remit import``, ``denials list`` and ``appeal``: answering a denial.

From a payer's 835 to an appeal packet: ``remit import`` records what was paid, adjusted and
denied; ``denials list`` shows the denied lines with their evidence status; ``appeal`` writes
the packet (PDF and HTML) from the evidence frozen with the export that billed the claim.
Output names ids and codes only; the packet itself holds PHI and is written 0600.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from rpmpipe.app.cli.common import fail, settings_of
from rpmpipe.errors import RemitError

remit_app = typer.Typer(help="Remittance advice (X12 835) from payers.", no_args_is_help=True)
denials_app = typer.Typer(help="Denied claim lines and their evidence.", no_args_is_help=True)
HELD_EXIT = 3


class Format(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def _csv(rows: list[dict[str, str]], columns: tuple[str, ...]) -> str:
    from rpmpipe.csv_cells import SafeCsvWriter

    out = io.StringIO()
    writer = SafeCsvWriter(out)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([str(row[c]) for c in columns])
    return out.getvalue()


def audit(
    ctx: typer.Context,
    as_of: Annotated[
        str, typer.Option("--as-of", help="Audit the lines an export as of this date would bill.")
    ],
    output: Annotated[
        Format, typer.Option("--format", help="table (summary), json or csv (one row per line).")
    ] = Format.table,
) -> None:
    """The documentation readiness report: lines ready, lines held by reason, the patients.

    Every line an export as of AS_OF would bill is checked against its program's
    requirements (consent before the date of service, an ordering provider, a care plan,
    interactive communication with its time, a time log with staff and minutes, the readings
    behind the days with data) and its payer's profile (billing.payers.ID.audit_requires).
    Nothing is exported. Exit 3 when any line would be held.
    """
    from rpmpipe.asof import parse_day
    from rpmpipe.billing_export.audit_run import (
        READINESS_COLUMNS,
        readiness,
        readiness_rows,
        readiness_table,
    )
    from rpmpipe.registry.db import open_registry

    settings = settings_of(ctx)
    day = parse_day(as_of)
    engine = open_registry(settings.effective_database_url)
    try:
        report = readiness(settings.export, engine, day)
    finally:
        engine.dispose()
    if output is Format.json:
        typer.echo(
            json.dumps(
                {
                    "as_of": day.isoformat(),
                    "ready": len(report.ready),
                    "held": len(report.held) + sum(h.lines for h in report.other_held),
                    "lines": readiness_rows(report),
                },
                indent=2,
            )
        )
    elif output is Format.csv:
        typer.echo(_csv(readiness_rows(report), READINESS_COLUMNS), nl=False)
    else:
        typer.echo(readiness_table(report))
    if report.held or report.other_held:
        raise typer.Exit(HELD_EXIT)


@remit_app.command("import")
def remit_import(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="An X12 835 file.")
    ],
) -> None:
    """Record an X12 835 (005010X221A1): paid, adjusted and denied lines with their codes.

    Each claim (CLP01) is matched to the claim ids rpmpipe issued, each line (REF*6R) to its
    line control number. Importing the same file again changes nothing. Claim ids rpmpipe did
    not issue are listed, not fatal.
    """
    from rpmpipe.billing_export.remit_import import import_remittance
    from rpmpipe.registry.db import open_registry

    settings = settings_of(ctx)
    engine = open_registry(settings.effective_database_url)
    try:
        result = import_remittance(engine, file, datetime.now(UTC))
    except RemitError as exc:
        raise fail(f"{exc}; nothing from {file.name} was recorded") from None
    finally:
        engine.dispose()
    if result.already_imported:
        typer.echo(
            f"{file.name}: already imported (remittance {result.remittance_id}); nothing changed"
        )
    else:
        typer.echo(
            f"remittance {result.remittance_id}: {result.claims} claims, {result.lines} lines"
        )
    typer.echo(
        f"paid: {result.paid}  adjusted: {result.adjusted}  denied: {result.denied}  "
        f"total paid: {result.total_paid:.2f}"
    )
    if result.unmatched_lines:
        typer.echo(f"lines matching no billed line: {result.unmatched_lines}")
    if result.unmatched_claim_ids:
        ids = result.unmatched_claim_ids
        more = f", +{len(ids) - 10} more" if len(ids) > 10 else ""
        typer.echo(f"claims rpmpipe did not issue ({len(ids)}): {', '.join(ids[:10])}{more}")
    if result.denied and not result.already_imported:
        typer.echo("next: rpmpipe denials list, then rpmpipe appeal --denied --out DIR")


def _exports_option() -> object:
    return typer.Option("--exports", help="Where the export runs are (default: DATA_DIR/exports).")


@denials_app.command("list")
def denials_list(
    ctx: typer.Context,
    code: Annotated[
        list[str] | None,
        typer.Option("--code", help="Only denials with this code (CO-16, N29, ...); repeatable."),
    ] = None,
    output: Annotated[Format, typer.Option("--format", help="table, json or csv.")] = Format.table,
    exports: Annotated[Path | None, _exports_option()] = None,
) -> None:
    """Denied lines (latest remittance paid nothing) with their evidence status: complete,
    or what is missing."""
    from rpmpipe.billing_export.denials import denial_dict, denials_json, list_denials
    from rpmpipe.registry.db import open_registry

    settings = settings_of(ctx)
    codes = [c for item in code or [] for c in item.split(",")]
    engine = open_registry(settings.effective_database_url)
    try:
        found = list_denials(engine, exports or settings.exports_dir, settings.billing, codes)
    finally:
        engine.dispose()
    if output is Format.json:
        typer.echo(denials_json(found), nl=False)
        return
    rows = [
        {
            k: (";".join(v) if isinstance(v, list) else ("" if v is None else str(v)))
            for k, v in denial_dict(d).items()
        }
        for d in found
    ]
    if output is Format.csv:
        columns = tuple(rows[0]) if rows else ("claim_id",)
        typer.echo(_csv(rows, columns), nl=False)
        return
    if not found:
        typer.echo("no denied lines")
        return
    for d in found:
        typer.echo(
            f"{d.claim_id}  line {d.line_control_number or '-'}  {d.code}  "
            f"{d.date_of_service.isoformat() if d.date_of_service else '-'}  {d.charge:.2f}  "
            f"{','.join(d.denial_codes)}{' ' + ','.join(d.remark_codes) if d.remark_codes else ''}"
            f"  patient {d.patient_id}\n    evidence: {d.evidence_status}"
        )
    typer.echo(f"{len(found)} denied lines; write packets with: rpmpipe appeal --denied --out DIR")


def appeal(
    ctx: typer.Context,
    claim_id: Annotated[
        str | None, typer.Argument(help="The claim id (CLM01) to appeal; or use --denied.")
    ] = None,
    denial_code: Annotated[
        str | None,
        typer.Option("--denial-code", help="The denial answered, e.g. CO-16 (default: the 835's)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Where to write the packets (default: DATA_DIR/appeals)."),
    ] = None,
    denied: Annotated[
        bool, typer.Option("--denied", help="A packet for every denied claim (see denials list).")
    ] = False,
    codes: Annotated[
        str | None,
        typer.Option("--codes", help="With --denied: only these codes, e.g. CO-16,CO-50,N29."),
    ] = None,
    exports: Annotated[Path | None, _exports_option()] = None,
) -> None:
    """Write an appeal packet (PDF and HTML): the letter and the evidence behind the claim.

    The letter (template: billing.appeal_template, Jinja2; the built-in one otherwise)
    names the practice, payer, claim, patient, date of service and denial, and states the
    engagement measured: days with data and their dates, minutes and interactive contacts
    with dates and staff, care-plan reviews and PROs, consent date, ordering provider and rule
    set. Attached: the claim lines, the evidence table, a calendar of days with data and
    contacts, and the time log. Files are 0600; they hold PHI for the payer.
    """
    from rpmpipe.billing_export.denials import (
        FrozenEvidence,
        build_packet,
        list_denials,
        write_packet,
    )
    from rpmpipe.billing_export.export import check_billing_identity
    from rpmpipe.registry.db import open_registry

    settings = settings_of(ctx)
    if bool(claim_id) == denied:
        raise fail("give a CLAIM_ID or --denied (not both)", 2)
    if codes and not denied:
        raise fail("--codes goes with --denied", 2)
    root = exports or settings.exports_dir
    target = out or settings.data_dir / "appeals"
    template = Path(settings.billing.appeal_template) if settings.billing.appeal_template else None
    today = datetime.now(UTC).astimezone(settings.org_zone).date()
    written: list[tuple[str, Path, Path]] = []
    engine = open_registry(settings.effective_database_url)
    try:
        # As export does, after the registry is reached: the letter's header is the
        # practice, so never a packet for a blank or made-up one.
        check_billing_identity(settings.billing, "no appeal letter can name the practice")
        evidence = FrozenEvidence(root)  # each run's evidence read once for every packet
        if denied:
            wanted = [c for c in (codes or "").split(",") if c.strip()]
            found = list_denials(engine, root, settings.billing, wanted, evidence)
            claims = sorted({d.claim_id for d in found})
        else:
            assert claim_id is not None
            claims = [claim_id]
        for cid in claims:
            packet = build_packet(engine, root, settings.billing, cid, today, denial_code, evidence)
            written.append((cid, *write_packet(packet, target, template)))
    finally:
        engine.dispose()
    if not written:
        typer.echo("no denied claims to appeal")
        return
    for cid, pdf, html in written:
        typer.echo(f"{cid}: {pdf}\n{' ' * (len(cid) + 2)}{html}")


def register(app: typer.Typer) -> None:
    """Attach this module's commands to ``app``."""
    app.command("audit")(audit)
    app.add_typer(remit_app, name="remit")
    app.add_typer(denials_app, name="denials")
    app.command("appeal")(appeal)
