"""Claim values and how billable lines group into claims (pure: no I/O).

A claim is one patient, one date of service and one rendering practitioner, with its service
lines. Both writers (charge CSV and 837P) read the same ``Claim`` values, so the two files
always agree line for line.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from rpmpipe.settings import BillingSettings

MAX_DIAGNOSES = 12  # HI holds 12 codes
MAX_POINTERS = 4  # SV107 holds 4 pointers
_CLAIM_ID_MAX = 38  # CLM01


@dataclass(frozen=True, slots=True)
class PatientInfo:
    """What a claim needs to know about the patient (also the Medicare subscriber)."""

    patient_id: str
    first_name: str
    last_name: str
    birth_date: date
    sex: str
    address1: str
    city: str
    state: str
    zip: str
    payer_id: str
    payer_name: str
    member_id: str
    icd10: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BillableLine:
    """One service line of a final engagement record, before pricing."""

    patient_id: str
    program: str
    record_kind: str
    period_start: date
    period_end: date
    code: str
    units: int
    date_of_service: date
    rule_set: str
    transmission_days: int
    interactive_minutes: Decimal
    rendering_npi: str
    management_minutes: Decimal = Decimal("0.00")  # all care time that counts

    @property
    def record_key(self) -> tuple[str, str, str, date]:
        return (self.patient_id, self.program, self.record_kind, self.period_start)


@dataclass(frozen=True, slots=True)
class ChargeLine:
    line_no: int
    line: BillableLine
    modifiers: tuple[str, ...]
    charge: Decimal
    diagnosis_pointers: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Claim:
    claim_id: str
    patient: PatientInfo
    date_of_service: date
    rendering_npi: str
    lines: tuple[ChargeLine, ...]
    frequency: str = "1"  # CLM05-3: 1 original, 7 replacement
    original_claim_id: str = ""  # REF*F8 of a replacement

    @property
    def total(self) -> Decimal:
        return sum((cl.charge for cl in self.lines), Decimal("0.00"))


@dataclass(frozen=True, slots=True)
class ClaimDraft:
    """Lines that belong on one claim, before ids and line numbers are assigned."""

    patient_id: str
    date_of_service: date
    rendering_npi: str
    lines: tuple[BillableLine, ...]
    frequency: str = "1"
    original_claim_id: str = ""
    sort_key: tuple[str, ...] = field(default=(), compare=False)


def payer_name_for(patient: PatientInfo, billing: BillingSettings) -> str:
    """The payer's name from settings when configured, else as the registry has it."""
    payer = billing.payers.get(patient.payer_id)
    return (payer.name if payer and payer.name else patient.payer_name) or patient.payer_id


def icd10_without_dot(code: str) -> str:
    """ICD-10-CM as the 837P wants it: no decimal point, upper case."""
    return code.replace(".", "").strip().upper()


def claim_id_for(patient_id: str, date_of_service: date, interchange: int, seq: int) -> str:
    """A claim id unique across runs (the interchange number never repeats), at most 38 chars."""
    stem = re.sub(r"[^A-Za-z0-9]", "", patient_id).upper()
    if not stem or len(stem) > 16:
        stem = hashlib.sha1(patient_id.encode(), usedforsecurity=False).hexdigest()[:12].upper()
    return f"{stem}-{date_of_service:%Y%m%d}-{interchange}-{seq}"[:_CLAIM_ID_MAX]


def unit_charge(billing: BillingSettings, code: str) -> Decimal | None:
    amount = billing.charges.get(code)
    return None if amount is None else amount.quantize(Decimal("0.01"))


def draft_claims(lines: Iterable[BillableLine]) -> list[ClaimDraft]:
    """Group original lines into claims: per patient, date of service and rendering NPI."""
    groups: dict[tuple[str, date, str], list[BillableLine]] = {}
    for line in lines:
        groups.setdefault((line.patient_id, line.date_of_service, line.rendering_npi), []).append(
            line
        )
    return [
        ClaimDraft(pid, dos, npi, tuple(sorted(group, key=_line_order)))
        for (pid, dos, npi), group in sorted(groups.items())
    ]


def price_claims(
    drafts: Sequence[ClaimDraft],
    patients: Mapping[str, PatientInfo],
    billing: BillingSettings,
    interchange: int,
) -> list[Claim]:
    """Claims with ids, line numbers, modifiers, charges and diagnosis pointers.

    Every draft's codes must be in the charge master and its patient in ``patients``
    (the export holds back lines that are not; see ``holds.hold_reason``).
    """
    claims = []
    for seq, draft in enumerate(drafts, start=1):
        patient = patients[draft.patient_id]
        pointers = tuple(range(1, min(len(patient.icd10), MAX_POINTERS) + 1))
        charge_lines = []
        for n, line in enumerate(draft.lines, start=1):
            price = unit_charge(billing, line.code)
            assert price is not None
            charge_lines.append(
                ChargeLine(
                    line_no=n,
                    line=line,
                    modifiers=tuple(billing.modifiers.get(line.code, ())),
                    charge=price * line.units,
                    diagnosis_pointers=pointers,
                )
            )
        claims.append(
            Claim(
                claim_id=claim_id_for(draft.patient_id, draft.date_of_service, interchange, seq),
                patient=patient,
                date_of_service=draft.date_of_service,
                rendering_npi=draft.rendering_npi,
                lines=tuple(charge_lines),
                frequency=draft.frequency,
                original_claim_id=draft.original_claim_id,
            )
        )
    return claims


def _line_order(line: BillableLine) -> tuple[date, str, str, date]:
    return (line.date_of_service, line.code, line.record_kind, line.period_start)
