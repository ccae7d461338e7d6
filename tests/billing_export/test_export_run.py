"""One export run against a real registry (SQLite and PostgreSQL): files, ledger, reruns,
crashes between files and ledger, corrections and replacement claims."""

from __future__ import annotations

import csv
import hashlib
import json
import stat
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from export_registry import (
    AS_OF,
    CLOCK,
    NOV_END,
    NOV_START,
    add_patient,
    export_settings,
    put_record,
)
from sqlalchemy import Engine, Row, select, update
from x12_validation import assert_valid_837

from rpmpipe.billing_export.export import ExportResult, run_export
from rpmpipe.errors import AsOfError, ExportError
from rpmpipe.registry.models import ControlNumber, ExportLedgerEntry, Patient
from rpmpipe.settings import Settings

DEC_END = date(2026, 12, 31)


class Crash(Exception):
    """Stands for the process dying at a chosen point of the run."""


def crash(_run_dir: Path) -> None:
    raise Crash


def seed(engine: Engine) -> None:
    add_patient(engine, "P-01")
    add_patient(
        engine, "P-02", first_name="Zoë\n", last_name="O'Brien*:~^", address1='1 "A" St\r\n^2'
    )
    put_record(engine, "P-01", "device_supply", [("99454", 1, NOV_END)], days=20)
    put_record(engine, "P-01", "treatment_management", [("99457", 1, NOV_END)], minutes=Decimal(25))
    put_record(engine, "P-02", "device_supply", [("99445", 1, NOV_END)], days=9)
    put_record(engine, "P-02", "setup", [("99453", 1, NOV_END)])


def ledger_rows(engine: Engine) -> list[Row[Any]]:
    with engine.connect() as conn:
        table = ExportLedgerEntry.__table__
        return list(conn.execute(select(table).order_by(ExportLedgerEntry.id)))


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def export(settings: Settings, engine: Engine, **kwargs: object) -> ExportResult:
    return run_export(settings.export, engine, AS_OF, now=CLOCK, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return export_settings(tmp_path, database_url)


def test_export_writes_private_files_a_true_manifest_and_the_ledger(
    registry: Engine, settings: Settings
) -> None:
    seed(registry)
    result = export(settings, registry)
    assert result.run_dir is not None and result.control is not None
    assert (result.claims, result.lines, result.corrections) == (2, 4, 0)
    assert result.total_charge == 47 + 52 + 47 + 22
    run = result.run_dir
    assert run.parent == settings.exports_dir
    assert stat.S_IMODE(run.stat().st_mode) == 0o700
    assert stat.S_IMODE(settings.exports_dir.stat().st_mode) == 0o700
    names = sorted(p.name for p in run.iterdir())
    assert names == [
        "charges.csv",
        "claims.837",
        "evidence.csv",
        "evidence.parquet",
        "manifest.json",
    ]
    for p in run.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    manifest = json.loads((run / "manifest.json").read_text())
    assert sorted(e["name"] for e in manifest["files"]) == names[:-1]
    for entry in manifest["files"]:
        assert hashlib.sha256((run / entry["name"]).read_bytes()).hexdigest() == entry["sha256"]
    assert manifest["claims"] == 2 and manifest["lines"] == 4
    assert manifest["as_of"] == AS_OF.isoformat() and manifest["rule_sets"] == ["CY2026"]
    assert manifest["interchanges"] == [
        {
            "file": "claims.837",
            "receiver_id": "CLEARINGHOUSE",
            "isa13": 1,
            "gs06": 1,
            "st02": [1],
            "claims": 2,
        }
    ]
    assert (manifest["usage"], manifest["test"]) == ("T", True)
    assert_valid_837(run / "claims.837")
    assert len(csv_rows(run / "charges.csv")) == 4
    rows = ledger_rows(registry)
    assert sorted(r.code for r in rows) == ["99445", "99453", "99454", "99457"]
    assert {(r.run_id, r.interchange_control, r.file_name, r.revision) for r in rows} == {
        (result.run_id, 1, "claims.837", 0)
    }


def test_rerun_with_nothing_new_writes_no_claim_and_takes_no_control_number(
    registry: Engine, settings: Settings
) -> None:
    seed(registry)
    first = export(settings, registry)
    again = export(settings, registry)
    assert again.run_dir is None and again.claims == 0 and again.lines == 0
    assert [p.name for p in settings.exports_dir.iterdir() if not p.name.startswith(".")] == [
        first.run_id
    ]
    assert len(ledger_rows(registry)) == 4
    with registry.connect() as conn:
        counters = dict(conn.execute(select(ControlNumber.name, ControlNumber.value)).all())
    assert counters == {"isa13": 1, "gs06": 1, "st02": 1, "claim": 2}


def test_later_run_bills_only_new_lines_with_higher_control_numbers(
    registry: Engine, settings: Settings
) -> None:
    seed(registry)
    first = export(settings, registry)
    put_record(
        registry,
        "P-01",
        "device_supply",
        [("99454", 1, DEC_END)],
        period_start=date(2026, 12, 1),
        period_end=DEC_END,
    )
    second = run_export(
        settings.export, registry, date(2027, 1, 1), now=CLOCK.replace(year=2027, month=1, day=1)
    )
    assert first.control is not None and second.control is not None
    assert second.control.interchange > first.control.interchange
    assert second.control.transaction > first.control.transaction
    assert (second.claims, second.lines) == (1, 1)
    assert second.run_dir is not None
    assert [r["cpt"] for r in csv_rows(second.run_dir / "charges.csv")] == ["99454"]
    assert_valid_837(second.run_dir / "claims.837")


def test_periods_not_yet_over_are_not_exported(registry: Engine, settings: Settings) -> None:
    seed(registry)
    result = run_export(settings.export, registry, NOV_END, now=CLOCK)  # Nov 30 is not past yet
    assert result.run_dir is None and not ledger_rows(registry)


def test_crash_after_files_before_ledger_loses_nothing_and_bills_once(
    registry: Engine, settings: Settings
) -> None:
    seed(registry)
    with pytest.raises(Crash):
        export(settings, registry, _after_files=crash)
    assert not ledger_rows(registry)
    assert [p.name for p in settings.exports_dir.iterdir() if p.is_dir()][0].startswith(".partial-")
    result = export(settings, registry)
    assert len(result.recovered) == 1  # the unrecorded partial dir was discarded
    assert result.lines == 4 and result.run_dir is not None
    dirs = sorted(p.name for p in settings.exports_dir.iterdir() if p.is_dir())
    assert dirs == [result.run_id]
    assert len(ledger_rows(registry)) == 4
    assert export(settings, registry).run_dir is None


def test_crash_after_ledger_before_publish_publishes_on_next_run_without_rebilling(
    registry: Engine, settings: Settings
) -> None:
    seed(registry)
    with pytest.raises(Crash):
        export(settings, registry, _after_ledger=crash)
    assert len(ledger_rows(registry)) == 4
    partial = next(p for p in settings.exports_dir.iterdir() if p.is_dir())
    run_id = partial.name.removeprefix(".partial-")
    result = export(settings, registry)
    assert result.recovered == (run_id,)
    assert result.run_dir is None  # nothing new: the lines are billed in the recovered run
    published = settings.exports_dir / run_id
    assert published.is_dir() and not partial.exists()
    assert len(csv_rows(published / "charges.csv")) == 4
    assert_valid_837(published / "claims.837")
    assert len(ledger_rows(registry)) == 4


def test_same_inputs_give_byte_identical_exports(tmp_path: Path) -> None:
    from rpmpipe.registry.db import open_registry

    outputs = []
    for name in ("a", "b"):
        url = f"sqlite:///{tmp_path / name}.db"
        engine = open_registry(url)
        seed(engine)
        result = run_export(export_settings(tmp_path / name, url).export, engine, AS_OF, now=CLOCK)
        engine.dispose()
        assert result.run_dir is not None
        outputs.append({p.name: p.read_bytes() for p in result.run_dir.iterdir()})
    assert outputs[0] == outputs[1]


def test_late_change_gives_a_correction_record_not_a_second_claim(
    registry: Engine, settings: Settings
) -> None:
    seed(registry)
    first = export(settings, registry)
    # A late reading pushes P-02 from 9 to 17 days: 99445 becomes 99454.
    put_record(registry, "P-02", "device_supply", [("99454", 1, NOV_END)], days=17)
    second = export(settings, registry)
    assert second.run_dir is not None and second.claims == 0 and second.corrections == 1
    assert not (second.run_dir / "claims.837").exists()
    [row] = csv_rows(second.run_dir / "corrections.csv")
    assert row["patient_id"] == "P-02" and row["action"] == "review"
    assert row["billed_lines"] == "99445x1@2026-11-30"
    assert row["corrected_lines"] == "99454x1@2026-11-30"
    assert row["reason"] == "9 → 17 days with data; billed 99445, now 99454"
    assert first.run_dir is not None
    first_claims = {r["claim_id"] for r in csv_rows(first.run_dir / "charges.csv")}
    assert row["original_claim_id"] in first_claims
    assert export(settings, registry).run_dir is None  # reported once, not every night
    codes = [
        (r.code, r.revision, r.line_kind, r.file_name)
        for r in ledger_rows(registry)
        if r.patient_id == "P-02"
    ]
    assert ("99454", 1, "correction", "corrections.csv") in codes
    assert ("99445", 0, "original", "claims.837") in codes


def test_record_no_longer_billable_gives_a_void_correction(
    registry: Engine, settings: Settings
) -> None:
    seed(registry)
    export(settings, registry)
    put_record(
        registry,
        "P-01",
        "treatment_management",
        [],
        status="not_billable",
        reason="18 minutes, no interactive communication this month",
    )
    result = export(settings, registry)
    assert result.run_dir is not None
    [row] = csv_rows(result.run_dir / "corrections.csv")
    assert (row["action"], row["corrected_lines"]) == ("void", "")
    assert (
        row["reason"] == "no longer billable: 18 minutes, no interactive communication this month"
    )
    assert export(settings, registry).run_dir is None


AETNA = {"AETNA": {"name": "AETNA", "claim_filing_indicator": "CI", "payer_id": "60054"}}


def set_payer_claim_number(engine: Engine, claim_id: str, icn: str) -> None:
    """What a remittance import does: the payer's claim control number of our claim."""
    with engine.begin() as conn:
        conn.execute(
            update(ExportLedgerEntry)
            .where(ExportLedgerEntry.claim_id == claim_id)
            .values(payer_claim_control_number=icn)
        )


def late_45_minutes(engine: Engine) -> None:
    # Late care activity: 45 minutes now, so 99458 joins 99457 on the same claim.
    put_record(
        engine,
        "P-01",
        "treatment_management",
        [("99457", 1, NOV_END), ("99458", 1, NOV_END)],
        minutes=Decimal(45),
    )


def test_replacement_claim_carries_the_payers_claim_number_and_replaces_the_whole_claim(
    registry: Engine, tmp_path: Path, database_url: str
) -> None:
    settings = export_settings(
        tmp_path,
        database_url,
        **{"billing.replacement_claims": True, "billing.payers": AETNA},
    )
    seed(registry)
    with registry.begin() as conn:
        conn.execute(update(Patient).values(payer_id="AETNA"))
    first = export(settings, registry)
    assert first.run_dir is not None
    original_id = next(
        r["claim_id"] for r in csv_rows(first.run_dir / "charges.csv") if r["patient_id"] == "P-01"
    )
    set_payer_claim_number(registry, original_id, "22126300012345")
    late_45_minutes(registry)
    second = export(settings, registry)
    assert second.run_dir is not None and second.claims == 1 and second.corrections == 1
    text = (second.run_dir / "claims.837").read_text()
    assert "*11:B:7*" in text and "REF*F8*22126300012345~" in text
    assert original_id not in text  # F8 is the payer's number, never rpmpipe's own id
    rows = csv_rows(second.run_dir / "charges.csv")
    # The unchanged 99454 of the original claim travels on the replacement too.
    assert sorted(r["cpt"] for r in rows) == ["99454", "99457", "99458"]
    assert {r["claim_frequency"] for r in rows} == {"7"}
    assert {r["original_claim_id"] for r in rows} == {original_id}
    assert {r["payer_claim_control_number"] for r in rows} == {"22126300012345"}
    [correction] = csv_rows(second.run_dir / "corrections.csv")
    assert correction["action"] == "replacement_claim"
    assert correction["reason"] == "25.00 → 45.00 minutes; billed 99457, now 99457 + 99458"
    assert correction["replacement_claim_id"] == rows[0]["claim_id"]
    assert export(settings, registry).run_dir is None


def test_without_the_payers_claim_number_a_change_stays_a_correction_for_review(
    registry: Engine, tmp_path: Path, database_url: str
) -> None:
    settings = export_settings(
        tmp_path,
        database_url,
        **{"billing.replacement_claims": True, "billing.payers": AETNA},
    )
    seed(registry)
    with registry.begin() as conn:
        conn.execute(update(Patient).values(payer_id="AETNA"))
    first = export(settings, registry)
    assert first.run_dir is not None
    late_45_minutes(registry)
    second = export(settings, registry)
    assert second.run_dir is not None and second.claims == 0
    [row] = csv_rows(second.run_dir / "corrections.csv")
    assert row["action"] == "review" and row["replacement_claim_id"] == ""
    assert "no payer claim control number on file for claim" in row["reason"]


def test_medicare_part_b_gets_no_replacement_claim_by_default(
    registry: Engine, tmp_path: Path, database_url: str
) -> None:
    # Part B reopens a claim instead of taking a frequency-7 claim: off unless the payer says.
    settings = export_settings(tmp_path, database_url, **{"billing.replacement_claims": True})
    seed(registry)
    first = export(settings, registry)
    assert first.run_dir is not None
    original_id = csv_rows(first.run_dir / "charges.csv")[0]["claim_id"]
    set_payer_claim_number(registry, original_id, "22126300012345")
    late_45_minutes(registry)
    second = export(settings, registry)
    assert second.run_dir is not None and second.claims == 0
    [row] = csv_rows(second.run_dir / "corrections.csv")
    assert row["action"] == "review"


def test_a_record_no_longer_billable_gets_a_void_claim_with_the_original_lines(
    registry: Engine, tmp_path: Path, database_url: str
) -> None:
    settings = export_settings(
        tmp_path,
        database_url,
        **{"billing.replacement_claims": True, "billing.payers": AETNA},
    )
    add_patient(registry, "P-05", payer_id="AETNA")
    put_record(
        registry, "P-05", "treatment_management", [("99457", 1, NOV_END)], minutes=Decimal(25)
    )
    first = export(settings, registry)
    assert first.run_dir is not None
    original_id = csv_rows(first.run_dir / "charges.csv")[0]["claim_id"]
    set_payer_claim_number(registry, original_id, "22126300099999")
    put_record(registry, "P-05", "treatment_management", [], status="not_billable", reason="voided")
    second = export(settings, registry)
    assert second.run_dir is not None and second.claims == 1
    text = (second.run_dir / "claims.837").read_text()
    assert "*11:B:8*" in text and "REF*F8*22126300099999~" in text
    assert "SV1*HC:99457*52*UN*1" in text
    [correction] = csv_rows(second.run_dir / "corrections.csv")
    assert correction["action"] == "void_claim"
    assert export(settings, registry).run_dir is None  # voided once


def test_incomplete_patient_is_held_with_a_reason_then_exported_once_fixed(
    registry: Engine, settings: Settings
) -> None:
    seed(registry)
    with registry.begin() as conn:
        conn.execute(update(Patient).where(Patient.patient_id == "P-02").values(icd10_codes=""))
    first = export(settings, registry)
    assert (first.lines, first.held) == (2, 2)
    assert first.run_dir is not None
    held = json.loads((first.run_dir / "manifest.json").read_text())["held"]
    assert {h["reason"] for h in held} == {"no ICD-10 code on file"}
    with registry.begin() as conn:
        conn.execute(update(Patient).where(Patient.patient_id == "P-02").values(icd10_codes="I10"))
    second = export(settings, registry)
    assert (second.lines, second.held) == (2, 0)
    assert len(ledger_rows(registry)) == 4


def test_unreadable_lines_json_is_a_clear_export_error(
    registry: Engine, settings: Settings
) -> None:
    seed(registry)
    from rpmpipe.registry.models import EngagementRow

    with registry.begin() as conn:
        conn.execute(
            update(EngagementRow)
            .where(EngagementRow.patient_id == "P-01")
            .values(lines_json="[{}]")
        )
    with pytest.raises(ExportError, match="lines_json"):
        export(settings, registry)
    assert NOV_START < NOV_END  # keeps the period constants honest for readers


def test_two_racing_exports_bill_each_line_once(
    registry: Engine, settings: Settings, tmp_path: Path
) -> None:
    # The hook runs a second export (another exports dir, as on another machine) after the
    # first has written its files: the first must then fail to record and publish nothing.
    seed(registry)
    other_dir = tmp_path / "other-host"
    winner: list[ExportResult] = []

    def rival(_run_dir: Path) -> None:
        winner.append(run_export(settings.export, registry, AS_OF, out_dir=other_dir, now=CLOCK))

    with pytest.raises(ExportError, match="another export"):
        export(settings, registry, _after_files=rival)
    assert winner[0].lines == 4 and winner[0].run_dir is not None
    assert not [p for p in settings.exports_dir.iterdir() if p.is_dir()]
    assert len(ledger_rows(registry)) == 4


def test_shifted_period_overlapping_an_exported_one_is_a_correction_not_a_new_claim(
    registry: Engine, settings: Settings
) -> None:
    # A late first reading moves the rolling 30-day period: the new record (Oct 28 - Nov 26)
    # overlaps the exported Nov 1 - Nov 30 one and must not bill 99454 a second time.
    seed(registry)
    export(settings, registry)
    put_record(
        registry,
        "P-01",
        "device_supply",
        [("99454", 1, date(2026, 11, 26))],
        period_start=date(2026, 10, 28),
        period_end=date(2026, 11, 26),
    )
    result = export(settings, registry)
    assert result.run_dir is not None and result.claims == 0
    [row] = csv_rows(result.run_dir / "corrections.csv")
    assert row["action"] == "review" and row["period_start"] == "2026-10-28"
    assert row["reason"] == "period overlaps the exported period 2026-11-01..2026-11-30"
    assert export(settings, registry).run_dir is None


def test_ordering_npi_becomes_rendering_provider_only_when_named_in_settings(
    registry: Engine, tmp_path: Path, database_url: str
) -> None:
    add_patient(registry, "P-03", ordering_npi="1456789019")
    put_record(registry, "P-03", "device_supply", [("99454", 1, NOV_END)])
    unnamed = export_settings(tmp_path, database_url)
    held = export(unnamed, registry)
    assert (held.run_dir, held.held) == (None, 1)
    named = export_settings(
        tmp_path, database_url, **{"billing.rendering_providers": {"1456789019": "Curie, Marie"}}
    )
    result = export(named, registry)
    assert result.run_dir is not None and result.lines == 1
    text = (result.run_dir / "claims.837").read_text()
    assert "NM1*82*1*CURIE*MARIE****XX*1456789019~" in text
    assert_valid_837(result.run_dir / "claims.837")


# --- as-of dates, unconfigured payers, held changes (review findings) ----------------------


def seed_past_november(engine: Engine) -> None:
    """Records the metrics stage would persist for a future as-of: December supply, and
    November management whose month has not ended on Nov 30."""
    add_patient(engine, "P-01")
    put_record(
        engine,
        "P-01",
        "device_supply",
        [("99454", 1, DEC_END)],
        period_start=date(2026, 12, 1),
        period_end=DEC_END,
    )
    put_record(engine, "P-01", "treatment_management", [("99457", 1, NOV_END)], minutes=Decimal(25))


def test_as_of_after_today_is_refused_and_nothing_is_billed(
    registry: Engine, settings: Settings
) -> None:
    seed_past_november(registry)
    today_noon = datetime(2026, 11, 30, 17, 0, tzinfo=UTC)  # Nov 30 in New York
    with pytest.raises(AsOfError, match=r"as-of date 2027-01-31 is after today \(2026-11-30"):
        run_export(settings.export, registry, date(2027, 1, 31), now=today_noon)
    assert not ledger_rows(registry)
    assert not settings.exports_dir.exists() or not any(settings.exports_dir.iterdir())
    with registry.connect() as conn:
        assert not conn.execute(select(ControlNumber.name)).all()
    # Today itself is fine: only periods that ended before it are final, so none here.
    assert run_export(settings.export, registry, date(2026, 11, 30), now=today_noon).run_dir is None


@pytest.mark.parametrize(
    ("zone", "refused"), [("America/New_York", True), ("UTC", False), ("Asia/Tokyo", False)]
)
def test_today_is_the_organisations_date_not_utcs(
    registry: Engine, tmp_path: Path, database_url: str, zone: str, refused: bool
) -> None:
    # 03:00 UTC on Dec 1 is still Nov 30 in New York: Dec 1 is tomorrow there.
    settings = export_settings(tmp_path, database_url, organization_timezone=zone)
    seed(registry)
    now = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    if refused:
        with pytest.raises(AsOfError, match="after today"):
            run_export(settings.export, registry, AS_OF, now=now)
        assert not ledger_rows(registry)
    else:
        assert run_export(settings.export, registry, AS_OF, now=now).lines == 4


def test_payer_missing_from_billing_payers_is_held_not_billed_as_medicare(
    registry: Engine, tmp_path: Path, database_url: str
) -> None:
    add_patient(registry, "P-07", payer_id="AETNA")
    put_record(registry, "P-07", "device_supply", [("99454", 1, NOV_END)])
    put_record(
        registry, "P-07", "treatment_management", [("99457", 1, NOV_END)], minutes=Decimal(25)
    )
    held = export(export_settings(tmp_path, database_url), registry)
    assert (held.run_dir, held.lines, held.held) == (None, 0, 2)
    assert {h.reason for h in held.held_back} == {"payer AETNA is not configured in billing.payers"}
    assert not ledger_rows(registry)
    configured = export_settings(
        tmp_path,
        database_url,
        **{
            "billing.payers": {
                "AETNA": {"name": "AETNA", "claim_filing_indicator": "CI", "payer_id": "60054"}
            }
        },
    )
    result = export(configured, registry)
    assert result.run_dir is not None and (result.lines, result.held) == (2, 0)
    text = (result.run_dir / "claims.837").read_text()
    assert "SBR*P*18*******CI~" in text and "*MB~" not in text
    assert "NM1*PR*2*AETNA*****PI*60054~" in text
    assert_valid_837(result.run_dir / "claims.837")


def test_changed_record_that_is_held_writes_no_empty_run_directory(
    registry: Engine, settings: Settings
) -> None:
    seed(registry)
    export(settings, registry)
    put_record(registry, "P-02", "device_supply", [("99454", 1, NOV_END)], days=17)
    with registry.begin() as conn:
        conn.execute(update(Patient).where(Patient.patient_id == "P-02").values(icd10_codes=""))
    result = export(settings, registry)
    assert (result.run_dir, result.held) == (None, 1)
    assert [h.reason for h in result.held_back] == ["no ICD-10 code on file"]
    assert len([p for p in settings.exports_dir.iterdir() if p.is_dir()]) == 1
