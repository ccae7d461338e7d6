"""What an export run must do, decided from plain values (pure: no I/O).

Inputs are the final engagement records, the ledger's latest state of every exported
record, the patients and their episodes. Out come: new lines to bill, changes to already
exported records (corrections, and replacement or void claims where the payer takes them),
exported records whose period no longer exists (void corrections), and lines held back with a
reason (they are not recorded, so a later run picks them up once the registry is fixed).
A service is never billed twice: a new record that repeats an exported one (an overlapping
period after late data moved the series, a second 99453 in an episode) is a correction for
review, never a claim.

The ledger keeps one row per line per *revision* of a record: revision 0 is the original
claim; a change writes revision n+1 with ``line_kind`` ``replacement`` (a frequency-7 claim
was sent), ``correction`` (reported to the billing team, not billed), ``void`` (the record
is no longer billable or no longer exists; a single row with code ``-`` stands for "no
lines") or ``void_claim`` (a frequency-8 claim repeated the original lines to cancel them:
the record has no lines). Frequency-7/8 claims go out only for payers whose policy allows
them (``PayerSettings.sends_replacements``) and only with the payer's claim control number of
the original claim (REF*F8, from its remittance); otherwise the change is a correction for
review.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import date
from decimal import Decimal
from typing import Any

from rpmpipe.billing_export.charge_csv import Correction, CorrectionAction
from rpmpipe.billing_export.claims import (
    BillableLine,
    Claim,
    ClaimDraft,
    PatientInfo,
    Receiver,
    billable_lines,
    draft_claims,
    price_claims,
    receiver_for,
    unit_charge,
)
from rpmpipe.billing_export.holds import Held, HoldReason, hold_reason
from rpmpipe.records import (
    EngagementRecord,
    FinalRecord,
    LineKind,
    LineSig,
    RecordKey,
    RecordKind,
    RecordStatus,
    ServiceLine,
    billed_text,
)
from rpmpipe.settings import BillingSettings

EMPTY_MARKER = "-"
CENT = Decimal("0.01")
VOID_CLAIM = LineKind.VOID_CLAIM  # rows of a frequency-8 claim: sent, and the record has no lines
MANAGEMENT_KIND = RecordKind.TREATMENT_MANAGEMENT  # counted in minutes; the other kinds in days
SETUP_KIND = RecordKind.SETUP
VANISHED_REASON = (
    "the period no longer exists: no engagement record is computed for it any more (a device "
    "assignment, consent or enrollment changed after the export); the billed lines need a void"
)


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
    # The payer's claim control number of ``claim_id`` (from its remittance), if known.
    payer_claim_control_number: str = ""
    episode_start: date | None = None  # the episode the exported record belonged to


@dataclass(frozen=True, slots=True)
class LedgerWrite:
    """One row to add to ``export_ledger`` once the run's files are safely on disk (read
    back, with the run's own columns, as a :class:`~rpmpipe.billing_export.totals.LedgerLine`)."""

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
    # The counts behind the line (what a later correction compares against).
    transmission_days: int = 0
    interactive_minutes: Decimal = Decimal("0.00")
    management_minutes: Decimal = Decimal("0.00")
    line_control_number: str = ""  # REF*6R of a line sent on a claim; "" for reported rows
    episode_start: date | None = None

    @property
    def key(self) -> RecordKey:
        return (self.patient_id, self.program, self.record_kind, self.period_start)


@dataclass(frozen=True, slots=True)
class Overlap:
    """A new record that must not be billed: it repeats a service already in the ledger."""

    record: FinalRecord
    exported: RecordKey  # the exported record it repeats
    reason: str


@dataclass(frozen=True, slots=True)
class Work:
    originals: tuple[BillableLine, ...]
    changed: tuple[FinalRecord, ...]
    held: tuple[Held, ...]
    records: Mapping[RecordKey, FinalRecord] = field(default_factory=dict)
    ledger: Mapping[RecordKey, LedgerState] = field(default_factory=dict)
    # New records whose period overlaps an exported one of the same kind (e.g. a late first
    # reading moved the rolling periods), or a second setup of an episode whose setup was
    # exported: reported as corrections for review, never billed again.
    overlapping: tuple[Overlap, ...] = ()
    # Exported records whose period no longer exists (a device assignment corrected after the
    # fact, consent removed): each gets a void correction.
    vanished: tuple[RecordKey, ...] = ()

    @property
    def is_empty(self) -> bool:
        return (
            not self.originals and not self.changed and not self.overlapping and not self.vanished
        )


@dataclass(frozen=True, slots=True)
class ExportPlan:
    claims: tuple[Claim, ...]
    corrections: tuple[Correction, ...]
    ledger: tuple[LedgerWrite, ...]
    held: tuple[Held, ...]


def final_record(record: EngagementRecord, rendering_npi: str) -> FinalRecord:
    """``record`` as the export reads it, its lines going out under ``rendering_npi``."""
    values = {f.name: getattr(record, f.name) for f in fields(EngagementRecord)}
    values["lines"] = signature(record.lines)
    values["interactive_minutes"] = record.interactive_minutes.quantize(CENT)
    values["management_minutes"] = record.management_minutes.quantize(CENT)
    return FinalRecord(**values, rendering_npi=rendering_npi)


def signature(lines: Iterable[tuple[str, int, date]]) -> LineSig:
    """``(code, units, date_of_service)`` lines as service lines, sorted: equal when the
    same services are billed."""
    return tuple(sorted(ServiceLine(*ln) for ln in lines))


def select_work(
    records: Iterable[FinalRecord],
    ledger: Mapping[RecordKey, LedgerState],
    patients: Mapping[str, PatientInfo],
    billing: BillingSettings,
    *,
    as_of: date,
) -> Work:
    """New lines to bill, exported records that changed or vanished, and lines held back.

    ``records`` are all final records as of ``as_of`` (periods ended before it).
    """
    originals: list[BillableLine] = []
    changed: list[FinalRecord] = []
    held: list[Held] = []
    overlapping: list[Overlap] = []
    by_key: dict[RecordKey, FinalRecord] = {}
    exported: dict[tuple[str, str, str], list[RecordKey]] = {}
    for key, exported_state in ledger.items():
        if exported_state.lines:
            exported.setdefault(key[:3], []).append(key)
    repeated: set[RecordKey] = set()
    for record in records:
        by_key[record.key] = record
        state = ledger.get(record.key)
        if state is None and record.billed_lines:
            overlap = _overlap(record, exported.get(record.key[:3], []), ledger)
            if overlap is not None:
                overlapping.append(overlap)
                repeated.add(overlap.exported)
                continue
        if state is None:
            lines = billable_lines(record)
            hold = _hold(record, lines, patients, billing)
            if hold is not None:
                held.append(hold)
            else:
                originals.extend(lines)
        elif signature(record.billed_lines) != state.lines:
            changed.append(record)
    vanished = tuple(
        sorted(
            key
            for key, state in ledger.items()
            if state.lines
            and state.period_end < as_of
            and key not in by_key
            and key not in repeated
        )
    )
    return Work(
        tuple(originals),
        tuple(changed),
        tuple(held),
        by_key,
        dict(ledger),
        tuple(overlapping),
        vanished,
    )


def _overlap(
    record: FinalRecord, same_kind: Sequence[RecordKey], ledger: Mapping[RecordKey, LedgerState]
) -> Overlap | None:
    clash = [
        key
        for key in same_kind
        if key[3] <= record.period_end and ledger[key].period_end >= record.period_start
    ]
    if clash:
        key = min(clash)
        reason = (
            f"period overlaps the exported period {key[3].isoformat()}.."
            f"{ledger[key].period_end.isoformat()}"
        )
        return Overlap(record, key, reason)
    if record.kind != SETUP_KIND:
        return None
    # 99453 once per episode: a setup already in the ledger is never billed again, wherever
    # late data moved the episode's first qualifying period. A setup exported without its
    # episode on file counts as the same episode (a person reviews rather than bill twice).
    same = [
        key
        for key in same_kind
        if ledger[key].episode_start is None or ledger[key].episode_start == record.episode_start
    ]
    if not same:
        return None
    key = min(same)
    codes = billed_text(ledger[key].lines)
    return Overlap(
        record,
        key,
        f"{codes} was already billed for this episode (period {key[3].isoformat()}.."
        f"{ledger[key].period_end.isoformat()}); setup is billed once per episode",
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


@dataclass(frozen=True, slots=True)
class PlanDraft:
    """The claims of a run before they are numbered, and the changes it reports: what
    :func:`price_plan` turns into the plan once the ledger has issued the claim numbers."""

    work: Work
    drafts: tuple[ClaimDraft, ...]  # in claim order: the top-level receiver's first
    # (record, line_kind, note) for correction rows; the note says why no claim was sent
    changes: tuple[tuple[FinalRecord, LineKind, str], ...]
    replacement_members: Mapping[int, Sequence[RecordKey]]  # draft index -> records on it
    held: tuple[Held, ...]

    @property
    def is_empty(self) -> bool:
        """Nothing to write: no claim and no correction (the records may all be held)."""
        return not (self.drafts or self.changes or self.work.overlapping or self.work.vanished)

    def receivers(
        self, patients: Mapping[str, PatientInfo], billing: BillingSettings
    ) -> list[tuple[Receiver, int]]:
        """Each receiver of the claims, in claim order, with its number of claims."""
        counts: dict[Receiver, int] = {}
        for d in self.drafts:
            receiver = receiver_for(patients[d.patient_id].payer_id, billing)
            counts[receiver] = counts.get(receiver, 0) + 1
        return list(counts.items())


def build_plan(
    work: Work,
    patients: Mapping[str, PatientInfo],
    billing: BillingSettings,
    first_claim_number: int,
) -> ExportPlan:
    """Claims, corrections and ledger rows for the work; claim ids from ``first_claim_number``."""
    return price_plan(draft_plan(work, patients, billing), patients, billing, first_claim_number)


def draft_plan(
    work: Work, patients: Mapping[str, PatientInfo], billing: BillingSettings
) -> PlanDraft:
    """The run's claims grouped and ordered, and its changes decided, before numbering."""
    drafts = draft_claims(work.originals)
    # (record, line_kind, note) for correction rows; the note says why no claim was sent
    changes: list[tuple[FinalRecord, LineKind, str]] = []
    replaced: dict[str, list[RecordKey]] = {}
    held = list(work.held)

    for record in sorted(work.changed, key=lambda r: r.key):
        state = work.ledger[record.key]
        new_lines = billable_lines(record)
        hold = _hold(record, new_lines, patients, billing)
        if hold is not None:
            held.append(hold)
            continue
        change = LineKind.CORRECTION if new_lines else LineKind.VOID
        if state.lines and _sends_replacements(patients.get(record.patient_id), billing):
            if state.payer_claim_control_number:
                replaced.setdefault(state.claim_id, []).append(record.key)
                continue
            # REF*F8 must be the payer's number: without its remittance, a person reviews.
            note = (
                f"no payer claim control number on file for claim {state.claim_id} "
                "(from its remittance), needed for a frequency-7/8 claim"
            )
            changes.append((record, change, note))
        else:
            changes.append((record, change, ""))

    # A replacement claim replaces the whole original claim: it carries the current lines of
    # every record that was on it, changed or not, and each of them moves to a new revision.
    # When none of them has a line left, a void claim (frequency 8) repeats the original lines.
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
                lines.extend(billable_lines(member))
        frequency = "7"
        if not lines:
            frequency = "8"
            for key in members:
                lines.extend(_exported_lines(key, work.ledger[key], work.records.get(key)))
        first = lines[0]
        replacement_members[len(drafts)] = members
        drafts.append(
            ClaimDraft(
                patient_id=first.patient_id,
                date_of_service=min(ln.date_of_service for ln in lines),
                rendering_npi=first.rendering_npi,
                lines=tuple(sorted(lines, key=lambda ln: (ln.date_of_service, ln.code))),
                frequency=frequency,
                original_claim_id=original_id,
                payer_claim_control_number=work.ledger[members[0]].payer_claim_control_number,
            )
        )

    # One interchange per receiver: claims of one receiver get consecutive ids, the top-level
    # receiver's first (a stable sort keeps the order within each).
    drafts.sort(key=lambda d: _receiver_rank(patients.get(d.patient_id), billing))
    return PlanDraft(work, tuple(drafts), tuple(changes), replacement_members, tuple(held))


# What the ledger calls a line of a claim of each frequency (CLM05-3).
_CLAIM_LINE_KIND = {"1": LineKind.ORIGINAL, "7": LineKind.REPLACEMENT, "8": VOID_CLAIM}


def price_plan(
    draft: PlanDraft,
    patients: Mapping[str, PatientInfo],
    billing: BillingSettings,
    first_claim_number: int,
) -> ExportPlan:
    """The plan of ``draft``: claim ids from ``first_claim_number``, charges, ledger rows."""
    work, replacement_members = draft.work, draft.replacement_members
    corrections: list[Correction] = []
    claims = (
        price_claims(draft.drafts, patients, billing, first_claim_number) if draft.drafts else []
    )
    writes: list[LedgerWrite] = []
    for index, claim in enumerate(claims):
        on_claim = replacement_members.get(index)
        kind = _CLAIM_LINE_KIND[claim.frequency]
        for cl in claim.lines:
            ln = cl.line
            prior = work.ledger.get(ln.record_key) if on_claim is not None else None
            revision = 0 if prior is None else prior.revision + 1
            writes.append(
                _write(ln, revision, kind, claim.claim_id, cl.charge, cl.line_control_number)
            )
        for key in on_claim or []:
            member = work.records.get(key)
            prior = work.ledger[key]
            if member is None or signature(member.billed_lines) == prior.lines:
                continue  # an unchanged neighbour on the replaced claim: no correction to report
            action = (
                CorrectionAction.VOID_CLAIM
                if claim.frequency == "8"
                else CorrectionAction.REPLACEMENT_CLAIM
            )
            corrections.append(_correction(member, prior, action, claim.claim_id))
    for record, change, note in draft.changes:
        state = work.ledger[record.key]
        reason = change_reason(record, state) + (f"; {note}" if note else "")
        corrections.append(
            _correction(
                record,
                state,
                CorrectionAction.REVIEW if change == LineKind.CORRECTION else CorrectionAction.VOID,
                "",
                reason,
            )
        )
        lines = billable_lines(record)
        for ln in lines:
            price = unit_charge(billing, ln.code) or Decimal("0.00")
            writes.append(_write(ln, state.revision + 1, change, state.claim_id, price * ln.units))
        if not lines:
            writes.append(_marker(record, state, change))
    for overlap in work.overlapping:
        record, clash = overlap.record, work.ledger[overlap.exported]
        corrections.append(_correction(record, clash, CorrectionAction.REVIEW, "", overlap.reason))
        for ln in billable_lines(record):
            price = unit_charge(billing, ln.code) or Decimal("0.00")
            writes.append(_write(ln, 0, LineKind.CORRECTION, clash.claim_id, price * ln.units))
        if overlap.exported not in work.records:
            # The exported record itself is gone (its lines moved to the new one): it now
            # stands for "under review", so it is not reported again as vanished.
            writes.append(_marker(_gone(overlap.exported, clash), clash, LineKind.CORRECTION))
    for key in work.vanished:
        state = work.ledger[key]
        gone = _gone(key, state)
        corrections.append(_correction(gone, state, CorrectionAction.VOID, "", VANISHED_REASON))
        writes.append(_marker(gone, state, LineKind.VOID))
    return ExportPlan(tuple(claims), tuple(corrections), tuple(writes), draft.held)


def _remembered(key: RecordKey, state: LedgerState, **values: Any) -> FinalRecord:
    """The record of ``key`` as the ledger remembers it (its period), with ``values``."""
    patient_id, program, kind, period_start = key
    return FinalRecord(
        patient_id=patient_id,
        program=program,
        kind=kind,
        period_start=period_start,
        period_end=state.period_end,
        **values,
    )


def _gone(key: RecordKey, state: LedgerState) -> FinalRecord:
    """An exported record whose period is no longer computed, as the ledger remembers it."""
    return _remembered(
        key,
        state,
        status=RecordStatus.NOT_BILLABLE,
        rule_set="",
        reason=VANISHED_REASON,
        interactive_minutes=Decimal("0.00"),
        management_minutes=Decimal("0.00"),
    )


def _marker(record: FinalRecord, state: LedgerState, change: str) -> LedgerWrite:
    """The "-" row that stands for "no lines" in a record's new revision."""
    return LedgerWrite(
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
        episode_start=record.episode_start,
    )


def describe(lines: Sequence[ServiceLine]) -> str:
    return ";".join(map(str, lines))


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
    if record.status != RecordStatus.BILLABLE:
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
    billed_codes, now_codes = billed_text(state.lines), billed_text(now)
    if billed_codes != now_codes:
        parts.append(f"billed {billed_codes or 'nothing'}, now {now_codes or 'nothing'}")
    billed_dates, now_dates = _dates(state.lines), _dates(now)
    if billed_dates and now_dates and billed_dates != now_dates:
        parts.append(f"date of service {billed_dates} → {now_dates}")
    return "; ".join(parts) or "lines changed after export"


def _dates(lines: LineSig) -> str:
    return ", ".join(sorted({dos.isoformat() for _code, _units, dos in lines}))


def _receiver_rank(patient: PatientInfo | None, billing: BillingSettings) -> tuple[int, str]:
    receiver = receiver_for(patient.payer_id, billing) if patient is not None else None
    if receiver is None or receiver.receiver_id == billing.receiver_id:
        return (0, "")
    return (1, receiver.receiver_id)


def _sends_replacements(patient: PatientInfo | None, billing: BillingSettings) -> bool:
    payer = billing.payers.get(patient.payer_id) if patient is not None else None
    return payer is not None and payer.sends_replacements(billing.replacement_claims)


def _exported_lines(
    key: RecordKey, state: LedgerState, record: FinalRecord | None
) -> list[BillableLine]:
    """The lines the ledger holds for a record, as a void claim repeats them: the record as
    it was exported (the ledger's counts, the current record's rule set and NPI)."""
    exported = _remembered(
        key,
        state,
        status=RecordStatus.BILLABLE,
        reason="",
        rule_set=record.rule_set if record is not None else "",
        transmission_days=state.transmission_days,
        interactive_minutes=state.interactive_minutes,
        management_minutes=state.management_minutes,
        lines=state.lines,
        rendering_npi=record.rendering_npi if record is not None else "",
    )
    return billable_lines(exported)


def _write(
    line: BillableLine,
    revision: int,
    kind: str,
    claim_id: str,
    charge: Decimal,
    line_control_number: str = "",
) -> LedgerWrite:
    # The record and the service read once (a run writes a row per line it bills).
    record, service = line.record, line.line
    return LedgerWrite(
        patient_id=record.patient_id,
        program=record.program,
        record_kind=record.kind,
        period_start=record.period_start,
        period_end=record.period_end,
        revision=revision,
        line_kind=kind,
        code=service.code,
        units=service.units,
        charge=charge,
        date_of_service=service.date_of_service,
        claim_id=claim_id,
        transmission_days=record.transmission_days,
        interactive_minutes=record.interactive_minutes,
        management_minutes=record.management_minutes,
        line_control_number=line_control_number,
        episode_start=record.episode_start,
    )
