"""Engagement records in the contract's shapes: JSON objects, CSV rows, a plain table (pure).

CSV cells go through ``rpmpipe.csv_cells.csv_field`` (formula cells neutralised).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from decimal import Decimal
from itertools import islice
from typing import IO, Any

import orjson

from rpmpipe.csv_cells import csv_field
from rpmpipe.records import EngagementRecord, RecordKind, ServiceLine


def format_minutes(minutes: Decimal) -> str:
    """``18`` rather than ``18.00``; ``19.5`` stays ``19.5`` (never rounded)."""
    if minutes == minutes.to_integral_value():
        return str(int(minutes))
    return format(minutes.normalize(), "f")


CSV_COLUMNS = (
    "patient_id",
    "program",
    "kind",
    "period_start",
    "period_end",
    "status",
    "rule_set",
    "transmission_days",
    "management_minutes",
    "interactive_minutes",
    "interactive_communications",
    "lines",
    "reason",
    "evidence_dates",
    "evidence_activity_ids",
)


def _number(minutes: Decimal) -> int | float:
    return int(minutes) if minutes == minutes.to_integral_value() else float(minutes)


def record_to_dict(record: EngagementRecord) -> dict[str, Any]:
    """The contract's JSON object for one record (minutes as a JSON number, never rounded)."""
    return {
        "patient_id": record.patient_id,
        "program": record.program,
        "kind": record.kind,
        "period_start": record.period_start.isoformat(),
        "period_end": record.period_end.isoformat(),
        "status": record.status,
        "reason": record.reason,
        "rule_set": record.rule_set,
        "transmission_days": record.transmission_days,
        "management_minutes": _number(record.management_minutes),
        "interactive_minutes": _number(record.interactive_minutes),
        "interactive_communications": record.interactive_communications,
        "ordering_npi": record.ordering_npi,
        "episode_start": record.episode_start.isoformat() if record.episode_start else None,
        "lines": [line.to_json() for line in record.lines],
        "evidence": record.evidence_json(),
        "forecast": record.forecast,
    }


def write_json(records: Iterable[EngagementRecord], out: IO[bytes], chunk: int = 5_000) -> None:
    """The records as one indented JSON array, written ``chunk`` records at a time: the
    bytes of one ``orjson.dumps`` of them all, without the whole text (or a dict of every
    record) held at once."""
    rows = iter(records)
    opened = False
    while batch := [record_to_dict(r) for r in islice(rows, chunk)]:
        text = orjson.dumps(batch, option=orjson.OPT_INDENT_2)
        # "[\n  {...},\n  {...}\n]": the items between the brackets, joined by ",\n".
        out.write(b",\n" if opened else b"[\n")
        out.write(memoryview(text)[2:-2])
        opened = True
    out.write(b"\n]\n" if opened else b"[]\n")


def _lines_text(record: EngagementRecord) -> str:
    return " ".join(map(str, record.lines))


class _IsoDates(dict[date, str]):
    """ISO text of dates, each formatted once (a run repeats the same few hundred dates)."""

    def __missing__(self, day: date) -> str:
        text = self[day] = day.isoformat()
        return text


class _LineTexts(dict[ServiceLine, str]):
    """The text of service lines, each formatted once (a run bills the same few codes on
    the same few hundred dates)."""

    def __missing__(self, line: ServiceLine) -> str:
        text = self[line] = str(line)
        return text


class CsvRows:
    """CSV rows of records, with the text of repeated dates, reasons and ids formatted once."""

    def __init__(self) -> None:
        self.iso = _IsoDates()
        self.line_text = _LineTexts()
        self._reasons: dict[str, str] = {}  # reasons repeat across rows: quote each once
        self._last_id = ""
        self._patient = ""

    def reason(self, text: str) -> str:
        """``text`` as a CSV field (quoted when needed), cached."""
        field = self._reasons.get(text)
        if field is None:
            field = self._reasons[text] = csv_field(text)
        return field

    def patient(self, patient_id: str) -> str:
        if patient_id != self._last_id:  # rows come grouped by patient
            self._last_id, self._patient = patient_id, csv_field(patient_id)
        return self._patient

    def row(self, r: EngagementRecord) -> str:
        """One record as one CSV line (with its newline)."""
        iso = self.iso
        lines = " ".join(map(self.line_text.__getitem__, r.lines)) if r.lines else ""
        minutes = format_minutes(r.management_minutes) if r.management_minutes else "0"
        inter = format_minutes(r.interactive_minutes) if r.interactive_minutes else "0"
        activities = csv_field(";".join(r.evidence_activity_ids)) if r.evidence_activity_ids else ""
        return (
            f"{self.patient(r.patient_id)},{csv_field(r.program)},{r.kind},{iso[r.period_start]},"
            f"{iso[r.period_end]},{r.status},{r.rule_set},{r.transmission_days},"
            f"{minutes},{inter},{r.interactive_communications},{lines},{self.reason(r.reason)},"
            f"{';'.join(map(iso.__getitem__, r.evidence_dates))},{activities}\n"
        )


CSV_HEADER = ",".join(CSV_COLUMNS) + "\n"


def write_csv_rows(rows: Iterable[str], out: IO[str], chunk: int = 20_000) -> None:
    """The header, then ``rows`` (whole CSV lines), written in chunks."""
    out.write(CSV_HEADER)
    pending: list[str] = []
    for row in rows:
        pending.append(row)
        if len(pending) >= chunk:
            out.write("".join(pending))
            pending.clear()
    out.write("".join(pending))


def write_csv_pieces(pieces: Iterable[bytes | memoryview], out: IO[bytes]) -> None:
    """The header, then ``pieces`` of CSV text (UTF-8, whole lines), in order."""
    out.write(CSV_HEADER.encode())
    for piece in pieces:
        out.write(piece)


def write_csv(records: Iterable[EngagementRecord], out: IO[str], chunk: int = 20_000) -> None:
    """One row per record; lines as ``code x units @ date`` separated by spaces; evidence
    dates and activity ids separated by ``;``."""
    fmt = CsvRows()
    write_csv_rows(map(fmt.row, records), out, chunk)


def render_table(records: Sequence[EngagementRecord]) -> str:
    """A fixed-width table for a terminal."""
    head = ("patient", "kind", "period", "status", "days", "minutes", "lines", "reason")
    rows = [
        (
            r.patient_id,
            r.kind,
            f"{r.period_start.isoformat()}..{r.period_end.isoformat()}",
            r.status,
            str(r.transmission_days),
            format_minutes(r.management_minutes),
            _lines_text(r) or "-",
            r.reason,
        )
        for r in records
    ]
    widths = [max([len(h)] + [len(row[i]) for row in rows]) for i, h in enumerate(head[:-1])]
    out = []
    for row in (head, *rows):
        out.append(
            "  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        )
    return "\n".join(out) + "\n"


def render_patient_detail(records: Sequence[EngagementRecord]) -> str:
    """One patient's periods and months with the dates and activities behind each number."""
    parts = []
    for r in records:
        parts.append(
            f"{r.kind} {r.period_start.isoformat()}..{r.period_end.isoformat()} "
            f"[{r.rule_set}] {r.status.upper()}"
        )
        parts.append(f"  reason: {r.reason}")
        if r.kind != RecordKind.TREATMENT_MANAGEMENT:
            parts.append(f"  days with data: {r.transmission_days}")
            if r.evidence_dates:
                parts.append("  dates: " + ", ".join(d.isoformat() for d in r.evidence_dates))
        else:
            parts.append(
                f"  minutes: {format_minutes(r.management_minutes)} (interactive "
                f"{format_minutes(r.interactive_minutes)}), interactive communications: "
                f"{r.interactive_communications}"
            )
            if r.evidence_activity_ids:
                parts.append("  activities: " + ", ".join(r.evidence_activity_ids))
            for aid, why in r.activities_not_counted:
                parts.append(f"  not counted: {aid} ({why})")
        parts.append("  lines: " + (_lines_text(r) or "none"))
        if r.forecast:
            f = r.forecast
            parts.append(
                f"  forecast: {f['days_so_far']} days so far, "
                f"{f['days_still_possible']} still possible, "
                f"16 reachable: {'yes' if f['can_reach_16'] else 'no'}, "
                f"at risk: {'yes' if f['at_risk'] else 'no'}"
            )
    return "\n".join(parts) + "\n"
