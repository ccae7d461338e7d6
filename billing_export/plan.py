"""What an export run must do, decided from plain values (pure: no I/O).

Inputs are the final engagement records, the ledger's latest state of every exported
record, and the patients. Out come: new lines to bill, changes to already exported records
(corrections, and replacement claims when ``billing.replacement_claims`` is on), and lines
held back with a reason (they are not recorded, so a later run picks them up once the
registry is fixed).

The ledger keeps one row per line per *revision* of a record: revision 0 is the original
claim; a change writes revision n+1 with ``line_kind`` ``replacement`` (a frequency-7 claim
was sent), ``correction`` (reported to the billing team, not billed) or ``void`` (the record
is no longer billable; a single row with code ``-`` stands for "no lines").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from rpmpipe.billing_export.charge_csv import Correction
from rpmpipe.billing_export.claims import (
    BillableLine,
    Claim,
    ClaimDraft,
    PatientInfo,
    draft_claims,
    price_claims,
    unit_charge,
)
from rpmpipe.billing_export.holds import Held, HoldReason, hold_reason
from rpmpipe.settings import BillingSettings

RecordKey = tuple[str, str, str, date]  # patient_id, program, record_kind, period_start
LineSig = tuple[tuple[str, int, date], ...]  # (code, units, date_of_service), sorted
EMPTY_MARKER = "-"
MANAGEMENT_KIND = "treatment_management"  # counted in minutes; the other kinds in days


@dataclass(frozen=True, slots=True)
class FinalRecord:
    """An engagement record whose period ended before the as-of date."""

    patient_id: str
    program: str
    kind: str
    period_start: date
    period_end: date
    status: str
    rule_set: str
    reason: str
    transmission_days: int
    interactive_minutes: Decimal
    lines: LineSig
    rendering_npi: str
    management_minutes: Decimal = Decimal("0.00")  # all care time that counts

    @property
    def key(self) -> RecordKey:
        return (self.patient_id, self.program, self.kind, self.period_start)

    @property
    def billed_lines(self) -> LineSig:
        return self.lines if self.status == "billable" else ()

    def billable_lines(self) -> list[BillableLine]:
        return [
            BillableLine(
                patient_id=self.patient_id,
                program=self.program,
                record_kind=self.kind,
                period_start=self.period_start,
                period_end=self.period_end,
                code=code,
                units=units,
                date_of_service=dos,
                rule_set=self.rule_set,
                transmission_days=self.transmission_days,
                interactive_minutes=self.interactive_minutes,
                rendering_npi=self.rendering_npi,
                management_minutes=self.management_minutes,
            )
            for code, units, dos in self.billed_lines
        ]


@dataclass(frozen=True, slots=True)
class LedgerState:
    """The latest revision the ledger holds for one record."""

    revision: int
    claim_id: str
    line_kind: str
    lines: LineSig  # empty when the latest revision is the "-" marker
    period_end: date = date.min
    # The counts behind that revision, so a correction can say what moved.
    transmission_days: int = 0
    interactive_minutes: Decimal = Decimal("0.00")
    management_minutes: Decimal = Decimal("0.00")


@dataclass(frozen=True, slots=True)
class LedgerWrite:
    """One row to add to ``export_ledger`` once the run's files are safely on disk."""

    patient_id: str
    program: str
    record_kind: str
    period_start: date
    period_end: date
    revision: int
    line_kind: str
    code: str
    units: int
    charge: Decimal
    date_of_service: date
    claim_id: str
    transmission_days: int
    interactive_minutes: Decimal
    transaction_index: int = 0  # which ST of the interchange holds the claim
    management_minutes: Decimal = Decimal("0.00")


@dataclass(frozen=True, slots=True)
class Work:
    originals: tuple[BillableLine, ...]
    changed: tuple[FinalRecord, ...]
    held: tuple[Held, ...]
    records: Mapping[RecordKey, FinalRecord] = field(default_factory=dict)
    ledger: Mapping[RecordKey, LedgerState] = field(default_factory=dict)
    # New records whose period overlaps an exported one of the same kind (e.g. a late first
    # reading moved the rolling periods): reported as corrections, never billed again.
    overlapping: tuple[tuple[FinalRecord, RecordKey], ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.originals and not self.changed and not self.overlapping


@dataclass(frozen=True, slots=True)
class ExportPlan:
    claims: tuple[Claim, ...]
    corrections: tuple[Correction, ...]
    ledger: tuple[LedgerWrite, ...]
    held: tuple[Held, ...]


def signature(lines: Iterable[tuple[str, int, date]]) -> LineSig:
    return tuple(sorted(lines))


def select_work(
    records: Iterable[FinalRecord],
    ledger: Mapping[RecordKey, LedgerState],
    patients: Mapping[str, PatientInfo],
    billing: BillingSettings,
) -> Work:
    """New lines to bill, exported records that changed, and lines held back."""
    originals: list[BillableLine] = []
    changed: list[FinalRecord] = []
    held: list[Held] = []
    overlapping: list[tuple[FinalRecord, RecordKey]] = []
    by_key: dict[RecordKey, FinalRecord] = {}
    exported: dict[tuple[str, str, str], list[RecordKey]] = {}
    for key, exported_state in ledger.items():
        if exported_state.lines:
            exported.setdefault(key[:3], []).append(key)
    for record in records:
        by_key[record.key] = record
        state = ledger.get(record.key)
        if state is None and record.billed_lines:
            clash = [
                key
                for key in exported.get(record.key[:3], [])
                if key[3] <= record.period_end and ledger[key].period_end >= record.period_start
            ]
            if clash:
                overlapping.append((record, min(clash)))
                continue
        if state is None:
            lines = record.billable_lines()
            hold = _hold(record, lines, patients, billing)
            if hold is not None:
                held.append(hold)
            else:
                originals.extend(lines)
        elif signature(record.billed_lines) != state.lines:
            changed.append(record)
    return Work(
        tuple(originals), tuple(changed), tuple(held), by_key, dict(ledger), tuple(overlapping)
    )


def _hold(
    record: FinalRecord,
    lines: Sequence[BillableLine],
    patients: Mapping[str, PatientInfo],
    billing: BillingSettings,
) -> Held | None:
    # The record is held whole (never half billed), under its first line's reason.
    for ln in lines:
        cause: HoldReason | None = hold_reason(ln, patients.get(ln.patient_id), billing)
        if cause is not None:
            return Held(record.patient_id, record.kind, record.period_start, cause, len(lines))
    return None


def build_plan(
    work: Work,
    patients: Mapping[str, PatientInfo],
    billing: BillingSettings,
    interchange: int,
) -> ExportPlan:
    """Claims, corrections and ledger rows for the work, with claim ids of this interchange."""
    drafts = draft_claims(work.originals)
    corrections: list[Correction] = []
    changes: list[tuple[FinalRecord, str]] = []  # (record, line_kind) for correction rows
    replaced: dict[str, list[RecordKey]] = {}
    held = list(work.held)

    for record in sorted(work.changed, key=lambda r: r.key):
        state = work.ledger[record.key]
        new_lines = record.billable_lines()
        hold = _hold(record, new_lines, patients, billing)
        if hold is not None:
            held.append(hold)
            continue
        if billing.replacement_claims and state.lines and new_lines:
            replaced.setdefault(state.claim_id, []).append(record.key)
        else:
            changes.append((record, "correction" if new_lines else "void"))

    # A replacement claim replaces the whole original claim: it carries the current lines of
    # every record that was on it, changed or not, and each of them moves to a new revision.
    members_of: dict[str, list[RecordKey]] = {}
    for key, state in work.ledger.items():
        if state.lines and state.claim_id in replaced:
            members_of.setdefault(state.claim_id, []).append(key)
    replacement_members: dict[int, list[RecordKey]] = {}
    for original_id in sorted(replaced):
        members = sorted(members_of.get(original_id, []))
        lines: list[BillableLine] = []
        for key in members:
            member = work.records.get(key)
            if member is not None:
                lines.extend(member.billable_lines())
        if not lines:
            continue
        first = lines[0]
        replacement_members[len(drafts)] = members
        drafts.append(
            ClaimDraft(
                patient_id=first.patient_id,
                date_of_service=min(ln.date_of_service for ln in lines),
                rendering_npi=first.rendering_npi,
                lines=tuple(sorted(lines, key=lambda ln: (ln.date_of_service, ln.code))),
                frequency="7",
                original_claim_id=original_id,
            )
        )

    claims = price_claims(drafts, patients, billing, interchange) if drafts else []
    writes: list[LedgerWrite] = []
    for index, claim in enumerate(claims):
        on_claim = replacement_members.get(index)
        for cl in claim.lines:
            ln = cl.line
            prior = work.ledger.get((ln.patient_id, ln.program, ln.record_kind, ln.period_start))
            revision = 0 if on_claim is None or prior is None else prior.revision + 1
            kind = "original" if on_claim is None else "replacement"
            writes.append(_write(ln, revision, kind, claim.claim_id, cl.charge))
        for key in on_claim or []:
            member = work.records.get(key)
            prior = work.ledger[key]
            if member is None or signature(member.billed_lines) == prior.lines:
                continue  # an unchanged neighbour on the replaced claim: no correction to report
            corrections.append(_correction(member, prior, "replacement_claim", claim.claim_id))
    for record, change in changes:
        state = work.ledger[record.key]
        corrections.append(
            _correction(record, state, "review" if change == "correction" else "void", "")
        )
        lines = record.billable_lines()
        for ln in lines:
            price = unit_charge(billing, ln.code) or Decimal("0.00")
            writes.append(_write(ln, state.revision + 1, change, state.claim_id, price * ln.units))
        if not lines:
            writes.append(
                LedgerWrite(
                    patient_id=record.patient_id,
                    program=record.program,
                    record_kind=record.kind,
                    period_start=record.period_start,
                    period_end=record.period_end,
                    revision=state.revision + 1,
                    line_kind=change,
                    code=EMPTY_MARKER,
                    units=0,
                    charge=Decimal("0.00"),
                    date_of_service=record.period_end,
                    claim_id=state.claim_id,
                    transmission_days=record.transmission_days,
                    interactive_minutes=record.interactive_minutes,
                    management_minutes=record.management_minutes,
                )
            )
    for record, clash_key in work.overlapping:
        clash = work.ledger[clash_key]
        reason = (
            f"period overlaps the exported period {clash_key[3].isoformat()}.."
            f"{clash.period_end.isoformat()}"
        )
        corrections.append(_correction(record, clash, "review", "", reason))
        for ln in record.billable_lines():
            price = unit_charge(billing, ln.code) or Decimal("0.00")
            writes.append(_write(ln, 0, "correction", clash.claim_id, price * ln.units))
    return ExportPlan(tuple(claims), tuple(corrections), tuple(writes), tuple(held))


def describe(lines: Sequence[tuple[str, int, date]]) -> str:
    return ";".join(f"{code}x{units}@{dos.isoformat()}" for code, units, dos in lines)


def _correction(
    record: FinalRecord, state: LedgerState, action: str, replacement_id: str, reason: str = ""
) -> Correction:
    return Correction(
        patient_id=record.patient_id,
        program=record.program,
        record_kind=record.kind,
        period_start=record.period_start,
        period_end=record.period_end,
        rule_set=record.rule_set,
        original_claim_id=state.claim_id,
        billed_lines=describe(state.lines),
        corrected_lines=describe(signature(record.billed_lines)),
        action=action,
        replacement_claim_id=replacement_id,
        reason=reason or change_reason(record, state),
    )


def change_reason(record: FinalRecord, state: LedgerState) -> str:
    """What changed since the export, in the biller's words.

    E.g. "12 → 16 days with data; billed 99445, now 99454",
    "38.00 → 41.00 minutes; billed 99457, now 99457 + 99458",
    "no longer billable: 18 minutes, no interactive communication this month".
    """
    if record.status != "billable":
        return f"no longer billable: {record.reason}" if record.reason else "no longer billable"
    parts = []
    if record.kind == MANAGEMENT_KIND:
        if record.management_minutes != state.management_minutes:
            parts.append(
                f"{state.management_minutes:.2f} → {record.management_minutes:.2f} minutes"
            )
    elif record.transmission_days != state.transmission_days:
        parts.append(f"{state.transmission_days} → {record.transmission_days} days with data")
    now = signature(record.billed_lines)
    billed_codes, now_codes = _codes(state.lines), _codes(now)
    if billed_codes != now_codes:
        parts.append(f"billed {billed_codes or 'nothing'}, now {now_codes or 'nothing'}")
    billed_dates, now_dates = _dates(state.lines), _dates(now)
    if billed_dates and now_dates and billed_dates != now_dates:
        parts.append(f"date of service {billed_dates} → {now_dates}")
    return "; ".join(parts) or "lines changed after export"


def _codes(lines: LineSig) -> str:
    return " + ".join(code if units == 1 else f"{code} x{units}" for code, units, _dos in lines)


def _dates(lines: LineSig) -> str:
    return ", ".join(sorted({dos.isoformat() for _code, _units, dos in lines}))


def _write(
    line: BillableLine, revision: int, kind: str, claim_id: str, charge: Decimal
) -> LedgerWrite:
    return LedgerWrite(
        patient_id=line.patient_id,
        program=line.program,
        record_kind=line.record_kind,
        period_start=line.period_start,
        period_end=line.period_end,
        revision=revision,
        line_kind=kind,
        code=line.code,
        units=line.units,
        charge=charge,
        date_of_service=line.date_of_service,
        claim_id=claim_id,
        transmission_days=line.transmission_days,
        interactive_minutes=line.interactive_minutes,
        management_minutes=line.management_minutes,
    )
