"""Decoder throughput per payload format: payloads decoded per second by ``decode()``.

The payloads are the simulator's (native, Open mHealth, FHIR; one reading, and a batched sync
of ten), decoded as ingest decodes them: with a topic device. Each format is timed over
``--count`` payloads in CPU time (``time.process_time``: other processes on a shared machine
distort it less than wall time), best of ``--repeat`` rounds. Prints JSON.

    .venv/bin/python benchmarks/decoders.py [--count 3000] [--repeat 9]
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from rpmpipe.ingest.decoders import decode  # noqa: E402
from rpmpipe.simulators.payloads import SimReading, encode_readings, reading_id_for  # noqa: E402

DEVICE = "BP-000777"
RECEIVED = datetime(2026, 11, 3, 14, 0, tzinfo=UTC)


def sim_readings(fmt: str, n: int) -> tuple[SimReading, ...]:
    start = datetime(2026, 11, 3, 7, 0, tzinfo=UTC)
    return tuple(
        SimReading(
            device_id=DEVICE,
            patient_id="P-1",
            reading_id=reading_id_for(DEVICE, i, fmt),
            type="blood_pressure",
            measured_at=start + timedelta(minutes=i),
            systolic=120 + i % 20,
            diastolic=80 - i % 10,
            pulse=70,
        )
        for i in range(n)
    )


def payloads() -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for fmt in ("native", "omh", "fhir"):
        out[f"{fmt}_single"] = encode_readings(sim_readings(fmt, 1), fmt, batched=False)
        out[f"{fmt}_batch10"] = encode_readings(sim_readings(fmt, 10), fmt, batched=True)
    return out


def rate(payload: bytes, count: int, repeat: int) -> float:
    decoded = decode(DEVICE, payload, RECEIVED)
    assert decoded.readings and not decoded.rejects, decoded.rejects
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        for _ in range(count):
            decode(DEVICE, payload, RECEIVED)
        best = min(best, time.process_time() - started)
    return count / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=3_000)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    result = {
        "count": args.count,
        "repeat": args.repeat,
        "payloads_per_second": {
            name: round(rate(payload, args.count, args.repeat))
            for name, payload in payloads().items()
        },
    }
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
