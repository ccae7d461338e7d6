"""Small, fixed claim inputs shared by the writer tests (plain values, no database)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from billing_identity import RENDERING_NPI, identity_overrides

from rpmpipe.billing_export.claims import (
    BillableLine,
    Claim,
    PatientInfo,
    draft_claims,
    price_claims,
)
from rpmpipe.records import FinalRecord, RecordStatus, ServiceLine
from rpmpipe.settings import Settings, load_settings

SECOND_NPI = "1456789019"  # another practitioner of the clinic
CLOCK = datetime(2026, 12, 1, 7, 30, tzinfo=UTC)
NOV_START = date(2026, 11, 1)
NOV_END = date(2026, 11, 30)

# Names and addresses full of X12 delimiters, quotes, accents and line breaks.
NASTY = PatientInfo(
    patient_id="P-0002",
    first_name='Zoë\n"Zo"',
    last_name="O'Brien*Smith:~^",
    birth_date=date(1950, 2, 28),
    sex="M",
    address1='12 Élm St\r\nApt ^4, "rear"',
    city="Saint-Étienne~Ville",
    state="IL",
    zip="62701-1234",
    payer_id="MEDICARE",
    payer_name="Medicare\nPart B",
    member_id="1EG4-TE5-MK73",
    icd10=("I10", "E11.9", "I50.22", "N18.30", "E78.5"),
)
PLAIN = PatientInfo(
    patient_id="P-0001",
    first_name="Ada",
    last_name="Lovelace",
    birth_date=date(1944, 5, 17),
    sex="F",
    address1="1 Main St",
    city="Springfield",
    state="IL",
    zip="62701",
    payer_id="BCBSIL",
    payer_name="Blue Cross IL",
    member_id="XOF123456789",
    icd10=("I10",),
)
PATIENTS = {p.patient_id: p for p in (PLAIN, NASTY)}


def sample_settings(**overrides: object) -> Settings:
    base: dict[str, object] = {
        **identity_overrides(),
        "billing.payers": {
            "BCBSIL": {
                "name": "BCBS Illinois",
                "claim_filing_indicator": "BL",
                "payer_id": "00621",
            },
            "MEDICARE": {
                "name": "MEDICARE PART B",
                "claim_filing_indicator": "MB",
                "payer_id": "06102",
            },
        },
        "billing.rendering_providers": {RENDERING_NPI: "Hopper, Grace", SECOND_NPI: "Curie, Marie"},
        "billing.rendering_taxonomies": {RENDERING_NPI: "207RC0000X"},
        "billing.modifiers": {"99457": ["95"]},
    }
    base.update(overrides)
    return load_settings(None, env={}, overrides=base)


def line(
    patient_id: str,
    code: str,
    units: int = 1,
    kind: str = "device_supply",
    dos: date = NOV_END,
    rendering_npi: str = SECOND_NPI,
    minutes: str = "0",
) -> BillableLine:
    service = ServiceLine(code, units, dos)
    record = FinalRecord(
        patient_id=patient_id,
        program="RPM",
        kind=kind,
        period_start=NOV_START,
        period_end=NOV_END,
        status=RecordStatus.BILLABLE,
        reason="",
        rule_set="CY2026",
        transmission_days=18,
        interactive_minutes=Decimal(minutes),
        management_minutes=Decimal(minutes),
        lines=(service,),
        rendering_npi=rendering_npi,
    )
    return BillableLine(record, service)


def sample_lines() -> list[BillableLine]:
    return [
        line("P-0001", "99454"),
        line("P-0001", "99457", kind="treatment_management", minutes="45.5"),
        line("P-0001", "99458", 1, kind="treatment_management", minutes="45.5"),
        line("P-0002", "99445", dos=date(2026, 11, 15), rendering_npi=RENDERING_NPI),
        line("P-0002", "99453", kind="setup", dos=date(2026, 11, 15), rendering_npi=RENDERING_NPI),
    ]


def sample_claims(settings: Settings, first_claim_number: int = 7) -> list[Claim]:
    return price_claims(
        draft_claims(sample_lines()), PATIENTS, settings.billing, first_claim_number
    )
