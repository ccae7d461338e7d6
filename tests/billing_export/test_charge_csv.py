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
    assert [(r["claim_id"], r["line_no"], r["cpt"]) for r in rows] == [
        ("P0001-20261130-7-1", "1", "99454"),
        ("P0001-20261130-7-1", "2", "99457"),
        ("P0001-20261130-7-1", "3", "99458"),
        ("P0002-20261115-7-2", "1", "99445"),
        ("P0002-20261115-7-2", "2", "99453"),
    ]
    assert rows[1]["modifiers"] == "95" and rows[1]["charge"] == "52.00"
    assert rows[1]["interactive_minutes"] == "45.50"
    assert rows[1]["management_minutes"] == "45.50"
    assert rows[3]["icd10"] == "I10;E11.9;I50.22;N18.30;E78.5"
    assert rows[3]["diagnosis_pointers"] == "1;2;3;4"
    assert rows[3]["rendering_npi"] == "1987654328" and rows[3]["pos"] == "11"


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
                original_claim_id="P0001-20261130-7-1",
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
            "original_claim_id": "P0001-20261130-7-1",
            "billed_lines": "99445x1@2026-11-30",
            "corrected_lines": "99454x1@2026-11-30",
            "action": "review",
            "replacement_claim_id": "",
            "reason": "late readings",
        }
    ]
