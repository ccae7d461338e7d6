"""The demo's summary table, as plain text."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from rpmpipe.app.demo import DemoSummary, FinalPeriod
from rpmpipe.records import RecordStatus

CODE_NAMES = {
    "99453": "setup and education",
    "99454": "device supply, 16-30 days",
    "99445": "device supply, 2-15 days",
    "99457": "management, first 20 min",
    "99458": "management, each further 20 min",
    "99470": "management, 10-19 min",
    "99091": "RPM data interpretation, 30 min",
    "99490": "CCM, first 20 staff min",
    "99439": "CCM, each further 20 min",
    "99491": "CCM, first 30 physician min",
    "99437": "CCM, each further 30 physician",
    "99487": "complex CCM, first 60 min",
    "99489": "complex CCM, each further 30 min",
    "99424": "PCM, first 30 physician min",
    "99425": "PCM, each further 30 physician",
    "99426": "PCM, first 30 staff min",
    "99427": "PCM, each further 30 staff min",
    "99484": "BHI, 20 min",
    "G0556": "APCM, 0-1 chronic conditions",
    "G0557": "APCM, 2+ chronic conditions",
    "G0558": "APCM, 2+ conditions, QMB",
}


def minutes_text(minutes: Decimal) -> str:
    """Minutes the same way everywhere in the summary: one decimal place."""
    return f"{minutes:.1f}"


def _status(period: FinalPeriod) -> str:
    return period.status.replace("_", " ")


def _codes_width(periods: Iterable[FinalPeriod | None]) -> int:
    """The codes column: as wide as its longest cell (``99457 + 2x 99458``), at least 13."""
    return max([13, *(len(p.codes) for p in periods if p is not None)])


def render_summary(s: DemoSummary) -> str:
    out: list[str] = []
    add = out.append
    add("")
    add(f"rpmpipe demo: engagement as of {s.as_of} ({s.seconds:.1f}s)")
    add("")
    add(f"  patients                  {s.patients:>8}")
    add(f"  devices                   {s.devices:>8}")
    add(f"  MQTT messages published   {s.messages:>8}")
    add(f"  readings stored           {s.readings_stored:>8}")
    add(f"  duplicates dropped        {s.duplicates:>8}")
    quarantined = sum(s.quarantined.values())
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(s.quarantined.items()))
    add(f"  quarantined               {quarantined:>8}" + (f"   ({reasons})" if reasons else ""))
    add(f"  care activities           {s.activities:>8}")
    add(f"  days with data            {s.transmission_days:>8}   (all supply periods)")
    add(
        f"  management minutes        {minutes_text(s.management_minutes):>8}   "
        "(all care time, all months)"
    )
    add(
        f"  interactive minutes       {minutes_text(s.interactive_minutes):>8}   "
        "(real-time two-way, all months)"
    )
    add("")
    add("  records by kind           billable  pending  not billable")
    for kind, counts in s.status_by_kind.items():
        add(
            f"  {kind:<24}  {counts.get(RecordStatus.BILLABLE, 0):>8} {counts.get(RecordStatus.PENDING, 0):>8} "
            f"{counts.get(RecordStatus.NOT_BILLABLE, 0):>13}"
        )
    add("")
    add("  billable units per code")
    for code, units in s.lines_by_code.items():
        add(f"  {code}  {CODE_NAMES.get(code, ''):<32} {units:>6}")
    if not s.lines_by_code:
        add("  (none)")
    add("")
    add(f"  last final 30-day period per patient (device supply, ended before {s.as_of})")
    width = _codes_width(p.supply for p in s.per_patient)
    add(f"  patient      period                    days  {'codes':<{width}} status        reason")
    for p in s.per_patient:
        if p.supply is None:
            add(f"  {p.patient_id:<12} (no final period yet)")
            continue
        q = p.supply
        add(
            f"  {p.patient_id:<12} {q.start} to {q.end} {q.transmission_days:>5}  "
            f"{q.codes:<{width}} {_status(q):<13} {q.reason}"
        )
    add("")
    add(f"  last final month per patient (treatment management, ended before {s.as_of})")
    width = _codes_width(p.month for p in s.per_patient)
    add(f"  patient      month    management  interactive  {'codes':<{width}} status        reason")
    for p in s.per_patient:
        if p.month is None:
            add(f"  {p.patient_id:<12} (no final month yet)")
            continue
        m = p.month
        add(
            f"  {p.patient_id:<12} {m.start:%Y-%m} {minutes_text(m.management_minutes):>12} "
            f"{minutes_text(m.interactive_minutes):>12}  {m.codes:<{width}} {_status(m):<13} {m.reason}"
        )
    add("")
    if s.export_dir is not None:
        add(
            f"  export: {s.claims} claims, {s.exported_lines} lines, total charge ${s.total_charge}"
        )
        add(f"          {s.export_dir}/charges.csv")
        add(f"          {s.export_dir}/claims.837")
        add(f"          {s.export_dir}/manifest.json")
        add(f"          {s.export_dir}/evidence.parquet")
    if s.appeal_packet is not None:
        add(f"  appeal packet (a demo claim as if denied CO-16/N29): {s.appeal_packet}")
    else:
        add("  export: nothing billable to export")
    add(f"  readings: {s.out}/data/readings/   quarantine: {s.out}/data/quarantine/")
    if s.report_index is not None:
        add(f"  report (holds PHI; open in a browser): {s.report_index}")
    add("")
    add("  next, try:")
    data = f"{s.out}/data"
    example = next(
        (p.patient_id for p in s.per_patient if p.status == RecordStatus.BILLABLE),
        s.per_patient[0].patient_id if s.per_patient else "PATIENT",
    )
    add(f"    rpmpipe --data-dir {data} metrics --as-of {s.as_of} --patient {example}")
    add("        one patient's periods and months, with the days and activities behind them")
    add(f"    rpmpipe --data-dir {data} metrics --as-of {s.as_of}")
    add("        every engagement record with its status and reason (--format csv for a sheet)")
    add(f"    rpmpipe --data-dir {data} quarantine list")
    add("        what ingest kept aside, and why")
    if s.export_dir is not None:
        add(f"    ls {s.export_dir}")
        add("        the charge CSV, the 837P and the manifest the billing team picks up")
    if s.report_index is not None:
        add(f"    open {s.report_index}")
        add("        the at-risk worklist, month-end totals and a page per patient, in a browser")
    return "\n".join(out)
