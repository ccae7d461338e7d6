"""Denied lines with their evidence, and the appeal packet of a claim (registry + run files).

A denied line is the latest remittance of a billed line that paid nothing. Its evidence is
the ``evidence.parquet`` frozen in the run that billed it, audited again against the
program's rules and the payer's profile: "complete", or what is missing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import Engine, select

from rpmpipe.billing_export.appeal import (
    AppealPacket,
    Denial,
    PatientFacts,
    Practice,
    render_html,
    render_letter,
    render_pdf,
)
from rpmpipe.billing_export.audit import AuditedLine, audit_line, default_rules
from rpmpipe.billing_export.audit_run import payer_profiles
from rpmpipe.billing_export.evidence import (
    EVIDENCE_PARQUET,
    LineEvidence,
    evidence_from_table,
    facts_of,
)
from rpmpipe.billing_export.remit_import import BILLED_KINDS
from rpmpipe.errors import ExportError
from rpmpipe.files import atomic_write, private_dir
from rpmpipe.registry.models import ExportLedgerEntry, Patient, RemitLine, Remittance
from rpmpipe.settings import BillingSettings

NO_EVIDENCE = "no evidence frozen with the export"


@dataclass(frozen=True, slots=True)
class DeniedLine:
    claim_id: str
    line_control_number: str
    patient_id: str
    code: str
    date_of_service: date | None
    charge: Decimal
    paid: Decimal
    denial_codes: tuple[str, ...]  # "CO-16", ...
    remark_codes: tuple[str, ...]  # "N29", ...
    payment_date: date | None
    run_id: str
    evidence_status: str  # "complete" or what is missing

    @property
    def denial_code(self) -> str:
        return main_denial_code(self.denial_codes)


def main_denial_code(codes: Sequence[str]) -> str:
    """The code a denial is answered under: the first that is not a fee-schedule reduction."""
    significant = [c for c in codes if c not in ("CO-45", "CO-253")]
    return (significant or list(codes) or [""])[0]


def _codes(text: str) -> tuple[str, ...]:
    return tuple(c for c in (text or "").split(";") if c)


class FrozenEvidence:
    """The evidence the runs froze, each run's file read once: a denial list or a batch of
    appeals asks for many claims of the same run, and each ask had read the whole file.

    The files of the last ``keep`` runs asked for are held (an 835 answers one run's claims,
    and claims are appealed in order), so a year of runs with denials is never in memory at
    once."""

    def __init__(self, exports_root: Path, keep: int = 2) -> None:
        self.exports_root = exports_root
        self.keep = keep
        self._tables: dict[str, pa.Table | None] = {}  # oldest asked first

    def of_claim(self, run_id: str, claim_id: str) -> list[LineEvidence]:
        """The lines of ``claim_id`` that run ``run_id`` froze; [] when the run has none."""
        table = self._tables.pop(run_id, None) if run_id in self._tables else self._read(run_id)
        self._tables[run_id] = table
        while len(self._tables) > self.keep:
            del self._tables[next(iter(self._tables))]
        if table is None:
            return []
        return evidence_from_table(table.filter(pc.equal(table["claim_id"], claim_id)))

    def _read(self, run_id: str) -> pa.Table | None:
        path = self.exports_root / run_id / EVIDENCE_PARQUET
        return pq.read_table(path) if path.is_file() else None


def _match(
    lines: Sequence[LineEvidence], lcn: str, claim_id: str, code: str
) -> LineEvidence | None:
    for e in lines:
        if lcn and e.line_control_number == lcn:
            return e
    for e in lines:
        if e.claim_id == claim_id and e.code == code:
            return e
    return None


def evidence_status(
    evidence: LineEvidence | None, zone: str, payer_requires: Sequence[str] = ()
) -> str:
    """ "complete", or the missing documentation of a frozen evidence line."""
    if evidence is None:
        return NO_EVIDENCE
    audited = AuditedLine(
        evidence.patient_id,
        evidence.program,
        evidence.record_kind,
        evidence.code,
        evidence.period_start,
        evidence.period_end,
        evidence.date_of_service,
    )
    findings = audit_line(audited, facts_of(evidence, zone), default_rules(), payer_requires)
    return "complete" if not findings else "missing: " + "; ".join(f.reason for f in findings)


def list_denials(
    engine: Engine,
    exports_root: Path,
    billing: BillingSettings,
    codes: Sequence[str] = (),
    evidence: FrozenEvidence | None = None,
) -> list[DeniedLine]:
    """Billed lines whose latest remittance paid nothing, optionally with one of ``codes``
    (their frozen evidence through ``evidence`` when given, to share its reads)."""
    wanted = {c.strip().upper() for c in codes if c.strip()}
    r, e, m = RemitLine, ExportLedgerEntry, Remittance
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                r.id,
                r.ledger_id,
                r.claim_id,
                r.line_control_number,
                r.patient_id,
                r.code,
                r.date_of_service,
                r.charge,
                r.paid,
                r.outcome,
                r.denial_codes,
                r.remark_codes,
                m.payment_date,
                e.run_id,
            )
            .join(m, m.id == r.remittance_id)
            .join(e, e.id == r.ledger_id)
            .where(e.line_kind.in_(BILLED_KINDS))
            .order_by(r.id)
        ).all()
        patients = {
            p.patient_id: (p.timezone, p.payer_id)
            for p in conn.execute(select(Patient.patient_id, Patient.timezone, Patient.payer_id))
        }
    latest: dict[int, Any] = {}
    for row in rows:
        latest[row.ledger_id] = row  # later remittances answer last
    profiles = payer_profiles(billing)
    frozen = FrozenEvidence(exports_root) if evidence is None else evidence
    out = []
    for row in latest.values():
        if row.outcome != "denied":
            continue
        denial = _codes(row.denial_codes)
        remarks = _codes(row.remark_codes)
        if wanted and not wanted & {*denial, *remarks}:
            continue
        zone, payer_id = patients.get(row.patient_id, ("UTC", ""))
        lines = frozen.of_claim(row.run_id, row.claim_id)
        found = _match(lines, row.line_control_number, row.claim_id, row.code)
        out.append(
            DeniedLine(
                claim_id=row.claim_id,
                line_control_number=row.line_control_number
                or (found.line_control_number if found else ""),
                patient_id=row.patient_id,
                code=row.code,
                date_of_service=row.date_of_service,
                charge=Decimal(row.charge).quantize(Decimal("0.01")),
                paid=Decimal(row.paid).quantize(Decimal("0.01")),
                denial_codes=denial,
                remark_codes=remarks,
                payment_date=row.payment_date,
                run_id=row.run_id,
                evidence_status=evidence_status(found, zone or "UTC", profiles.get(payer_id, ())),
            )
        )
    return sorted(out, key=lambda d: (d.claim_id, d.line_control_number, d.code))


def practice_of(billing: BillingSettings) -> Practice:
    return Practice(
        name=billing.provider_name,
        address1=billing.provider_address1,
        city=billing.provider_city,
        state=billing.provider_state,
        zip=billing.provider_zip,
        npi=billing.provider_npi,
        phone=billing.contact_phone,
        contact=billing.contact_name,
    )


def build_packet(
    engine: Engine,
    exports_root: Path,
    billing: BillingSettings,
    claim_id: str,
    today: date,
    denial_code: str | None = None,
    evidence: FrozenEvidence | None = None,
) -> AppealPacket:
    """The appeal packet of ``claim_id`` from the ledger, its frozen evidence (through
    ``evidence`` when given: a batch of packets reads each run's file once) and the
    registry."""
    e = ExportLedgerEntry
    with engine.connect() as conn:
        billed = conn.execute(
            select(e.run_id, e.patient_id, e.date_of_service)
            .where(e.claim_id == claim_id, e.line_kind.in_(BILLED_KINDS))
            .order_by(e.id)
        ).first()
        if billed is None:
            raise ExportError(f"claim {claim_id} is not in the export ledger")
        patient = conn.execute(
            select(Patient.__table__).where(Patient.patient_id == billed.patient_id)
        ).first()
        remits = conn.execute(
            select(RemitLine.denial_codes, RemitLine.remark_codes, RemitLine.outcome)
            .where(RemitLine.claim_id == claim_id)
            .order_by(RemitLine.id)
        ).all()
    if patient is None:
        raise ExportError(f"claim {claim_id}: patient {billed.patient_id} is not in the registry")
    frozen = FrozenEvidence(exports_root) if evidence is None else evidence
    lines = frozen.of_claim(billed.run_id, claim_id)
    if not lines:
        raise ExportError(
            f"claim {claim_id}: {NO_EVIDENCE} (run {billed.run_id} under {exports_root}; "
            "pass --exports DIR if the export went elsewhere)"
        )
    remarks: tuple[str, ...] = ()
    code = denial_code or ""
    for row in reversed(remits):
        if row.outcome == "denied":
            code = code or main_denial_code(_codes(row.denial_codes))
            remarks = _codes(row.remark_codes)
            break
    payer = billing.payers.get(patient.payer_id)
    payer_name = (payer.name if payer and payer.name else patient.payer_name) or patient.payer_id
    return AppealPacket(
        practice=practice_of(billing),
        payer_name=payer_name,
        claim_id=claim_id,
        patient=PatientFacts(
            patient_id=patient.patient_id,
            name=f"{patient.first_name} {patient.last_name}".strip(),
            birth_date=patient.birth_date,
            member_id=patient.member_id,
            zone=patient.timezone or "UTC",
        ),
        date_of_service=billed.date_of_service,
        denial=Denial(code.upper(), remarks),
        lines=tuple(sorted(lines, key=lambda x: x.line_no)),
        today=today,
    )


def write_packet(packet: AppealPacket, out_dir: Path, template: Path | None) -> tuple[Path, Path]:
    """Write ``appeal-<claim>.pdf`` and ``.html`` (0600, in a 0700 directory)."""
    letter = render_letter(packet, template)
    html_text = render_html(packet, letter)
    pdf_bytes = render_pdf(packet, letter)
    private_dir(out_dir)
    stem = "appeal-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in packet.claim_id)
    pdf_path = atomic_write(out_dir / f"{stem}.pdf", lambda f: f.write(pdf_bytes))
    html_path = atomic_write(out_dir / f"{stem}.html", lambda f: f.write(html_text.encode()))
    return pdf_path, html_path


def denial_dict(d: DeniedLine) -> dict[str, object]:
    return {
        "claim_id": d.claim_id,
        "line_control_number": d.line_control_number,
        "patient_id": d.patient_id,
        "code": d.code,
        "date_of_service": d.date_of_service.isoformat() if d.date_of_service else None,
        "charge": f"{d.charge:.2f}",
        "paid": f"{d.paid:.2f}",
        "denial_codes": list(d.denial_codes),
        "remark_codes": list(d.remark_codes),
        "payment_date": d.payment_date.isoformat() if d.payment_date else None,
        "run_id": d.run_id,
        "evidence_status": d.evidence_status,
    }


def denials_json(denials: Sequence[DeniedLine]) -> str:
    return json.dumps([denial_dict(d) for d in denials], indent=2) + "\n"
