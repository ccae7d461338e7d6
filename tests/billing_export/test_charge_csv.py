"""The charge CSV: byte-stable, one row per service line, values kept but one line per row."""

from __future__ import annotations

import csv
import io
import os
from datetime import date
from pathlib import Path

from claim_samples import sample_claims, sample_settings

from rpmpipe.billing_export.charge_csv import (
    CHARGE_COLUMNS,
    Correction,
    write_charge_csv,
    write_corrections_csv,
)

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("RPMPIPE_UPDATE_GOLDEN") == "1"
CONTRACT = (
    "claim_id",
    "line_no",
    "patient_id",
    "member_id",
    "payer_id",
    "cpt",
    "modifiers",
    "units",
    "charge",
    "date_of_service",
    "period_start",
    "period_end",
    "icd10",
    "pos",
    "billing_npi",
    "transmission_days",
    "interactive_minutes",
    "management_minutes",
)


def charge_csv_text() -> str:
    settings = sample_settings()
    out = io.StringIO(newline="")
    write_charge_csv(out, sample_claims(settings), settings.billing)
    return out.getvalue()


def test_golden_charge_csv_is_byte_identical() -> None:
    data = charge_csv_text().encode("utf-8")
    golden = GOLDEN / "charges.csv"
    if UPDATE:
        golden.write_bytes(data)
    assert data == golden.read_bytes()


def test_charge_csv_has_the_contract_columns_and_one_row_per_line() -> None:
    rows = list(csv.DictReader(io.StringIO(charge_csv_text())))
    assert set(CONTRACT) <= set(CHARGE_COLUMNS)
    assert len(rows) == 5
    assert [(r["claim_id"], r["line_no"], r["line_control_number"], r["cpt"]) for r in rows] == [
        ("RP0000000007", "1", "RP0000000007-1", "99454"),
        ("RP0000000007", "2", "RP0000000007-2", "99457"),
        ("RP0000000007", "3", "RP0000000007-3", "99458"),
        ("RP0000000008", "1", "RP0000000008-1", "99445"),
        ("RP0000000008", "2", "RP0000000008-2", "99453"),
    ]
    # The readable parts of a claim have their own columns beside the short CLM01.
    assert [(r["patient_id"], r["date_of_service"]) for r in rows][::3] == [
        ("P-0001", "2026-11-30"),
        ("P-0002", "2026-11-15"),
    ]
    assert rows[1]["modifiers"] == "95" and rows[1]["charge"] == "52.00"
    assert rows[1]["interactive_minutes"] == "45.50"
    assert rows[1]["management_minutes"] == "45.50"
    assert rows[3]["icd10"] == "I10;E11.9;I50.22;N18.30;E78.5"
    assert rows[3]["diagnosis_pointers"] == "1;2;3;4"
    assert rows[3]["rendering_npi"] == "1987654328" and rows[3]["pos"] == "11"
    assert {r["receiver_id"] for r in rows} == {"CLEARINGHOUSE"}


def test_nasty_values_keep_their_characters_but_not_their_line_breaks() -> None:
    text = charge_csv_text()
    assert len(text.splitlines()) == 6  # header + 5 rows: no value spills onto a new line
    row = list(csv.DictReader(io.StringIO(text)))[3]
    assert row["last_name"] == "O'Brien*Smith:~^"
    assert row["first_name"] == 'Zoë "Zo"'
    assert row["address1"] == '12 Élm St Apt ^4, "rear"'


def test_corrections_csv_lists_billed_and_corrected_lines() -> None:
    out = io.StringIO(newline="")
    write_corrections_csv(
        out,
        [
            Correction(
                patient_id="P-0001",
                program="RPM",
                record_kind="device_supply",
                period_start=date(2026, 11, 1),
                period_end=date(2026, 11, 30),
                rule_set="CY2026",
                original_claim_id="RP0000000007",
                billed_lines="99445x1@2026-11-30",
                corrected_lines="99454x1@2026-11-30",
                action="review",
                replacement_claim_id="",
                reason="late\nreadings",
            )
        ],
    )
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert rows == [
        {
            "patient_id": "P-0001",
            "program": "RPM",
            "record_kind": "device_supply",
            "period_start": "2026-11-01",
            "period_end": "2026-11-30",
            "rule_set": "CY2026",
            "original_claim_id": "RP0000000007",
            "billed_lines": "99445x1@2026-11-30",
            "corrected_lines": "99454x1@2026-11-30",
            "action": "review",
            "replacement_claim_id": "",
            "reason": "late readings",
        }
    ]


def test_formula_cells_are_neutralised_in_the_csv_but_the_837_keeps_the_value(
    tmp_path: Path,
) -> None:
    from dataclasses import replace

    from claim_samples import CLOCK, PATIENTS, sample_lines

    from rpmpipe.billing_export.claims import draft_claims, price_claims
    from rpmpipe.billing_export.x12 import ControlNumbers, write_837p

    settings = sample_settings()
    attacks = {
        "last_name": '=HYPERLINK("http://evil.example","x")',
        "first_name": "+cmd|' /C calc'!A0",
        "address1": "@SUM(1+1)",
        "city": "-2+3+cmd|' /C calc'!A0",
    }
    patients = {pid: replace(p, **attacks) for pid, p in PATIENTS.items()}
    claims = price_claims(draft_claims(sample_lines()), patients, settings.billing, 1)
    out = io.StringIO(newline="")
    write_charge_csv(out, claims, settings.billing)
    row = list(csv.DictReader(io.StringIO(out.getvalue())))[0]
    for column, value in attacks.items():
        assert row[column] == "'" + value
    path = tmp_path / "claims.837"
    with path.open("w", encoding="ascii", newline="") as f:
        write_837p(f, claims, settings.billing, ControlNumbers(1, 1, 1), CLOCK)
    text = path.read_text()
    assert "*=HYPERLINK(" in text and "N3*@SUM(1+1)~" in text  # the real value, cleaned for X12
    assert "'=" not in text


def test_corrections_csv_neutralises_formula_cells() -> None:
    out = io.StringIO(newline="")
    write_corrections_csv(
        out,
        [
            Correction(
                patient_id="P-0001",
                program="RPM",
                record_kind="device_supply",
                period_start=date(2026, 11, 1),
                period_end=date(2026, 11, 30),
                rule_set="CY2026",
                original_claim_id="RP0000000007",
                billed_lines="",
                corrected_lines="",
                action="void",
                replacement_claim_id="",
                reason="=1+1",
            )
        ],
    )
    [row] = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert row["reason"] == "'=1+1"
