"""Claim values and how billable lines group into claims (pure: no I/O).

A claim is one patient, one date of service and one rendering practitioner, with its service
lines. Both writers (charge CSV and 837P) read the same ``Claim`` values, so the two files
always agree line for line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from rpmpipe.records import FinalRecord, RecordKey, ServiceLine
from rpmpipe.settings import BillingSettings

MAX_DIAGNOSES = 12  # HI holds 12 codes
MAX_POINTERS = 4  # SV107 holds 4 pointers
CLAIM_ID_MAX = 20  # CLM01: receivers keep 20 characters (the guide allows 38)
LINE_CONTROL_MAX = 30  # REF*6R as remittances echo it
DEFAULT_CLAIMS_FILE = "claims.837"
_FILE_SAFE = re.compile(r"[^A-Za-z0-9]+")


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
    """One service line of a final engagement record, before pricing: the record and the line
    (the properties are what pricing, the audit, the claims and the ledger read of them)."""

    record: FinalRecord
    line: ServiceLine

    @property
    def record_key(self) -> RecordKey:
        return self.record.key

    @property
    def patient_id(self) -> str:
        return self.record.patient_id

    @property
    def program(self) -> str:
        return self.record.program

    @property
    def record_kind(self) -> str:
        return self.record.kind

    @property
    def period_start(self) -> date:
        return self.record.period_start

    @property
    def period_end(self) -> date:
        return self.record.period_end

    @property
    def rule_set(self) -> str:
        return self.record.rule_set

    @property
    def transmission_days(self) -> int:
        return self.record.transmission_days

    @property
    def interactive_minutes(self) -> Decimal:
        return self.record.interactive_minutes

    @property
    def management_minutes(self) -> Decimal:
        """All care time that counts."""
        return self.record.management_minutes

    @property
    def episode_start(self) -> date | None:
        """The episode of care the line's record belongs to."""
        return self.record.episode_start

    @property
    def rendering_npi(self) -> str:
        return self.record.rendering_npi

    @property
    def code(self) -> str:
        return self.line.code

    @property
    def units(self) -> int:
        return self.line.units

    @property
    def date_of_service(self) -> date:
        return self.line.date_of_service


def billable_lines(record: FinalRecord) -> list[BillableLine]:
    """The lines ``record`` bills (none unless it is billable), each with its record."""
    return [BillableLine(record, line) for line in record.billed_lines]


@dataclass(frozen=True, slots=True)
class ChargeLine:
    line_no: int
    line: BillableLine
    modifiers: tuple[str, ...]
    charge: Decimal
    diagnosis_pointers: tuple[int, ...]
    line_control_number: str = ""  # REF*6R


@dataclass(frozen=True, slots=True)
class Receiver:
    """Who an interchange goes to (ISA08, GS03, loop 1000B)."""

    receiver_id: str
    name: str


@dataclass(frozen=True, slots=True)
class Claim:
    claim_id: str
    patient: PatientInfo
    date_of_service: date
    rendering_npi: str
    lines: tuple[ChargeLine, ...]
    frequency: str = "1"  # CLM05-3: 1 original, 7 replacement, 8 void
    original_claim_id: str = ""  # rpmpipe's claim id of the claim replaced or voided
    payer_claim_control_number: str = ""  # REF*F8: the payer's number for that claim
    receiver: Receiver = Receiver("", "")
    interchange_control: int = 0  # ISA13 of the file that carries the claim

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
    payer_claim_control_number: str = ""
    sort_key: tuple[str, ...] = field(default=(), compare=False)


def payer_name_for(patient: PatientInfo, billing: BillingSettings) -> str:
    """The payer's name from settings when configured, else as the registry has it."""
    payer = billing.payers.get(patient.payer_id)
    return (payer.name if payer and payer.name else patient.payer_name) or patient.payer_id


def icd10_without_dot(code: str) -> str:
    """ICD-10-CM as the 837P wants it: no decimal point, upper case."""
    return code.replace(".", "").strip().upper()


def claim_id_for(number: int) -> str:
    """CLM01 of the ``number``-th claim the ledger issued: short, and never reused."""
    claim_id = f"RP{number:010d}"
    if len(claim_id) > CLAIM_ID_MAX:
        raise ValueError(f"claim number {number} does not fit in {CLAIM_ID_MAX} characters")
    return claim_id


def line_control_number_for(claim_id: str, line_no: int) -> str:
    """REF*6R of a service line: unique within the claim and, as claim ids are, everywhere."""
    return f"{claim_id}-{line_no}"[:LINE_CONTROL_MAX]


def receiver_for(payer_key: str, billing: BillingSettings) -> Receiver:
    """The receiver of a payer's claims: its own, else the top-level one."""
    payer = billing.payers.get(payer_key)
    if payer is not None and payer.receiver_id:
        return Receiver(payer.receiver_id, payer.receiver_name or payer.receiver_id)
    return Receiver(billing.receiver_id, billing.receiver_name)


def claims_file_for(receiver: Receiver, billing: BillingSettings) -> str:
    """``claims.837`` for the top-level receiver, ``claims-<RECEIVER>.837`` for the others."""
    if receiver.receiver_id == billing.receiver_id:
        return DEFAULT_CLAIMS_FILE
    return f"claims-{_FILE_SAFE.sub('_', receiver.receiver_id).strip('_').upper()}.837"


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
    first_claim_number: int,
) -> list[Claim]:
    """Claims with ids, line numbers, modifiers, charges and diagnosis pointers.

    Claim ids are ``first_claim_number`` onwards, numbers the ledger issued to this run.

    Every draft's codes must be in the charge master and its patient in ``patients``
    (the export holds back lines that are not; see ``holds.hold_reason``).
    """
    claims = []
    # Each code's unit charge and modifiers, looked up once per run rather than per line.
    priced: dict[str, tuple[Decimal, tuple[str, ...]]] = {}
    for seq, draft in enumerate(drafts):
        patient = patients[draft.patient_id]
        claim_id = claim_id_for(first_claim_number + seq)
        pointers = tuple(range(1, min(len(patient.icd10), MAX_POINTERS) + 1))
        charge_lines = []
        for n, line in enumerate(draft.lines, start=1):
            service = line.line
            price, modifiers = priced.get(service.code) or priced.setdefault(
                service.code, _priced(billing, service.code)
            )
            charge_lines.append(
                ChargeLine(
                    line_no=n,
                    line=line,
                    modifiers=modifiers,
                    charge=price * service.units,
                    diagnosis_pointers=pointers,
                    line_control_number=line_control_number_for(claim_id, n),
                )
            )
        claims.append(
            Claim(
                claim_id=claim_id,
                patient=patient,
                date_of_service=draft.date_of_service,
                rendering_npi=draft.rendering_npi,
                lines=tuple(charge_lines),
                frequency=draft.frequency,
                original_claim_id=draft.original_claim_id,
                payer_claim_control_number=draft.payer_claim_control_number,
                receiver=receiver_for(patient.payer_id, billing),
            )
        )
    return claims


def _priced(billing: BillingSettings, code: str) -> tuple[Decimal, tuple[str, ...]]:
    """The unit charge and the modifiers of a code the charge master prices."""
    price = unit_charge(billing, code)
    assert price is not None
    return price, tuple(billing.modifiers.get(code, ()))


def _line_order(line: BillableLine) -> tuple[date, str, str, date]:
    return (line.date_of_service, line.code, line.record_kind, line.period_start)
