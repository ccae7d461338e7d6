"""Write the report as a static site: plain files that open from disk, no server needed.

Layout (no PHI in any file name: patients are numbered in patient-id order)::

    index.html              the at-risk worklist (paged and filtered in the page)
    worklist.csv            the worklist, all rows
    worklist-data.js        the worklist rows the index pages through
    totals.html             month-end totals, held lines, corrections waiting for review
    held.csv, reviews.csv
    patient.html            the page of a patient: patient.html#000042 is the 42nd
    patients/shard-0001.js  the data of patients 1-100 (the page loads its patient's shard)
    assets/                 styles, script, chart specs, the Vega bundle

A page per patient does not mean a file per patient: creating a hundred thousand files costs
more than the rest of the report on common disks, and a page drawn from its shard opens as
fast from disk.

The site is written into a private temp directory beside ``out`` (0700, files 0600) and
renamed into place when complete, so a reader never sees half a report; a previous report
in ``out`` is replaced, any other non-empty directory is refused.
"""

from __future__ import annotations

import io
import os
import secrets
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from jinja2 import Environment, PackageLoader, Template

from rpmpipe.app.report.charts import chart_specs, vega_bundle
from rpmpipe.app.report.inputs import ReportInputs
from rpmpipe.billing_export.holds import Held
from rpmpipe.billing_export.totals import ReviewItem, TotalRow
from rpmpipe.csv_cells import SafeCsvWriter
from rpmpipe.errors import UsageError
from rpmpipe.files import fsync_dir, private_dir
from rpmpipe.metrics.report import format_minutes
from rpmpipe.metrics.worklist import (
    MANAGEMENT,
    SUPPLY,
    Urgency,
    WorklistRow,
    contacts_of,
    minutes_of,
    write_worklist_csv,
)
from rpmpipe.records import EngagementRecord, RecordStatus

MARKER = ".rpmpipe-report"
INDEX = "index.html"
PATIENT_PAGE = "patient.html"
SHARD_SIZE = 100  # patients per data file of patients/ (a page loads one file)
FIRST_PAGE_ROWS = 100  # rows rendered into index.html itself (the rest come from the data file)
LISTED = 1000  # held records and reviews listed in totals.html (all of them are in the CSVs)


class ReportError(UsageError):
    """The report cannot be written where asked (a directory holding something else)."""

    default_code = "report_target"


@dataclass(frozen=True)
class SiteResult:
    out: Path
    index: Path
    patients: int
    worklist_rows: int
    files: int


def write_site(inputs: ReportInputs, out: Path) -> SiteResult:
    """Write the whole site for ``inputs`` to ``out`` (see the module docstring)."""
    out = out.absolute()
    _check_target(out)
    if not out.parent.exists():
        private_dir(out.parent)  # only what is missing; an existing parent is left as it is
    tmp = out.parent / f".{out.name}.partial-{secrets.token_hex(4)}"
    private_dir(tmp)
    try:
        writer = _Writer(tmp)
        count = _write_all(inputs, writer)
        (tmp / MARKER).touch(mode=0o600)
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SiteResult(out, out / INDEX, count, len(inputs.worklist), writer.files + 1)


def _check_target(out: Path) -> None:
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).exists())):
        raise ReportError(
            f"{out} exists and is not an rpmpipe report; choose another --out or empty it"
        )


def _publish(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{secrets.token_hex(4)}"
        os.replace(out, old)
    os.replace(tmp, out)
    fsync_dir(out.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


class _Writer:
    """Private files (0600) under the site's temp directory. A report is rebuilt from the
    registry at will, so files are not fsynced one by one: the directory rename publishes
    them together."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = 0
        self._dirs: set[str] = set()

    def write(self, rel: str, text: str | bytes) -> None:
        parent = rel.rpartition("/")[0]
        if parent and parent not in self._dirs:
            private_dir(self.root / parent)
            self._dirs.add(parent)
        data = text.encode() if isinstance(text, str) else text
        fd = os.open(self.root / rel, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        self.files += 1


def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("rpmpipe.app.report", "templates"),
        autoescape=True,
        keep_trailing_newline=True,
    )


def script_json(value: Any) -> str:
    """``value`` as JSON safe inside a ``<script>`` element (templates mark it ``|safe``)."""
    text = orjson.dumps(value).decode()
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _static(name: str) -> str:
    return resources.files("rpmpipe.app.report").joinpath("static", name).read_text()


def _write_all(inputs: ReportInputs, writer: _Writer) -> int:
    env = _environment()
    as_of = inputs.as_of.isoformat()
    generated = inputs.generated_at.strftime("%Y-%m-%d %H:%M %Z")
    common = {"as_of": as_of, "generated": generated}

    writer.write("assets/report.css", _static("report.css"))
    writer.write("assets/report.js", _static("report.js"))
    writer.write("assets/vega.js", vega_bundle())
    writer.write("assets/charts.js", f"window.RPM_CHARTS = {script_json(chart_specs())};\n")

    by_patient: dict[str, list[EngagementRecord]] = {}
    for r in inputs.records:
        by_patient.setdefault(r.patient_id, []).append(r)
    ids = sorted(inputs.patients.keys() | by_patient.keys())
    href = {pid: f"{PATIENT_PAGE}#{_page_key(i)}" for i, pid in enumerate(ids, start=1)}

    _write_index(inputs, writer, env.get_template("index.html.j2"), common, href)
    _write_totals(inputs, writer, env.get_template("totals.html.j2"), common, href)
    _write_patients(inputs, writer, env.get_template("patient.html.j2"), common, ids, by_patient)
    return len(ids)


# --- worklist --------------------------------------------------------------------------------


def _page_key(n: int) -> str:
    """The ``patient.html#...`` key of the n-th patient (in patient-id order)."""
    return f"{n:06d}"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _period_text(start: date | None, end: date | None) -> str:
    return f"{start.isoformat()} to {end.isoformat()}" if start and end else "none open"


def worklist_cells(row: WorklistRow, name: str, link: str) -> list[Any]:
    """The worklist row as the page's array (the order report.js reads; the program last)."""
    return [
        row.patient_id,
        name,
        link,
        row.urgency.label,
        row.at_risk,
        _period_text(row.period_start, row.period_end),
        row.days_so_far,
        "" if row.days_left is None else row.days_left,
        _yes(row.can_reach_full),
        _yes(row.can_reach_short),
        "never" if row.days_since_data is None else row.days_since_data,
        format_minutes(row.minutes_so_far),
        _yes(row.interactive_contact),
        row.program,
    ]


def _write_index(
    inputs: ReportInputs,
    writer: _Writer,
    template: Template,
    common: dict[str, str],
    href: dict[str, str],
) -> None:
    patients = inputs.patients
    cells = [
        worklist_cells(
            r, patients[r.patient_id].name if r.patient_id in patients else "", href[r.patient_id]
        )
        for r in inputs.worklist
    ]
    counts: dict[Urgency, int] = {}
    for r in inputs.worklist:
        counts[r.urgency] = counts.get(r.urgency, 0) + 1
    urgency_counts = [{"urgency": u.label, "patients": counts[u]} for u in sorted(counts)]
    full = inputs.worklist[0].full_days if inputs.worklist else 16
    short = inputs.worklist[0].short_days if inputs.worklist else 2
    writer.write(
        "worklist-data.js",
        f"window.RPM_WORKLIST = {script_json({'as_of': common['as_of'], 'rows': cells})};\n",
    )
    text = io.StringIO()
    write_worklist_csv(inputs.worklist, text)
    writer.write("worklist.csv", text.getvalue())
    writer.write(
        INDEX,
        template.render(
            **common,
            root="",
            title="At-risk worklist",
            full_days=full,
            short_days=short,
            urgency_counts=urgency_counts,
            urgency_json=script_json(urgency_counts),
            rows_total=len(cells),
            at_risk_total=sum(1 for r in inputs.worklist if r.at_risk),
            first_rows=cells[:FIRST_PAGE_ROWS],
        ),
    )


# --- totals ----------------------------------------------------------------------------------


def _csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    w = SafeCsvWriter(out)
    w.writerow(header)
    for row in rows:
        w.writerow(row)
    return out.getvalue()


def _held_rows(held: Iterable[Held]) -> list[tuple[str, str, str, int, str]]:
    return [
        (h.patient_id, h.record_kind, h.period_start.isoformat(), h.lines, h.reason) for h in held
    ]


def _review_rows(items: Iterable[ReviewItem]) -> list[tuple[str, str, str, str, str, str]]:
    return [
        (i.patient_id, i.record_kind, i.period_start.isoformat(), i.claim_id, i.what, i.where)
        for i in items
    ]


def _write_totals(
    inputs: ReportInputs,
    writer: _Writer,
    template: Template,
    common: dict[str, str],
    href: dict[str, str],
) -> None:
    t = inputs.totals
    chart: list[dict[str, Any]] = [
        {
            "month": r.month,
            "code": r.group,
            "lines": r.lines,
            "units": r.units,
            "charges": float(r.charges),
        }
        for r in sorted(t.by_code, key=lambda r: (r.month, r.group))
    ]
    held_all = [h for group in inputs.held for h in group.held]
    held_rows = _held_rows(held_all)
    review_rows = _review_rows(inputs.reviews)
    writer.write(
        "held.csv",
        _csv(("patient_id", "record_kind", "period_start", "lines", "reason"), held_rows),
    )
    writer.write(
        "reviews.csv",
        _csv(
            ("patient_id", "record_kind", "period_start", "claim_id", "what", "where"), review_rows
        ),
    )
    tables: list[tuple[str, tuple[TotalRow, ...], str]] = [
        ("All billed lines", t.by_month, ""),
        ("By code", t.by_code, "Code"),
        ("By program", t.by_program, "Program"),
        ("By rendering provider (NPI)", t.by_provider, "Rendering NPI"),
        ("By payer", t.by_payer, "Payer"),
    ]
    writer.write(
        "totals.html",
        template.render(
            **common,
            root="",
            title="Month-end totals",
            totals_json=script_json(chart),
            tables=tables,
            held=inputs.held,
            held_lines=sum(g.lines for g in inputs.held),
            held_total=len(held_rows),
            held_records=[(href.get(h[0], ""), *h) for h in held_rows[:LISTED]],
            reviews=[(href.get(r[0], ""), *r) for r in review_rows[:LISTED]],
            reviews_total=len(review_rows),
        ),
    )


# --- patient pages ---------------------------------------------------------------------------


def _lines_text(r: EngagementRecord) -> str:
    return ", ".join(
        ln.code
        + (f" x{ln.units}" if ln.units != 1 else "")
        + f" on {ln.date_of_service.isoformat()}"
        for ln in r.lines
    )


def _period_cells(r: EngagementRecord, as_of: date) -> dict[str, Any]:
    start = r.period_start
    return {
        "label": f"{start.isoformat()}..{r.period_end.isoformat()}",
        "start": start.isoformat(),
        "length": (r.period_end - start).days + 1,
        "data": [(d - start).days for d in r.evidence_dates],
        "open_from": (as_of - start).days + 1 if r.period_end > as_of else None,
    }


def _iso(day: date | None, empty: str = "") -> str:
    return day.isoformat() if day is not None else empty


class _IsoDates(dict[date, str]):
    """ISO text of dates, each formatted once (a report repeats a few hundred dates)."""

    def __missing__(self, day: date) -> str:
        text = self[day] = day.isoformat()
        return text


class _PatientData:
    """One patient's page data (the arrays patient.html fills its tables and charts from)."""

    def __init__(self, inputs: ReportInputs) -> None:
        self.iso = _IsoDates()
        self.as_of = inputs.as_of
        self.work: dict[str, WorklistRow] = {}
        for row in inputs.worklist:  # most urgent first: a patient's page shows that row
            self.work.setdefault(row.patient_id, row)
        self.claims: dict[str, list[list[Any]]] = {}
        for st in inputs.statuses:
            ln = st.line
            self.claims.setdefault(ln.patient_id, []).append(
                [
                    ln.claim_id,
                    ln.line_control_number,
                    ln.run_id,
                    ln.code,
                    ln.units,
                    str(ln.charge),
                    ln.date_of_service.isoformat(),
                    ln.line_kind + (f" (revision {ln.revision})" if ln.revision else ""),
                    st.status,
                ]
            )
        self.held: dict[str, list[list[Any]]] = {}
        for group in inputs.held:
            for h in group.held:
                self.held.setdefault(h.patient_id, []).append(
                    [h.record_kind, h.period_start.isoformat(), h.lines, h.reason]
                )
        self.reviews: dict[str, list[list[Any]]] = {}
        for item in inputs.reviews:
            self.reviews.setdefault(item.patient_id, []).append(
                [
                    item.record_kind,
                    item.period_start.isoformat(),
                    item.claim_id,
                    item.what,
                    item.where,
                ]
            )
        self.inputs = inputs

    def of(self, pid: str, records: Sequence[EngagementRecord]) -> dict[str, Any]:
        inputs, as_of, iso = self.inputs, self.as_of, self.iso
        periods: list[list[Any]] = []
        months: list[list[Any]] = []
        setups: list[list[Any]] = []
        days_chart: list[dict[str, Any]] = []
        minutes_chart: list[dict[str, Any]] = []
        for r in records:
            status = r.status.replace("_", " ")
            if r.kind == SUPPLY:
                if r.forecast is not None or r.evidence_dates or r.status != RecordStatus.PENDING:
                    # (A pending record with no data spans the enrollment so far: no calendar.)
                    days_chart.append(_period_cells(r, as_of))
                periods.append(
                    [
                        _period_text(r.period_start, r.period_end),
                        status,
                        r.transmission_days,
                        _lines_text(r),
                        r.reason,
                        ", ".join(map(iso.__getitem__, r.evidence_dates)),
                    ]
                )
            elif r.kind == MANAGEMENT:
                month = f"{r.period_start:%Y-%m}"
                contacts = contacts_of(r)
                minutes = minutes_of(r)
                months.append(
                    [
                        month,
                        status,
                        format_minutes(minutes),
                        format_minutes(r.interactive_minutes),
                        contacts,
                        _lines_text(r),
                        r.reason,
                        ", ".join(r.evidence_activity_ids),
                    ]
                )
                minutes_chart.append(
                    {
                        "month": month,
                        "minutes": float(minutes),
                        "contacts": contacts,
                        "contact_label": (f"{contacts} contact" + ("" if contacts == 1 else "s"))
                        if contacts
                        else "",
                    }
                )
            else:
                setups.append(
                    [_period_text(r.period_start, r.period_end), status, _lines_text(r), r.reason]
                )
        facts = inputs.patients.get(pid)
        w = self.work.get(pid)
        return {
            "facts": {
                "id": pid,
                "name": (facts.name if facts else "") or "(no name on file)",
                "birth": _iso(facts.birth_date) if facts else "",
                "mrn": facts.mrn if facts else "",
                "payer": f"{facts.payer_name} ({facts.payer_id})" if facts else "",
                "member": facts.member_id if facts else "",
                "zone": facts.timezone if facts else "",
                "icd10": facts.icd10 if facts else "",
                "urgency": w.urgency.label if w else "",
                "full_days": w.full_days if w else "",
                "short_days": w.short_days if w else "",
            },
            "now": None
            if w is None
            else {
                "period": _period_text(w.period_start, w.period_end),
                "days_so_far": w.days_so_far,
                "days_left": "" if w.days_left is None else w.days_left,
                "can_reach_16": _yes(w.can_reach_full),
                "can_reach_2": _yes(w.can_reach_short),
                "days_since_data": "never" if w.days_since_data is None else w.days_since_data,
                "minutes_so_far": format_minutes(w.minutes_so_far),
                "interactive_contact": _yes(w.interactive_contact),
            },
            "periods": periods,
            "months": months,
            "setups": setups,
            "devices": [
                [d.device_id, d.kind, d.model, _iso(d.start_date), _iso(d.end_date, "open")]
                for d in inputs.devices.get(pid, ())
            ],
            "enrollments": [
                [
                    e.program,
                    _iso(e.start_date),
                    _iso(e.end_date, "open"),
                    _iso(e.consent_date, "no consent on file"),
                    e.ordering_npi,
                ]
                for e in inputs.enrollments.get(pid, ())
            ],
            "claims": self.claims.get(pid, []),
            "held": self.held.get(pid, []),
            "reviews": self.reviews.get(pid, []),
            "charts": {"days": days_chart, "minutes": minutes_chart},
        }


def _write_patients(
    inputs: ReportInputs,
    writer: _Writer,
    template: Template,
    common: dict[str, str],
    ids: Sequence[str],
    by_patient: dict[str, list[EngagementRecord]],
) -> None:
    writer.write(
        PATIENT_PAGE,
        template.render(**common, root="", title="Patient", shard_size=SHARD_SIZE),
    )
    data = _PatientData(inputs)
    for lo in range(0, len(ids), SHARD_SIZE):
        shard = {
            _page_key(lo + i + 1): data.of(pid, by_patient.get(pid, ()))
            for i, pid in enumerate(ids[lo : lo + SHARD_SIZE])
        }
        writer.write(
            f"patients/shard-{lo // SHARD_SIZE + 1:04d}.js",
            f"window.RPM_PATIENTS = {script_json(shard)};\n",
        )
