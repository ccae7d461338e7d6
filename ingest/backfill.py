"""``rpmpipe import readings FILE.jsonl``: one payload per line, the same path as MQTT.

With ``device_id`` every line is taken as if it came on that device's readings topic: a file of
payloads that name no device (a FHIR export of one device, an Open mHealth file of one source)
is stored for that device, and a line naming another device is a ``device_mismatch``, exactly
as on MQTT. Quarantined lines keep that topic, so a replay decodes them the same way.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine

from rpmpipe.errors import DecodeError, RegistryImportError, ServiceUnavailable
from rpmpipe.ingest.pipeline import BACKFILL_TOPIC, IngestPipeline, Message
from rpmpipe.ingest.validation import check_device_id
from rpmpipe.logs import get_logger
from rpmpipe.settings import IngestSettings

log = get_logger(__name__)


@dataclass
class BackfillSummary:
    lines: int = 0
    stored: int = 0
    duplicates: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)
    # (line number, reason code) per quarantine record, in line order (no payload: PHI).
    rejected_lines: list[tuple[int, str]] = field(default_factory=list)


def backfill_file(
    settings: IngestSettings,
    engine: Engine,
    path: Path,
    received_at: datetime,
    *,
    batch_lines: int = 5000,
    device_id: str | None = None,
) -> BackfillSummary:
    """Store every reading of ``path``; bad lines go to quarantine with their line number.

    ``device_id`` (a registered device) stands for the topic of live traffic: see above.
    RegistryImportError when it is not a registered device id; nothing is read then.
    """
    pipeline = IngestPipeline(settings, engine, "backfill")
    topic = BACKFILL_TOPIC
    if device_id is not None:
        try:
            check_device_id(device_id)
        except DecodeError as exc:
            raise RegistryImportError(str(path), 0, "--device", exc.detail) from None
        if device_id not in pipeline.devices:
            raise RegistryImportError(
                str(path), 0, "--device", f"device {device_id} is not in the registry"
            )
        topic = f"{settings.broker.topic_root}/devices/{device_id}/readings"
    summary = BackfillSummary()
    batch: list[Message] = []
    numbers: list[int] = []  # the line number of each message of ``batch``

    def flush() -> None:
        outcome = pipeline.handle(batch)
        if outcome.pending:
            lines = ", ".join(str(numbers[i]) for i in outcome.pending[:5])
            raise ServiceUnavailable(
                f"the registry database is unavailable ({outcome.pending_error}); lines "
                f"{lines}{', ...' if len(outcome.pending) > 5 else ''} were not stored: rerun "
                "the import once it is back (stored lines are not stored twice)",
                service="database",
            )
        summary.stored += outcome.stored
        summary.duplicates += outcome.duplicates
        summary.quarantined.update(outcome.quarantined)
        summary.rejected_lines.extend(sorted((numbers[i], code) for i, code in outcome.rejected))
        batch.clear()
        numbers.clear()

    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            payload = line.rstrip(b"\r\n")
            if not payload.strip():
                continue
            summary.lines += 1
            batch.append(Message(topic, payload, received_at, f"line {number}", "backfill"))
            numbers.append(number)
            if len(batch) >= batch_lines:
                flush()
    if batch:
        flush()
    log.info(
        "backfill_done",
        lines=summary.lines,
        stored=summary.stored,
        duplicates=summary.duplicates,
        quarantined=sum(summary.quarantined.values()),
    )
    return summary
