"""The readings reader on days whose files differ: one schema out, whatever each file holds."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rpmpipe.metrics.sources import reading_batches


def _day(root: Path, day: str, table: pa.Table) -> None:
    part = root / f"date={day}"
    part.mkdir(parents=True)
    pq.write_table(table, part / "part-0.parquet")


def _stamps(*hours: int, unit: str = "us", tz: str | None = "UTC") -> pa.Array:
    values = [datetime(2026, 3, 2, h, tzinfo=UTC) for h in hours]
    if tz is None:
        values = [v.replace(tzinfo=None) for v in values]
    return pa.array(values, pa.timestamp(unit, tz=tz))


def test_files_with_other_columns_and_types_come_out_in_the_first_files_schema(
    tmp_path: Path,
) -> None:
    """A day with flags and received_at, a day without flags (absent means not flagged) whose
    timestamps are naive nanoseconds and whose ids are large strings: every batch has the
    same five columns and types, and every reading is there once."""
    root = tmp_path / "readings"
    _day(
        root,
        "2026-03-02",
        pa.table(
            {
                "device_id": ["BP-1", "BP-2"],
                "type": ["blood_pressure", "battery"],
                "measured_at": _stamps(10, 11),
                "received_at": _stamps(10, 11),
                "manual_entry": [True, None],
                "clock_suspect": [False, False],
            }
        ),
    )
    _day(
        root,
        "2026-03-03",
        pa.table(
            {
                "device_id": pa.array(["BP-3", "BP-3", "BP-4"], pa.large_string()),
                "type": ["body_weight", "body_weight", "blood_pressure"],
                "measured_at": _stamps(12, 13, 14, unit="ns", tz=None),
                "vendor": ["x", "y", "z"],
            }
        ),
    )
    batches = list(reading_batches(root, date(2026, 3, 2), date(2026, 3, 3)))
    schemas = {b.schema for b in batches}
    assert len(schemas) == 1
    (schema,) = schemas
    assert schema.names == ["device_id", "type", "measured_at", "manual_entry", "clock_suspect"]
    assert schema.field("device_id").type == pa.dictionary(pa.int32(), pa.string())
    table = pa.Table.from_batches(batches)
    assert table.column("device_id").to_pylist() == ["BP-1", "BP-2", "BP-3", "BP-3", "BP-4"]
    assert table.column("manual_entry").to_pylist() == [True, None, None, None, None]
    micros = table.column("measured_at").cast(pa.int64()).to_pylist()
    assert micros == [
        int(datetime(2026, 3, 2, h, tzinfo=UTC).timestamp() * 1e6) for h in (10, 11, 12, 13, 14)
    ]


def test_known_at_keeps_what_had_arrived_and_skips_a_file_that_cannot_say(tmp_path: Path) -> None:
    """Each file is filtered on its own received_at type; a later file without received_at
    holds nothing known by then."""
    root = tmp_path / "readings"
    _day(
        root,
        "2026-03-02",
        pa.table(
            {
                "device_id": ["BP-1", "BP-1"],
                "type": ["blood_pressure", "blood_pressure"],
                "measured_at": _stamps(10, 11),
                "received_at": _stamps(10, 20),
            }
        ),
    )
    _day(
        root,
        "2026-03-03",
        pa.table(
            {
                "device_id": ["BP-2"],
                "type": ["blood_pressure"],
                "measured_at": _stamps(12, unit="ns"),
                "received_at": _stamps(12, unit="ns"),
            }
        ),
    )
    _day(
        root,
        "2026-03-04",
        pa.table({"device_id": ["BP-3"], "type": ["blood_pressure"], "measured_at": _stamps(13)}),
    )
    known = datetime(2026, 3, 2, 15, tzinfo=UTC)
    batches = list(reading_batches(root, date(2026, 3, 2), date(2026, 3, 4), known_at=known))
    ids = pa.Table.from_batches(batches).column("device_id").to_pylist()
    assert ids == ["BP-1", "BP-2"]
    everything = list(reading_batches(root, date(2026, 3, 2), date(2026, 3, 4)))
    assert sum(b.num_rows for b in everything) == 4


def test_known_at_on_a_store_without_received_at_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "readings"
    _day(
        root,
        "2026-03-02",
        pa.table({"device_id": ["BP-1"], "type": ["blood_pressure"], "measured_at": _stamps(10)}),
    )
    with pytest.raises(ValueError, match="no received_at"):
        list(
            reading_batches(
                root, date(2026, 3, 2), date(2026, 3, 2), datetime(2026, 3, 3, tzinfo=UTC)
            )
        )
