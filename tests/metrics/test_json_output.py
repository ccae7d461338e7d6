"""``rpmpipe metrics --format json`` writes its records a chunk at a time: the same bytes as one
document of them all."""

from __future__ import annotations

import io
from datetime import date

import orjson
import pytest
from engagement_world import ORG_ZONE, World

from rpmpipe.metrics.engagement import compute_engagement
from rpmpipe.metrics.report import record_to_dict, write_json
from rpmpipe.settings import RuleSettings


def _records() -> list:  # type: ignore[type-arg]
    w = World()
    for k in range(4):
        first = date(2026, 1, 5 + k)
        w.patient(f"P{k}", start=first, consent=first).daily(f"P{k}", first, 20 + 9 * k)
    records = compute_engagement(
        w.table(), w.snapshot(), w.activities, date(2026, 4, 1), RuleSettings(), ORG_ZONE
    )
    assert len(records) > 5
    return records


@pytest.mark.parametrize("chunk", [1, 2, 3, 5_000])
def test_json_written_in_chunks_is_one_indented_document(chunk: int) -> None:
    records = _records()
    out = io.BytesIO()
    write_json(records, out, chunk)
    whole = orjson.dumps([record_to_dict(r) for r in records], option=orjson.OPT_INDENT_2)
    assert out.getvalue() == whole + b"\n"
    assert orjson.loads(out.getvalue()) == orjson.loads(whole)


def test_json_of_no_records_is_an_empty_array() -> None:
    out = io.BytesIO()
    write_json([], out)
    assert out.getvalue() == b"[]\n"
