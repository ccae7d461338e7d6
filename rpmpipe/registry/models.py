"""Registry tables (SQLAlchemy 2). Schema changes go through Alembic (rpmpipe/migrations)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from rpmpipe.registry import tables

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes stored as UTC and read back aware, on SQLite (no zone) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("refusing to store a naive datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]
        return value.astimezone(UTC)  # type: ignore[no-any-return]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Patient(Base):
    __tablename__ = tables.PATIENTS

    patient_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    mrn: Mapped[str] = mapped_column(String(64), default="")
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100))
    birth_date: Mapped[date] = mapped_column(Date)
    sex: Mapped[str] = mapped_column(String(1))  # M, F or U
    address1: Mapped[str] = mapped_column(String(200))
    city: Mapped[str] = mapped_column(String(100))
    state: Mapped[str] = mapped_column(String(2))
    zip: Mapped[str] = mapped_column(String(10))
    timezone: Mapped[str] = mapped_column(String(64))  # IANA name
    payer_id: Mapped[str] = mapped_column(String(64))
    payer_name: Mapped[str] = mapped_column(String(200))
    member_id: Mapped[str] = mapped_column(String(64))
    icd10_codes: Mapped[str] = mapped_column(String(400))  # ';'-separated, with dots as entered
    qmb: Mapped[bool | None] = mapped_column(Boolean, nullable=True)  # None: not on file


class Device(Base):
    __tablename__ = "devices"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # bp_cuff, scale, pulse_oximeter, glucometer
    model: Mapped[str] = mapped_column(String(100), default="")
    # The device's own identifier (serial number, or IEEE 11073 system identifier), by which a
    # FHIR Device resource names it; at most one device per serial number.
    serial_number: Mapped[str | None] = mapped_column(String(64), nullable=True, default=None)
    # Set by `rpmpipe devices retire`: the device stays (claims may point to it), unused.
    retired_on: Mapped[date | None] = mapped_column(Date, nullable=True, default=None)


class DeviceAssignment(Base):
    """A device lent to a patient. ``end_date`` is the last day, inclusive; NULL is open."""

    __tablename__ = tables.DEVICE_ASSIGNMENTS
    __table_args__ = (UniqueConstraint("device_id", "start_date"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.device_id"), index=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.patient_id"), index=True)
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date, nullable=True)


class Enrollment(Base):
    __tablename__ = tables.ENROLLMENTS
    __table_args__ = (UniqueConstraint("patient_id", "program", "start_date"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.patient_id"), index=True)
    program: Mapped[str] = mapped_column(String(16))  # one of rpmpipe.records.PROGRAMS
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    consent_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    ordering_npi: Mapped[str] = mapped_column(String(10))


class CareActivity(Base):
    __tablename__ = tables.CARE_ACTIVITIES
    __table_args__ = (Index("ix_care_activities_patient_started", "patient_id", "started_at"),)

    activity_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64))
    staff_id: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    minutes: Mapped[Decimal] = mapped_column(Numeric(8, 2))
    kind: Mapped[str] = mapped_column(String(32))
    interactive: Mapped[bool] = mapped_column(Boolean)
    program: Mapped[str] = mapped_column(String(16), default="RPM")
    performer: Mapped[str] = mapped_column(
        String(16), default="clinical_staff", server_default="clinical_staff"
    )
    # A voided entry is kept (who, when, why) and no longer counts.
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    voided_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    voided_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Engagement beyond minutes: care-plan goal ids discussed (';'-separated), a
    # patient-reported outcome (instrument and score) and the EHR note that documents it.
    goals_reviewed: Mapped[str] = mapped_column(Text, default="")
    pro_instrument: Mapped[str] = mapped_column(String(32), default="")
    pro_score: Mapped[Decimal | None] = mapped_column(Numeric(8, 2), nullable=True)
    note_ref: Mapped[str] = mapped_column(String(64), default="")


class CarePlan(Base):
    """One version of a patient's care plan for a program: established, or revised on
    ``revised_on``. ``version_on`` (the revision date, else the establishment date) keys it."""

    __tablename__ = tables.CARE_PLANS
    __table_args__ = (UniqueConstraint("patient_id", "program", "version_on"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.patient_id"), index=True)
    program: Mapped[str] = mapped_column(String(16))
    established_on: Mapped[date] = mapped_column(Date)
    revised_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    shared_with_patient_on: Mapped[date | None] = mapped_column(Date, nullable=True)
    version_on: Mapped[date] = mapped_column(Date)


class EngagementRow(Base):
    """A final engagement record, persisted so exports and audits read the same numbers."""

    __tablename__ = "engagement_records"
    __table_args__ = (UniqueConstraint("patient_id", "program", "kind", "period_start"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    patient_id: Mapped[str] = mapped_column(String(64), index=True)
    program: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    rule_set: Mapped[str] = mapped_column(String(16))
    transmission_days: Mapped[int] = mapped_column(Integer, default=0)
    interactive_minutes: Mapped[Decimal] = mapped_column(Numeric(8, 2), default=Decimal(0))
    interactive_communications: Mapped[int] = mapped_column(Integer, default=0)
    lines_json: Mapped[str] = mapped_column(Text, default="[]")
    evidence_json: Mapped[str] = mapped_column(Text, default="{}")
    as_of: Mapped[date] = mapped_column(Date)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # All care time that counts (interactive_minutes: the real-time two-way part of it).
    management_minutes: Mapped[Decimal] = mapped_column(
        Numeric(8, 2), default=Decimal(0), server_default="0"
    )
    # The practitioner of the enrollment that owns the record: the lines go out under it.
    ordering_npi: Mapped[str] = mapped_column(String(10), default="", server_default="")
    episode_start: Mapped[date | None] = mapped_column(Date, nullable=True)


class ExportLedgerEntry(Base):
    """One exported service line. The ledger is the source of truth against double billing."""

    __tablename__ = "export_ledger"
    # One row per line per revision of an engagement record: revision 0 is the original
    # claim; each later change of the record (a correction or replacement) is revision n+1.
    # The constraint makes "billed twice" impossible even for two exports racing.
    __table_args__ = (
        UniqueConstraint(
            "patient_id", "program", "record_kind", "period_start", "code", "revision"
        ),
        # The latest revision of a record, found without reading its other rows.
        Index(
            "ix_export_ledger_record_revision",
            "patient_id",
            "program",
            "record_kind",
            "period_start",
            "revision",
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(64), index=True)
    patient_id: Mapped[str] = mapped_column(String(64), index=True)
    program: Mapped[str] = mapped_column(String(16), default="RPM")
    record_kind: Mapped[str] = mapped_column(String(32))
    revision: Mapped[int] = mapped_column(Integer, default=0)
    code: Mapped[str] = mapped_column(String(8))
    units: Mapped[int] = mapped_column(Integer)
    charge: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    date_of_service: Mapped[date] = mapped_column(Date)
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    # original | replacement (claim with frequency 7) | correction (reported, not billed)
    # | void (the record is no longer billable; code "-" marks the empty state)
    line_kind: Mapped[str] = mapped_column(String(16), default="original")
    # An appeal packet and an 835's import look a claim's lines up by its id.
    claim_id: Mapped[str] = mapped_column(String(38), index=True)
    file_name: Mapped[str] = mapped_column(String(200))
    interchange_control: Mapped[int] = mapped_column(Integer)
    group_control: Mapped[int] = mapped_column(Integer)
    transaction_control: Mapped[int] = mapped_column(Integer)
    transmission_days: Mapped[int] = mapped_column(Integer, default=0)
    interactive_minutes: Mapped[Decimal] = mapped_column(Numeric(8, 2), default=Decimal(0))
    exported_at: Mapped[datetime] = mapped_column(UTCDateTime())
    management_minutes: Mapped[Decimal] = mapped_column(
        Numeric(8, 2), default=Decimal(0), server_default="0"
    )
    # REF*6R of the service line (claim id + line number, at most 30 characters): an 835's
    # SVC/REF*6R names it, so a remittance maps back to this exact line and its evidence.
    line_control_number: Mapped[str] = mapped_column(String(30), default="", index=True)
    # The payer's claim control number (ICN) from its remittance, once known: a replacement
    # or void claim must carry it in REF*F8. NULL until a remittance names the claim.
    payer_claim_control_number: Mapped[str | None] = mapped_column(String(50), nullable=True)
    # The episode of care of the record (99453 is billed once per episode).
    episode_start: Mapped[date | None] = mapped_column(Date, nullable=True)
    # The engagement record's lines as stored when this revision was written and found equal
    # to its lines (``lines_json``; "" when the revision has no lines): a record whose stored
    # lines still read the same has not changed, so a rerun finds "nothing new" in one
    # query. NULL when unknown (rows written before): that record is compared line by line.
    record_lines: Mapped[str | None] = mapped_column(Text, nullable=True)


class ExportRun(Base):
    """Where each export run's files were written, so an unfinished run is always found.

    ``recorded`` is committed with the run's ledger lines, before the run directory is
    published; ``published`` once the rename is durable; ``rolled_back`` when the files were
    lost before publishing (its ledger lines are removed and go out again).
    """

    __tablename__ = "export_runs"

    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    exports_dir: Mapped[str] = mapped_column(Text)  # the --out directory of the run
    status: Mapped[str] = mapped_column(String(16))  # recorded | published | rolled_back
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ControlNumber(Base):
    """Persisted X12 control-number counters (ISA13, GS06, ST02), increasing across runs."""

    __tablename__ = "control_numbers"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(Integer)


class JobRun(Base):
    __tablename__ = "job_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job: Mapped[str] = mapped_column(String(64))
    as_of: Mapped[date] = mapped_column(Date)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    status: Mapped[str] = mapped_column(String(16))  # running, succeeded, failed
    records: Mapped[int] = mapped_column(Integer, default=0)
    billable_lines: Mapped[int] = mapped_column(Integer, default=0)
    exported_lines: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str] = mapped_column(Text, default="")


class Remittance(Base):
    """One imported X12 835 file. Its normalised text's digest makes a re-import a no-op."""

    __tablename__ = "remittances"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    file_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    file_name: Mapped[str] = mapped_column(String(200))
    interchange_control: Mapped[str] = mapped_column(String(9))  # ISA13
    trace_number: Mapped[str] = mapped_column(String(50), default="")  # TRN02 (check / EFT)
    payer_name: Mapped[str] = mapped_column(String(60), default="")
    payment_date: Mapped[date | None] = mapped_column(Date, nullable=True)  # BPR16
    total_paid: Mapped[Decimal] = mapped_column(Numeric(12, 2), default=Decimal(0))
    claims: Mapped[int] = mapped_column(Integer, default=0)
    unmatched_claim_ids: Mapped[str] = mapped_column(Text, default="")  # ';'-separated CLP01s
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RemitLine(Base):
    """One service line of an 835 matched to the export ledger: paid, adjusted or denied."""

    __tablename__ = "remit_lines"
    __table_args__ = (UniqueConstraint("remittance_id", "claim_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    remittance_id: Mapped[int] = mapped_column(ForeignKey("remittances.id"), index=True)
    claim_id: Mapped[str] = mapped_column(String(38), index=True)  # CLP01
    seq: Mapped[int] = mapped_column(Integer)  # the line's place in the 835 claim, from 1
    claim_status: Mapped[str] = mapped_column(String(2))  # CLP02
    payer_claim_control: Mapped[str] = mapped_column(String(50), default="")  # CLP07
    line_control_number: Mapped[str] = mapped_column(String(50), default="")  # REF*6R
    ledger_id: Mapped[int | None] = mapped_column(ForeignKey("export_ledger.id"), nullable=True)
    patient_id: Mapped[str] = mapped_column(String(64), default="", index=True)
    code: Mapped[str] = mapped_column(String(8))
    date_of_service: Mapped[date | None] = mapped_column(Date, nullable=True)
    charge: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    paid: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    outcome: Mapped[str] = mapped_column(String(16))  # paid | adjusted | denied
    # "CO-16;CO-45": group and CARC of every adjustment, for filtering; amounts in JSON.
    denial_codes: Mapped[str] = mapped_column(String(200), default="")
    adjustments_json: Mapped[str] = mapped_column(Text, default="[]")
    remark_codes: Mapped[str] = mapped_column(String(200), default="")  # RARCs, ';'-separated
