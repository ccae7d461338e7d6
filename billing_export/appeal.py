"""An appeal packet for one denied claim: the letter and its attachments, as HTML and PDF.

Pure: values in, text or bytes out (the command writes the files). The letter is a Jinja2
template the clinic can replace; the attachments (claim lines, evidence, a calendar of the
days with data and the contacts, the time log) are drawn from the evidence frozen with the
export that billed the claim. The packet holds PHI (it goes to the payer); nothing here logs.
"""

from __future__ import annotations

import calendar
import html
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

from rpmpipe.billing_export.denial_codes import denial_text, remark_text
from rpmpipe.billing_export.evidence import ActivityEvidence, LineEvidence
from rpmpipe.errors import ExportError

DEFAULT_TEMPLATE = "appeal_letter.html.j2"


@dataclass(frozen=True, slots=True)
class Practice:
    name: str
    address1: str
    city: str
    state: str
    zip: str
    npi: str
    phone: str
    contact: str


@dataclass(frozen=True, slots=True)
class PatientFacts:
    patient_id: str
    name: str
    birth_date: date
    member_id: str
    zone: str


@dataclass(frozen=True, slots=True)
class Denial:
    code: str  # group-CARC as billers write it, e.g. "CO-16"
    remarks: tuple[str, ...] = ()  # RARCs, e.g. ("N29",)


@dataclass(frozen=True, slots=True)
class AppealPacket:
    practice: Practice
    payer_name: str
    claim_id: str
    patient: PatientFacts
    date_of_service: date
    denial: Denial
    lines: tuple[LineEvidence, ...]
    today: date

    @property
    def total(self) -> Decimal:
        return sum((ln.charge for ln in self.lines), Decimal("0.00"))

    @property
    def data_days(self) -> tuple[date, ...]:
        return tuple(sorted({d.day for ln in self.lines for d in ln.days}))

    @property
    def activities(self) -> tuple[ActivityEvidence, ...]:
        """The activities counted for the claim's lines (the time log)."""
        return _unique(a for ln in self.lines for a in ln.activities)

    @property
    def documented(self) -> tuple[ActivityEvidence, ...]:
        """Counted activities and the period's other documentation (goals, PROs)."""
        return _unique(a for ln in self.lines for a in (*ln.activities, *ln.documentation))

    def local_day(self, a: ActivityEvidence) -> date:
        return a.started_at.astimezone(ZoneInfo(self.patient.zone)).date()

    @property
    def contact_days(self) -> tuple[date, ...]:
        return tuple(sorted({self.local_day(a) for a in self.activities if a.interactive}))

    @property
    def period(self) -> tuple[date, date]:
        starts = [ln.period_start for ln in self.lines] or [self.date_of_service]
        ends = [ln.period_end for ln in self.lines] or [self.date_of_service]
        return min(starts), max(ends)


def _unique(items: Iterable[ActivityEvidence]) -> tuple[ActivityEvidence, ...]:
    seen: dict[str, ActivityEvidence] = {}
    for a in items:
        seen.setdefault(a.activity_id, a)
    return tuple(sorted(seen.values(), key=lambda a: (a.started_at, a.activity_id)))


def _day_list(days: Sequence[date]) -> str:
    return ", ".join(d.isoformat() for d in days)


def _minutes(value: Decimal) -> str:
    text = f"{value.quantize(Decimal('0.01')):f}"
    return text.rstrip("0").rstrip(".")


def engagement(packet: AppealPacket) -> tuple[str, list[str]]:
    """The paragraph stating what was measured, and its items, from the evidence alone."""
    first, last = packet.period
    days = packet.data_days
    devices = sorted({dev for ln in packet.lines for d in ln.days for dev in d.device_ids})
    # Lines of one claim share their period's days (99453 and 99454): count readings once.
    readings = len({(d.day, r) for ln in packet.lines for d in ln.days for r in d.reading_ids})
    acts = packet.activities
    minutes = sum((a.minutes for a in acts), Decimal(0))
    contacts = [a for a in acts if a.interactive]
    spans = {
        (ln.consent_date, ln.ordering_npi, ln.rule_set, ln.rpmpipe_version) for ln in packet.lines
    }
    consent, npi, rule_set, version = sorted(spans, key=str)[0] if spans else (None, "", "", "")
    parts = [f"From {first.isoformat()} to {last.isoformat()}"]
    if days:
        parts.append(
            f"the patient's devices ({', '.join(devices)}) transmitted {readings} physiologic "
            f"readings on {len(days)} days with data"
        )
    if acts:
        parts.append(
            f"the care team documented {_minutes(minutes)} minutes in {len(acts)} activities, "
            f"{len(contacts)} of them interactive communications"
        )
    paragraph = "; ".join(parts) + "."
    consent_text = consent.isoformat() if consent else "not on file"
    paragraph += (
        f" Consent on file from {consent_text}; ordering provider NPI {npi}; counted under "
        f"the {rule_set} rules (rpmpipe {version})."
    )
    items = [_line_summary(packet, ln) for ln in sorted(packet.lines, key=lambda x: x.line_no)]
    if days:
        items.append(f"Days with data ({len(days)}): {_day_list(days)}")
    for a in contacts:
        items.append(
            f"Interactive contact {packet.local_day(a).isoformat()}: {a.kind.replace('_', ' ')}, "
            f"{_minutes(a.minutes)} min, staff {a.staff_id}"
        )
    documented = packet.documented
    goals = [(packet.local_day(a), g) for a in documented for g in a.goals_reviewed]
    if goals:
        items.append(
            "Care-plan goals reviewed: " + ", ".join(f"{g} ({d.isoformat()})" for d, g in goals)
        )
    for a in documented:
        if a.pro_instrument:
            items.append(
                f"Patient-reported outcome {packet.local_day(a).isoformat()}: "
                f"{a.pro_instrument} score {_minutes(a.pro_score or Decimal(0))}"
            )
    return paragraph, items


def _line_summary(packet: AppealPacket, ln: LineEvidence) -> str:
    """What one line bills for, from its own evidence: the days with data of a supply or
    setup line, the time and contacts counted for a time-based line (RPM management, CCM,
    PCM, BHI...), and the enrollment it was billed under. A claim may carry several
    programs: each line states its own."""
    measured = []
    if ln.days:
        measured.append(f"{len(ln.days)} days with data")
    if ln.activities:
        contacts = ln.interactive_contacts
        staff = sorted({a.staff_id for a in ln.activities})
        measured.append(
            f"{_minutes(ln.minutes)} minutes counted in {len(ln.activities)} "
            f"{'activity' if len(ln.activities) == 1 else 'activities'} "
            f"({len(contacts)} interactive; staff {', '.join(staff)})"
        )
    consent = ln.consent_date.isoformat() if ln.consent_date else "not on file"
    return (
        f"Line {ln.line_no}, {ln.code} ({ln.program}, {ln.period_start.isoformat()} to "
        f"{ln.period_end.isoformat()}): {'; '.join(measured) or 'no time or device data'}; "
        f"consent {consent}, ordering provider NPI {ln.ordering_npi}"
    )


def letter_context(packet: AppealPacket) -> dict[str, object]:
    paragraph, items = engagement(packet)
    p = packet.practice
    return {
        "practice": {
            "name": p.name,
            "address1": p.address1,
            "city": p.city,
            "state": p.state,
            "zip": p.zip,
            "npi": p.npi,
            "phone": p.phone,
            "contact": p.contact,
        },
        "payer": {"name": packet.payer_name},
        "claim": {
            "claim_id": packet.claim_id,
            "date_of_service": packet.date_of_service.isoformat(),
            "codes": sorted({ln.code for ln in packet.lines}),
            "total": f"{packet.total:.2f}",
        },
        "patient": {
            "patient_id": packet.patient.patient_id,
            "name": packet.patient.name,
            "birth_date": packet.patient.birth_date.isoformat(),
            "member_id": packet.patient.member_id,
        },
        "denial": {
            "code": packet.denial.code,
            "text": denial_text(packet.denial.code) if packet.denial.code else "",
            "remarks": [{"code": r, "text": remark_text(r)} for r in packet.denial.remarks],
        },
        "engagement": {"paragraph": paragraph, "facts": items},
        "today": packet.today.isoformat(),
    }


def render_letter(packet: AppealPacket, template: Path | None = None) -> str:
    """The letter as HTML, from the clinic's template or the built-in one."""
    import jinja2

    if template is None:
        source = (
            resources.files("rpmpipe.billing_export") / "templates" / DEFAULT_TEMPLATE
        ).read_text(encoding="utf-8")
    else:
        try:
            source = template.read_text(encoding="utf-8")
        except OSError as exc:
            raise ExportError(f"appeal template {template}: {exc.strerror}") from None
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    try:
        return env.from_string(source).render(**letter_context(packet))
    except (jinja2.TemplateError, TypeError, ValueError, AttributeError) as exc:
        raise ExportError(f"appeal template {template or DEFAULT_TEMPLATE}: {exc}") from None


# --- attachments ------------------------------------------------------------------------


def claim_line_rows(packet: AppealPacket) -> list[list[str]]:
    rows = [
        [
            "Line",
            "Control no.",
            "Code",
            "Units",
            "Charge",
            "Date of service",
            "Period",
            "Days",
            "Minutes",
        ]
    ]
    # Minutes: the time counted for the line (its activities), as the code requires it.
    for ln in sorted(packet.lines, key=lambda x: x.line_no):
        rows.append(
            [
                str(ln.line_no),
                ln.line_control_number,
                ln.code,
                str(ln.units),
                f"{ln.charge:.2f}",
                ln.date_of_service.isoformat(),
                f"{ln.period_start.isoformat()} to {ln.period_end.isoformat()}",
                str(ln.transmission_days),
                _minutes(ln.minutes),
            ]
        )
    return rows


def evidence_rows(packet: AppealPacket) -> list[list[str]]:
    rows = [["Line", "Code", "Date", "Evidence", "Ids"]]
    for ln in sorted(packet.lines, key=lambda x: x.line_no):
        for d in ln.days:
            rows.append(
                [
                    str(ln.line_no),
                    ln.code,
                    d.day.isoformat(),
                    f"{len(d.reading_ids)} readings from {', '.join(d.device_ids)}",
                    ", ".join(d.reading_ids),
                ]
            )
        for a in ln.activities:
            rows.append(
                [
                    str(ln.line_no),
                    ln.code,
                    packet.local_day(a).isoformat(),
                    f"{a.kind.replace('_', ' ')} {_minutes(a.minutes)} min"
                    + (" (interactive)" if a.interactive else ""),
                    a.activity_id,
                ]
            )
    return rows


def time_log_rows(packet: AppealPacket) -> list[list[str]]:
    zone = ZoneInfo(packet.patient.zone)
    rows = [
        [
            "Start",
            "Minutes",
            "Kind",
            "Staff",
            "Interactive",
            "Counted for",
            "Goals reviewed",
            "PRO",
            "Note",
        ]
    ]
    # Each minute counts for one program: the codes whose time an activity counted toward.
    counted: dict[str, list[str]] = {}
    for ln in sorted(packet.lines, key=lambda x: x.line_no):
        for act in ln.activities:
            counted.setdefault(act.activity_id, []).append(f"{ln.code} ({ln.program})")
    for a in packet.activities:
        rows.append(
            [
                a.started_at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z"),
                _minutes(a.minutes),
                a.kind.replace("_", " "),
                a.staff_id + (f" ({a.performer})" if a.performer else ""),
                "yes" if a.interactive else "no",
                ", ".join(dict.fromkeys(counted.get(a.activity_id, []))),
                ", ".join(a.goals_reviewed),
                f"{a.pro_instrument} {_minutes(a.pro_score or Decimal(0))}"
                if a.pro_instrument
                else "",
                a.note_ref,
            ]
        )
    return rows


@dataclass(frozen=True, slots=True)
class MonthGrid:
    year: int
    month: int
    weeks: tuple[tuple[date | None, ...], ...]  # Monday first; None outside the month


def calendar_months(packet: AppealPacket) -> list[MonthGrid]:
    first, last = packet.period
    grids = []
    y, m = first.year, first.month
    while (y, m) <= (last.year, last.month):
        weeks = tuple(
            tuple(date(y, m, d) if d else None for d in week)
            for week in calendar.Calendar(firstweekday=0).monthdayscalendar(y, m)
        )
        grids.append(MonthGrid(y, m, weeks))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return grids


def _html_table(rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows[1:]
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_calendar(packet: AppealPacket) -> str:
    data, contacts = set(packet.data_days), set(packet.contact_days)
    first, last = packet.period
    out = []
    for grid in calendar_months(packet):
        cells = []
        for week in grid.weeks:
            tds = []
            for day in week:
                if day is None:
                    tds.append("<td></td>")
                    continue
                cls = ["in" if first <= day <= last else "out"]
                mark = ""
                if day in data:
                    cls.append("data")
                if day in contacts:
                    cls.append("contact")
                    mark = " &#9679;"
                tds.append(f'<td class="{" ".join(cls)}">{day.day}{mark}</td>')
            cells.append("<tr>" + "".join(tds) + "</tr>")
        names = "".join(f"<th>{n}</th>" for n in ("Mo", "Tu", "We", "Th", "Fr", "Sa", "Su"))
        out.append(
            f'<table class="calendar"><caption>{calendar.month_name[grid.month]} {grid.year}'
            f"</caption><tr>{names}</tr>{''.join(cells)}</table>"
        )
    return "".join(out)


_CSS = """
body { font-family: Helvetica, Arial, sans-serif; font-size: 11pt; margin: 2em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 9pt; }
th, td { border: 1px solid #999; padding: 2px 6px; text-align: left; vertical-align: top; }
table.calendar { display: inline-table; margin-right: 1.5em; }
table.calendar td { width: 2.2em; height: 1.6em; text-align: center; }
td.data { background: #7fbf7f; }
td.contact { font-weight: bold; }
td.out { color: #aaa; }
.attachment { page-break-before: always; }
"""


def render_html(packet: AppealPacket, letter_html: str) -> str:
    """The whole packet as one HTML page: the letter, then the four attachments."""
    title = f"Appeal of claim {packet.claim_id}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
        f'<section class="letter">{letter_html}</section>\n'
        '<section class="attachment"><h2>Attachment 1: Claim lines</h2>'
        f"{_html_table(claim_line_rows(packet))}</section>\n"
        '<section class="attachment"><h2>Attachment 2: Evidence behind each line</h2>'
        f"{_html_table(evidence_rows(packet))}</section>\n"
        '<section class="attachment"><h2>Attachment 3: Calendar of days with data and '
        "contacts</h2><p>Green: a day with data. &#9679;: an interactive contact.</p>"
        f"{_html_calendar(packet)}</section>\n"
        '<section class="attachment"><h2>Attachment 4: Time log</h2>'
        f"{_html_table(time_log_rows(packet))}</section>\n"
        "</body></html>\n"
    )


# --- PDF --------------------------------------------------------------------------------


def _latin1(text: str) -> str:
    """Text the PDF's built-in fonts can show: accents kept where Latin-1 has them."""
    try:
        text.encode("latin-1")
        return text
    except UnicodeEncodeError:
        folded = unicodedata.normalize("NFKC", text)
        return folded.encode("latin-1", "replace").decode("latin-1")


def render_pdf(packet: AppealPacket, letter_html: str) -> bytes:
    """The packet as PDF: the letter (from its HTML) and the attachments, drawn with fpdf2."""
    from fpdf import FPDF

    pdf = FPDF(format="letter")
    pdf.set_title(_latin1(f"Appeal of claim {packet.claim_id}"))
    pdf.set_creator("rpmpipe")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", size=10)
    pdf.write_html(_latin1(letter_html.replace("&middot;", "-")))

    def table(title: str, rows: list[list[str]], widths: tuple[int, ...]) -> None:
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 12)
        pdf.cell(0, 8, _latin1(title), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=7)
        with pdf.table(col_widths=widths, text_align="LEFT", line_height=4) as t:
            for row in rows:
                r = t.row()
                for value in row:
                    r.cell(_latin1(value))

    table("Attachment 1: Claim lines", claim_line_rows(packet), (6, 22, 8, 6, 9, 14, 28, 6, 8))
    table("Attachment 2: Evidence behind each line", evidence_rows(packet), (6, 8, 14, 30, 60))
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 12)
    pdf.cell(
        0, 8, "Attachment 3: Calendar of days with data and contacts", new_x="LMARGIN", new_y="NEXT"
    )
    pdf.set_font("Helvetica", size=8)
    pdf.cell(
        0,
        5,
        "Green: a day with data.  Bold with a dot: an interactive contact.",
        new_x="LMARGIN",
        new_y="NEXT",
    )
    _pdf_calendar(pdf, packet)
    table("Attachment 4: Time log", time_log_rows(packet), (26, 10, 18, 18, 10, 24, 22, 14, 16))
    return bytes(pdf.output())


def _pdf_calendar(pdf: object, packet: AppealPacket) -> None:
    from fpdf import FPDF

    assert isinstance(pdf, FPDF)
    data, contacts = set(packet.data_days), set(packet.contact_days)
    first, last = packet.period
    cell_w, cell_h = 11.0, 8.0
    x0, y = pdf.l_margin, pdf.get_y() + 4
    for index, grid in enumerate(calendar_months(packet)):
        x = x0 + (index % 2) * (cell_w * 7 + 12)
        if index % 2 == 0 and index:
            y += cell_h * 8 + 10
        pdf.set_font("Helvetica", "B", 10)
        pdf.set_xy(x, y)
        pdf.cell(cell_w * 7, 6, f"{calendar.month_name[grid.month]} {grid.year}", align="C")
        pdf.set_font("Helvetica", size=7)
        for col, name in enumerate(("Mo", "Tu", "We", "Th", "Fr", "Sa", "Su")):
            pdf.set_xy(x + col * cell_w, y + 6)
            pdf.cell(cell_w, 5, name, align="C")
        for row, week in enumerate(grid.weeks):
            for col, day in enumerate(week):
                if day is None:
                    continue
                cx, cy = x + col * cell_w, y + 11 + row * cell_h
                inside = first <= day <= last
                if day in data:
                    pdf.set_fill_color(127, 191, 127)
                    pdf.rect(cx, cy, cell_w, cell_h, style="DF")
                else:
                    pdf.rect(cx, cy, cell_w, cell_h, style="D")
                pdf.set_text_color(0 if inside else 170)
                pdf.set_font("Helvetica", "B" if day in contacts else "", 8)
                pdf.set_xy(cx, cy + 1)
                pdf.cell(cell_w, 4, str(day.day), align="C")
                if day in contacts:
                    pdf.set_fill_color(0, 0, 0)
                    pdf.ellipse(cx + cell_w / 2 - 1, cy + cell_h - 3, 2, 2, style="F")
        pdf.set_text_color(0)
    pdf.set_y(y + cell_h * 8 + 10)
