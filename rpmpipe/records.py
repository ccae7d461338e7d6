"""Value types that cross stage boundaries. Each validates itself on construction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, NamedTuple

READING_TYPES = ("blood_pressure", "body_weight", "spo2", "blood_glucose", "heart_rate")
ACTIVITY_KINDS = (
    "phone_call",
    "video_visit",
    "secure_message",
    "data_review",
    "care_plan_update",
    "portal_message",
    "questionnaire",
)
# A questionnaire records a patient-reported outcome; it may carry no staff time (0 minutes).
UNTIMED_KINDS = ("questionnaire",)


class RecordStatus(StrEnum):
    """An engagement record's status: the ``status`` value of its CSV row and JSON object."""

    BILLABLE = "billable"  # final, with service lines to bill
    PENDING = "pending"  # the period or month is still open
    NOT_BILLABLE = "not_billable"  # final, nothing to bill (the reason says why)


class RecordKind(StrEnum):
    """What an engagement record covers: the ``kind`` value of its CSV row and JSON object."""

    DEVICE_SUPPLY = "device_supply"  # a 30-day supply period (counted in days)
    TREATMENT_MANAGEMENT = "treatment_management"  # a calendar month (counted in minutes)
    SETUP = "setup"  # the setup of an episode of care (billed once per episode)
    DATA_INTERPRETATION = "data_interpretation"  # a physician's review of the month's data


class Program(StrEnum):
    """Care-management programs a patient may be enrolled in."""

    RPM = "RPM"
    RTM = "RTM"
    CCM = "CCM"
    PCM = "PCM"
    APCM = "APCM"
    BHI = "BHI"


class LineKind(StrEnum):
    """What a row of the export ledger stands for (its ``line_kind``)."""

    ORIGINAL = "original"  # a line of a claim sent (frequency 1)
    REPLACEMENT = "replacement"  # a line of a replacement claim sent (frequency 7)
    VOID_CLAIM = "void_claim"  # a line a void claim (frequency 8) repeated to cancel it
    CORRECTION = "correction"  # a change reported for review, not billed
    VOID = "void"  # no longer billable: reported for review, not billed


BILLED_LINE_KINDS = (LineKind.ORIGINAL, LineKind.REPLACEMENT)  # lines a claim bills
REVIEW_LINE_KINDS = (LineKind.CORRECTION, LineKind.VOID)  # reported, never sent

STATUSES = tuple(RecordStatus)
RECORD_KINDS = tuple(RecordKind)
# Care-management programs a patient may be enrolled in, and who performs care time.
PROGRAMS = tuple(Program)
PERFORMERS = ("clinical_staff", "physician")

# Nothing rpmpipe stores (a reading, a care activity) is dated before this: earlier dates are
# device clock resets or typing errors, refused at the edge.
EARLIEST_DATA_TIME = datetime(2000, 1, 1, tzinfo=UTC)


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


@dataclass(frozen=True, slots=True)
class Reading:
    """One physiologic measurement as stored in the readings dataset."""

    device_id: str
    type: str
    measured_at: datetime
    received_at: datetime
    reading_id: str | None = None
    manual_entry: bool = False
    source_format: str = "native"
    systolic_mmhg: float | None = None
    diastolic_mmhg: float | None = None
    pulse_bpm: float | None = None
    weight_kg: float | None = None
    spo2_pct: float | None = None
    glucose_mg_dl: float | None = None
    irregular_heartbeat: bool | None = None
    clock_suspect: bool = False
    extra: str | None = None  # unknown fields of the payload, as JSON text

    def __post_init__(self) -> None:
        _require_aware("measured_at", self.measured_at)
        _require_aware("received_at", self.received_at)
        if self.type not in READING_TYPES:
            raise ValueError(f"unknown reading type {self.type!r}")

    @property
    def dedup_key(self) -> str:
        """The identity used for exactly-once storage."""
        if self.reading_id:
            return f"id:{self.device_id}:{self.reading_id}"
        return f"dtm:{self.device_id}|{self.type}|{self.measured_at.isoformat()}"


@dataclass(frozen=True, slots=True)
class Activity:
    """A care-team time entry. ``interactive`` marks real-time two-way communication."""

    activity_id: str
    patient_id: str
    staff_id: str
    started_at: datetime
    minutes: Decimal
    kind: str
    interactive: bool
    program: str = Program.RPM  # the one program this time counts for
    performer: str = "clinical_staff"  # or "physician" (physician/QHP personally)
    # Set when the entry was voided (kept with who, when and why; it no longer counts).
    voided_reason: str | None = None
    goals_reviewed: tuple[str, ...] = ()  # care-plan goal ids discussed
    pro_instrument: str = ""  # a patient-reported outcome, e.g. "PHQ-9" ...
    pro_score: Decimal | None = None  # ... and its score
    note_ref: str = ""  # the EHR note that documents the activity

    def __post_init__(self) -> None:
        _require_aware("started_at", self.started_at)
        if self.kind not in ACTIVITY_KINDS:
            raise ValueError(f"unknown activity kind {self.kind!r}")
        if self.program not in PROGRAMS:
            raise ValueError(f"unknown program {self.program!r}")
        if self.performer not in PERFORMERS:
            raise ValueError(f"unknown performer {self.performer!r}")
        least = Decimal(0) if self.kind in UNTIMED_KINDS else Decimal("0.01")
        if self.minutes < least or self.minutes > 24 * 60:
            raise ValueError(f"minutes must be between 0 and 1440, got {self.minutes}")
        if (self.pro_score is None) != (not self.pro_instrument):
            raise ValueError("a patient-reported outcome needs both its instrument and score")


# The text form of a service line, ``99454x1@2026-11-30``: the code, UNITS_MARK, the units,
# DATE_MARK, the ISO date of service. Vectorised renderings join a code column and a date
# column with :func:`line_infix` (metrics/periods.py), so both spell it one way.
UNITS_MARK = "x"
DATE_MARK = "@"


def line_infix(units: int) -> str:
    """What the text form of a line of ``units`` puts between its code and its ISO date."""
    return f"{UNITS_MARK}{units}{DATE_MARK}"


class ServiceLine(NamedTuple):
    """One service to bill: a procedure code, its units and its date of service.

    A tuple (hundreds of thousands are made per run), ordered by code, units, then date. Its
    one text form, ``99454x1@2026-11-30`` (code, ``x``, units, ``@``, ISO date), is the CSV
    ``lines`` cell, the terminal table's and the correction reports'; :meth:`parse` reads it
    back. :meth:`to_json` / :meth:`from_json` are its JSON object (the contract's
    ``{code, units, date_of_service}``, also the registry's ``lines_json``).
    """

    code: str
    units: int
    date_of_service: date

    def __str__(self) -> str:
        return f"{self.code}{UNITS_MARK}{self.units}{DATE_MARK}{self.date_of_service.isoformat()}"

    @property
    def billed(self) -> str:
        """The line as a biller says it: ``99439``, or ``2x 99439`` for two units."""
        return self.code if self.units == 1 else f"{self.units}x {self.code}"

    @classmethod
    def parse(cls, text: str) -> ServiceLine:
        """The line written as ``str(line)``; ``ValueError`` for any other text."""
        head, at, day = text.rpartition(DATE_MARK)
        code, x, units = head.rpartition(UNITS_MARK)
        if not (at and x and code and units.isdecimal() and units.isascii()):
            raise ValueError(f"not a service line (code x units @ date): {text!r}")
        if not _is_code(code):
            raise ValueError(f"not a procedure code: {code!r}")
        return cls(code, int(units), date.fromisoformat(day))

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "units": self.units,
            "date_of_service": self.date_of_service.isoformat(),
        }

    @classmethod
    def from_json(cls, item: Mapping[str, Any]) -> ServiceLine:
        """The line of one ``to_json`` object (``KeyError``/``ValueError``/``TypeError`` when bad)."""
        return cls(
            str(item["code"]), int(item["units"]), date.fromisoformat(item["date_of_service"])
        )


def billed_text(lines: Iterable[ServiceLine]) -> str:
    """Lines as a biller says them, in the record reasons and the correction reports:
    ``99490 + 2x 99439``."""
    return " + ".join(line.billed for line in lines)


def _is_code(code: str) -> bool:
    # CPT/HCPCS codes: letters and digits (never the text form's "x" and "@").
    return code.isascii() and code.isalnum() and UNITS_MARK not in code


@dataclass(frozen=True, slots=True)
class EngagementRecord:
    """One patient's engagement in one supply period, management month, or setup episode.

    ``management_minutes`` is all care time that counts in the month (the union of the
    entries' intervals); ``interactive_minutes`` the part of it spent in real-time, two-way
    audio or video communication. ``ordering_npi`` is the practitioner of the enrollment that
    owns the record (the one it is billed under); ``episode_start`` the first day of the
    episode of care (its first enrollment's start), the same on every record of the episode.
    ``activities_not_counted`` names entries of the month left out, with why (an exact
    duplicate, a voided entry, one held for review).
    """

    patient_id: str
    program: str
    kind: str
    period_start: date
    period_end: date
    status: str
    reason: str
    rule_set: str
    transmission_days: int = 0
    interactive_minutes: Decimal = Decimal(0)
    interactive_communications: int = 0
    lines: tuple[ServiceLine, ...] = ()
    evidence_dates: tuple[date, ...] = ()
    evidence_activity_ids: tuple[str, ...] = ()
    management_minutes: Decimal = Decimal(0)
    ordering_npi: str = ""
    episode_start: date | None = None
    activities_not_counted: tuple[tuple[str, str], ...] = ()  # (activity id, why)
    forecast: dict[str, object] | None = field(default=None, hash=False, compare=False)

    def evidence_json(self) -> dict[str, Any]:
        """The evidence behind the record as a JSON object (the contract's ``evidence``, also
        the registry's ``evidence_json``)."""
        evidence: dict[str, Any] = {
            "dates": [d.isoformat() for d in self.evidence_dates],
            "activity_ids": list(self.evidence_activity_ids),
        }
        if self.activities_not_counted:
            evidence["activities_not_counted"] = [
                {"activity_id": aid, "why": why} for aid, why in self.activities_not_counted
            ]
        return evidence

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")
        if self.kind not in RECORD_KINDS:
            raise ValueError(f"unknown record kind {self.kind!r}")
        if self.period_end < self.period_start:
            raise ValueError("period_end before period_start")


RecordKey = tuple[str, str, str, date]  # patient_id, program, record kind, period_start
LineSig = tuple[ServiceLine, ...]  # sorted (by code, units, date of service)


@dataclass(frozen=True, slots=True)
class FinalRecord(EngagementRecord):
    """An engagement record whose period ended before the as-of date, as the export bills it:
    its lines sorted (a :data:`LineSig`), its minutes to the cent, and the NPI its lines go
    out under (``rendering_npi``: the record's ordering NPI, or for records stored without
    one the enrollment's covering the period end)."""

    rendering_npi: str = ""

    @property
    def key(self) -> RecordKey:
        return (self.patient_id, self.program, self.kind, self.period_start)

    @property
    def billed_lines(self) -> LineSig:
        return self.lines if self.status == RecordStatus.BILLABLE else ()
