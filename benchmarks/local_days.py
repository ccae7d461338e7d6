"""Micro-benchmark: UTC instants -> patient-local day numbers (metrics.day_numbers).

One million instants over a year in four US zones (a tenth within hours of the two DST
transitions), converted by the tabulated clock (``day_numbers.local_days``, clock built in the
timing) and, in the same run, by Arrow's tz database one zone at a time (the reference, as the
care table converted them before). Prints one JSON object with the medians, their ratio and
the load average; both must give the same days.

    .venv/bin/python benchmarks/local_days.py
"""

from __future__ import annotations

import json
import os
import statistics
import time
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rpmpipe.metrics.day_numbers import DAY_US, local_days
from rpmpipe.metrics.days import day_number

ZONES = ["America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"]
N = 1_000_000
HOUR_US = 3600 * 10**6


def instants() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    first, last = day_number(date(2026, 1, 1)), day_number(date(2026, 12, 31))
    at = rng.integers(first * DAY_US, (last + 1) * DAY_US, N, dtype=np.int64)
    shifts = [day_number(date(2026, 3, 8)), day_number(date(2026, 11, 1))]
    transitions = np.array(shifts, np.int64) * DAY_US + 7 * HOUR_US
    k = N // 10
    at[:k] = transitions[rng.integers(0, 2, k)] + rng.integers(-4 * HOUR_US, 4 * HOUR_US, k)
    return at, rng.integers(0, len(ZONES), N).astype(np.int64)


def arrow_per_zone(at: np.ndarray, zone: np.ndarray) -> np.ndarray:
    out = np.empty(len(at), np.int64)
    for k, name in enumerate(ZONES):
        rows = np.flatnonzero(zone == k)
        stamps = pa.array(at[rows], pa.timestamp("us", tz=name))
        local = pc.cast(pc.local_timestamp(stamps), pa.int64()).to_numpy()
        out[rows] = np.floor_divide(local, DAY_US)
    return out


def main() -> None:
    at, zone = instants()
    runs = {
        "tabulated_clock": lambda: local_days(at, zone, ZONES),
        "arrow_per_zone": lambda: arrow_per_zone(at, zone),
    }
    if not np.array_equal(runs["tabulated_clock"](), runs["arrow_per_zone"]()):
        raise SystemExit("the two conversions disagree")
    load_before = os.getloadavg()
    seconds: dict[str, float] = {}
    for name, run in runs.items():
        times = []
        for _ in range(7):
            t = time.perf_counter()
            run()
            times.append(time.perf_counter() - t)
        seconds[name] = statistics.median(times)
    out: dict[str, object] = {"instants": N, "zones": len(ZONES)}
    out.update({f"{name}_s": round(s, 4) for name, s in seconds.items()})
    out["ratio"] = round(seconds["tabulated_clock"] / seconds["arrow_per_zone"], 3)
    out["load_before"] = [round(x, 2) for x in load_before]
    out["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
