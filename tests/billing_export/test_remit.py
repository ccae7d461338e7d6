"""`rpmpipe remit import FILE.835`: 835s built from the 837s rpmpipe wrote, valid under pyx12,
matched to the ledger's claim ids and line control numbers, recorded once."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from billed_world import activity, bill, build_world, cli_config, world_settings
from billing_identity import MEDICARE
from remit_835 import Outcome, build_835, claims_of_837, write_835
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner
from x12_validation import assert_valid_835

from rpmpipe.app.cli import app
from rpmpipe.billing_export.remit import parse_835
from rpmpipe.billing_export.remit_import import import_remittance
from rpmpipe.errors import RemitError
from rpmpipe.registry.imports import import_rows
from rpmpipe.registry.models import ExportLedgerEntry, RemitLine, Remittance

CLOCK = datetime(2026, 12, 10, 9, tzinfo=UTC)


def _billed(tmp_path: Path, database_url: str) -> tuple[Engine, str, dict[str, str]]:
    """The engine, the 837 text and each claim id by "patient/first code"."""
    settings = world_settings(tmp_path, database_url)
    engine = build_world(settings)
    result = bill(settings, engine)
    assert result.run_dir is not None
    text = (result.run_dir / "claims.837").read_text()
    with engine.connect() as conn:
        rows = conn.execute(
            select(ExportLedgerEntry.claim_id, ExportLedgerEntry.patient_id, ExportLedgerEntry.code)
        ).all()
    ids = {f"{r.patient_id}/{r.code}": r.claim_id for r in rows}
    return engine, text, ids


def ledger_codes(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(
                    ExportLedgerEntry.claim_id, ExportLedgerEntry.patient_id, ExportLedgerEntry.code
                )
            )
        )


def _count(engine: Engine, model: type) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(model)).scalar_one())


def test_an_835_built_from_our_837_is_valid_and_parses_back(tmp_path: Path) -> None:
    engine, text, ids = _billed(tmp_path, f"sqlite:///{tmp_path / 'r.db'}")
    engine.dispose()
    denied = ids["P-02/99457"]
    path = write_835(
        tmp_path / "era.835", text, {denied: Outcome("denied", "CO", "16", ("N29", "N706"))}
    )
    assert_valid_835(path)
    remittance = parse_835(path.read_text())
    assert [c.claim_id for c in remittance.claims] == [c.claim_id for c in claims_of_837(text)]
    claim = next(c for c in remittance.claims if c.claim_id == denied)
    assert (claim.status, claim.charge, claim.paid) == ("4", Decimal("52.00"), Decimal("0.00"))
    [line] = claim.services
    assert (line.code, line.outcome, line.remark_codes) == ("99457", "denied", ("N29", "N706"))
    assert [a.code for a in line.adjustments] == ["CO-16"] and line.adjustments[0].amount == 52
    assert remittance.total_paid == sum(c.paid for c in remittance.claims)
    assert remittance.trace_number == "EFT0001" and remittance.payer_name == "MEDICARE PART B"


def test_import_records_paid_adjusted_and_denied_lines_against_the_ledger(
    tmp_path: Path, database_url: str
) -> None:
    engine, text, ids = _billed(tmp_path, database_url)
    outcomes = {
        ids["P-02/99457"]: Outcome("denied", "CO", "16", ("N29",)),
        ids["P-01/99453"]: Outcome(
            "adjusted", "CO", "45", paid_ratio=Decimal("0.5"), only_codes=("99454",)
        ),
    }
    path = write_835(tmp_path / "era.835", text, outcomes)
    result = import_remittance(engine, path, CLOCK)
    assert (result.claims, result.lines, result.unmatched_lines) == (4, 6, 0)
    assert (result.paid, result.adjusted, result.denied) == (4, 1, 1)
    assert result.unmatched_claim_ids == () and not result.already_imported
    with engine.connect() as conn:
        lines = conn.execute(
            select(RemitLine.__table__, ExportLedgerEntry.code.label("billed")).join(
                ExportLedgerEntry, ExportLedgerEntry.id == RemitLine.ledger_id
            )
        ).all()
    engine.dispose()
    # Each line matched by the REF*6R rpmpipe sent and the payer echoed.
    sent = {ln.line_control_number for c in claims_of_837(text) for ln in c.lines}
    assert "" not in sent and {r.line_control_number for r in lines} == sent
    by_code = {(r.patient_id, r.code): r for r in lines}
    assert all(r.billed == r.code for r in lines)  # each matched to its own line
    denied = by_code[("P-02", "99457")]
    assert (denied.outcome, denied.denial_codes, denied.remark_codes) == ("denied", "CO-16", "N29")
    assert json.loads(denied.adjustments_json) == [{"group": "CO", "carc": "16", "amount": "52.00"}]
    adjusted = by_code[("P-01", "99454")]
    assert (adjusted.outcome, adjusted.paid, adjusted.denial_codes) == (
        "adjusted",
        Decimal("23.50"),
        "CO-45",
    )
    assert by_code[("P-01", "99453")].outcome == "paid"


def test_reimporting_the_same_file_changes_nothing(tmp_path: Path, database_url: str) -> None:
    engine, text, ids = _billed(tmp_path, database_url)
    path = write_835(tmp_path / "era.835", text, {ids["P-01/99457"]: Outcome("denied")})
    first = import_remittance(engine, path, CLOCK)
    counts = (_count(engine, Remittance), _count(engine, RemitLine))
    # The same segments with other line breaks are the same file.
    again = tmp_path / "era-copy.835"
    again.write_text(path.read_text().replace("~\n", "~"))
    for p in (path, again):
        second = import_remittance(engine, p, CLOCK)
        assert second.already_imported and second.remittance_id == first.remittance_id
    assert (_count(engine, Remittance), _count(engine, RemitLine)) == counts == (1, 6)
    engine.dispose()


def test_a_claim_id_rpmpipe_did_not_issue_is_reported_not_fatal(
    tmp_path: Path, database_url: str
) -> None:
    engine, text, _ids = _billed(tmp_path, database_url)
    path = tmp_path / "era.835"
    path.write_text(build_835(text, extra_claims=(("NOT-OURS-1", Decimal("47")),)))
    assert_valid_835(path)
    result = import_remittance(engine, path, CLOCK)
    assert result.unmatched_claim_ids == ("NOT-OURS-1",)
    assert result.lines == 6 and result.claims == 5
    with engine.connect() as conn:
        stored = conn.execute(select(Remittance.unmatched_claim_ids)).scalar_one()
        assert (
            conn.execute(
                select(func.count())
                .select_from(RemitLine)
                .where(RemitLine.claim_id == "NOT-OURS-1")
            ).scalar_one()
            == 0
        )
    engine.dispose()
    assert stored == "NOT-OURS-1"


def test_a_file_that_is_not_an_835_is_refused_and_nothing_recorded(tmp_path: Path) -> None:
    engine, text, _ids = _billed(tmp_path, f"sqlite:///{tmp_path / 'r.db'}")
    claims = tmp_path / "claims.x12"
    claims.write_text(text)
    garbage = tmp_path / "garbage.835"
    garbage.write_text("hello, this is not X12\n")
    for path, message in ((claims, "not an 835 remittance"), (garbage, "not an X12 file")):
        with pytest.raises(RemitError, match=message) as err:
            import_remittance(engine, path, CLOCK)
        assert str(path) in str(err.value)
    assert _count(engine, Remittance) == 0
    engine.dispose()


def test_remit_import_and_denials_list_commands(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'r.db'}"
    engine, text, ids = _billed(tmp_path, db)
    engine.dispose()
    path = write_835(
        tmp_path / "era.835",
        text,
        {
            ids["P-02/99457"]: Outcome("denied", "CO", "16", ("N29",)),
            ids["P-01/99454"]: Outcome("denied", "CO", "50"),
        },
        extra_claims=(("NOT-OURS-1", Decimal("47")),),
    )
    base = [
        "--config",
        str(cli_config(tmp_path)),
        "--data-dir",
        str(tmp_path / "data"),
        "--database-url",
        db,
    ]
    env = {"RPMPIPE_CONFIG": ""}
    runner = CliRunner()
    first = runner.invoke(app, [*base, "remit", "import", str(path)], env=env)
    assert first.exit_code == 0, first.output
    assert "paid: 3  adjusted: 0  denied: 3" in first.output
    assert "claims rpmpipe did not issue (1): NOT-OURS-1" in first.output
    again = runner.invoke(app, [*base, "remit", "import", str(path)], env=env)
    assert again.exit_code == 0 and "already imported" in again.output

    listed = runner.invoke(
        app, [*base, "denials", "list", "--code", "CO-16", "--format", "json"], env=env
    )
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.stdout)
    assert (row["claim_id"], row["code"], row["denial_codes"], row["remark_codes"]) == (
        ids["P-02/99457"],
        "99457",
        ["CO-16"],
        ["N29"],
    )
    assert row["evidence_status"] == "complete"
    table = runner.invoke(app, [*base, "denials", "list"], env=env)
    assert table.exit_code == 0 and "3 denied lines" in table.output
    assert "Hopper" not in table.output and "Lovelace" not in table.output


def test_the_payers_claim_number_is_kept_so_a_late_change_goes_out_as_a_replacement(
    tmp_path: Path, database_url: str
) -> None:
    medicare = {**MEDICARE["MEDICARE"], "replacement_claims": True}
    settings = world_settings(
        tmp_path,
        database_url,
        **{"billing.replacement_claims": True, "billing.payers": {"MEDICARE": medicare}},
    )
    engine = build_world(settings)
    first = bill(settings, engine)
    assert first.run_dir is not None
    path = write_835(tmp_path / "era.835", (first.run_dir / "claims.837").read_text(), {})
    number_of = {c.claim_id: c.payer_claim_control for c in parse_835(path.read_text()).claims}
    import_remittance(engine, path, CLOCK)
    with engine.connect() as conn:
        rows = conn.execute(
            select(ExportLedgerEntry.claim_id, ExportLedgerEntry.payer_claim_control_number)
        ).all()
    assert rows and all(r.payer_claim_control_number == number_of[r.claim_id] for r in rows)
    management = next(
        r.claim_id for r in ledger_codes(engine) if (r.patient_id, r.code) == ("P-01", "99457")
    )

    # A late time entry: P-01's October reaches 54 minutes, so 99458 joins 99457.
    late = activity("A-01-9", "P-01", 27, "25", "phone_call", True)
    import_rows(engine, "activities", [late], source="late", now=CLOCK)
    second = bill(settings, engine, now=CLOCK)
    assert second.run_dir is not None
    text = (second.run_dir / "claims.837").read_text()
    assert "*11:B:7*" in text
    assert f"REF*F8*{number_of[management]}~" in text
    [correction] = [
        r
        for r in csv.DictReader((second.run_dir / "corrections.csv").open(encoding="utf-8"))
        if r["patient_id"] == "P-01"
    ]
    assert correction["action"] == "replacement_claim", correction
    engine.dispose()
