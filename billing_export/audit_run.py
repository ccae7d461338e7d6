"""The documentation audit over an export's lines (reads the registry and readings).

Used before export (lines missing documentation are held, never billed) and by
``rpmpipe audit`` (the readiness report, nothing exported).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from pathlib import Path

from sqlalchemy import Engine

from rpmpipe.billing_export.audit import (
    AuditedLine,
    Finding,
    default_rules,
    line_findings,
    payer_requirements,
    requirements_for,
)
from rpmpipe.billing_export.claims import BillableLine, PatientInfo
from rpmpipe.billing_export.evidence import RecordFacts, RecordKey
from rpmpipe.billing_export.evidence_load import RunFacts, collect_run_facts
from rpmpipe.billing_export.holds import Held, HoldReason
from rpmpipe.billing_export.ledger import load_final_records, load_ledger, load_patients
from rpmpipe.billing_export.plan import Work, select_work
from rpmpipe.errors import ConfigError
from rpmpipe.progress import SILENT, Progress, tracked
from rpmpipe.settings import BillingSettings, ExportSettings


@dataclass(frozen=True, slots=True)
class LineAudit:
    line: BillableLine
    findings: tuple[Finding, ...]

    @property
    def ready(self) -> bool:
        return not self.findings


def payer_profiles(billing: BillingSettings) -> dict[str, tuple[str, ...]]:
    """Each configured payer's extra audit requirements."""
    out = {}
    for payer_id, payer in billing.payers.items():
        try:
            out[payer_id] = payer_requirements(payer.audit_requires)
        except ValueError as exc:
            raise ConfigError(
                f"setting 'billing.payers.{payer_id}.audit_requires': {exc}"
            ) from None
    return out


def audit_lines(
    engine: Engine,
    readings_dir: Path,
    lines: Sequence[BillableLine],
    patients: Mapping[str, PatientInfo],
    billing: BillingSettings,
    facts: Mapping[RecordKey, RecordFacts] | None = None,
    progress: Progress = SILENT,
) -> list[LineAudit]:
    """Audit every line against its program's rules and its payer's profile.

    ``facts`` are the lines' facts when the caller already collected them (the export keeps
    them for the evidence of the run); else they are read here. ``progress`` hears each line
    audited.
    """
    profiles = payer_profiles(billing)
    if facts is None:
        facts = line_facts(engine, readings_dir, lines).records
    rules = default_rules()
    none_found = RecordFacts((), (), None)
    # What a line needs depends on its program, code and payer only: found once for each.
    needs: dict[tuple[str, str, tuple[str, ...]], tuple[str, ...]] = {}
    out = []
    for ln in tracked(lines, progress):
        record, service = ln.record, ln.line  # read once: the properties cost a call each
        patient = patients.get(record.patient_id)
        extra = profiles.get(patient.payer_id, ()) if patient else ()
        audited = AuditedLine(
            record.patient_id,
            record.program,
            record.kind,
            service.code,
            record.period_start,
            record.period_end,
            service.date_of_service,
        )
        what = (record.program, service.code, extra)
        needed = needs.get(what)
        if needed is None:
            needed = needs[what] = requirements_for(audited, rules, extra)
        found = facts.get(record.key, none_found)
        out.append(LineAudit(ln, tuple(line_findings(audited, found, needed))))
    return out


def line_facts(engine: Engine, readings_dir: Path, lines: Sequence[BillableLine]) -> RunFacts:
    """The facts behind the records of ``lines``, read once from the registry and readings."""
    keys = {ln.record_key: ln.period_end for ln in lines}
    return collect_run_facts(engine, readings_dir, keys.items())


def hold_undocumented(work: Work, audits: Sequence[LineAudit]) -> Work:
    """The work with every record that has an undocumented line held whole, by its reason."""
    failing: dict[RecordKey, tuple[Finding, int]] = {}
    counts: dict[RecordKey, int] = {}
    for a in audits:
        key = a.line.record_key
        counts[key] = counts.get(key, 0) + 1
        if a.findings and key not in failing:
            failing[key] = (a.findings[0], 0)
    if not failing:
        return work
    held = [
        Held(key[0], key[2], key[3], HoldReason(finding.reason), counts[key])
        for key, (finding, _n) in failing.items()
    ]
    kept = tuple(ln for ln in work.originals if ln.record_key not in failing)
    return dataclasses.replace(work, originals=kept, held=(*work.held, *held))


@dataclass(frozen=True, slots=True)
class Readiness:
    """What an export as of a date would bill, and what it would hold and why."""

    as_of: date
    audits: tuple[LineAudit, ...]  # every line the export would try to bill
    other_held: tuple[Held, ...]  # held before the audit (settings, incomplete patients)

    @property
    def ready(self) -> tuple[LineAudit, ...]:
        return tuple(a for a in self.audits if a.ready)

    @property
    def held(self) -> tuple[LineAudit, ...]:
        return tuple(a for a in self.audits if not a.ready)


def readiness(settings: ExportSettings, engine: Engine, as_of: date) -> Readiness:
    """The documentation audit of every line not yet exported as of ``as_of`` (reads only)."""
    with engine.connect() as conn:
        records = load_final_records(conn, as_of)
        ledger = load_ledger(conn)
        patients = load_patients(conn, {r.patient_id for r in records})
    work = select_work(records, ledger, patients, settings.billing, as_of=as_of)
    audits = audit_lines(
        engine, settings.store.readings_dir, work.originals, patients, settings.billing
    )
    return Readiness(as_of, tuple(audits), work.held)


class LineReadiness(StrEnum):
    """A line's ``status`` in the readiness report."""

    READY = "ready"  # documented: the next export bills it
    HELD = "held"  # held back, with the reasons


READINESS_COLUMNS = (
    "patient_id",
    "program",
    "record_kind",
    "code",
    "units",
    "period_start",
    "period_end",
    "date_of_service",
    "status",
    "reasons",
)


def readiness_rows(report: Readiness) -> list[dict[str, str]]:
    rows = []
    for a in report.audits:
        ln = a.line
        rows.append(
            {
                "patient_id": ln.patient_id,
                "program": ln.program,
                "record_kind": ln.record_kind,
                "code": ln.code,
                "units": str(ln.units),
                "period_start": ln.period_start.isoformat(),
                "period_end": ln.period_end.isoformat(),
                "date_of_service": ln.date_of_service.isoformat(),
                "status": LineReadiness.READY if a.ready else LineReadiness.HELD,
                "reasons": "; ".join(f.reason for f in a.findings),
            }
        )
    for h in report.other_held:
        rows.append(
            {
                "patient_id": h.patient_id,
                "program": "",
                "record_kind": h.record_kind,
                "code": "",
                "units": str(h.lines),
                "period_start": h.period_start.isoformat(),
                "period_end": "",
                "date_of_service": "",
                "status": LineReadiness.HELD,
                "reasons": h.reason,
            }
        )
    return rows


def readiness_table(report: Readiness, max_ids: int = 10) -> str:
    """The readiness report for people: lines ready, lines held by reason, the patients."""
    lines: dict[str, int] = {}
    patients: dict[str, set[str]] = {}
    # Group by the requirement and code, not the month: one line per kind of gap. Each
    # reason's set grows in place (a copy per held line made a fleet-wide gap quadratic).
    for reason, n, pid in (
        *((a.findings[0].reason, 1, a.line.patient_id) for a in report.held),
        *((h.reason, h.lines, h.patient_id) for h in report.other_held),
    ):
        lines[reason] = lines.get(reason, 0) + n
        patients.setdefault(reason, set()).add(pid)
    held = {reason: (count, patients[reason]) for reason, count in lines.items()}
    total_held = sum(lines.values())
    ready_patients = len({a.line.patient_id for a in report.ready})
    out = [
        f"documentation audit as of {report.as_of.isoformat()}",
        f"lines ready: {len(report.ready)} ({ready_patients} patients)",
        f"lines held:  {total_held}",
    ]
    for reason, (count, ids) in sorted(held.items(), key=lambda kv: (-kv[1][0], kv[0])):
        shown = sorted(ids)
        more = f", +{len(shown) - max_ids} more" if len(shown) > max_ids else ""
        out.append(f"  {reason} ({count}); patients {', '.join(shown[:max_ids])}{more}")
    return "\n".join(out)
