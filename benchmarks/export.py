"""Benchmark: export the lines of N patients (default 100k) from a SQLite registry.

Builds a synthetic registry (patients, enrollments, final engagement records with a supply
line, management lines and a setup line) in a temp dir, then times one ``run_export`` and a
rerun (which must find nothing new). Prints JSON; the bar is < 60 s for 100k patients.

    .venv/bin/python benchmarks/export.py [--patients 100000] [--validate]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Engine, insert

from rpmpipe.billing_export.export import run_export
from rpmpipe.registry.db import open_registry
from rpmpipe.registry.models import EngagementRow, Enrollment, Patient
from rpmpipe.settings import load_settings

AS_OF = date(2026, 12, 1)
CLOCK = datetime(2026, 12, 1, 7, 30, tzinfo=UTC)  # Dec 1 in the default org zone too
NOV_START, NOV_END = date(2026, 11, 1), date(2026, 11, 30)


RENDERING_NPI = "1987654328"
# A made-up test clinic: rpmpipe has no built-in billing identity.
BILLING = {
    "billing.provider_name": "BENCHMARK CLINIC",
    "billing.provider_npi": "1234567893",
    "billing.provider_tin": "123456789",
    "billing.provider_address1": "100 MAIN ST",
    "billing.provider_city": "SPRINGFIELD",
    "billing.provider_state": "IL",
    "billing.provider_zip": "627010001",
    "billing.contact_name": "BILLING OFFICE",
    "billing.contact_phone": "2175550100",
    "billing.submitter_id": "BENCHMARK",
    "billing.submitter_name": "BENCHMARK CLINIC",
    "billing.receiver_id": "CLEARINGHOUSE",
    "billing.receiver_name": "CLEARINGHOUSE",
    "billing.payers": {
        "MEDICARE": {"name": "MEDICARE PART B", "claim_filing_indicator": "MB", "payer_id": "06102"}
    },
    "billing.rendering_providers": {RENDERING_NPI: "HOPPER, GRACE"},
}


def _mbi(n: int) -> str:
    """A distinct, well-formed MBI for patient ``n`` (C A AN N A AN N A A N N)."""
    d = f"{n % 10**6:06d}"
    return f"{1 + (n // 10**6) % 9}E{d[0]}{d[1]}K{d[2]}{d[3]}MR{d[4]}{d[5]}"


def build_registry(engine: Engine, patients: int) -> int:
    """Insert the synthetic registry; returns the number of billable lines."""
    lines = 0
    chunk = 10_000
    for start in range(0, patients, chunk):
        people, enrollments, records = [], [], []
        for n in range(start, min(start + chunk, patients)):
            pid = f"P{n:07d}"
            people.append(
                {
                    "patient_id": pid,
                    "mrn": f"M{n}",
                    "first_name": "Zoë" if n % 7 == 0 else "Ada",
                    "last_name": "O'Brien*Smith" if n % 11 == 0 else "Lovelace",
                    "birth_date": date(1940 + n % 40, 1 + n % 12, 1 + n % 28),
                    "sex": "FM"[n % 2],
                    "address1": f"{n} Main St",
                    "city": "Springfield",
                    "state": "IL",
                    "zip": "62701",
                    "timezone": "America/Chicago",
                    "payer_id": "MEDICARE",
                    "payer_name": "Medicare Part B",
                    "member_id": _mbi(n),
                    "icd10_codes": "I10;E11.9",
                }
            )
            enrollments.append(
                {
                    "patient_id": pid,
                    "program": "RPM",
                    "start_date": date(2026, 1, 1),
                    "end_date": None,
                    "consent_date": date(2026, 1, 1),
                    "ordering_npi": RENDERING_NPI,
                }
            )
            supply = "99454" if n % 3 else "99445"
            mgmt = [("99457", 1)] + ([("99458", 1)] if n % 2 else [])
            for kind, codes in (
                ("device_supply", [(supply, 1)]),
                ("treatment_management", mgmt),
                *((("setup", [("99453", 1)]),) if n % 5 == 0 else ()),
            ):
                records.append(
                    {
                        "patient_id": pid,
                        "program": "RPM",
                        "kind": kind,
                        "period_start": NOV_START,
                        "period_end": NOV_END,
                        "status": "billable",
                        "reason": "",
                        "rule_set": "CY2026",
                        "transmission_days": 18,
                        "interactive_minutes": Decimal("45"),
                        "interactive_communications": 1,
                        "lines_json": json.dumps(
                            [
                                {"code": c, "units": u, "date_of_service": NOV_END.isoformat()}
                                for c, u in codes
                            ]
                        ),
                        "evidence_json": "{}",
                        "as_of": AS_OF,
                        "computed_at": CLOCK,
                    }
                )
                lines += len(codes)
        with engine.begin() as conn:
            conn.execute(insert(Patient), people)
            conn.execute(insert(Enrollment), enrollments)
            conn.execute(insert(EngagementRow), records)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument(
        "--validate",
        action="store_true",
        help="also run pyx12, x12sdk and rpmpipe's semantic checks on the 837P",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'registry.db'}"
        settings = load_settings(
            None, env={}, overrides={"data_dir": tmp, "database_url": url, **BILLING}
        )
        engine = open_registry(url)
        t0 = time.perf_counter()
        expected_lines = build_registry(engine, args.patients)
        setup_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = run_export(settings, engine, AS_OF, now=CLOCK)
        export_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        rerun = run_export(settings, engine, AS_OF, now=CLOCK)
        rerun_s = time.perf_counter() - t0
        assert result.run_dir is not None and result.lines == expected_lines
        assert rerun.run_dir is None
        figures: dict[str, object] = {
            "benchmark": "billing_export.run_export",
            "patients": args.patients,
            "lines": result.lines,
            "claims": result.claims,
            "transactions": result.transactions,
            "claims_837_bytes": (result.run_dir / "claims.837").stat().st_size,
            "registry_setup_seconds": round(setup_s, 2),
            "export_seconds": round(export_s, 2),
            "rerun_nothing_new_seconds": round(rerun_s, 2),
            "lines_per_second": round(result.lines / export_s),
            "bar_seconds": 60,
            "within_bar": export_s < 60,
        }
        if args.validate:
            import io

            import pyx12.params
            import pyx12.x12n_document
            from x12sdk.io import X12ModelReader

            from rpmpipe.billing_export.claim_checks import check_837p

            path = result.run_dir / "claims.837"
            t0 = time.perf_counter()
            figures["pyx12_valid"] = pyx12.x12n_document.x12n_document(
                pyx12.params.params(), str(path), io.StringIO(), None
            )
            figures["pyx12_seconds"] = round(time.perf_counter() - t0, 2)
            t0 = time.perf_counter()
            with X12ModelReader(str(path)) as reader:
                figures["x12sdk_transactions"] = sum(1 for _m in reader.models())
            figures["x12sdk_seconds"] = round(time.perf_counter() - t0, 2)
            figures["semantic_problems"] = len(check_837p(path.read_text(encoding="ascii")))
        engine.dispose()
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
