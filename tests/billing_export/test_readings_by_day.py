"""The readings behind each (patient, local date) of a run's evidence, from real Parquet."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from rpmpipe.billing_export.evidence import AssignmentSpan, readings_by_day
from rpmpipe.ingest.schema import READINGS_SCHEMA


def write(root: Path, rows: list[dict[str, object]]) -> None:
    by_day: dict[str, list[dict[str, object]]] = {}
    for r in rows:
        at = r["measured_at"]
        assert isinstance(at, datetime)
        by_day.setdefault(at.date().isoformat(), []).append(r)
    for day, part in by_day.items():
        columns = {
            f.name: [
                r.get(f.name, {"manual_entry": False, "clock_suspect": False}.get(f.name))
                for r in part
            ]
            for f in READINGS_SCHEMA
        }
        for r, row in zip(part, range(len(part)), strict=True):
            columns["received_at"][row] = r["measured_at"]
            columns["source_format"][row] = "json"
            columns["dedup_key"][row] = f"{r['device_id']}:{r.get('reading_id') or row}"
        folder = root / f"date={day}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pydict(columns, schema=READINGS_SCHEMA), folder / "r.parquet")


def reading(rid: str | None, device: str, at: datetime, **extra: object) -> dict[str, object]:
    return {
        "reading_id": rid,
        "device_id": device,
        "type": "blood_pressure",
        "measured_at": at,
        **extra,
    }


def test_readings_per_local_date_of_the_patient_assigned_and_transmitted(tmp_path: Path) -> None:
    nov = lambda d, h, m=0: datetime(2026, 11, d, h, m, tzinfo=UTC)  # noqa: E731
    write(
        tmp_path,
        [
            reading("R2", "BP-1", nov(3, 15)),
            reading("R1", "BP-1", nov(3, 14)),
            # 03:30 UTC on the 4th is the evening of the 3rd in Chicago
            reading("R3", "BP-1", nov(4, 3, 30)),
            reading("R4", "BP-1", nov(5, 15), manual_entry=True),
            reading("R5", "BP-1", nov(5, 16), clock_suspect=True),
            reading("R6", "BP-1", nov(5, 17), type="step_count"),
            reading(None, "BP-1", nov(6, 15)),  # no reading id: the dedup key names it
            reading("R8", "BP-1", nov(7, 15)),  # not a wanted date
            # the same device, lent to P-2 (Tokyo) from the 10th
            reading("R9", "BP-1", nov(10, 1)),
            reading("S1", "SC-9", nov(3, 15)),  # nobody's device
        ],
    )
    wanted = {
        "P-1": {date(2026, 11, d) for d in (3, 5, 6, 10)},
        "P-2": {date(2026, 11, 10)},
    }
    spans = [
        AssignmentSpan("BP-1", "P-1", date(2026, 11, 1), date(2026, 11, 9)),
        AssignmentSpan("BP-1", "P-2", date(2026, 11, 10), None),
    ]
    zones = {"P-1": "America/Chicago", "P-2": "Asia/Tokyo"}
    found = readings_by_day(tmp_path, wanted, spans, zones)
    assert found == {
        ("P-1", date(2026, 11, 3)): (["R1", "R2", "R3"], ["BP-1"] * 3),
        ("P-1", date(2026, 11, 6)): (["BP-1:0"], ["BP-1"]),
        ("P-2", date(2026, 11, 10)): (["R9"], ["BP-1"]),
    }
