"""Ingest end to end for the shapes the field sends: impossible activity dates, gateway
Bundles naming their device by serial number, and files imported for one device."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from ingest_helpers import register_patient
from sqlalchemy import Engine, select

from rpmpipe.ingest.pipeline import IngestPipeline, Message
from rpmpipe.ingest.quarantine import read_quarantine
from rpmpipe.registry.db import open_registry
from rpmpipe.registry.models import CareActivity
from rpmpipe.settings import Settings

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=UTC)


@pytest.fixture
def registry(settings: Settings):  # type: ignore[no-untyped-def]
    engine = open_registry(settings.effective_database_url)
    yield engine
    engine.dispose()


def activity(activity_id: str, started_at: str) -> dict[str, object]:
    return {
        "activity_id": activity_id,
        "patient_id": "P1",
        "staff_id": "RN-1",
        "started_at": started_at,
        "minutes": 12,
        "kind": "phone_call",
        "interactive": True,
    }


def test_activity_with_an_impossible_date_is_quarantined_as_bad_time_and_the_rest_stored(
    settings: Settings, registry: Engine
) -> None:
    register_patient(registry)
    topic = f"{settings.broker.topic_root}/activities"
    messages = [
        Message(topic, orjson.dumps(activity("A-1", "2026-11-20T09:00:00-06:00")), NOW),
        Message(topic, orjson.dumps(activity("A-2", "9999-12-31T23:59:59-14:00")), NOW),
        Message(topic, orjson.dumps(activity("A-3", "0001-01-01T00:00:00Z")), NOW),
        Message(topic, orjson.dumps(activity("A-4", "2026-11-22T00:00:00Z")), NOW),
        Message(
            topic,
            orjson.dumps(
                [
                    activity("A-5", "2026-11-19T10:00:00Z"),
                    activity("A-6", "0001-01-01T00:30:00+01:00"),
                ]
            ),
            NOW,
        ),
    ]
    outcome = IngestPipeline(settings, registry, "t").handle(messages)
    assert outcome.activities == 2
    assert outcome.quarantined == {"bad_time": 4}
    with registry.connect() as conn:
        stored = sorted(conn.execute(select(CareActivity.activity_id)).scalars())
    assert stored == ["A-1", "A-5"]
    reasons = sorted(read_quarantine(settings.quarantine_dir).column("reason").to_pylist())
    assert all("started_at: is outside the accepted range" in r for r in reasons)
    assert any(r.startswith("item 2 of 2: ") for r in reasons)
