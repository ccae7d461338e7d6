"""Benchmark: export the lines of N patients (default 100k) from a SQLite registry.

Builds a synthetic registry (patients, devices, enrollments, care activities, final
engagement records with a supply line, management lines and a setup line, and the readings
behind the days with data) in a temp dir, then times one ``run_export`` and a rerun (which
must find nothing new), each in a fresh process (its peak RSS is the process's, and the
child's that writes the claim files is reported beside it). The
baseline, in the same run, is the I/O floor: reading the records, inserting as many
ledger-sized rows with sqlite3's executemany and writing as many bytes as the run's files.
Prints JSON; the goal for 100k patients is <= 10 s, and <= 2 s for the rerun.

    .venv/bin/python benchmarks/export.py [--patients 100000] [--repeat 3] [--validate]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import Engine, insert

from rpmpipe.billing_export.export import run_export
from rpmpipe.ingest.schema import READINGS_SCHEMA
from rpmpipe.registry.db import open_registry
from rpmpipe.registry.models import (
    CareActivity,
    Device,
    DeviceAssignment,
    EngagementRow,
    Enrollment,
    Patient,
)
from rpmpipe.settings import Settings, load_settings

AS_OF = date(2026, 12, 1)
CLOCK = datetime(2026, 12, 1, 7, 30, tzinfo=UTC)  # Dec 1 in the default org zone too
NOV_START, NOV_END = date(2026, 11, 1), date(2026, 11, 30)
DAYS_WITH_DATA = 18  # Nov 1..18: one reading a day from the patient's own device


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


def build_registry(engine: Engine, patients: int, readings_dir: Path) -> int:
    """Insert the synthetic registry and write its readings; returns the number of billable
    lines. Every line has the documentation the audit asks for: a device assigned to the
    patient with one reading on each day with data, and an interactive call and a time log
    behind the treatment management minutes."""
    lines = 0
    chunk = 10_000
    days = [NOV_START.replace(day=d) for d in range(1, DAYS_WITH_DATA + 1)]
    day_evidence = json.dumps({"dates": [d.isoformat() for d in days], "activity_ids": []})
    for start in range(0, patients, chunk):
        people, devices, assignments, enrollments, activities, records = [], [], [], [], [], []
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
            devices.append({"device_id": f"D{n:07d}", "kind": "bp_cuff"})
            assignments.append(
                {"device_id": f"D{n:07d}", "patient_id": pid, "start_date": date(2026, 1, 1)}
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
            call, log = f"A{n:07d}-1", f"A{n:07d}-2"
            for activity_id, day, minutes, kind, interactive in (
                (call, 5, 20, "phone_call", True),
                (log, 12, 25, "data_review", False),
            ):
                activities.append(
                    {
                        "activity_id": activity_id,
                        "patient_id": pid,
                        "staff_id": "S1",
                        "started_at": datetime(2026, 11, day, 16, 0, tzinfo=UTC),
                        "minutes": Decimal(minutes),
                        "kind": kind,
                        "interactive": interactive,
                        "program": "RPM",
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
                        "transmission_days": DAYS_WITH_DATA,
                        "interactive_minutes": Decimal("45"),
                        "interactive_communications": 1,
                        "lines_json": json.dumps(
                            [
                                {"code": c, "units": u, "date_of_service": NOV_END.isoformat()}
                                for c, u in codes
                            ]
                        ),
                        "evidence_json": (
                            json.dumps({"dates": [], "activity_ids": [call, log]})
                            if kind == "treatment_management"
                            else day_evidence
                        ),
                        "as_of": AS_OF,
                        "computed_at": CLOCK,
                        "ordering_npi": RENDERING_NPI,
                    }
                )
                lines += len(codes)
        with engine.begin() as conn:
            conn.execute(insert(Patient), people)
            conn.execute(insert(Device), devices)
            conn.execute(insert(DeviceAssignment), assignments)
            conn.execute(insert(Enrollment), enrollments)
            conn.execute(insert(CareActivity), activities)
            conn.execute(insert(EngagementRow), records)
    write_readings(readings_dir, patients, days)
    return lines


def write_readings(readings_dir: Path, patients: int, days: list[date]) -> None:
    """One blood pressure reading a day per patient (10:00 in Chicago), a file per day."""
    for day in days:
        at = datetime(day.year, day.month, day.day, 16, 0, tzinfo=UTC)
        devices = [f"D{n:07d}" for n in range(patients)]
        ids = [f"R{n:07d}-{day:%d}" for n in range(patients)]
        columns: dict[str, object] = {
            "reading_id": ids,
            "device_id": devices,
            "type": ["blood_pressure"] * patients,
            "measured_at": [at] * patients,
            "received_at": [at] * patients,
            "manual_entry": [False] * patients,
            "source_format": ["json"] * patients,
            "systolic_mmhg": [128.0] * patients,
            "diastolic_mmhg": [82.0] * patients,
            "pulse_bpm": [70.0] * patients,
            "clock_suspect": [False] * patients,
            "dedup_key": [f"{d}:{r}" for d, r in zip(devices, ids, strict=True)],
        }
        arrays = [
            pa.array(columns.get(f.name, [None] * patients), type=f.type) for f in READINGS_SCHEMA
        ]
        partition = readings_dir / f"date={day.isoformat()}"
        partition.mkdir(parents=True, exist_ok=True)
        pq.write_table(
            pa.Table.from_arrays(arrays, schema=READINGS_SCHEMA), partition / "part-0.parquet"
        )


def _settings(tmp: Path) -> Settings:
    url = f"sqlite:///{tmp / 'registry.db'}"
    return load_settings(None, env={}, overrides={"data_dir": tmp, "database_url": url, **BILLING})


def _phase(tmp: Path) -> None:
    """One ``run_export`` in this (fresh) process: its seconds and the process's peak RSS."""
    settings = _settings(tmp)
    engine = open_registry(settings.effective_database_url)
    t0 = time.perf_counter()
    result = run_export(settings.export, engine, AS_OF, now=CLOCK)
    seconds = time.perf_counter() - t0
    engine.dispose()
    out = {
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        # The child that writes the claim files shares the run's pages until it touches
        # them, so its RSS overlaps this process's: the largest child's, not a sum.
        "peak_child_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
        "lines": result.lines,
        "claims": result.claims,
        "transactions": result.transactions,
        "held": result.held,
        "run_dir": str(result.run_dir) if result.run_dir else None,
    }
    print(json.dumps(out))


def _run_phase(tmp: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, __file__, "--phase", str(tmp)],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def io_floor(db: Path, out: Path, lines: int, size: int) -> float:
    """The same run's floor: read every engagement row and insert ``lines`` ledger-sized rows
    with sqlite3's executemany in one durable transaction, and write and fsync ``size`` bytes:
    the I/O an export cannot avoid, with no claim logic at all."""
    t0 = time.perf_counter()
    con = sqlite3.connect(db)
    con.execute("PRAGMA synchronous=FULL")
    rows = con.execute("SELECT patient_id, kind, lines_json FROM engagement_records").fetchall()
    con.execute("CREATE TABLE floor_ledger (a TEXT, b TEXT, c TEXT, d INTEGER, e TEXT, f TEXT)")
    with con:
        con.executemany(
            "INSERT INTO floor_ledger VALUES (?, ?, ?, ?, ?, ?)",
            ((rows[n % len(rows)][0], "RPM", "99454", n, "2026-11-30", "C1") for n in range(lines)),
        )
    con.execute("DROP TABLE floor_ledger")
    con.close()
    with (out / "floor.bin").open("wb") as f:
        block = b"x" * (1 << 20)
        for _ in range(size // len(block) + 1):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    (out / "floor.bin").unlink()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=1, help="runs of export + rerun (median)")
    parser.add_argument(
        "--validate",
        action="store_true",
        help="also run pyx12, x12sdk and rpmpipe's semantic checks on the 837P",
    )
    parser.add_argument("--phase", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase is not None:
        _phase(args.phase)
        return
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        settings = _settings(tmp)
        engine = open_registry(settings.effective_database_url)
        t0 = time.perf_counter()
        expected_lines = build_registry(engine, args.patients, settings.readings_dir)
        setup_s = time.perf_counter() - t0
        engine.dispose()  # checkpoints the WAL: the registry is one file to copy
        db = tmp / "registry.db"
        pristine = tmp / "registry.pristine"
        shutil.copyfile(db, pristine)
        exports, reruns, floors = [], [], []
        for n in range(args.repeat):
            if n:
                shutil.copyfile(pristine, db)
                shutil.rmtree(settings.exports_dir, ignore_errors=True)
            first = _run_phase(tmp)
            rerun = _run_phase(tmp)
            assert first["run_dir"] is not None and first["lines"] == expected_lines, first
            assert rerun["run_dir"] is None and rerun["held"] == 0, rerun
            run_dir = Path(first["run_dir"])
            size = sum(f.stat().st_size for f in run_dir.iterdir())
            floors.append(io_floor(db, tmp, expected_lines, size))
            exports.append(first)
            reruns.append(rerun)
        first = exports[-1]
        export_s = statistics.median(e["seconds"] for e in exports)
        rerun_s = statistics.median(r["seconds"] for r in reruns)
        floor_s = statistics.median(floors)
        figures: dict[str, object] = {
            "benchmark": "billing_export.run_export",
            "patients": args.patients,
            "lines": first["lines"],
            "claims": first["claims"],
            "transactions": first["transactions"],
            "run_bytes": size,
            "claims_837_bytes": (run_dir / "claims.837").stat().st_size,
            "registry_setup_seconds": round(setup_s, 2),
            "runs": args.repeat,
            "export_seconds": export_s,
            "export_seconds_each": [e["seconds"] for e in exports],
            "export_peak_rss_mb": max(e["peak_rss_mb"] for e in exports),
            "export_peak_child_rss_mb": max(e["peak_child_rss_mb"] for e in exports),
            "rerun_nothing_new_seconds": rerun_s,
            "rerun_seconds_each": [r["seconds"] for r in reruns],
            "rerun_peak_rss_mb": max(r["peak_rss_mb"] for r in reruns),
            "baseline_io_floor_seconds": round(floor_s, 2),
            "export_vs_floor": round(export_s / floor_s, 1),
            "lines_per_second": round(first["lines"] / export_s),
            "goal_export_seconds": 10,
            "goal_rerun_seconds": 2,
            "within_goal": export_s <= 10 and rerun_s <= 2,
            "load_average": [round(x, 2) for x in os.getloadavg()],
        }
        if args.validate:
            import io

            import pyx12.params
            import pyx12.x12n_document
            from x12sdk.io import X12ModelReader

            from rpmpipe.billing_export.claim_checks import check_837p

            path = run_dir / "claims.837"
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
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
