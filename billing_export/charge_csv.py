"""The charge CSV and the corrections CSV for the billing team (pure: write to a file object).

One charge row per service line, in the same order and with the same claim ids, line numbers
and line control numbers (REF*6R) as the 837P. ``claim_id`` is the short CLM01 the ledger
issued; the readable parts (patient, date of service, interchange, receiver) have their own
columns. Values keep their accents (the file is UTF-8); line breaks inside a value become
spaces so that every row is one line for spreadsheet imports, and a cell that a spreadsheet
would run as a formula is neutralised (``rpmpipe.csv_cells``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import TextIO

from rpmpipe.billing_export.claims import ChargeLine, Claim, payer_name_for
from rpmpipe.csv_cells import SafeCsvWriter, csv_row
from rpmpipe.settings import BillingSettings

CHARGE_COLUMNS = (
    "claim_id",
    "line_no",
    "line_control_number",
    "claim_frequency",
    "original_claim_id",
    "payer_claim_control_number",
    "receiver_id",
    "interchange_control",
    "patient_id",
    "member_id",
    "payer_id",
    "payer_name",
    "cpt",
    "modifiers",
    "units",
    "charge",
    "date_of_service",
    "period_start",
    "period_end",
    "icd10",
    "diagnosis_pointers",
    "pos",
    "billing_npi",
    "rendering_npi",
    "last_name",
    "first_name",
    "birth_date",
    "sex",
    "address1",
    "city",
    "state",
    "zip",
    "program",
    "record_kind",
    "rule_set",
    "transmission_days",
    "interactive_minutes",
    "management_minutes",
)

CORRECTION_COLUMNS = (
    "patient_id",
    "program",
    "record_kind",
    "period_start",
    "period_end",
    "rule_set",
    "original_claim_id",
    "billed_lines",
    "corrected_lines",
    "action",
    "replacement_claim_id",
    "reason",
)

_BREAKS = re.compile(r"[\r\n\t\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]+")


class CorrectionAction(StrEnum):
    """What the billing team is asked to do with a correction (its ``action`` column)."""

    REVIEW = "review"  # a change to review; no claim was sent
    VOID = "void"  # the record is no longer billable, or its period no longer exists
    REPLACEMENT_CLAIM = "replacement_claim"  # a frequency-7 claim replaced the original
    VOID_CLAIM = "void_claim"  # a frequency-8 claim cancelled the original


@dataclass(frozen=True, slots=True)
class Correction:
    """A change to an already exported record, for the billing team to act on."""

    patient_id: str
    program: str
    record_kind: str
    period_start: date
    period_end: date
    rule_set: str
    original_claim_id: str
    billed_lines: str  # "99454x1@2026-11-30;..."
    corrected_lines: str  # "" when the record is no longer billable
    action: str  # a CorrectionAction
    replacement_claim_id: str
    reason: str


def one_line(value: str) -> str:
    if value.isprintable():  # the common case: no line breaks or other controls
        return value.strip()
    return _BREAKS.sub(" ", value).strip()


def money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01')):f}"


def write_charge_csv(out: TextIO, claims: Sequence[Claim], billing: BillingSettings) -> int:
    """Write the header and one row per service line; returns the number of rows."""
    out.write(csv_row(CHARGE_COLUMNS) + "\n")
    rows = 0
    # Lines share their service, their diagnosis pointers and their record's counts with
    # many others: each such run of cells is made once.
    line_cells: dict[tuple[object, ...], str] = {}
    pointer_cells: dict[tuple[int, ...], str] = {}
    record_cells: dict[tuple[str, str, str, int, Decimal, Decimal], str] = {}
    for claim in claims:
        p = claim.patient
        # The claim's and the patient's cells once per claim, as CSV text; per line only the
        # line's own cells (each piece is a run of neutralised, quoted cells).
        claim_id = csv_row([one_line(claim.claim_id)])
        about_claim = csv_row(
            [
                one_line(v)
                for v in (
                    claim.frequency,
                    claim.original_claim_id,
                    claim.payer_claim_control_number,
                    claim.receiver.receiver_id,
                    str(claim.interchange_control),
                    p.patient_id,
                    p.member_id,
                    p.payer_id,
                    payer_name_for(p, billing),
                )
            ]
        )
        diagnoses = csv_row([one_line(";".join(p.icd10))])
        about_patient = csv_row(
            [
                one_line(v)
                for v in (
                    billing.place_of_service,
                    billing.provider_npi,
                    claim.rendering_npi,
                    p.last_name,
                    p.first_name,
                    p.birth_date.isoformat(),
                    p.sex,
                    p.address1,
                    p.city,
                    p.state,
                    p.zip,
                )
            ]
        )
        text = []
        for cl in claim.lines:
            line = cl.line
            service = line.line
            key = (service, cl.modifiers, cl.charge, line.period_start, line.period_end)
            about_line = line_cells.get(key)
            if about_line is None:
                about_line = line_cells[key] = _line_cells(cl)
            pointers = pointer_cells.get(cl.diagnosis_pointers)
            if pointers is None:
                pointers = pointer_cells[cl.diagnosis_pointers] = csv_row(
                    [one_line(";".join(str(n) for n in cl.diagnosis_pointers))]
                )
            counts = (
                line.program,
                line.record_kind,
                line.rule_set,
                line.transmission_days,
                line.interactive_minutes,
                line.management_minutes,
            )
            about_record = record_cells.get(counts)
            if about_record is None:
                about_record = record_cells[counts] = _record_cells(counts)
            text.append(
                ",".join(
                    (
                        claim_id,
                        csv_row([one_line(str(cl.line_no)), one_line(cl.line_control_number)]),
                        about_claim,
                        about_line,
                        diagnoses,
                        pointers,
                        about_patient,
                        about_record,
                    )
                )
            )
            rows += 1
        text.append("")
        out.write("\n".join(text))
    return rows


def _line_cells(cl: ChargeLine) -> str:
    """The cells of a line's service: code, modifiers, units, charge and dates."""
    line = cl.line
    return csv_row(
        [
            one_line(v)
            for v in (
                line.code,
                ";".join(cl.modifiers),
                str(line.units),
                money(cl.charge),
                line.date_of_service.isoformat(),
                line.period_start.isoformat(),
                line.period_end.isoformat(),
            )
        ]
    )


def _record_cells(counts: tuple[str, str, str, int, Decimal, Decimal]) -> str:
    """The cells of a line's record: program, kind, rule set and its counts."""
    program, kind, rule_set, days, interactive, management = counts
    return csv_row(
        [
            one_line(v)
            for v in (
                program,
                kind,
                rule_set,
                str(days),
                money(interactive),
                money(management),
            )
        ]
    )


def write_corrections_csv(out: TextIO, corrections: Sequence[Correction]) -> int:
    writer = SafeCsvWriter(out)
    writer.writerow(CORRECTION_COLUMNS)
    for c in corrections:
        writer.writerow(
            [
                one_line(v)
                for v in (
                    c.patient_id,
                    c.program,
                    c.record_kind,
                    c.period_start.isoformat(),
                    c.period_end.isoformat(),
                    c.rule_set,
                    c.original_claim_id,
                    c.billed_lines,
                    c.corrected_lines,
                    c.action,
                    c.replacement_claim_id,
                    c.reason,
                )
            ]
        )
    return len(corrections)
