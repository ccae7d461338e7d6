"""Registry changes an operator makes from the command line, keeping history.

Nothing a claim may point to is deleted: a device is retired (its ``retired_on`` set and its
open assignment ended), an assignment or an enrollment is ended (its ``end_date`` set). End
dates are the last day, inclusive, as in the import files. Each change is one transaction and
is idempotent: the same change again reports that nothing changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from rpmpipe.errors import RegistryRecordError
from rpmpipe.logs import get_logger
from rpmpipe.registry.models import Device, DeviceAssignment, Enrollment, Patient

log = get_logger("rpmpipe.registry.changes")


@dataclass(frozen=True)
class Change:
    """What a change did: ``changed`` is False when the registry already said so."""

    subject: str  # "device BP-1", "assignment of BP-1 to P-1 from 2026-01-02", ...
    changed: bool
    detail: str


def _not_found(kind: str, key: str, **fields: Any) -> RegistryRecordError:
    return RegistryRecordError(f"{kind} {key} is not in the registry", code="not_found", **fields)


def retire_device(engine: Engine, device_id: str, on: date) -> Change:
    """Retire ``device_id`` on ``on``: readings after that day are not counted.

    Its open assignment ends on ``on``. A device already retired on another day is refused
    (the earlier retirement stays).
    """
    with Session(engine) as session, session.begin():
        device = session.get(Device, device_id)
        if device is None:
            raise _not_found("device", device_id, device_id=device_id)
        if device.retired_on is not None:
            if device.retired_on == on:
                return Change(f"device {device_id}", False, f"already retired on {on}")
            raise RegistryRecordError(
                f"device {device_id} was already retired on {device.retired_on.isoformat()}",
                code="already_retired",
                device_id=device_id,
            )
        ended = _end_open_assignment(session, device_id, on)
        device.retired_on = on
    log.info("device_retired", device_id=device_id, on=on.isoformat(), assignment_ended=ended)
    detail = f"retired on {on}" + ("; its assignment ends on that day" if ended else "")
    return Change(f"device {device_id}", True, detail)


def _end_open_assignment(session: Session, device_id: str, on: date) -> bool:
    open_ = session.scalars(
        select(DeviceAssignment).where(
            DeviceAssignment.device_id == device_id, DeviceAssignment.end_date.is_(None)
        )
    ).all()
    for assignment in open_:
        if assignment.start_date > on:
            raise RegistryRecordError(
                f"the assignment of device {device_id} starts on "
                f"{assignment.start_date.isoformat()}, after {on.isoformat()}",
                code="ends_before_start",
                device_id=device_id,
            )
        assignment.end_date = on
    return bool(open_)


def end_assignment(engine: Engine, device_id: str, on: date) -> Change:
    """End the open assignment of ``device_id`` on ``on`` (its last day, inclusive)."""
    with Session(engine) as session, session.begin():
        if session.get(Device, device_id) is None:
            raise _not_found("device", device_id, device_id=device_id)
        latest = session.scalars(
            select(DeviceAssignment)
            .where(DeviceAssignment.device_id == device_id)
            .order_by(DeviceAssignment.start_date.desc())
        ).first()
        if latest is None:
            raise RegistryRecordError(
                f"device {device_id} has no assignment", code="no_assignment", device_id=device_id
            )
        subject = f"assignment of {device_id} from {latest.start_date.isoformat()}"
        if latest.end_date is not None:
            if latest.end_date == on:
                return Change(subject, False, f"already ends on {on}")
            raise RegistryRecordError(
                f"device {device_id} has no open assignment (the last one ended on "
                f"{latest.end_date.isoformat()})",
                code="no_open_assignment",
                device_id=device_id,
            )
        _end_open_assignment(session, device_id, on)
    log.info("assignment_ended", device_id=device_id, on=on.isoformat())
    return Change(subject, True, f"ends on {on}")


def end_enrollment(engine: Engine, patient_id: str, program: str, on: date) -> Change:
    """End ``patient_id``'s open enrollment in ``program`` on ``on`` (last day, inclusive)."""
    with Session(engine) as session, session.begin():
        if session.get(Patient, patient_id) is None:
            raise _not_found("patient", patient_id, patient_id=patient_id)
        latest = session.scalars(
            select(Enrollment)
            .where(Enrollment.patient_id == patient_id, Enrollment.program == program)
            .order_by(Enrollment.start_date.desc())
        ).first()
        if latest is None:
            raise RegistryRecordError(
                f"patient {patient_id} has no {program} enrollment",
                code="no_enrollment",
                patient_id=patient_id,
                program=program,
            )
        subject = f"{program} enrollment of {patient_id} from {latest.start_date.isoformat()}"
        if latest.end_date is not None:
            if latest.end_date == on:
                return Change(subject, False, f"already ends on {on}")
            raise RegistryRecordError(
                f"patient {patient_id} has no open {program} enrollment (the last one ended "
                f"on {latest.end_date.isoformat()})",
                code="no_open_enrollment",
                patient_id=patient_id,
                program=program,
            )
        if latest.start_date > on:
            raise RegistryRecordError(
                f"the {program} enrollment of {patient_id} starts on "
                f"{latest.start_date.isoformat()}, after {on.isoformat()}",
                code="ends_before_start",
                patient_id=patient_id,
                program=program,
            )
        latest.end_date = on
    log.info("enrollment_ended", patient_id=patient_id, program=program, on=on.isoformat())
    return Change(subject, True, f"ends on {on}")


@dataclass(frozen=True)
class PatientRecord:
    """A patient's registry record with its devices and enrollments (PHI: terminal only)."""

    patient: dict[str, Any]
    assignments: tuple[dict[str, Any], ...]
    enrollments: tuple[dict[str, Any], ...]


def patient_record(engine: Engine, patient_id: str) -> PatientRecord:
    """Everything the registry holds about ``patient_id``."""
    with Session(engine) as session:
        patient = session.get(Patient, patient_id)
        if patient is None:
            raise _not_found("patient", patient_id, patient_id=patient_id)
        fields = {a.key: getattr(patient, a.key) for a in Patient.__mapper__.column_attrs}
        assignments = tuple(
            {
                "device_id": a.device_id,
                "kind": kind,
                "start_date": a.start_date,
                "end_date": a.end_date,
                "retired_on": retired,
            }
            for a, kind, retired in session.execute(
                select(DeviceAssignment, Device.kind, Device.retired_on)
                .join(Device, Device.device_id == DeviceAssignment.device_id)
                .where(DeviceAssignment.patient_id == patient_id)
                .order_by(DeviceAssignment.start_date, DeviceAssignment.device_id)
            )
        )
        enrollments = tuple(
            {
                "program": e.program,
                "start_date": e.start_date,
                "end_date": e.end_date,
                "consent_date": e.consent_date,
                "ordering_npi": e.ordering_npi,
            }
            for e in session.scalars(
                select(Enrollment)
                .where(Enrollment.patient_id == patient_id)
                .order_by(Enrollment.program, Enrollment.start_date)
            )
        )
    return PatientRecord(fields, assignments, enrollments)
