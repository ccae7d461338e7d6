"""Benchmark: ``rpmpipe report`` for N patients (default 100k): the whole site from disk.

Uses the metrics benchmark's data (N patients, D days of readings in four US zones, a SQLite
registry; generated once, cached under benchmarks/output/), saves the final records and runs
one export there (once, so the ledger holds a claim per billed line), then times

- ``rpmpipe report --as-of DATE --out DIR`` as a subprocess, end to end (engagement
  computed from the readings, the ledger read, what the next export would hold, every page
  written), and
- the same steps in this process, one by one.

Prints one JSON object. Bar: under 60 s end to end for 100k patients.

    .venv/bin/python benchmarks/report.py                    # 100k patients
    .venv/bin/python benchmarks/report.py --patients 10000   # quick
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _metrics_benchmark():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "metrics_benchmark", ROOT / "benchmarks" / "metrics.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "output")
    args = parser.parse_args()

    from rpmpipe.app.report.build import build_report
    from rpmpipe.app.report.inputs import gather
    from rpmpipe.app.report.site import write_site
    from rpmpipe.billing_export.export import run_export
    from rpmpipe.collector import gc_paused
    from rpmpipe.metrics.job import compute, compute_and_persist
    from rpmpipe.registry.db import open_registry
    from rpmpipe.settings import load_settings

    bench = _metrics_benchmark()
    data = args.out / f"metrics-{args.patients}-{args.days}"
    info = bench.generate(data, args.patients, args.days)
    as_of = bench.START + timedelta(days=args.days - 1)
    now = datetime(as_of.year, as_of.month, as_of.day, 23, tzinfo=UTC) + timedelta(hours=6)
    db = f"sqlite:///{data / 'registry.db'}"
    # The benchmark fleet's payer and ordering practitioner, so that its lines are billed.
    config = data / "report-bench.toml"
    config.write_text(
        '[billing.payers.MCR]\nname = "MEDICARE"\nclaim_filing_indicator = "MB"\n\n'
        '[billing.rendering_providers]\n"1234567893" = "WELBY, MARCUS"\n'
    )
    settings = load_settings(
        config, env={}, overrides={"data_dir": str(data / "data"), "database_url": db}
    )
    engine = open_registry(db)
    exported = data / "report-export.json"
    if not exported.exists():
        compute_and_persist(settings.metrics, engine, as_of, now)
        result = run_export(settings.export, engine, as_of, out_dir=data / "exports", now=now)
        exported.write_text(json.dumps({"lines": result.lines, "held": result.held}))
    ledger = json.loads(exported.read_text())
    bench.warm_cache(data / "data" / "readings")

    site = args.out / f"report-site-{args.patients}"
    shutil.rmtree(site, ignore_errors=True)
    exe = Path(sys.executable).parent / "rpmpipe"
    cmd = [
        str(exe),
        "--config",
        str(config),
        "--data-dir",
        str(data / "data"),
        "--database-url",
        db,
        "--log-level",
        "ERROR",
    ]
    cmd += ["report", "--as-of", as_of.isoformat(), "--out", str(site)]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    end_to_end = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_kb, child_cpu = usage.ru_maxrss, usage.ru_utime + usage.ru_stime
    pages = sum(1 for _ in (site / "patients").iterdir())
    size = sum(p.stat().st_size for p in site.rglob("*") if p.is_file())

    phases: dict[str, float] = {}
    t = time.perf_counter()
    records = compute(settings.metrics, engine, as_of)
    phases["engagement_s"] = time.perf_counter() - t
    t = time.perf_counter()
    with gc_paused():
        inputs = gather(settings, engine, as_of, records, now)
    phases["gather_s"] = time.perf_counter() - t
    t = time.perf_counter()
    with gc_paused():
        write_site(inputs, args.out / f"report-site-{args.patients}-inprocess")
    phases["write_site_s"] = time.perf_counter() - t
    shutil.rmtree(args.out / f"report-site-{args.patients}-inprocess", ignore_errors=True)
    del build_report

    print(
        json.dumps(
            {
                "benchmark": "report",
                "patients": args.patients,
                "days": args.days,
                "readings": info["readings"],
                "as_of": as_of.isoformat(),
                "ledger_lines_exported": ledger["lines"],
                "worklist_rows": len(inputs.worklist),
                "patient_pages": pages,
                "site_mb": round(size / 1e6, 1),
                "end_to_end_s": round(end_to_end, 2),
                # CPU seconds of that run: the figure to compare on a shared machine, where
                # wall time also counts the other processes' turns.
                "end_to_end_cpu_s": round(child_cpu, 2),
                "load_average_1m": round(os.getloadavg()[0], 1),
                "peak_rss_mb": round(peak_kb / 1024),
                **{k: round(v, 2) for k, v in phases.items()},
                "bar_s": 60,
                "within_bar": end_to_end < 60,
                "cpu_within_bar": child_cpu < 60,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
