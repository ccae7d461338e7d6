"""The values passed to and from :class:`~rpmpipe.ingest.pipeline.IngestPipeline`.

Apart from the pipeline (no pyarrow, no database), so that the subscriber can connect to the
broker and take messages in while the pipeline's libraries are still loading.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from rpmpipe.ingest.quarantine import QuarantineEntry


class Message(NamedTuple):
    """One payload as received (an immutable value; a NamedTuple because it is per-message)."""

    topic: str
    payload: bytes
    received_at: datetime
    label: str = ""  # prefixed to quarantine reasons, e.g. "line 12"
    source: str = "mqtt"


@dataclass
class BatchOutcome:
    stored: int = 0
    duplicates: int = 0
    activities: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)
    entries: list[QuarantineEntry] = field(default_factory=list)
    # (message index in the batch, reason code) per quarantine entry, in entry order.
    rejected: list[tuple[int, str]] = field(default_factory=list)
    # Indices of messages whose activities wait for the database: do not acknowledge them.
    pending: list[int] = field(default_factory=list)
    # Why they wait (an exception type and, for the record, whether the database answered).
    pending_error: str = ""


def internal_reason(exc: BaseException, where: str) -> str:
    """The quarantine sentence for an unexpected error: the type only (a message may be PHI)."""
    return f"{type(exc).__name__} while {where}"
