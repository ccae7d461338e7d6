"""``evidence.parquet`` and ``evidence.csv`` of a run, built by columns (pure: no I/O but the
file object the CSV is written to).

Per line of the run's claims: its scalar facts once, its record's days with data as an Arrow
list taken from :class:`~rpmpipe.billing_export.evidence_days.RecordDays` (never one Python
object per day), and its record's activities, built once per record. The CSV has one row per
fact (the enrollment, each day with data, each activity) after the line's own cells; its day
rows are assembled as Arrow strings and written as one buffer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rpmpipe import __version__
from rpmpipe.billing_export.claims import Claim, line_control_number_for
from rpmpipe.billing_export.evidence import (
    ACTIVITY_STRUCT,
    EVIDENCE_CSV_COLUMNS,
    EVIDENCE_SCHEMA,
    ActivityEvidence,
    EnrollmentSpan,
    RecordFacts,
    RecordKey,
    cents,
    documentation_of,
)
from rpmpipe.billing_export.evidence_days import RecordDays
from rpmpipe.csv_cells import NOT_PLAIN_CELL, csv_field, csv_row

_NO_FACTS = RecordFacts((), (), None)


@dataclass(frozen=True, slots=True)
class RunEvidence:
    """The evidence of a run's lines: the ``evidence.parquet`` table and, per line, the
    pieces of its CSV rows that are not in the table as text."""

    table: pa.Table
    heads: list[str]  # the line's own cells, as CSV text
    enrollment_rows: list[str]  # the enrollment fact of each line, as CSV text
    activity_rows: pa.ListArray  # list<string>: the activity facts of each line, as CSV text


def run_evidence(
    claims: Sequence[Claim], run_id: str, facts: Mapping[RecordKey, RecordFacts], days: RecordDays
) -> RunEvidence:
    """The evidence of every line of ``claims``, from the facts and days the run read."""
    scalars: list[tuple[object, ...]] = []  # per line, its _SCALARS (columns at the end)
    keys: list[RecordKey] = []
    heads: list[str] = []
    enrollment_rows: list[str] = []
    enrollment_text: dict[tuple[EnrollmentSpan | None, str, str], str] = {}
    for claim in claims:
        for cl in claim.lines:
            ln = cl.line
            r, service = ln.record, ln.line  # read once: the line's properties cost a call each
            key = r.key
            f = facts.get(key, _NO_FACTS)
            span = f.enrollment
            lcn = cl.line_control_number or line_control_number_for(claim.claim_id, cl.line_no)
            values = (
                lcn,
                claim.claim_id,
                cl.line_no,
                r.patient_id,
                r.program,
                r.kind,
                service.code,
                service.units,
                cents(cl.charge),
                service.date_of_service,
                r.period_start,
                r.period_end,
                r.rule_set,
                r.transmission_days,
                cents(r.interactive_minutes),
                span.ordering_npi if span else r.rendering_npi,
                span.consent_date if span else None,
                span.start if span else None,
                span.end if span else None,
            )
            scalars.append(values)
            keys.append(key)
            heads.append(
                csv_row(
                    [
                        lcn,
                        claim.claim_id,
                        str(cl.line_no),
                        r.patient_id,
                        service.code,
                        service.date_of_service.isoformat(),
                    ]
                )
            )
            about = (span, values[15], r.rule_set)  # the same for every line of the enrollment
            enrollment_row = enrollment_text.get(about)
            if enrollment_row is None:
                enrollment_row = enrollment_text[about] = _enrollment_row(*about)
            enrollment_rows.append(enrollment_row)
    n = len(keys)
    cols = _columns(scalars)
    records = _RecordActivities(facts, keys)
    columns = {name: pa.array(cols[name], EVIDENCE_SCHEMA.field(name).type) for name in _SCALARS}
    columns["run_id"] = pa.array([run_id] * n, pa.string())
    columns["days"] = days.of(keys)
    columns["activities"] = records.column("activities")
    columns["documentation"] = records.column("documentation")
    columns["rpmpipe_version"] = pa.array([__version__] * n, pa.string())
    table = pa.Table.from_arrays([columns[f.name] for f in EVIDENCE_SCHEMA], schema=EVIDENCE_SCHEMA)
    return RunEvidence(table, heads, enrollment_rows, records.rows())


def _columns(scalars: Sequence[tuple[object, ...]]) -> dict[str, list[object]]:
    """Each of _SCALARS's columns of the lines: one transposition at the end, where an
    append per value cost a million list appends at 54k lines."""
    if not scalars:
        return {name: [] for name in _SCALARS}
    return dict(zip(_SCALARS, map(list, zip(*scalars, strict=True)), strict=True))


def _enrollment_row(span: EnrollmentSpan | None, ordering_npi: str, rule_set: str) -> str:
    """The enrollment fact of a line, as CSV text."""
    consent = span.consent_date.isoformat() if span and span.consent_date else "none"
    return csv_row(
        [
            "enrollment",
            span.start.isoformat() if span else "",
            "",
            f"consent {consent}; ordering NPI {ordering_npi}; rule set {rule_set}; "
            f"rpmpipe {__version__}",
            "",
        ]
    )


_SCALARS = (
    "line_control_number",
    "claim_id",
    "line_no",
    "patient_id",
    "program",
    "record_kind",
    "code",
    "units",
    "charge",
    "date_of_service",
    "period_start",
    "period_end",
    "rule_set",
    "transmission_days",
    "interactive_minutes",
    "ordering_npi",
    "consent_date",
    "enrollment_start",
    "enrollment_end",
)


class _RecordActivities:
    """The activities of each record of the lines, built once per record and taken per line."""

    def __init__(self, facts: Mapping[RecordKey, RecordFacts], keys: Sequence[RecordKey]):
        index: dict[RecordKey, int] = {}
        line_record = np.empty(len(keys), np.int64)
        for n, key in enumerate(keys):
            line_record[n] = index.setdefault(key, len(index))
        self._picks = pa.array(line_record)
        found = [facts.get(key, _NO_FACTS) for key in index]
        self._lists = {
            "activities": [f.activities for f in found],
            "documentation": [documentation_of(f) for f in found],
        }

    def column(self, pick: str) -> pa.Array:
        lists = self._lists[pick]
        offsets = np.zeros(len(lists) + 1, np.int32)
        np.cumsum([len(acts) for acts in lists], out=offsets[1:])
        values = _activity_array([a for acts in lists for a in acts])
        return pa.ListArray.from_arrays(pa.array(offsets), values).take(self._picks)

    def rows(self) -> pa.ListArray:
        """Per line, its activity facts (counted, then documentation) as CSV text."""
        text: dict[int, str] = {}
        per_record = []
        for counted, documented in zip(
            self._lists["activities"], self._lists["documentation"], strict=True
        ):
            per_record.append(
                [
                    text.get(id(a)) or text.setdefault(id(a), _activity_text(a))
                    for a in (*counted, *documented)
                ]
            )
        lists = pa.array(per_record, pa.list_(pa.string()))
        return lists.take(self._picks)


def _activity_array(acts: Sequence[ActivityEvidence]) -> pa.StructArray:
    goals_offsets = np.zeros(len(acts) + 1, np.int32)
    np.cumsum([len(a.goals_reviewed) for a in acts], out=goals_offsets[1:])
    fields = {f.name: f.type for f in ACTIVITY_STRUCT}
    arrays = [
        pa.array([a.activity_id for a in acts], fields["activity_id"]),
        pa.array([a.started_at.astimezone(UTC) for a in acts], fields["started_at"]),
        pa.array([cents(a.minutes) for a in acts], fields["minutes"]),
        pa.array([a.kind for a in acts], fields["kind"]),
        pa.array([a.performer for a in acts], fields["performer"]),
        pa.array([a.staff_id for a in acts], fields["staff_id"]),
        pa.array([a.interactive for a in acts], fields["interactive"]),
        pa.ListArray.from_arrays(
            pa.array(goals_offsets),
            pa.array([g for a in acts for g in a.goals_reviewed], pa.string()),
            type=fields["goals_reviewed"],
        ),
        pa.array([a.pro_instrument for a in acts], fields["pro_instrument"]),
        pa.array([cents(a.pro_score) for a in acts], fields["pro_score"]),
        pa.array([a.note_ref for a in acts], fields["note_ref"]),
    ]
    return pa.StructArray.from_arrays(arrays, fields=list(ACTIVITY_STRUCT))


def _activity_text(a: ActivityEvidence) -> str:
    detail = [f"{a.minutes:f} min {a.kind}", f"staff {a.staff_id}"]
    if a.performer:
        detail.append(a.performer)
    if a.interactive:
        detail.append("interactive")
    if a.goals_reviewed:
        detail.append("goals " + ",".join(a.goals_reviewed))
    if a.pro_instrument:
        detail.append(f"{a.pro_instrument} {a.pro_score}")
    if a.note_ref:
        detail.append(f"note {a.note_ref}")
    started = a.started_at.astimezone(UTC)
    return csv_row(
        [
            "activity",
            started.date().isoformat(),
            # strftime("%H:%M:%SZ"), at a fifth of its cost
            f"{started.hour:02d}:{started.minute:02d}:{started.second:02d}Z",
            "; ".join(detail),
            a.activity_id,
        ]
    )


def write_evidence_csv(out: BinaryIO, evidence: RunEvidence, lines_at_once: int = 20_000) -> int:
    """One row per fact behind each line (its enrollment, each day with data, each activity),
    UTF-8, assembled ``lines_at_once`` lines at a time; returns the number of rows."""
    out.write((csv_row(list(EVIDENCE_CSV_COLUMNS)) + "\n").encode("utf-8"))
    days = evidence.table["days"].combine_chunks()
    rows = 0
    for start in range(0, evidence.table.num_rows, lines_at_once):
        end = start + lines_at_once
        part = _fact_rows(
            days.slice(start, lines_at_once),
            pa.array(evidence.heads[start:end], pa.large_string()),
            pa.array(evidence.enrollment_rows[start:end], pa.large_string()),
            evidence.activity_rows.slice(start, lines_at_once),
        )
        _write_lines(out, part)
        rows += len(part)
    return rows


def _fact_rows(
    days: pa.ListArray, heads: pa.Array, enrollment_rows: pa.Array, acts: pa.ListArray
) -> pa.Array:
    """The CSV rows of some lines, in order: each line's enrollment, its days in order, then
    its activities, each after the line's own cells."""
    n = len(heads)
    flat = pc.list_flatten(days)
    day_line = pc.list_parent_indices(days).to_numpy()
    ids = flat.field("reading_ids")
    detail = pc.binary_join_element_wise(
        pc.cast(pc.list_value_length(ids), pa.string()),
        " readings from ",
        pc.binary_join(flat.field("device_ids"), ", "),
        "",
    )
    day_rows = pc.binary_join_element_wise(
        heads.take(pa.array(day_line)),
        _text("day_with_data"),
        pc.cast(flat.field("day"), pa.large_string()),
        _text(""),
        _cells(detail).cast(pa.large_string()),
        _cells(pc.binary_join(ids, ";")).cast(pa.large_string()),
        _text(","),
    )
    act_line = pc.list_parent_indices(acts).to_numpy()
    act_rows = pc.binary_join_element_wise(
        heads.take(pa.array(act_line)),
        pc.list_flatten(acts).cast(pa.large_string()),
        _text(","),
    )
    enroll_rows = pc.binary_join_element_wise(heads, enrollment_rows, _text(","))
    day_counts = pc.list_value_length(days).to_numpy(zero_copy_only=False)
    act_counts = pc.list_value_length(acts).to_numpy(zero_copy_only=False)
    first = np.zeros(n + 1, np.int64)
    np.cumsum(1 + day_counts + act_counts, out=first[1:])
    day_start = np.zeros(n + 1, np.int64)
    np.cumsum(day_counts, out=day_start[1:])
    act_start = np.zeros(n + 1, np.int64)
    np.cumsum(act_counts, out=act_start[1:])
    where = np.concatenate(
        [
            first[:n],
            first[day_line] + 1 + (np.arange(len(day_line)) - day_start[day_line]),
            first[act_line]
            + 1
            + day_counts[act_line]
            + (np.arange(len(act_line)) - act_start[act_line]),
        ]
    )
    order = np.empty_like(where)
    order[where] = np.arange(len(where))
    return pa.concat_arrays([enroll_rows, day_rows, act_rows]).take(pa.array(order))


def _text(value: str) -> pa.Scalar:
    return pa.scalar(value, pa.large_string())


def _cells(text: pa.Array) -> pa.Array:
    """CSV cells of ``text``: as they are, except the few to neutralise or quote."""
    special = pc.match_substring_regex(text, NOT_PLAIN_CELL)
    if not pc.any(special).as_py():
        return text
    picked = text.filter(special).to_pylist()
    return pc.replace_with_mask(text, special, pa.array([csv_field(v) for v in picked], text.type))


def _write_lines(out: BinaryIO, rows: pa.Array) -> None:
    """Each string of ``rows`` and a line end, written from Arrow's buffer in large blocks."""
    step = 1 << 18
    for start in range(0, len(rows), step):
        part = pc.binary_join_element_wise(rows.slice(start, step), _text(""), _text("\n"))
        bounds = np.frombuffer(part.buffers()[1], np.int64)
        offsets = bounds[part.offset : part.offset + len(part) + 1]
        out.write(memoryview(part.buffers()[2])[offsets[0] : offsets[-1]])
