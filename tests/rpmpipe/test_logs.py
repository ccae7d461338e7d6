"""Structured logs: rpmpipe's events at the chosen level, third-party chatter held back."""

from __future__ import annotations

import io
import json
import logging

from rpmpipe.logs import configure_logging, get_logger


def test_debug_level_applies_to_rpmpipe_not_to_third_party_loggers() -> None:
    out = io.StringIO()
    configure_logging("DEBUG", "json", stream=out)
    get_logger("ingest.subscriber").debug("batch_stored", rows=3)
    logging.getLogger("amqtt.broker").debug('payload b\'{"first_name": "Ann"}\'')
    logging.getLogger("markdown_it").debug("parsing help text")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [entry["event"] for entry in lines] == ["batch_stored"]
    assert lines[0]["rows"] == 3


def test_phi_fields_are_dropped_from_events() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    get_logger("rpmpipe.registry").info(
        "patient_seen",
        patient_id="P-1",
        last_name="O'Neil",
        birth_date="1950-02-03",
        member_id="1EG4TE5MK72",
    )
    entry = json.loads(out.getvalue())
    assert entry["patient_id"] == "P-1"
    assert not {"last_name", "birth_date", "member_id"} & set(entry)
