"""The demo's summary table, as plain text."""

from __future__ import annotations

from rpmpipe.app.demo import DemoSummary

CODE_NAMES = {
    "99453": "setup and education",
    "99454": "device supply, 16-30 days",
    "99445": "device supply, 2-15 days",
    "99457": "management, first 20 min",
    "99458": "management, each further 20 min",
    "99470": "management, 10-19 min",
}


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
    add(f"  management minutes        {s.management_minutes:>8}   (all care time, all months)")
    add(f"  interactive minutes       {s.interactive_minutes:>8}   (real-time two-way, all months)")
    add("")
    add("  records by kind           billable  pending  not billable")
    for kind, counts in s.status_by_kind.items():
        add(
            f"  {kind:<24}  {counts.get('billable', 0):>8} {counts.get('pending', 0):>8} "
            f"{counts.get('not_billable', 0):>13}"
        )
    add("")
    add("  billable units per code")
    for code, units in s.lines_by_code.items():
        add(f"  {code}  {CODE_NAMES.get(code, ''):<32} {units:>6}")
    if not s.lines_by_code:
        add("  (none)")
    add("")
    add("  patient      profile             days  management  interactive  codes")
    for p in s.per_patient:
        add(
            f"  {p.patient_id:<12} {p.profile:<18} {p.transmission_days:>5} "
            f"{p.management_minutes:>10}  {p.interactive_minutes:>11}  {p.codes}"
        )
    add("")
    if s.export_dir is not None:
        add(
            f"  export: {s.claims} claims, {s.exported_lines} lines, total charge ${s.total_charge}"
        )
        add(f"          {s.export_dir}/charges.csv")
        add(f"          {s.export_dir}/claims.837")
        add(f"          {s.export_dir}/manifest.json")
    else:
        add("  export: nothing billable to export")
    add(f"  readings: {s.out}/data/readings/   quarantine: {s.out}/data/quarantine/")
    return "\n".join(out)
