"""Claims a payer accepts and a remittance can be matched to: the payer's EDI id and receiver,
the rendering provider, MBIs, the billing address, the billing identity, local interchange
dates, short claim ids and line control numbers."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from billing_identity import RENDERING_NPI
from export_registry import AS_OF, CLOCK, NOV_END, add_patient, export_settings, put_record
from sqlalchemy import Engine, select
from x12_validation import assert_valid_837

from rpmpipe.billing_export.export import ExportResult, run_export
from rpmpipe.errors import ConfigError
from rpmpipe.registry.models import ExportLedgerEntry
from rpmpipe.settings import Settings, load_settings

AETNA_RECEIVER = {
    "AETNA": {
        "name": "AETNA",
        "claim_filing_indicator": "CI",
        "payer_id": "60054",
        "receiver_id": "AETNAEDI",
        "receiver_name": "AETNA EDI",
    },
    "MEDICARE": {"name": "MEDICARE PART B", "claim_filing_indicator": "MB", "payer_id": "06102"},
}


def export(settings: Settings, engine: Engine, **kwargs: object) -> ExportResult:
    return run_export(settings.export, engine, AS_OF, now=CLOCK, **kwargs)  # type: ignore[arg-type]


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def seg(text: str, tag: str) -> list[list[str]]:
    return [s.strip().split("*") for s in text.split("~") if s.strip().startswith(tag + "*")]


def supply(engine: Engine, patient_id: str, **patient: str) -> None:
    add_patient(engine, patient_id, **patient)
    put_record(engine, patient_id, "device_supply", [("99454", 1, NOV_END)], days=20)


# --- 1. the payer's EDI id, one interchange per receiver -----------------------------------


def test_claims_carry_the_payers_edi_id_and_each_receiver_gets_its_own_837(
    registry: Engine, tmp_path: Path, database_url: str
) -> None:
    supply(registry, "P-01")
    supply(registry, "P-02", payer_id="AETNA")
    settings = export_settings(tmp_path, database_url, **{"billing.payers": AETNA_RECEIVER})
    result = export(settings, registry)
    assert result.run_dir is not None and result.claims == 2
    assert result.claims_files == ("claims.837", "claims-AETNAEDI.837")
    medicare = (result.run_dir / "claims.837").read_text()
    aetna = (result.run_dir / "claims-AETNAEDI.837").read_text()
    assert seg(medicare, "ISA")[0][8].strip() == "CLEARINGHOUSE"
    assert seg(aetna, "ISA")[0][8].strip() == "AETNAEDI" and seg(aetna, "GS")[0][3] == "AETNAEDI"
    assert "NM1*40*2*AETNA EDI*****46*AETNAEDI~" in aetna
    assert "NM1*PR*2*MEDICARE PART B*****PI*06102~" in medicare and "PI*MEDICARE~" not in medicare
    assert "NM1*PR*2*AETNA*****PI*60054~" in aetna and "MEDICARE" not in aetna
    assert seg(medicare, "ISA")[0][13] != seg(aetna, "ISA")[0][13]  # two interchanges
    rows = csv_rows(result.run_dir / "charges.csv")
    assert {(r["patient_id"], r["receiver_id"]) for r in rows} == {
        ("P-01", "CLEARINGHOUSE"),
        ("P-02", "AETNAEDI"),
    }
    with registry.connect() as conn:
        files = dict(
            conn.execute(select(ExportLedgerEntry.patient_id, ExportLedgerEntry.file_name)).all()
        )
    assert files == {"P-01": "claims.837", "P-02": "claims-AETNAEDI.837"}


def test_a_payer_without_payer_id_is_held_naming_the_setting(
    registry: Engine, tmp_path: Path, database_url: str
) -> None:
    supply(registry, "P-01")
    payers = {"MEDICARE": {"name": "MEDICARE PART B", "claim_filing_indicator": "MB"}}
    settings = export_settings(tmp_path, database_url, **{"billing.payers": payers})
    result = export(settings, registry)
    assert (result.run_dir, result.held) == (None, 1)
    [held] = result.held_back
    assert held.reason == "payer MEDICARE has no payer_id (its EDI id) in billing.payers.MEDICARE"
    assert (held.cause.setting_table, held.cause.setting_entry.split(" = ")[0]) == (
        "billing.payers.MEDICARE",
        "payer_id",
    )


# --- 2. billing provider type and the rendering provider -----------------------------------


def test_an_organisation_never_bills_without_a_person_as_rendering_provider(
    registry: Engine, tmp_path: Path, database_url: str
) -> None:
    supply(registry, "P-01")  # ordered by Dr Hopper
    supply(registry, "P-02", ordering_npi="1234567893")  # the organisation's own NPI
    settings = export_settings(tmp_path, database_url)
    result = export(settings, registry)
    assert result.run_dir is not None and (result.claims, result.held) == (1, 1)
    [held] = result.held_back
    assert held.patient_id == "P-02"
    assert held.reason.startswith("the rendering provider must be a person's NPI")
    text = (result.run_dir / "claims.837").read_text()
    assert "NM1*85*2*SPRINGFIELD RPM CLINIC*****XX*1234567893~" in text
    assert f"NM1*82*1*HOPPER*GRACE****XX*{RENDERING_NPI}~" in text


def test_an_individual_bills_under_their_own_npi_without_a_2310b_loop(
    registry: Engine, tmp_path: Path, database_url: str
) -> None:
    supply(registry, "P-02", ordering_npi="1234567893")
    settings = export_settings(
        tmp_path,
        database_url,
        **{"billing.provider_entity": "individual", "billing.provider_name": "Osler, William"},
    )
    result = export(settings, registry)
    assert result.run_dir is not None and result.held == 0
    text = (result.run_dir / "claims.837").read_text()
    assert "NM1*85*1*OSLER*WILLIAM****XX*1234567893~" in text
    assert "NM1*82*" not in text


def test_rendering_taxonomy_goes_in_prv_pe_when_configured(
    registry: Engine, tmp_path: Path, database_url: str
) -> None:
    supply(registry, "P-01")
    settings = export_settings(
        tmp_path, database_url, **{"billing.rendering_taxonomies": {RENDERING_NPI: "207RC0000X"}}
    )
    result = export(settings, registry)
    assert result.run_dir is not None
    text = (result.run_dir / "claims.837").read_text().replace("\n", "")
    assert f"NM1*82*1*HOPPER*GRACE****XX*{RENDERING_NPI}~PRV*PE*PXC*207RC0000X~" in text


# --- 3. the member id: an MBI for Medicare ----------------------------------------------


def test_a_medicare_line_without_an_mbi_is_held_and_the_mbi_is_sent_without_dashes(
    registry: Engine, tmp_path: Path, database_url: str
) -> None:
    supply(registry, "P-01", member_id="123456789A")  # an old HICN-style number
    supply(registry, "P-02", member_id="1EG4-TE5-MK73")
    result = export(export_settings(tmp_path, database_url), registry)
    assert result.run_dir is not None and (result.claims, result.held) == (1, 1)
    [held] = result.held_back
    assert held.patient_id == "P-01" and "not a Medicare Beneficiary Identifier" in held.reason
    assert "123456789A" not in held.reason
    text = (result.run_dir / "claims.837").read_text()
    assert "*MI*1EG4TE5MK73~" in text


# --- 4. the billing provider address ------------------------------------------------------


def test_a_five_digit_billing_zip_is_refused_when_settings_load() -> None:
    with pytest.raises(ConfigError, match="billing.provider_zip.*ZIP\\+4"):
        load_settings(None, env={}, overrides={"billing.provider_zip": "62701"})
    with pytest.raises(ConfigError, match="billing.provider_zip"):
        load_settings(None, env={"RPMPIPE_BILLING_PROVIDER_ZIP": "62701"})


@pytest.mark.parametrize("address", ["PO Box 1200", "P.O. BOX 12", "Post Office Box 9"])
def test_a_po_box_billing_address_is_refused_when_settings_load(address: str) -> None:
    with pytest.raises(ConfigError, match="billing.provider_address1.*PO box.*pay_to"):
        load_settings(None, env={}, overrides={"billing.provider_address1": address})


def test_a_po_box_goes_to_the_pay_to_address(
    registry: Engine, tmp_path: Path, database_url: str
) -> None:
    supply(registry, "P-01")
    settings = export_settings(
        tmp_path,
        database_url,
        **{
            "billing.pay_to_address1": "PO Box 1200",
            "billing.pay_to_city": "Springfield",
            "billing.pay_to_state": "IL",
            "billing.pay_to_zip": "62705",
        },
    )
    result = export(settings, registry)
    assert result.run_dir is not None
    text = (result.run_dir / "claims.837").read_text()
    assert "N3*100 MAIN ST~\nN4*SPRINGFIELD*IL*627010001~" in text
    assert "NM1*87*2~\nN3*PO BOX 1200~\nN4*SPRINGFIELD*IL*62705~" in text


# --- 5. no demo identity in a real claim -------------------------------------------------


def test_export_refuses_to_run_without_the_billing_identity_naming_each_key(
    registry: Engine, tmp_path: Path, database_url: str
) -> None:
    supply(registry, "P-01")
    settings = load_settings(
        None,
        env={},
        overrides={
            "data_dir": str(tmp_path / "data"),
            "database_url": database_url,
            "billing.provider_npi": "1234567893",
        },
    )
    with pytest.raises(ConfigError) as err:
        export(settings, registry)
    message = str(err.value)
    for key in ("billing.provider_name", "billing.provider_tin", "billing.provider_zip"):
        assert key in message
    assert "billing.provider_npi" not in message  # set: not named
    assert "DEMO" not in load_settings(None, env={}).billing.provider_name
    with registry.connect() as conn:
        assert not conn.execute(select(ExportLedgerEntry.id)).all()


# --- 6. interchange dates in the organisation's zone --------------------------------------


def test_interchange_dates_and_times_are_the_organisations(
    registry: Engine, tmp_path: Path, database_url: str
) -> None:
    supply(registry, "P-01")
    settings = export_settings(tmp_path, database_url, organization_timezone="America/Chicago")
    # 05:10 UTC on Dec 2 is 23:10 on Dec 1 in Chicago.
    now = datetime(2026, 12, 2, 5, 10, tzinfo=UTC)
    result = run_export(settings.export, registry, AS_OF, now=now)
    assert result.run_dir is not None
    text = (result.run_dir / "claims.837").read_text()
    isa, gs, bht = seg(text, "ISA")[0], seg(text, "GS")[0], seg(text, "BHT")[0]
    assert (isa[9], isa[10]) == ("261201", "2310")
    assert (gs[4], gs[5]) == ("20261201", "2310")
    assert (bht[4], bht[5]) == ("20261201", "2310")


# --- 7. CLM01 short and unique; 8. a line control number on every line ---------------------


def test_claim_ids_are_short_and_unique_across_runs_with_readable_parts_in_the_csv(
    registry: Engine, tmp_path: Path, database_url: str
) -> None:
    # Long patient ids whose first 20 characters are the same.
    long_a, long_b = "CLINIC-NORTH-0000000-PATIENT-A", "CLINIC-NORTH-0000000-PATIENT-B"
    for pid, mbi in ((long_a, "1EG4TE5MK72"), (long_b, "1EG4TE5MK73")):
        supply(registry, pid, member_id=mbi)
    settings = export_settings(tmp_path, database_url)
    first = export(settings, registry)
    put_record(
        registry,
        long_a,
        "device_supply",
        [("99454", 1, date(2026, 12, 30))],
        period_start=date(2026, 12, 1),
        period_end=date(2026, 12, 30),
    )
    second = run_export(
        settings.export, registry, date(2027, 1, 1), now=CLOCK.replace(year=2027, month=1, day=1)
    )
    ids = []
    for result in (first, second):
        assert result.run_dir is not None
        text = (result.run_dir / "claims.837").read_text()
        ids += [s[1] for s in seg(text, "CLM")]
    assert len(ids) == 3 == len(set(ids))
    assert all(len(i) <= 20 for i in ids)
    assert first.run_dir is not None
    rows = csv_rows(first.run_dir / "charges.csv")
    assert {r["patient_id"] for r in rows} == {long_a, long_b}
    assert {r["date_of_service"] for r in rows} == {"2026-11-30"}
    assert {r["interchange_control"] for r in rows} == {"1"}


def test_every_line_has_a_line_control_number_in_the_837_the_ledger_and_the_csv(
    registry: Engine, tmp_path: Path, database_url: str
) -> None:
    add_patient(registry, "P-01")
    put_record(registry, "P-01", "device_supply", [("99454", 1, NOV_END)], days=20)
    put_record(
        registry,
        "P-01",
        "treatment_management",
        [("99457", 1, NOV_END), ("99458", 1, NOV_END)],
        minutes=Decimal(45),
    )
    result = export(export_settings(tmp_path, database_url), registry)
    assert result.run_dir is not None and result.lines == 3
    text = (result.run_dir / "claims.837").read_text()
    refs = [s[2] for s in seg(text, "REF") if s[1] == "6R"]
    assert len(refs) == 3 == len(set(refs)) and all(len(r) <= 30 for r in refs)
    rows = csv_rows(result.run_dir / "charges.csv")
    assert [r["line_control_number"] for r in rows] == refs
    with registry.connect() as conn:
        stored = {
            (r.code, r.line_control_number)
            for r in conn.execute(
                select(ExportLedgerEntry.code, ExportLedgerEntry.line_control_number)
            )
        }
    assert stored == {(r["cpt"], r["line_control_number"]) for r in rows}
    assert_valid_837(result.run_dir / "claims.837")
