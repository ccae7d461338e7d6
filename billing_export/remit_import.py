"""Recording an 835 in the registry, matched to the export ledger (I/O edge of remittances).

CLP01 is matched to the ledger's claim ids and each service line to the ledger line with the
same line control number (REF*6R), else the same procedure and date of service on that claim.
The payer's claim control number (CLP07) is kept on the ledger lines of each matched claim: a
replacement or void claim must name it in REF*F8.
The whole file goes in one transaction; a file already imported (same segments) changes
nothing; a claim id rpmpipe never issued is reported, not fatal, and not recorded as a line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Connection, Engine, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from rpmpipe.billing_export.remit import ClaimPayment, Remittance, ServicePayment, parse_835
from rpmpipe.errors import RemitError
from rpmpipe.logs import get_logger
from rpmpipe.records import BILLED_LINE_KINDS
from rpmpipe.registry.models import ExportLedgerEntry, RemitLine
from rpmpipe.registry.models import Remittance as RemittanceRow

log = get_logger(__name__)
BILLED_KINDS = BILLED_LINE_KINDS
REVERSAL = "22"  # CLP02: the payer takes back an earlier payment (its number is not new)


@dataclass(frozen=True, slots=True)
class LedgerLine:
    """A billed line as the ledger has it: what an 835 line is matched against."""

    ledger_id: int
    claim_id: str
    patient_id: str
    code: str
    date_of_service: date
    line_control_number: str


@dataclass(frozen=True, slots=True)
class MatchedLine:
    claim: ClaimPayment
    seq: int
    service: ServicePayment
    ledger: LedgerLine | None


@dataclass(frozen=True, slots=True)
class RemitImportResult:
    remittance_id: int
    already_imported: bool
    claims: int
    lines: int
    paid: int
    adjusted: int
    denied: int
    unmatched_claim_ids: tuple[str, ...]
    unmatched_lines: int  # lines of our claims that match no ledger line
    total_paid: Decimal


def load_ledger_lines(engine: Engine, claim_ids: Sequence[str]) -> dict[str, list[LedgerLine]]:
    """The billed ledger lines of ``claim_ids``, by claim id."""
    e = ExportLedgerEntry
    found: dict[str, list[LedgerLine]] = {}
    ids = sorted(set(claim_ids))
    with engine.connect() as conn:
        for start in range(0, len(ids), 5000):
            rows = conn.execute(
                select(
                    e.id, e.claim_id, e.patient_id, e.code, e.date_of_service, e.line_control_number
                )
                .where(e.claim_id.in_(ids[start : start + 5000]), e.line_kind.in_(BILLED_KINDS))
                .order_by(e.id)
            )
            for row in rows:
                found.setdefault(row.claim_id, []).append(
                    LedgerLine(
                        row.id,
                        row.claim_id,
                        row.patient_id,
                        row.code,
                        row.date_of_service,
                        row.line_control_number or "",
                    )
                )
    return found


def match_lines(
    remittance: Remittance, ledger: dict[str, list[LedgerLine]]
) -> tuple[list[MatchedLine], tuple[str, ...]]:
    """Every service line of our claims with its ledger line (or None); the unknown claim ids."""
    matched: list[MatchedLine] = []
    unknown: list[str] = []
    for claim in remittance.claims:
        lines = ledger.get(claim.claim_id)
        if not lines:
            unknown.append(claim.claim_id)
            continue
        free = list(lines)
        for seq, service in enumerate(claim.services, start=1):
            hit = _pick(free, service)
            if hit is not None:
                free.remove(hit)
            matched.append(MatchedLine(claim, seq, service, hit))
    return matched, tuple(dict.fromkeys(unknown))


def _pick(free: list[LedgerLine], service: ServicePayment) -> LedgerLine | None:
    if service.line_control_number:
        for line in free:
            if line.line_control_number == service.line_control_number:
                return line
    for line in free:
        if line.code == service.code and service.date_of_service in (None, line.date_of_service):
            return line
    return None


def import_remittance(engine: Engine, path: Path, now: datetime) -> RemitImportResult:
    """Read, match and record the 835 at ``path`` (all or nothing; idempotent)."""
    try:
        text = path.read_text(encoding="ascii", errors="strict")
    except UnicodeDecodeError:
        raise RemitError(f"{path}: not an ASCII X12 file") from None
    except OSError as exc:
        raise RemitError(f"{path}: cannot read file: {exc.strerror}") from None
    remittance = parse_835(text, source=str(path))
    ledger = load_ledger_lines(engine, [c.claim_id for c in remittance.claims])
    matched, unknown = match_lines(remittance, ledger)
    outcomes = [m.service.outcome for m in matched]
    with engine.connect() as conn:
        existing = conn.execute(
            select(RemittanceRow.id).where(RemittanceRow.file_sha256 == remittance.sha256)
        ).scalar()
    if existing is None:
        try:
            existing = _record(engine, remittance, path.name, matched, unknown, now)
            already = False
        except IntegrityError:  # the same file imported at the same moment elsewhere
            with engine.connect() as conn:
                existing = conn.execute(
                    select(RemittanceRow.id).where(RemittanceRow.file_sha256 == remittance.sha256)
                ).scalar_one()
            already = True
    else:
        already = True
    result = RemitImportResult(
        remittance_id=int(existing),
        already_imported=already,
        claims=len(remittance.claims),
        lines=len(matched),
        paid=outcomes.count("paid"),
        adjusted=outcomes.count("adjusted"),
        denied=outcomes.count("denied"),
        unmatched_claim_ids=unknown,
        unmatched_lines=sum(1 for m in matched if m.ledger is None),
        total_paid=remittance.total_paid,
    )
    log.info(
        "remit_imported",
        remittance_id=result.remittance_id,
        already_imported=already,
        claims=result.claims,
        lines=result.lines,
        denied=result.denied,
        unmatched_claims=len(unknown),
    )
    return result


def _record(
    engine: Engine,
    remittance: Remittance,
    file_name: str,
    matched: Sequence[MatchedLine],
    unknown: Sequence[str],
    now: datetime,
) -> int:
    with engine.begin() as conn:
        remit_id = conn.execute(
            insert(RemittanceRow)
            .values(
                file_sha256=remittance.sha256,
                file_name=file_name[:200],
                interchange_control=remittance.interchange_control[:9],
                trace_number=remittance.trace_number[:50],
                payer_name=remittance.payer_name[:60],
                payment_date=remittance.payment_date,
                total_paid=remittance.total_paid,
                claims=len(remittance.claims),
                unmatched_claim_ids=";".join(unknown),
                imported_at=now,
            )
            .returning(RemittanceRow.id)
        ).scalar_one()
        rows = [_line_row(remit_id, m) for m in matched]
        for start in range(0, len(rows), 5000):
            conn.execute(insert(RemitLine), rows[start : start + 5000])
        _keep_payer_claim_numbers(conn, remittance, unknown)
    return int(remit_id)


def _keep_payer_claim_numbers(
    conn: Connection, remittance: Remittance, unknown: Sequence[str]
) -> None:
    """Record each matched claim's CLP07 on its ledger lines (every revision of the claim),
    so a later change can go out as a replacement claim naming it. A reversal does not
    change the number; within one file the last claim payment wins."""
    e = ExportLedgerEntry
    skip = set(unknown)
    numbers = {
        c.claim_id: c.payer_claim_control[:50]
        for c in remittance.claims
        if c.claim_id not in skip and c.payer_claim_control and c.status != REVERSAL
    }
    ids = sorted(numbers)
    changes: list[dict[str, object]] = []
    for start in range(0, len(ids), 5000):
        rows = conn.execute(
            select(e.id, e.claim_id, e.payer_claim_control_number).where(
                e.claim_id.in_(ids[start : start + 5000])
            )
        )
        changes.extend(
            {"pk": row.id, "number": numbers[row.claim_id]}
            for row in rows
            if row.payer_claim_control_number != numbers[row.claim_id]
        )
    if changes:
        conn.execute(
            update(e)
            .where(e.id == bindparam("pk"))
            .values(payer_claim_control_number=bindparam("number")),
            changes,
        )


def _line_row(remit_id: int, m: MatchedLine) -> dict[str, object]:
    s = m.service
    adjustments = [*m.claim.adjustments, *s.adjustments] if m.seq == 1 else list(s.adjustments)
    return {
        "remittance_id": remit_id,
        "claim_id": m.claim.claim_id[:38],
        "seq": m.seq,
        "claim_status": m.claim.status[:2],
        "payer_claim_control": m.claim.payer_claim_control[:50],
        "line_control_number": s.line_control_number[:50],
        "ledger_id": m.ledger.ledger_id if m.ledger else None,
        "patient_id": m.ledger.patient_id if m.ledger else "",
        "code": s.code[:8],
        "date_of_service": s.date_of_service or (m.ledger.date_of_service if m.ledger else None),
        "charge": s.charge,
        "paid": s.paid,
        "outcome": s.outcome,
        "denial_codes": ";".join(dict.fromkeys(a.code for a in adjustments))[:200],
        "adjustments_json": json.dumps(
            [{"group": a.group, "carc": a.reason, "amount": f"{a.amount:.2f}"} for a in adjustments]
        ),
        "remark_codes": ";".join(dict.fromkeys([*s.remark_codes, *m.claim.remark_codes]))[:200],
    }
