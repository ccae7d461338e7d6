"""``rpmpipe quarantine replay``: re-ingest quarantined payloads after a fix, exactly-once.

Each record is decoded again exactly as it first was (same topic, same receipt time). Records
that now succeed are removed from quarantine; those that still fail stay with their first
reason unchanged (it names what went wrong on arrival, e.g. the backfill line), and the latest
attempt's reason is recorded beside it (``last_reason_code``, ``last_reason``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from rpmpipe.errors import ServiceUnavailable
from rpmpipe.ingest.pipeline import IngestPipeline, Message
from rpmpipe.ingest.quarantine import read_quarantine
from rpmpipe.logs import get_logger
from rpmpipe.settings import IngestSettings

log = get_logger(__name__)


@dataclass(frozen=True)
class ReplaySummary:
    considered: int
    stored: int
    duplicates: int
    replayed: int  # records removed from quarantine
    still_quarantined: int


def replay(
    settings: IngestSettings,
    engine: Engine,
    reason_code: str | None = None,
    *,
    batch_size: int = 2000,
) -> ReplaySummary:
    table = read_quarantine(settings.store.quarantine_dir)
    rows = table.to_pylist()
    if reason_code:
        rows = [r for r in rows if r["reason_code"] == reason_code]
    pipeline = IngestPipeline(settings, engine, "replay", device_refresh=0.0)
    stored = duplicates = 0
    failing: dict[str, tuple[str, str]] = {}
    # Only the start of an oversized payload was kept: it cannot be replayed.
    cut = [r for r in rows if r.get("payload_size") is not None]
    for r in cut:
        failing[r["quarantine_id"]] = (
            r["reason_code"],
            f"only the first {len(r['payload'])} of {r['payload_size']} bytes were kept",
        )
    rows = [r for r in rows if r.get("payload_size") is None]
    considered = {r["quarantine_id"] for r in rows} | failing.keys()
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        messages = [
            Message(r["topic"], r["payload"], r["received_at"], source=r["source"]) for r in chunk
        ]
        outcome = pipeline.handle(messages)
        if outcome.pending:
            raise ServiceUnavailable(
                f"the registry database is unavailable ({outcome.pending_error}); "
                "rerun the replay once it is back"
            )
        stored += outcome.stored
        duplicates += outcome.duplicates
        for e in outcome.entries:
            if e.quarantine_id in considered:
                failing[e.quarantine_id] = (e.reason_code, e.reason)
    done = considered - failing.keys()
    pipeline.quarantine.remove(done, failing)
    summary = ReplaySummary(len(considered), stored, duplicates, len(done), len(failing))
    log.info(
        "quarantine_replayed",
        considered=summary.considered,
        stored=stored,
        duplicates=duplicates,
        replayed=summary.replayed,
        still_quarantined=summary.still_quarantined,
    )
    return summary
