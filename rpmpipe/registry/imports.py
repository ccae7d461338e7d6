"""Registry loads from CSV (and from the simulator's rows): validated, idempotent, atomic.

Every row of a file is parsed and checked before anything is written; the first bad row stops
the import with its row number and field, and nothing of that file is written. Rows that are
already in the registry with the same values are left alone, so importing the same file twice
changes nothing.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Container, Iterable, Mapping, Sized
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Engine, Table, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError

from rpmpipe.errors import RegistryImportError, is_transient
from rpmpipe.identifiers import has_x12_separator, is_mbi
from rpmpipe.logs import get_logger
from rpmpipe.records import (
    ACTIVITY_KINDS,
    EARLIEST_DATA_TIME,
    PERFORMERS,
    PROGRAMS,
    UNTIMED_KINDS,
    Program,
)
from rpmpipe.registry.import_columns import COLUMNS
from rpmpipe.registry.models import (
    Base,
    CareActivity,
    CarePlan,
    Device,
    DeviceAssignment,
    Enrollment,
    Patient,
)
from rpmpipe.settings import npi_is_valid

log = get_logger(__name__)

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
ICD10_PATTERN = re.compile(r"^[A-TV-Z][0-9][0-9A-Z](\.?[0-9A-Z]{1,4})?$")
# Columns whose values never appear in an error message or a log line.
PHI_COLUMNS = frozenset(
    {
        "first_name",
        "last_name",
        "birth_date",
        "address1",
        "city",
        "zip",
        "member_id",
        "qmb",
        "serial_number",  # a device serial number is an identifier under HIPAA
    }
)
DEVICE_KINDS = ("bp_cuff", "scale", "pulse_oximeter", "glucometer")
# A care activity starts between 2000-01-01 (UTC) and one day after the clock of the import
# (the command's start; a message's receipt on MQTT). Outside that it is a typing or clock
# error, refused here so that metrics never meets an impossible date.
ACTIVITY_EARLIEST = EARLIEST_DATA_TIME
ACTIVITY_MAX_AHEAD = timedelta(days=1)


class _BadField(ValueError):
    def __init__(self, field: str, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.code = code  # the RegistryImportError code; None: ``bad_row``


# --- field parsers: value -> typed value, raising _BadField -----------------------------


def _text(row: Mapping[str, str], field: str, *, required: bool = True, max_len: int = 200) -> str:
    value = (row.get(field) or "").strip()
    if required and not value:
        raise _BadField(field, "is empty")
    if len(value) > max_len:
        raise _BadField(field, f"is longer than {max_len} characters")
    return value


def _ident(row: Mapping[str, str], field: str) -> str:
    value = _text(row, field, max_len=64)
    if not ID_PATTERN.match(value):
        raise _BadField(
            field, f"{value!r} is not a valid id (letters, digits, '.', '_', '-'; at most 64)"
        )
    return value


def _date(row: Mapping[str, str], field: str, *, required: bool = True) -> date | None:
    value = (row.get(field) or "").strip()
    if not value:
        if required:
            raise _BadField(field, "is empty")
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        # A birth date is PHI: name the field, never echo its value into errors.
        shown = "the value" if field in PHI_COLUMNS else repr(value)
        raise _BadField(field, f"{shown} is not a date (YYYY-MM-DD)") from None


def _aware_datetime(row: Mapping[str, str], field: str) -> datetime:
    value = _text(row, field, max_len=40)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _BadField(field, f"{value!r} is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        raise _BadField(field, f"{value!r} has no time zone offset")
    return parsed


def check_activity_start(started_at: datetime, now: datetime) -> datetime:
    """``started_at`` in UTC if inside the accepted range (see ``ACTIVITY_EARLIEST``)."""
    try:
        utc = started_at.astimezone(UTC)
        latest = now + ACTIVITY_MAX_AHEAD
    except OverflowError:  # e.g. 9999-12-31T23:59:59-14:00, or year 1 east of UTC
        utc = None
    if utc is None or not ACTIVITY_EARLIEST <= utc <= latest:
        raise _BadField(
            "started_at",
            f"is outside the accepted range ({ACTIVITY_EARLIEST.date()} to one day after "
            f"{now.date()})",
            code="out_of_range",
        )
    return utc


def _choice(row: Mapping[str, str], field: str, choices: Iterable[str]) -> str:
    value = _text(row, field, max_len=64)
    options = tuple(choices)
    if value not in options:
        raise _BadField(field, f"{value!r} is not one of {', '.join(options)}")
    return value


def _bool(row: Mapping[str, str], field: str) -> bool:
    value = _text(row, field, max_len=8).lower()
    if value in ("true", "1", "yes", "y", "t"):
        return True
    if value in ("false", "0", "no", "n", "f"):
        return False
    shown = "the value" if field in PHI_COLUMNS else repr(value)
    raise _BadField(field, f"{shown} is not true or false")


def _optional_bool(row: Mapping[str, str], field: str) -> bool | None:
    """An optional true|false column: empty or absent is None (not on file)."""
    if not (row.get(field) or "").strip():
        return None
    return _bool(row, field)


def _choice_or(row: Mapping[str, str], field: str, choices: Iterable[str], default: str) -> str:
    """An optional choice column: empty or absent takes ``default``."""
    if not (row.get(field) or "").strip():
        return default
    return _choice(row, field, choices)


# --- one parser per kind ----------------------------------------------------------------


def _patient(row: Mapping[str, str]) -> dict[str, Any]:
    # Empty: the organisation's zone applies (rules.md: "the organisation's zone as fallback").
    zone = _text(row, "timezone", required=False, max_len=64)
    if zone:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise _BadField("timezone", f"{zone!r} is not an IANA time zone") from None
    birth = _date(row, "birth_date")
    assert birth is not None
    if birth > datetime.now(UTC).date() or birth.year < 1900:
        raise _BadField("birth_date", "is not a plausible birth date")
    zip_code = _text(row, "zip", max_len=10).replace("-", "")
    if not (zip_code.isdigit() and len(zip_code) in (5, 9)):
        raise _BadField("zip", "is not a 5- or 9-digit ZIP code")
    state = _text(row, "state", max_len=2).upper()
    if not (len(state) == 2 and state.isalpha()):
        raise _BadField("state", "is not a two-letter state code")
    codes = [
        c.strip().upper() for c in _text(row, "icd10_codes", max_len=400).split(";") if c.strip()
    ]
    if not codes:
        raise _BadField("icd10_codes", "has no ICD-10 code")
    for position, code in enumerate(codes, start=1):
        if not ICD10_PATTERN.match(code):
            raise _BadField("icd10_codes", f"code {position} ({code!r}) is not an ICD-10-CM code")
    return {
        "patient_id": _ident(row, "patient_id"),
        "mrn": _text(row, "mrn", required=False, max_len=64),
        "first_name": _text(row, "first_name", max_len=100),
        "last_name": _text(row, "last_name", max_len=100),
        "birth_date": birth,
        "sex": _choice(row, "sex", ("M", "F", "U")),
        "address1": _text(row, "address1"),
        "city": _text(row, "city", max_len=100),
        "state": state,
        "zip": zip_code,
        "timezone": zone,
        "payer_id": _ident(row, "payer_id"),
        "payer_name": _text(row, "payer_name"),
        "member_id": _member_id(row),
        "icd10_codes": ";".join(codes),
        # Left out of the file: whatever the registry holds stays (an insert gets NULL).
        **({"qmb": _optional_bool(row, "qmb")} if "qmb" in row else {}),
    }


def _member_id(row: Mapping[str, str]) -> str:
    value = _text(row, "member_id", max_len=64)
    if has_x12_separator(value):
        # The 837P would have to change it, and the payer would not find the member.
        raise _BadField("member_id", "holds an X12 separator (* : ~ ^) or a control character")
    return value


def _device(row: Mapping[str, str]) -> dict[str, Any]:
    return {
        "device_id": _ident(row, "device_id"),
        "kind": _choice(row, "kind", DEVICE_KINDS),
        "model": _text(row, "model", required=False, max_len=100),
        # Absent column: serial numbers on file stay; an empty cell means none.
        **({"serial_number": _serial_number(row)} if "serial_number" in row else {}),
    }


def _serial_number(row: Mapping[str, str]) -> str | None:
    value = _text(row, "serial_number", required=False, max_len=64)
    if any(not ch.isprintable() for ch in value):
        raise _BadField("serial_number", "holds control characters")
    return value or None


def _assignment(row: Mapping[str, str]) -> dict[str, Any]:
    start = _date(row, "start_date")
    end = _date(row, "end_date", required=False)
    assert start is not None
    if end is not None and end < start:
        raise _BadField("end_date", "is before start_date (end_date is the last day, inclusive)")
    return {
        "device_id": _ident(row, "device_id"),
        "patient_id": _ident(row, "patient_id"),
        "start_date": start,
        "end_date": end,
    }


def _enrollment(row: Mapping[str, str]) -> dict[str, Any]:
    start = _date(row, "start_date")
    end = _date(row, "end_date", required=False)
    assert start is not None
    if end is not None and end < start:
        raise _BadField("end_date", "is before start_date")
    npi = _text(row, "ordering_npi", max_len=10)
    if not npi_is_valid(npi):
        raise _BadField("ordering_npi", f"{npi!r} is not a valid NPI (check digit)")
    return {
        "patient_id": _ident(row, "patient_id"),
        "program": _choice(row, "program", PROGRAMS),
        "start_date": start,
        "end_date": end,
        "consent_date": _date(row, "consent_date", required=False),
        "ordering_npi": npi,
    }


def _activity(row: Mapping[str, str]) -> dict[str, Any]:
    raw = _text(row, "minutes", max_len=12)
    try:
        minutes = Decimal(raw)
    except InvalidOperation:
        raise _BadField("minutes", f"{raw!r} is not a number") from None
    kind = _choice(row, "kind", ACTIVITY_KINDS)
    if not minutes.is_finite() or minutes > 1440 or minutes < 0:
        raise _BadField("minutes", "must be more than 0 and at most 1440")
    if minutes == 0 and kind not in UNTIMED_KINDS:
        raise _BadField("minutes", "must be more than 0 and at most 1440")
    if minutes != minutes.quantize(Decimal("0.01")):
        raise _BadField("minutes", "has more than two decimal places")
    return {
        "activity_id": _ident(row, "activity_id"),
        "patient_id": _ident(row, "patient_id"),
        "staff_id": _ident(row, "staff_id"),
        "started_at": _aware_datetime(row, "started_at"),
        "minutes": minutes,
        "kind": kind,
        "interactive": _bool(row, "interactive"),
        # Optional: an activity without them is RPM time of clinical staff, as before.
        "program": _choice_or(row, "program", PROGRAMS, Program.RPM),
        "performer": _choice_or(row, "performer", PERFORMERS, "clinical_staff"),
        # Optional: a reason voids the entry (kept, no longer counted).
        **_void_reason(row),
        **_engagement_fields(row),
    }


MAX_VOID_REASON = 500


def _void_reason(row: Mapping[str, str]) -> dict[str, str]:
    text = (row.get("voided_reason") or "").strip()
    if not text:
        return {}
    if len(text) > MAX_VOID_REASON:
        raise _BadField("voided_reason", f"at most {MAX_VOID_REASON} characters")
    return {"voided_reason": text}


def _void_fields(
    values: dict[str, Any], old: Mapping[str, Any] | None, now: datetime | None, source: str
) -> None:
    """Who, when and why of a void sent with the entry; a void on record is never undone or
    rewritten by a later import."""
    reason = values.pop("voided_reason", None)
    if old is not None and old.get("voided_reason") is not None:
        return
    if reason is not None:
        values.update(voided_reason=reason, voided_at=now, voided_by=source[-64:])
    elif old is None:
        values.update(voided_reason=None, voided_at=None, voided_by=None)


def _engagement_fields(row: Mapping[str, str]) -> dict[str, Any]:
    """The optional goals_reviewed, pro_instrument + pro_score and note_ref of an activity."""
    goals = [g.strip() for g in (row.get("goals_reviewed") or "").split(";") if g.strip()]
    for goal in goals:
        if not ID_PATTERN.match(goal):
            raise _BadField("goals_reviewed", f"{goal!r} is not a valid goal id")
    instrument = _text(row, "pro_instrument", required=False, max_len=32)
    raw = (row.get("pro_score") or "").strip()
    score: Decimal | None = None
    if raw:
        try:
            score = Decimal(raw)
        except InvalidOperation:
            raise _BadField("pro_score", f"{raw!r} is not a number") from None
        if not score.is_finite() or abs(score) >= 1_000_000:
            raise _BadField("pro_score", f"{raw!r} is out of range")
    if bool(instrument) != (score is not None):
        missing = "pro_score" if instrument else "pro_instrument"
        raise _BadField(missing, "is empty: a patient-reported outcome needs both")
    note = _text(row, "note_ref", required=False, max_len=64)
    return {
        "goals_reviewed": ";".join(goals),
        "pro_instrument": instrument,
        "pro_score": score,
        "note_ref": note,
    }


def _care_plan(row: Mapping[str, str]) -> dict[str, Any]:
    established = _date(row, "established_on")
    assert established is not None
    revised = _date(row, "revised_on", required=False)
    shared = _date(row, "shared_with_patient_on", required=False)
    if revised is not None and revised < established:
        raise _BadField("revised_on", "is before established_on")
    if shared is not None and shared < established:
        raise _BadField("shared_with_patient_on", "is before established_on")
    return {
        "patient_id": _ident(row, "patient_id"),
        "program": _choice(row, "program", PROGRAMS),
        "established_on": established,
        "revised_on": revised,
        "shared_with_patient_on": shared,
        "version_on": revised or established,
    }


@dataclass(frozen=True)
class ImportKind:
    name: str
    columns: tuple[str, ...]  # required in the header
    optional: tuple[str, ...]  # may be left out of the header (then their default)
    parse: Callable[[Mapping[str, str]], dict[str, Any]]
    model: type[Base]
    key: tuple[str, ...]


def _columns(kind: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    found = COLUMNS[kind]
    return found.required, found.optional


KINDS: dict[str, ImportKind] = {
    k.name: k
    for k in (
        ImportKind("patients", *_columns("patients"), _patient, Patient, ("patient_id",)),
        ImportKind("devices", *_columns("devices"), _device, Device, ("device_id",)),
        ImportKind(
            "assignments",
            *_columns("assignments"),
            _assignment,
            DeviceAssignment,
            ("device_id", "start_date"),
        ),
        ImportKind(
            "enrollments",
            *_columns("enrollments"),
            _enrollment,
            Enrollment,
            ("patient_id", "program", "start_date"),
        ),
        ImportKind(
            "activities", *_columns("activities"), _activity, CareActivity, ("activity_id",)
        ),
        ImportKind(
            "care-plans",
            *_columns("care-plans"),
            _care_plan,
            CarePlan,
            ("patient_id", "program", "version_on"),
        ),
    )
}


@dataclass(frozen=True)
class ImportResult:
    kind: str
    rows: int
    inserted: int
    updated: int
    unchanged: int
    # Rows imported but whose claims will be held (e.g. a Medicare patient without an MBI),
    # each naming its row and field, never the value.
    warnings: tuple[str, ...] = ()


def import_csv(
    engine: Engine,
    kind: str,
    path: str | Path,
    *,
    now: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
    medicare_payers: Container[str] = (),
) -> ImportResult:
    """Import a registry CSV (header row, UTF-8) of the contract's columns for ``kind``.

    ``now`` (aware) is the clock activities are checked against; activities need it.
    ``progress(done, total)`` hears how many rows are checked so far (a terminal's bar).
    ``medicare_payers`` are the payer ids billed as Medicare Part B (``MB``): a patient of
    theirs whose member id is not an MBI is imported with a warning naming the row.
    """
    spec = _spec(kind)
    p = Path(path)
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = tuple(reader.fieldnames or ())
            missing = [c for c in spec.columns if c not in header]
            if missing:
                raise RegistryImportError(
                    str(p), 1, missing[0], f"missing column(s): {', '.join(missing)}"
                )
            rows = list(reader)
    except UnicodeDecodeError as exc:
        raise RegistryImportError(str(p), 0, None, f"not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise RegistryImportError(str(p), 0, None, f"cannot read file: {exc.strerror}") from None
    # Data rows start on line 2 of the file (line 1 is the header).
    return import_rows(
        engine,
        kind,
        rows,
        source=str(p),
        first_row=2,
        now=now,
        progress=progress,
        medicare_payers=medicare_payers,
    )


def import_rows(
    engine: Engine,
    kind: str,
    rows: Iterable[Mapping[str, str]],
    source: str,
    first_row: int = 1,
    *,
    now: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
    medicare_payers: Container[str] = (),
) -> ImportResult:
    """Validate every row, then upsert them all in one transaction (or none on error).

    ``now`` (aware) is the clock activities' dates are checked against; activities need it.
    """
    spec = _spec(kind)
    if kind == "activities" and now is None:
        raise ValueError("importing activities needs the clock (now=)")
    parsed: dict[tuple[Any, ...], tuple[int, dict[str, Any]]] = {}
    total = len(rows) if isinstance(rows, Sized) else 0
    for number, row in enumerate(rows, start=first_row):
        if progress is not None and (number - first_row) % 2000 == 0:
            progress(number - first_row, total)
        if None in row:  # csv.DictReader puts surplus cells under the None key
            raise RegistryImportError(source, number, None, "more cells than header columns")
        for field, cell in row.items():
            if isinstance(cell, str) and "\x00" in cell:
                raise RegistryImportError(source, number, field, "the cell holds a NUL byte")
        try:
            values = spec.parse(row)
            if now is not None and kind == "activities":
                values["started_at"] = check_activity_start(values["started_at"], now)
        except _BadField as exc:
            raise RegistryImportError(source, number, exc.field, str(exc), code=exc.code) from None
        key = tuple(values[k] for k in spec.key)
        if key in parsed:
            first = parsed[key][0]
            if parsed[key][1] != values:
                raise RegistryImportError(
                    source, number, spec.key[0], f"same key as row {first} with different values"
                )
            continue
        parsed[key] = (number, values)

    table: Table = spec.model.__table__  # type: ignore[assignment]
    # A concurrent import of the same rows can win the race between our read and our insert
    # (a unique key): the second attempt reads its rows and has nothing left to insert.
    for attempt in (1, 2):
        try:
            inserts, updates = _write(engine, spec, table, parsed, kind, source, now)
            break
        except IntegrityError as exc:
            if attempt == 2:
                raise RegistryImportError(
                    source,
                    0,
                    None,
                    "another import changed the same rows at the same time and the database "
                    f"refused ours ({type(exc.orig).__name__}); rerun the import",
                ) from None
        except DBAPIError as exc:
            if is_transient(exc):
                raise
            raise RegistryImportError(
                source, 0, None, f"the database refused the rows ({type(exc.orig).__name__})"
            ) from None
    warnings = tuple(
        f"{source}, row {number}, field 'member_id': not a Medicare Beneficiary Identifier "
        f"(MBI) although payer {values['payer_id']} is billed as Medicare Part B (MB); "
        "this patient's claims will be held until it is fixed"
        for number, values in sorted(parsed.values(), key=lambda item: item[0])
        if kind == "patients"
        and values["payer_id"] in medicare_payers
        and not is_mbi(values["member_id"])
    )
    result = ImportResult(
        kind,
        len(parsed),
        len(inserts),
        len(updates),
        len(parsed) - len(inserts) - len(updates),
        warnings,
    )
    log.info(
        "registry_import",
        kind=kind,
        rows=result.rows,
        inserted=result.inserted,
        updated=result.updated,
        unchanged=result.unchanged,
        warnings=len(warnings),
    )
    return result


def _write(
    engine: Engine,
    spec: ImportKind,
    table: Table,
    parsed: Mapping[tuple[Any, ...], tuple[int, dict[str, Any]]],
    kind: str,
    source: str,
    now: datetime | None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One transaction: read what exists, insert the new rows, update the changed ones."""
    with engine.begin() as conn:
        existing: dict[tuple[Any, ...], dict[str, Any]] = {}
        key_cols = [table.c[k] for k in spec.key]
        keys = list(parsed)
        for i in range(0, len(keys), 5000):
            chunk = keys[i : i + 5000]
            cond = (
                key_cols[0].in_([k[0] for k in chunk])
                if len(key_cols) == 1
                else tuple_(*key_cols).in_(chunk)
            )
            for rec in conn.execute(select(table).where(cond)).mappings():
                existing[tuple(rec[k] for k in spec.key)] = dict(rec)
        _check_references(conn, spec, parsed, source)

        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        for key, (_number, values) in parsed.items():
            old = existing.get(key)
            if kind == "activities":
                _void_fields(values, old, now, source)
            if old is None:
                inserts.append(values)
            elif any(_differs(old.get(col), val) for col, val in values.items()):
                updates.append(values)
        if inserts:
            conn.execute(_insert(conn.dialect.name, table), inserts)
        for values in updates:
            cond_parts = [table.c[k] == values[k] for k in spec.key]
            conn.execute(update(table).where(*cond_parts).values(**values))
        if kind == "assignments":
            _check_overlaps(conn, parsed, source)
        if kind == "devices":
            _check_serial_numbers(conn, parsed, source)
    return inserts, updates


def _spec(kind: str) -> ImportKind:
    try:
        return KINDS[kind]
    except KeyError:
        raise RegistryImportError(
            kind, 0, None, f"unknown import kind; expected one of {', '.join(KINDS)}"
        ) from None


def _insert(dialect: str, table: Table) -> Any:
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    return table.insert()


def _differs(old: Any, new: Any) -> bool:
    if isinstance(new, datetime) and isinstance(old, datetime):
        return new != old  # both aware: compares the instant
    if isinstance(new, Decimal) and old is not None:
        return Decimal(str(old)) != new
    return bool(old != new)


def _check_references(
    conn: Any,
    spec: ImportKind,
    parsed: Mapping[tuple[Any, ...], tuple[int, dict[str, Any]]],
    source: str,
) -> None:
    needs: list[tuple[str, Any]] = []
    if spec.name in ("assignments", "enrollments", "activities", "care-plans"):
        needs.append(("patient_id", Patient.__table__.c.patient_id))
    if spec.name == "assignments":
        needs.append(("device_id", Device.__table__.c.device_id))
    for field, column in needs:
        wanted = {values[field] for _, values in parsed.values()}
        known: set[str] = set()
        ids = list(wanted)
        for i in range(0, len(ids), 5000):
            known.update(
                conn.execute(select(column).where(column.in_(ids[i : i + 5000]))).scalars()
            )
        for number, values in sorted(parsed.values(), key=lambda item: item[0]):
            if values[field] not in known:
                raise RegistryImportError(
                    source,
                    number,
                    field,
                    f"{values[field]!r} is not in the registry",
                    code="unknown_reference",
                )


def _check_overlaps(
    conn: Any, parsed: Mapping[tuple[Any, ...], tuple[int, dict[str, Any]]], source: str
) -> None:
    """A device is lent to one patient at a time: assignments of a device must not overlap."""
    table = DeviceAssignment.__table__
    devices = list({values["device_id"] for _, values in parsed.values()})
    by_device: dict[str, list[tuple[date, date, str, date]]] = {}
    for i in range(0, len(devices), 5000):
        rows = conn.execute(
            select(
                table.c.device_id, table.c.start_date, table.c.end_date, table.c.patient_id
            ).where(table.c.device_id.in_(devices[i : i + 5000]))
        )
        for device_id, start, end, patient in rows:
            by_device.setdefault(device_id, []).append((start, end or date.max, patient, start))
    row_of = {(v["device_id"], v["start_date"]): n for n, v in parsed.values()}
    for device_id, spans in by_device.items():
        spans.sort()
        for prev, cur in zip(spans, spans[1:], strict=False):
            if cur[0] <= prev[1]:
                number = row_of.get((device_id, cur[3])) or row_of.get((device_id, prev[3])) or 0
                raise RegistryImportError(
                    source,
                    number,
                    "start_date",
                    f"device {device_id} is already assigned from {prev[0]} to "
                    f"{'open' if prev[1] == date.max else prev[1]}; assignments must not overlap",
                )


def _check_serial_numbers(
    conn: Any, parsed: Mapping[tuple[Any, ...], tuple[int, dict[str, Any]]], source: str
) -> None:
    """A serial number names one device: never two devices, nor another device's id."""
    table = Device.__table__
    rows = {
        v["serial_number"]: (n, v["device_id"])
        for n, v in parsed.values()
        if v.get("serial_number")
    }
    serials = list(rows)
    for i in range(0, len(serials), 5000):
        chunk = serials[i : i + 5000]
        clashes = conn.execute(
            select(table.c.device_id, table.c.serial_number).where(
                table.c.serial_number.in_(chunk) | table.c.device_id.in_(chunk)
            )
        )
        for device_id, serial in clashes:
            for value in {serial, device_id} & rows.keys():
                number, own = rows[value]
                if device_id != own:
                    # The serial number itself is an identifier: name the devices, not it.
                    raise RegistryImportError(
                        source,
                        number,
                        "serial_number",
                        f"already names device {device_id} (a serial number names one device)",
                    )
