"""Benchmark: ``rpmpipe metrics --format csv`` against DuckDB SQL on the same Parquet files.

Generates (once, cached under benchmarks/output/) readings of N patients over D days in four
US time zones, in the ingest storage layout (``readings/date=YYYY-MM-DD/*.parquet``), plus a
SQLite registry; then, in the same run, times

- rpmpipe: ``rpmpipe metrics --format csv --as-of ... --workers N`` as a subprocess (peak
  RSS: its own VmHWM as it exits plus N times its largest worker's, an upper bound), and
- DuckDB: SQL doing the core of the same job (device -> patient join with assignment dates,
  local dates in each patient's zone, consent/enrollment, 30-day periods anchored on the first
  day with data, distinct days per period), including loading the registry tables.

The registry also enrols a third of the patients in CCM (two chronic conditions, a care plan,
three staff entries a month), so rpmpipe computes RPM and CCM; DuckDB does the RPM core only.

Prints one JSON object. Bars: rpmpipe at most 1.0x DuckDB, peak RSS under 1 GB. Each run's
peak RSS is its own (its VmHWM as it exits), and the load average is printed beside the
figures: on a shared machine the ratio to the same run's DuckDB is the figure that counts.
Beside the RSS upper bound, the largest PSS of the process tree of one more, untimed run,
sampled every 20 ms (``rpmpipe_peak_pss_mb``): the memory it really takes, a page its
processes share counted once (the bound counts the pages a worker shares with its parent in
each).

``--scaling`` runs the sizes of ``--sizes`` (25k, 50k, 100k and 200k patients) one after
the other and prints a row per size (patients, readings, seconds, peak RSS, DuckDB seconds,
ratio, the output's size, and the load average before and after: memory should grow with
the output, not with the readings; the CSV itself is written as it is made).
``--as-installed`` hides the dev extra's pandas from ``rpmpipe metrics`` (pyarrow imports it
on its first array when it can), as a runtime install has it. Either way rpmpipe's modules
are compiled to bytecode once before the timed runs, as an installed package's are.

    .venv/bin/python benchmarks/metrics.py                  # 100k patients, ~7.5M readings
    .venv/bin/python benchmarks/metrics.py --patients 10000 # quick
    .venv/bin/python benchmarks/metrics.py --scaling --repeat 1
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import py_compile
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ZONES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles")
START = date(2026, 8, 1)
READINGS_PER_PATIENT_DAY = 7.5e6 / 100_000 / 90
SIZES = (25_000, 50_000, 100_000, 200_000)
RSS_BAR_MB = 1024
# Hides the dev extra's pandas from `rpmpipe metrics` (--as-installed), as in benchmarks/ingest.py.
NO_PANDAS = "raise ImportError('pandas is not installed (runtime dependencies only)')\n"


def generate(out: Path, patients: int, days: int, seed: int = 7) -> dict[str, int]:
    """Readings + registry for ``patients`` over ``days`` (skipped when already there)."""
    marker = out / "complete.json"
    if marker.exists():
        return dict(json.loads(marker.read_text()))
    from sqlalchemy import insert

    from rpmpipe.registry.db import open_registry
    from rpmpipe.registry.models import (
        CareActivity,
        CarePlan,
        Device,
        DeviceAssignment,
        Enrollment,
        Patient,
    )

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    readings_dir = out / "data" / "readings"
    n = int(round(READINGS_PER_PATIENT_DAY * patients * days))
    # Patients differ in adherence, so periods fall on both sides of 16 days.
    weight = rng.uniform(0.2, 1.8, patients)
    patient = rng.choice(patients, size=n, p=weight / weight.sum())
    start_us = int(datetime(START.year, START.month, START.day, tzinfo=UTC).timestamp()) * 10**6
    offset = rng.integers(0, days * 86400 * 10**6, n)
    order = np.argsort(offset, kind="stable")
    patient, offset = patient[order], offset[order]
    utc_day = offset // (86400 * 10**6)
    devices = pa.array([f"BP-{i:06d}" for i in range(patients)], pa.string())
    kinds = np.where(rng.random(n) < 0.15, 1, 0)
    manual = rng.random(n) < 0.01
    suspect = rng.random(n) < 0.005
    cuts = np.searchsorted(utc_day, np.arange(days + 1))
    for d in range(days):
        lo, hi = int(cuts[d]), int(cuts[d + 1])
        if lo == hi:
            continue
        idx = pa.array(patient[lo:hi])
        measured = pa.array(start_us + offset[lo:hi], pa.timestamp("us", tz="UTC"))
        table = pa.table(
            {
                "device_id": devices.take(idx),
                "type": pa.DictionaryArray.from_arrays(
                    pa.array(kinds[lo:hi], pa.int8()), pa.array(["blood_pressure", "body_weight"])
                ).cast(pa.string()),
                "measured_at": measured,
                "received_at": measured,
                "manual_entry": pa.array(manual[lo:hi]),
                "clock_suspect": pa.array(suspect[lo:hi]),
                "systolic_mmhg": pa.array(rng.normal(128, 12, hi - lo)),
                "diastolic_mmhg": pa.array(rng.normal(82, 8, hi - lo)),
                "pulse_bpm": pa.array(rng.normal(72, 9, hi - lo)),
                "source_format": pa.array(["native"] * (hi - lo)),
            }
        )
        part = readings_dir / f"date={(START + timedelta(days=d)).isoformat()}"
        part.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, part / "part-0.parquet")

    engine = open_registry(f"sqlite:///{out / 'registry.db'}")
    base = {
        "mrn": "M",
        "first_name": "Test",
        "last_name": "Patient",
        "birth_date": date(1950, 1, 1),
        "sex": "F",
        "address1": "1 Main St",
        "city": "Springfield",
        "state": "IL",
        "zip": "62701",
        "payer_id": "MCR",
        "payer_name": "Medicare",
        "member_id": "1EG4TE5MK73",
        "icd10_codes": "I10",
    }
    chunk = 20_000
    with engine.begin() as conn:
        for lo in range(0, patients, chunk):
            ids = range(lo, min(patients, lo + chunk))
            conn.execute(
                insert(Patient),
                [
                    {
                        **base,
                        "patient_id": f"P{i:06d}",
                        "timezone": ZONES[i % 4],
                        "icd10_codes": "I10;E11.9" if i % 3 == 0 else "I10",
                    }
                    for i in ids
                ],
            )
            conn.execute(
                insert(Device),
                [{"device_id": f"BP-{i:06d}", "kind": "bp_cuff", "model": "x"} for i in ids],
            )
            conn.execute(
                insert(DeviceAssignment),
                [
                    {
                        "device_id": f"BP-{i:06d}",
                        "patient_id": f"P{i:06d}",
                        "start_date": START,
                        "end_date": None,
                    }
                    for i in ids
                ],
            )
            conn.execute(
                insert(Enrollment),
                [
                    {
                        "patient_id": f"P{i:06d}",
                        "program": "RPM",
                        "start_date": START,
                        "end_date": None,
                        "consent_date": START,
                        "ordering_npi": "1234567893",
                    }
                    for i in ids
                ]
                + [
                    {
                        "patient_id": f"P{i:06d}",
                        "program": "CCM",
                        "start_date": START,
                        "end_date": None,
                        "consent_date": START,
                        "ordering_npi": "1234567893",
                    }
                    for i in ids
                    if i % 3 == 0
                ],
            )
            conn.execute(
                insert(CarePlan),
                [
                    {
                        "patient_id": f"P{i:06d}",
                        "program": "CCM",
                        "established_on": START,
                        "revised_on": None,
                        "shared_with_patient_on": START,
                        "version_on": START,
                    }
                    for i in ids
                    if i % 3 == 0
                ],
            )
        # Care activity for a tenth of the patients: two entries a month.
        acts = []
        for i in range(0, patients, 10):
            for m in range(max(1, days // 30)):
                for k in range(2):
                    acts.append(
                        {
                            "activity_id": f"A{i:06d}-{m}-{k}",
                            "patient_id": f"P{i:06d}",
                            "staff_id": "S1",
                            "started_at": datetime(2026, 8 + m, 3 + 10 * k, 15, tzinfo=UTC),
                            "minutes": Decimal(7 + (i + k) % 20),
                            "kind": "phone_call",
                            "interactive": k == 0,
                            "program": "RPM",
                        }
                    )
        # CCM time for a third of the patients: three staff entries a month.
        for i in range(0, patients, 3):
            for m in range(max(1, days // 30)):
                for k in range(3):
                    acts.append(
                        {
                            "activity_id": f"C{i:06d}-{m}-{k}",
                            "patient_id": f"P{i:06d}",
                            "staff_id": "S2",
                            "started_at": datetime(2026, 8 + m, 5 + 8 * k, 16, tzinfo=UTC),
                            "minutes": Decimal(6 + (i + k) % 12),
                            "kind": "phone_call",
                            "interactive": True,
                            "program": "CCM",
                        }
                    )
        for lo in range(0, len(acts), chunk):
            conn.execute(insert(CareActivity), acts[lo : lo + chunk])
    engine.dispose()
    info = {
        "patients": patients,
        "ccm_patients": len(range(0, patients, 3)),
        "days": days,
        "readings": n,
        "activities": len(acts),
    }
    marker.write_text(json.dumps(info))
    return info


def warm_cache(readings_dir: Path) -> None:
    """Read every file once so neither contender pays for cold disk reads."""
    for f in readings_dir.rglob("*.parquet"):
        f.read_bytes()


def write_bytecode(package: Path = ROOT / "rpmpipe") -> int:
    """Compile rpmpipe's modules once, as a wheel install does (pip writes the bytecode of
    what it installs), so no timed run compiles them: with PYTHONDONTWRITEBYTECODE set, an
    editable install's rpmpipe would be compiled again on every run (0.2-0.3 s of a 100k
    run before it forks). Each file is compiled under the path it is imported by (the
    stage packages are linked into ``rpmpipe/``). Returns how many modules."""
    count = 0
    for folder, _, names in os.walk(package, followlinks=True):
        for name in names:
            if name.endswith(".py"):
                source = os.path.join(folder, name)
                py_compile.compile(source, importlib.util.cache_from_source(source), doraise=True)
                count += 1
    return count


# Runs `rpmpipe` and, as it exits, writes its own peak RSS (VmHWM, KiB) to the file named by
# its first argument. The child's ru_maxrss (os.wait4) is no measure: Linux carries the
# high-water mark of the process that forked it across exec, so every run after the first
# reported at least this benchmark's own size once DuckDB had run in it (926 MB for a 735 MB
# run at 100k patients).
#
# `rpmpipe metrics --format csv` counts a large fleet in worker processes (--workers), which
# it forks and waits for: their largest peak is the RUSAGE_CHILDREN high-water mark (a forked
# worker's starts from this process's size at the fork, which it really shares). The run's
# peak is given as an upper bound: this process's peak plus every worker at the largest one's
# (the pages the workers share with it are counted in each).
CHILD = """
import atexit, resource, sys

def _peak(path=sys.argv.pop(1)):
    with open("/proc/self/status") as status, open(path, "w") as out:
        own = next(line for line in status if line.startswith("VmHWM:")).split()[1]
        workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        out.write(f"{own} {workers}")

atexit.register(_peak)
from rpmpipe.app.cli import main

main()
"""


class TreeMemory:
    """The largest proportional set size (PSS) of a process and its descendants, sampled
    every ``interval`` seconds while it runs: the memory the run really takes, each page
    its processes share counted once in all (a worker shares the pages it was forked with).
    A peak shorter than the interval can be missed; the upper bound beside it cannot."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid, self.interval, self.peak_kib = pid, interval, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._done.wait(self.interval):
            total = sum(_pss_kib(pid) for pid in _tree(self.pid))
            self.peak_kib = max(self.peak_kib, total)


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants now (Linux /proc; those that exit meanwhile are skipped)."""
    found, todo = [], [pid]
    while todo:
        here = todo.pop()
        found.append(here)
        try:
            for task in os.listdir(f"/proc/{here}/task"):
                with open(f"/proc/{here}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return found


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next((int(line.split()[1]) for line in f if line.startswith("Pss:")), 0)
    except OSError:  # exited between the listing and the read
        return 0


def run_rpmpipe(
    out: Path, as_of: date, as_installed: bool = False, workers: int = 1, pss: bool = False
) -> tuple[float, tuple[int, int], int, int, int]:
    """Seconds, peak RSS (KiB) of this run alone (its main process and its largest worker),
    CSV rows, CSV bytes, and with ``pss`` the largest PSS (KiB) of its process tree (else 0).

    Sampling PSS reads every process's memory map 50 times a second, a few percent of a
    CPU that also holds up the processes it reads: a run sampled that way is not timed."""
    peak_file = out / "rpmpipe-peak-kib"
    peak_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-c", CHILD, str(peak_file)]
    cmd += [
        "--data-dir",
        str(out / "data"),
        "--database-url",
        f"sqlite:///{out / 'registry.db'}",
        "--log-level",
        "WARNING",
        "metrics",
        "--format",
        "csv",
        "--as-of",
        as_of.isoformat(),
        "--workers",
        str(workers),
    ]
    env = dict(os.environ)
    if as_installed:
        shim = out.parent / "no-dev-extras"
        (shim / "pandas").mkdir(parents=True, exist_ok=True)
        (shim / "pandas" / "__init__.py").write_text(NO_PANDAS)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(shim), env.get("PYTHONPATH", "")) if p)
    csv_path = out / "metrics.csv"
    started = time.perf_counter()
    with csv_path.open("wb") as sink:
        child = subprocess.Popen(cmd, stdout=sink, env=env)
        memory = TreeMemory(child.pid)
        if pss:
            with memory:
                child.wait()
        else:
            child.wait()
    elapsed = time.perf_counter() - started
    if child.returncode != 0:
        raise subprocess.CalledProcessError(child.returncode, cmd)
    with csv_path.open("rb") as f:
        rows = sum(1 for _ in f) - 1
    own, worker = (int(x) for x in peak_file.read_text().split())
    return elapsed, (own, worker), rows, csv_path.stat().st_size, memory.peak_kib


DUCKDB_SQL = """
WITH r AS (
    SELECT device_id, measured_at
    FROM read_parquet('{readings}/date=*/*.parquet', hive_partitioning = true)
    WHERE "date" BETWEEN '{first}' AND '{last}'
      AND type IN ('blood_pressure', 'body_weight', 'spo2', 'blood_glucose', 'heart_rate')
      AND NOT coalesce(manual_entry, false) AND NOT coalesce(clock_suspect, false)
),
j AS (
    SELECT a.patient_id, CAST(timezone(p.timezone, r.measured_at) AS DATE) AS d,
           a.start_date, a.end_date
    FROM r JOIN asg a ON a.device_id = r.device_id JOIN pat p ON p.patient_id = a.patient_id
),
days AS (
    SELECT DISTINCT j.patient_id, j.d
    FROM j JOIN enr e ON e.patient_id = j.patient_id
    WHERE j.d BETWEEN j.start_date AND coalesce(j.end_date, DATE '9999-12-31')
      AND j.d BETWEEN e.start_date AND coalesce(e.end_date, DATE '9999-12-31')
      AND e.consent_date <= j.d AND j.d <= DATE '{as_of}'
),
anchor AS (SELECT patient_id, min(d) AS a FROM days GROUP BY patient_id)
SELECT days.patient_id, (days.d - anchor.a) // 30 AS period, count(*) AS transmission_days,
       list(days.d ORDER BY days.d) AS dates
FROM days JOIN anchor USING (patient_id)
GROUP BY days.patient_id, period
"""


def run_duckdb(out: Path, as_of: date, first: date) -> tuple[float, int]:
    import duckdb
    import pandas as pd

    started = time.perf_counter()
    with sqlite3.connect(out / "registry.db") as reg:
        pat = pd.read_sql_query("SELECT patient_id, timezone FROM patients", reg)
        asg = pd.read_sql_query(
            "SELECT device_id, patient_id, CAST(start_date AS TEXT) AS start_date, "
            "CAST(end_date AS TEXT) AS end_date FROM device_assignments",
            reg,
        )
        enr = pd.read_sql_query(
            "SELECT patient_id, CAST(start_date AS TEXT) AS start_date, "
            "CAST(end_date AS TEXT) AS end_date, CAST(consent_date AS TEXT) AS consent_date "
            "FROM enrollments WHERE program = 'RPM'",
            reg,
        )
    con = duckdb.connect()
    con.register("pat_df", pat)
    con.register("asg_df", asg)
    con.register("enr_df", enr)
    con.execute("CREATE TABLE pat AS SELECT * FROM pat_df")
    con.execute(
        "CREATE TABLE asg AS SELECT device_id, patient_id, CAST(start_date AS DATE) start_date, "
        "CAST(end_date AS DATE) end_date FROM asg_df"
    )
    con.execute(
        "CREATE TABLE enr AS SELECT patient_id, CAST(start_date AS DATE) start_date, "
        "CAST(end_date AS DATE) end_date, CAST(consent_date AS DATE) consent_date FROM enr_df"
    )
    sql = DUCKDB_SQL.format(
        readings=out / "data" / "readings",
        first=(first - timedelta(days=1)).isoformat(),
        last=(as_of + timedelta(days=1)).isoformat(),
        as_of=as_of.isoformat(),
    )
    result = con.sql(sql).to_arrow_table()
    rows = result.num_rows
    elapsed = time.perf_counter() - started
    con.close()
    return elapsed, rows


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def measure(
    root: Path, patients: int, days: int, repeat: int, as_installed: bool, workers: int
) -> dict[str, object]:
    """One size: generate (cached), then alternate the contenders ``repeat`` times."""
    out = root / f"metrics-{patients}p-{days}d-ccm"
    t0 = time.perf_counter()
    info = generate(out, patients, days)
    generated = time.perf_counter() - t0
    as_of = START + timedelta(days=days - 1)
    warm_cache(out / "data" / "readings")
    write_bytecode()
    load_before = load_average()
    # Alternate the contenders: the machine may be shared.
    ours_runs: list[float] = []
    theirs_runs: list[float] = []
    peaks: list[float] = []
    parts: list[tuple[int, int]] = []
    for _ in range(repeat):
        ours, (own_kb, worker_kb), csv_rows, csv_bytes, _ = run_rpmpipe(
            out, as_of, as_installed, workers
        )
        theirs, duck_rows = run_duckdb(out, as_of, START)
        ours_runs.append(ours)
        theirs_runs.append(theirs)
        parts.append((own_kb, worker_kb))
        # One process when the fleet is not split (no worker: its high-water mark is 0).
        peaks.append((own_kb + (workers * worker_kb if worker_kb else 0)) / 1024)
    # The memory the run really takes, from one more run that is sampled and not timed.
    pss_kib = run_rpmpipe(out, as_of, as_installed, workers, pss=True)[4]
    ours, theirs = statistics.median(ours_runs), statistics.median(theirs_runs)
    ratios = [a / b for a, b in zip(ours_runs, theirs_runs, strict=True)]
    peak = max(peaks)
    return {
        **info,
        "as_of": as_of.isoformat(),
        "setup_seconds": round(generated, 2),
        "repeat": repeat,
        "rpmpipe_environment": "runtime dependencies only" if as_installed else "dev venv",
        "rpmpipe_seconds": round(ours, 3),
        "rpmpipe_runs": [round(x, 3) for x in ours_runs],
        "rpmpipe_peak_rss_mb": round(peak, 1),
        "rpmpipe_peak_rss_runs_mb": [round(x, 1) for x in peaks],
        "rpmpipe_peak_pss_mb": round(pss_kib / 1024, 1),
        "rpmpipe_workers": workers,
        "rpmpipe_main_and_largest_worker_peak_mb": [
            [round(own / 1024, 1), round(worker / 1024, 1)] for own, worker in parts
        ],
        "rpmpipe_records": csv_rows,
        "rpmpipe_output_mb": round(csv_bytes / 2**20, 1),
        "duckdb_seconds": round(theirs, 3),
        "duckdb_runs": [round(x, 3) for x in theirs_runs],
        "duckdb_period_rows": duck_rows,
        "ratio": round(statistics.median(ratios), 3),
        "ratio_runs": [round(x, 3) for x in ratios],
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "output")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; medians reported")
    parser.add_argument(
        "--scaling", action="store_true", help="one row per size of --sizes instead of one size"
    )
    parser.add_argument(
        "--sizes",
        type=lambda text: [int(x) for x in text.split(",")],
        default=list(SIZES),
        help="patients per size for --scaling, comma-separated (default 25000,50000,100000,200000)",
    )
    parser.add_argument(
        "--as-installed",
        action="store_true",
        help="run rpmpipe metrics without the dev extra's pandas, as a runtime install has it",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=min(os.cpu_count() or 1, 4),
        help="rpmpipe metrics --workers (default: the CPUs, at most 4, as rpmpipe's own)",
    )
    args = parser.parse_args()
    head = {"benchmark": "metrics", "cpus": os.cpu_count(), "bar": 1.0, "rss_bar_mb": RSS_BAR_MB}
    if not args.scaling:
        row = measure(
            args.out, args.patients, args.days, args.repeat, args.as_installed, args.workers
        )
        ratio = float(row["ratio"])  # type: ignore[arg-type]
        peak = float(row["rpmpipe_peak_rss_mb"])  # type: ignore[arg-type]
        pss = float(row["rpmpipe_peak_pss_mb"])  # type: ignore[arg-type]
        verdict = {
            "within_bar": ratio <= 1.0,
            "within_rss_bar": peak < RSS_BAR_MB,
            "within_rss_bar_by_pss": pss < RSS_BAR_MB,
        }
        print(json.dumps({**head, **row, **verdict}, indent=2))
        return
    rows = []
    for patients in args.sizes:
        row = measure(args.out, patients, args.days, args.repeat, args.as_installed, args.workers)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)  # progress while the next runs
    keys = (
        "patients",
        "readings",
        "rpmpipe_seconds",
        "rpmpipe_peak_rss_mb",
        "rpmpipe_peak_pss_mb",
        "rpmpipe_records",
        "rpmpipe_output_mb",
        "duckdb_seconds",
        "ratio",
        "load_average_before",
        "load_average_after",
    )
    print(
        json.dumps(
            {
                **head,
                "mode": "scaling",
                "days": args.days,
                "repeat": args.repeat,
                "table": [{k: r[k] for k in keys} for r in rows],
                "runs": rows,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
