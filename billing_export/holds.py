"""Why a line cannot go on a valid claim yet, and how to tell the biller (pure: no I/O).

A held line is not recorded in the ledger, so the next run picks it up once the settings or
the registry are fixed. Each reason says what is missing in the biller's words and, when the
fix is a setting, the TOML to add. Reasons carry ids, codes and NPIs only, never PHI: they
go to logs, the manifest and the terminal.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from rpmpipe.billing_export.claims import BillableLine, PatientInfo, unit_charge
from rpmpipe.billing_export.x12 import clean, digits
from rpmpipe.identifiers import has_x12_separator, is_mbi
from rpmpipe.settings import BillingSettings

_STATE = re.compile(r"^[A-Z]{2}$")
_BARE_TOML_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True, slots=True)
class HoldReason:
    """What keeps a line off the claims, and the setting that fixes it (if one does)."""

    text: str
    setting_table: str = ""  # TOML table to add to, e.g. "billing.rendering_providers"
    setting_entry: str = ""  # the line(s) to add under that table


@dataclass(frozen=True, slots=True)
class Held:
    """One engagement record kept off this run's claims, with how many lines it has."""

    patient_id: str
    record_kind: str
    period_start: date
    cause: HoldReason
    lines: int = 1

    @property
    def reason(self) -> str:
        return self.cause.text


@dataclass(frozen=True, slots=True)
class HeldGroup:
    """Held records that share one reason: the unit the CLI reports."""

    cause: HoldReason
    lines: int
    patient_ids: tuple[str, ...]


def hold_reason(
    line: BillableLine, patient: PatientInfo | None, billing: BillingSettings
) -> HoldReason | None:
    """Why this line cannot go on a valid claim yet, or None when it can."""
    if unit_charge(billing, line.code) is None:
        return HoldReason(
            f"no charge for {line.code} in billing.charges",
            "billing.charges",
            f"{_toml_key(line.code)} = AMOUNT",
        )
    rendering = rendering_hold_reason(line.rendering_npi, billing)
    if rendering is not None:
        return rendering
    return patient_hold_reason(patient, billing)


def rendering_hold_reason(npi: str, billing: BillingSettings) -> HoldReason | None:
    """Why ``npi`` (the enrollment's ordering NPI) cannot render the claim, or None."""
    if billing.provider_entity == "organization":
        # An organisation bills; the claim must name the person who rendered the service.
        if not npi:
            return HoldReason(
                "the rendering provider must be a person's NPI: the enrollment has no "
                "ordering_npi (rpmpipe import enrollments)"
            )
        if npi == billing.provider_npi:
            return HoldReason(
                f"the rendering provider must be a person's NPI: ordering NPI {npi} is the "
                "billing organisation's (billing.provider_npi); set the practitioner's NPI "
                "on the enrollment (rpmpipe import enrollments)"
            )
    if npi and npi != billing.provider_npi and npi not in billing.rendering_providers:
        return HoldReason(
            f"ordering NPI {npi} has no name in billing.rendering_providers",
            "billing.rendering_providers",
            f'{_toml_key(npi)} = "<LAST>, <FIRST>"',
        )
    return None


def patient_hold_reason(patient: PatientInfo | None, billing: BillingSettings) -> HoldReason | None:
    """Why this patient's claims cannot be valid yet."""
    problem = _patient_problem(patient)
    if problem is not None:
        return HoldReason(problem)
    assert patient is not None
    payer = billing.payers.get(patient.payer_id)
    key = _toml_key(patient.payer_id)
    # A payer we know nothing about must not be billed as Medicare (SBR09 would be a guess).
    if payer is None:
        return HoldReason(
            f"payer {patient.payer_id} is not configured in billing.payers",
            f"billing.payers.{key}",
            'name = "PAYER NAME"\nclaim_filing_indicator = "CI"  # SBR09: MB Medicare Part B, '
            'CI commercial, MC Medicaid, ...\npayer_id = "PAYER EDI ID"  # 2010BB; for Medicare '
            "the MAC's contractor number",
        )
    if not payer.payer_id:
        return HoldReason(
            f"payer {patient.payer_id} has no payer_id (its EDI id) in billing.payers.{key}",
            f"billing.payers.{key}",
            'payer_id = "PAYER EDI ID"  # 2010BB NM109; for Medicare the MAC\'s contractor number',
        )
    if has_x12_separator(patient.member_id):
        return HoldReason(
            "member id holds an X12 separator (* : ~ ^) or a control character; fix it in the "
            "registry"
        )
    if payer.claim_filing_indicator == "MB" and not is_mbi(patient.member_id):
        return HoldReason(
            "member id is not a Medicare Beneficiary Identifier (MBI: 11 characters, CMS's "
            "pattern), which Medicare Part B (MB) requires"
        )
    return None


@lru_cache(maxsize=1 << 18)  # one check per patient, however many lines (and patients)
def _patient_problem(patient: PatientInfo | None) -> str | None:
    if patient is None:
        return "patient not in registry"
    if not patient.icd10:
        return "no ICD-10 code on file"
    missing = [
        name
        for name, ok in (
            ("last_name", bool(clean(patient.last_name))),
            ("first_name", bool(clean(patient.first_name))),
            ("member_id", bool(clean(patient.member_id))),
            ("address1", bool(clean(patient.address1))),
            ("city", len(clean(patient.city)) >= 2),
            ("state", bool(_STATE.match(clean(patient.state)))),
            ("zip", len(digits(patient.zip)) in (5, 9)),
            ("payer_id", len(clean(patient.payer_id)) >= 2),
        )
        if not ok
    ]
    if missing:
        return "patient record incomplete: " + ", ".join(missing)
    return None


def group_held(held: Iterable[Held]) -> list[HeldGroup]:
    """Held records grouped by reason, most lines first (ties by reason text)."""
    lines: dict[HoldReason, int] = {}
    patients: dict[HoldReason, set[str]] = {}
    for h in held:
        lines[h.cause] = lines.get(h.cause, 0) + h.lines
        patients.setdefault(h.cause, set()).add(h.patient_id)
    return [
        HeldGroup(cause, count, tuple(sorted(patients[cause])))
        for cause, count in sorted(lines.items(), key=lambda item: (-item[1], item[0].text))
    ]


def settings_to_add(groups: Iterable[HeldGroup]) -> str:
    """The TOML that would release the held lines whose fix is a setting ("" if none)."""
    tables: dict[str, list[str]] = {}
    for group in groups:
        cause = group.cause
        if cause.setting_table and cause.setting_entry not in tables.get(cause.setting_table, []):
            tables.setdefault(cause.setting_table, []).append(cause.setting_entry)
    return "\n\n".join(
        f"[{table}]\n" + "\n".join(entries) for table, entries in sorted(tables.items())
    )


def _toml_key(key: str) -> str:
    if _BARE_TOML_KEY.match(key) and not key.isdigit():
        return key
    escaped = key.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
