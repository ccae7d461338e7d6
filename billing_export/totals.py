"""Month-end totals of what was billed, the status of every exported line, and what waits
for the billing team (pure: ledger lines and held records in, tables out).

A record's billed lines are those of its latest ``original`` or ``replacement`` revision:
a correction or void is reported for review, not billed, so it never adds to the totals
(and a replacement claim replaces, never adds to, the original).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from rpmpipe.billing_export.holds import Held, HoldReason, group_held
from rpmpipe.billing_export.plan import EMPTY_MARKER, VOID_CLAIM, LedgerWrite
from rpmpipe.records import BILLED_LINE_KINDS, REVIEW_LINE_KINDS, LineKind, RecordKey

BILLED_KINDS = BILLED_LINE_KINDS
CLAIM_KINDS = (*BILLED_KINDS, VOID_CLAIM)  # rows of a claim that was sent
REVIEW_KINDS = REVIEW_LINE_KINDS


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerLine(LedgerWrite):
    """One row of the export ledger, as the reports read it: the row the run wrote, with the
    run, when it was exported, the NPI its record's lines go out under and the payer's claim
    control number from the claim's remittance (if known)."""

    run_id: str
    exported_at: datetime
    rendering_npi: str = ""
    payer_claim_control_number: str = ""


@dataclass(frozen=True, slots=True)
class LineStatus:
    line: LedgerLine
    status: str  # what became of the line, in the biller's words


def line_statuses(lines: Iterable[LedgerLine]) -> list[LineStatus]:
    """Every ledger line with what became of it, in ledger order per record."""
    by_key: dict[RecordKey, list[LedgerLine]] = {}
    for ln in lines:
        by_key.setdefault(ln.key, []).append(ln)
    out: list[LineStatus] = []
    for entries in by_key.values():
        latest = max(e.revision for e in entries)
        latest_kind = next(e.line_kind for e in entries if e.revision == latest)
        billed_rev = max((e.revision for e in entries if e.line_kind in CLAIM_KINDS), default=-1)
        billed_kind = next((e.line_kind for e in entries if e.revision == billed_rev), "")
        for e in sorted(entries, key=lambda x: (x.revision, x.code)):
            out.append(LineStatus(e, _status(e, latest, latest_kind, billed_rev, billed_kind)))
    return out


def _status(
    line: LedgerLine, latest: int, latest_kind: str, billed_rev: int, billed_kind: str
) -> str:
    if line.line_kind == VOID_CLAIM:
        return "void claim sent (frequency 8): no longer billed"
    if line.line_kind == LineKind.CORRECTION:
        if line.revision == latest:
            return "correction reported, waiting for review"
        return "correction reported, superseded"
    if line.line_kind == LineKind.VOID:
        return "no longer billable: void reported, waiting for review"
    if line.revision < billed_rev:
        if billed_kind == VOID_CLAIM:
            return "voided by a void claim"
        return "replaced by a replacement claim"
    if latest > line.revision and latest_kind == LineKind.CORRECTION:
        return "billed; a correction waits for review"
    if latest > line.revision and latest_kind == LineKind.VOID:
        return "billed; no longer billable (void waits for review)"
    return "billed" if line.line_kind == LineKind.ORIGINAL else "billed (replacement claim)"


def billed_lines(lines: Iterable[LedgerLine]) -> list[LedgerLine]:
    """Each record's lines of its latest claim (original or replacement; a void claim leaves
    the record with none)."""
    best: dict[RecordKey, int] = {}
    sent = [ln for ln in lines if ln.line_kind in CLAIM_KINDS]
    for ln in sent:
        if ln.revision > best.get(ln.key, -1):
            best[ln.key] = ln.revision
    return [
        ln
        for ln in sent
        if ln.revision == best[ln.key] and ln.line_kind in BILLED_KINDS and ln.code != EMPTY_MARKER
    ]


@dataclass(frozen=True, slots=True)
class TotalRow:
    month: str  # YYYY-MM of the date of service
    group: str  # the value of the dimension (a code, program, NPI or payer)
    lines: int
    units: int
    charges: Decimal


@dataclass(frozen=True, slots=True)
class MonthTotals:
    """Billed lines, units and charges per month of service, by each dimension."""

    by_code: tuple[TotalRow, ...]
    by_program: tuple[TotalRow, ...]
    by_provider: tuple[TotalRow, ...]
    by_payer: tuple[TotalRow, ...]
    by_month: tuple[TotalRow, ...]  # group "all"


def month_totals(lines: Iterable[LedgerLine], payer_of: Mapping[str, str]) -> MonthTotals:
    """Totals of the billed lines (see :func:`billed_lines`), newest month first."""
    acc: list[dict[tuple[str, str], list[Any]]] = [{} for _ in range(5)]
    for ln in billed_lines(lines):
        month = f"{ln.date_of_service:%Y-%m}"
        groups = (
            ln.code,
            ln.program,
            ln.rendering_npi or "(billing provider)",
            payer_of.get(ln.patient_id, "(patient not in registry)"),
            "all",
        )
        for table, group in zip(acc, groups, strict=True):
            cell = table.get((month, group))
            if cell is None:
                table[(month, group)] = [1, ln.units, ln.charge]
            else:
                cell[0] += 1
                cell[1] += ln.units
                cell[2] += ln.charge
    code, program, provider, payer, every = (
        tuple(
            TotalRow(month, group, n, u, c)
            for (month, group), (n, u, c) in sorted(
                t.items(), key=lambda i: (_desc(i[0][0]), i[0][1])
            )
        )
        for t in acc
    )
    return MonthTotals(code, program, provider, payer, every)


def _desc(month: str) -> str:
    # Newest month first while sorting ascending: invert the digits.
    return "".join(chr(ord("9") - ord(c) + ord("0")) if c.isdigit() else c for c in month)


@dataclass(frozen=True, slots=True)
class HeldSummary:
    """Held records sharing one reason, and the setting that releases them (if one does)."""

    reason: str
    lines: int
    patients: int
    setting: str  # TOML to add, "" when the fix is in the registry
    held: tuple[Held, ...]


def held_summary(held: Iterable[Held]) -> list[HeldSummary]:
    """Held lines grouped by reason, most lines first, each with its fixing setting."""
    items = list(held)
    by_cause: dict[HoldReason, list[Held]] = {}
    for h in items:
        by_cause.setdefault(h.cause, []).append(h)
    return [
        HeldSummary(
            g.cause.text,
            g.lines,
            len(g.patient_ids),
            f"[{g.cause.setting_table}]\n{g.cause.setting_entry}" if g.cause.setting_table else "",
            tuple(by_cause[g.cause]),
        )
        for g in group_held(items)
    ]


@dataclass(frozen=True, slots=True)
class ReviewItem:
    """A change to an exported record the billing team has to look at."""

    patient_id: str
    record_kind: str
    period_start: date
    claim_id: str
    what: str  # e.g. "12 → 16 days with data; billed 99445, now 99454"
    where: str  # the run that reported it, or that the next export will


def reported_reviews(lines: Sequence[LedgerLine]) -> list[ReviewItem]:
    """Corrections and voids at the latest revision of their record (reported, unresolved)."""
    latest: dict[RecordKey, int] = {}
    for ln in lines:
        latest[ln.key] = max(latest.get(ln.key, -1), ln.revision)
    seen: set[RecordKey] = set()
    items = []
    for ln in lines:
        if ln.line_kind in REVIEW_KINDS and ln.revision == latest[ln.key] and ln.key not in seen:
            seen.add(ln.key)
            items.append(
                ReviewItem(
                    ln.patient_id,
                    ln.record_kind,
                    ln.period_start,
                    ln.claim_id,
                    "void: no longer billable" if ln.line_kind == LineKind.VOID else "correction",
                    f"reported in run {ln.run_id} (corrections.csv)",
                )
            )
    return sorted(items, key=lambda i: (i.patient_id, i.record_kind, i.period_start))
