"""The registry as plain values: what the pure computation needs and nothing more."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date


@dataclass(frozen=True, slots=True)
class Assignment:
    """A device lent to a patient from ``start_date`` to ``end_date`` (inclusive; None open)."""

    device_id: str
    patient_id: str
    start_date: date
    end_date: date | None = None

    def __post_init__(self) -> None:
        if self.end_date is not None and self.end_date < self.start_date:
            raise ValueError(f"assignment of {self.device_id} ends before it starts")


@dataclass(frozen=True, slots=True)
class Enrollment:
    """A patient's enrollment in a program, ordered by the practitioner ``ordering_npi``.

    Enrollments close together in time form one episode of care (:mod:`metrics.episodes`).
    """

    patient_id: str
    program: str
    start_date: date
    end_date: date | None = None
    consent_date: date | None = None
    ordering_npi: str = ""

    def __post_init__(self) -> None:
        if self.end_date is not None and self.end_date < self.start_date:
            raise ValueError(f"enrollment of {self.patient_id} ends before it starts")

    def covers(self, day: date) -> bool:
        """True when ``day`` lies inside the enrollment and consent was on file by then."""
        return (
            self.start_date <= day
            and (self.end_date is None or day <= self.end_date)
            and self.consent_date is not None
            and self.consent_date <= day
        )


@dataclass(frozen=True)
class RegistrySnapshot:
    """Patients' time zones (IANA names), device assignments and enrollments."""

    patient_zones: Mapping[str, str] = field(default_factory=dict)
    assignments: tuple[Assignment, ...] = ()
    enrollments: tuple[Enrollment, ...] = ()

    def zone_of(self, patient_id: str, org_zone: str) -> str:
        """The patient's zone, or the organisation's when the registry has none."""
        return self.patient_zones.get(patient_id) or org_zone
