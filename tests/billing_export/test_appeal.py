"""`rpmpipe appeal`: a PDF and HTML packet whose figures are the frozen evidence, from a
replaceable Jinja2 letter; files 0600; PHI in the packet, never in the output or logs."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from billed_world import (
    ACTIVITIES,
    ORDERING_NPI,
    activity,
    bill,
    build_world,
    cli_config,
    first_days,
    world_settings,
)
from pypdf import PdfReader
from remit_835 import Outcome, write_835
from required import unavailable
from sqlalchemy import select
from typer.testing import CliRunner, Result

from rpmpipe.app.cli import app
from rpmpipe.billing_export.denials import build_packet, write_packet
from rpmpipe.errors import EXIT_USAGE
from rpmpipe.registry.imports import import_rows
from rpmpipe.registry.models import ExportLedgerEntry

TODAY = date(2026, 12, 10)


@pytest.fixture
def billed(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """A billed world on SQLite with an 835 denying P-01's claims; (db url, claim ids)."""
    db = f"sqlite:///{tmp_path / 'r.db'}"
    settings = world_settings(tmp_path, db)
    engine = build_world(settings)
    result = bill(settings, engine)
    assert result.run_dir is not None
    with engine.connect() as conn:
        rows = conn.execute(
            select(ExportLedgerEntry.claim_id, ExportLedgerEntry.patient_id, ExportLedgerEntry.code)
        ).all()
    engine.dispose()
    ids = {f"{r.patient_id}/{r.code}": r.claim_id for r in rows}
    outcomes = {
        ids["P-01/99457"]: Outcome("denied", "CO", "16", ("N29",)),
        ids["P-01/99454"]: Outcome("denied", "CO", "50"),
    }
    write_835(tmp_path / "era.835", (result.run_dir / "claims.837").read_text(), outcomes)
    return db, ids


def _cli(tmp_path: Path, db: str, *args: str) -> Result:
    base = [
        "--config",
        str(cli_config(tmp_path)),
        "--data-dir",
        str(tmp_path / "data"),
        "--database-url",
        db,
    ]
    return CliRunner().invoke(app, [*base, *args], env={"RPMPIPE_CONFIG": ""})


def _text(pdf: Path) -> str:
    return re.sub(r"\s+", " ", " ".join(p.extract_text() for p in PdfReader(pdf).pages))


def test_management_packet_states_minutes_contacts_goals_and_pro(
    tmp_path: Path, billed: tuple[str, dict[str, str]]
) -> None:
    db, ids = billed
    assert _cli(tmp_path, db, "remit", "import", str(tmp_path / "era.835")).exit_code == 0
    claim = ids["P-01/99457"]
    out = _cli(tmp_path, db, "appeal", claim, "--out", str(tmp_path / "appeals"))
    assert out.exit_code == 0, out.output
    pdf = tmp_path / "appeals" / f"appeal-{claim}.pdf"
    html = pdf.with_suffix(".html")
    assert f"{pdf}" in out.output and "Lovelace" not in out.output
    text = _text(pdf)
    for expected in (
        f"claim {claim}",
        "Ada Lovelace",
        "1946-02-11",
        "Denial: CO-16",
        "N29 (Missing documentation",
        "29 minutes in",
        "3 of them interactive",
        "Interactive contact 2026-10-06: phone call, 12 min, staff RN-7",
        "Interactive contact 2026-10-13: video visit, 9 min, staff RN-8",
        "G-BP (2026-10-06)",
        "G-DIET (2026-10-06)",
        "PHQ-9 score 7",
        "Consent on file from 2026-09-25",
        "NPI 1234567893",
        "CY2026",
        "Attachment 4: Time log",
    ):
        assert expected in text, expected
    page = html.read_text()
    assert "Interactive contact 2026-10-20: phone call, 8 min, staff RN-7" in page
    for path in (pdf, html):
        assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "appeals").stat().st_mode & 0o777 == 0o700


def test_supply_packet_lists_every_day_with_data_and_draws_the_calendar(
    tmp_path: Path, billed: tuple[str, dict[str, str]]
) -> None:
    db, ids = billed
    claim = ids["P-01/99454"]
    out = _cli(
        tmp_path, db, "appeal", claim, "--denial-code", "co-50", "--out", str(tmp_path / "a")
    )
    assert out.exit_code == 0, out.output
    pdf = tmp_path / "a" / f"appeal-{claim}.pdf"
    text = _text(pdf)
    days = first_days(20)
    assert "transmitted 20 physiologic readings on 20 days with data" in text
    assert "Days with data (20): " + ", ".join(d.isoformat() for d in days) in text
    assert "Denial: CO-50" in text and "BP-01" in text
    reader = PdfReader(pdf)
    [calendar] = [n for n, p in enumerate(reader.pages) if "Attachment 3" in p.extract_text()]
    assert "October 2026" in reader.pages[calendar].extract_text()
    # Rendered as a person sees it: the calendar page as a PNG, with the green data days.
    if shutil.which("pdftoppm") is None:
        unavailable("pdftoppm (Debian poppler-utils) is needed; .ci/run installs it")
    subprocess.run(
        [
            "pdftoppm",
            "-r",
            "40",
            "-png",
            "-f",
            str(calendar + 1),
            "-l",
            str(calendar + 1),
            str(pdf),
            str(tmp_path / "page"),
        ],
        check=True,
    )
    [png] = list(tmp_path.glob("page*.png"))
    ppm = tmp_path / "page.ppm"
    subprocess.run(
        [
            "pdftoppm",
            "-r",
            "40",
            "-f",
            str(calendar + 1),
            "-l",
            str(calendar + 1),
            "-singlefile",
            str(pdf),
            str(ppm.with_suffix("")),
        ],
        check=True,
    )
    green = _pixels(ppm, (127, 191, 127))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert green > 20 * 100  # twenty filled day cells, each some hundred pixels at 40 dpi


def _pixels(ppm: Path, rgb: tuple[int, int, int]) -> int:
    data = ppm.read_bytes()
    # P6 header: magic, width, height, maxval, each followed by whitespace.
    parts = data.split(maxsplit=4)
    assert parts[0] == b"P6"
    body = parts[4]
    target = bytes(rgb)
    return sum(1 for i in range(0, len(body) - 2, 3) if body[i : i + 3] == target)


def test_a_clinic_template_replaces_the_letter(
    tmp_path: Path, billed: tuple[str, dict[str, str]]
) -> None:
    db, ids = billed
    template = tmp_path / "letter.html.j2"
    template.write_text(
        "<p>Dear {{ payer.name }}, please pay claim {{ claim.claim_id }} for "
        "{{ patient.name }}.</p><p>{{ engagement.paragraph }}</p>"
    )
    settings = world_settings(tmp_path, db, **{"billing.appeal_template": str(template)})
    from rpmpipe.registry.db import open_registry

    engine = open_registry(db)
    packet = build_packet(
        engine, settings.exports_dir, settings.billing, ids["P-02/99457"], TODAY, "CO-16"
    )
    engine.dispose()
    pdf, html = write_packet(packet, tmp_path / "out", template)
    text = _text(pdf)
    assert f"Dear MEDICARE PART B, please pay claim {ids['P-02/99457']} for Grace Hopper." in text
    assert "26 minutes in 2 activities, 2 of them interactive" in text
    assert "Request for redetermination" not in text  # the built-in letter is not used
    assert "Grace Hopper" in html.read_text()
    assert packet.total == Decimal("52.00")


def test_appeal_denied_writes_a_packet_per_denied_claim_with_the_codes_asked(
    tmp_path: Path, billed: tuple[str, dict[str, str]], capfd: pytest.CaptureFixture[str]
) -> None:
    db, ids = billed
    assert _cli(tmp_path, db, "remit", "import", str(tmp_path / "era.835")).exit_code == 0
    out = _cli(
        tmp_path, db, "appeal", "--denied", "--codes", "CO-16,N29", "--out", str(tmp_path / "p")
    )
    assert out.exit_code == 0, out.output
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == [
        f"appeal-{ids['P-01/99457']}.html",
        f"appeal-{ids['P-01/99457']}.pdf",
    ]
    every = _cli(tmp_path, db, "appeal", "--denied", "--out", str(tmp_path / "all"))
    assert every.exit_code == 0 and len(list((tmp_path / "all").iterdir())) == 4
    logged = capfd.readouterr()
    for phi in ("Lovelace", "Ada", "1946-02-11", "1EG4TE5MK01"):
        assert phi not in every.output + out.output + logged.out + logged.err


def test_appeal_without_the_billing_identity_refuses_as_export_does(
    tmp_path: Path, billed: tuple[str, dict[str, str]]
) -> None:
    db, ids = billed
    base = ["--data-dir", str(tmp_path / "data"), "--database-url", db]
    env = {"RPMPIPE_CONFIG": ""}  # no settings file: no practice to name
    appeal = CliRunner().invoke(
        app, [*base, "appeal", ids["P-01/99457"], "--out", str(tmp_path / "appeals")], env=env
    )
    export = CliRunner().invoke(
        app, [*base, "export", "--as-of", "2026-11-05", "--skip-metrics"], env=env
    )
    assert appeal.exit_code == export.exit_code == EXIT_USAGE, appeal.output
    for key in ("billing.provider_name", "billing.provider_npi", "billing.provider_address1"):
        assert key in appeal.output
    assert "no appeal letter can name the practice" in appeal.output
    assert not (tmp_path / "appeals").exists()


def test_a_care_management_line_states_its_own_minutes_staff_and_enrollment(
    tmp_path: Path,
) -> None:
    # P-01 is also in CCM: 27 minutes of CCM time in October (one call, one care-plan
    # update), billed as 99490 on the claim that carries RPM's 99457.
    db = f"sqlite:///{tmp_path / 'r.db'}"
    settings = world_settings(tmp_path, db)
    ccm = [
        {**activity("C-01-1", "P-01", 7, "15", "phone_call", True), "program": "CCM"},
        {**activity("C-01-2", "P-01", 16, "12", "care_plan_update", False), "program": "CCM"},
    ]
    engine = build_world(settings, activities=[*ACTIVITIES, *ccm])
    enrol = {"patient_id": "P-01", "program": "CCM", "start_date": "2026-09-25"}
    enrol |= {"end_date": "", "consent_date": "2026-09-28", "ordering_npi": ORDERING_NPI}
    import_rows(engine, "enrollments", [enrol], source="test")
    plan = {"patient_id": "P-01", "program": "CCM", "established_on": "2026-09-26"}
    plan |= {"revised_on": "", "shared_with_patient_on": "2026-09-26"}
    import_rows(engine, "care-plans", [plan], source="test")
    assert bill(settings, engine).held == 0
    with engine.connect() as conn:
        claim = conn.execute(
            select(ExportLedgerEntry.claim_id).where(ExportLedgerEntry.code == "99490")
        ).scalar_one()
    packet = build_packet(engine, settings.exports_dir, settings.billing, claim, TODAY, "CO-16")
    engine.dispose()
    assert sorted(ln.code for ln in packet.lines) == ["99457", "99490"]
    pdf, html = write_packet(packet, tmp_path / "appeals", None)
    text = _text(pdf)
    for expected in (
        "Line 1, 99457 (RPM, 2026-10-01 to 2026-10-31): 29 minutes counted in 3 activities "
        "(3 interactive; staff RN-7, RN-8); consent 2026-09-25, ordering provider NPI 1234567893",
        "Line 2, 99490 (CCM, 2026-10-01 to 2026-10-31): 27 minutes counted in 2 activities "
        "(1 interactive; staff RN-7); consent 2026-09-28, ordering provider NPI 1234567893",
    ):
        assert expected in text, expected
    page = html.read_text()
    # The time log says which line each entry counted for: a minute counts once.
    log = page[page.index("Attachment 4") :]
    rows = re.findall(r"<tr>(.*?)</tr>", log, re.S)
    counted = {
        re.findall(r"<td>(.*?)</td>", r)[2]: re.findall(r"<td>(.*?)</td>", r)[5]
        for r in rows
        if "<td>" in r
    }
    assert counted["care plan update"] == "99490 (CCM)"
    assert counted["video visit"] == "99457 (RPM)"
    # The claim lines show the minutes counted for each code (all CCM time, not only
    # the interactive part).
    lines = page[page.index("Attachment 1") : page.index("Attachment 2")]
    ccm_row = next(r for r in re.findall(r"<tr>(.*?)</tr>", lines, re.S) if "99490" in r)
    assert re.findall(r"<td>(.*?)</td>", ccm_row)[-1] == "27"


def test_appeals_of_several_denied_claims_read_their_runs_evidence_once(
    tmp_path: Path, billed: tuple[str, dict[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The denial list and each packet had read the whole run's evidence.parquet again per
    claim (a payer denying a run's claims in a batch: claims x lines of the run)."""
    import pyarrow.parquet as pq

    from rpmpipe.billing_export import denials

    db, _ = billed
    assert _cli(tmp_path, db, "remit", "import", str(tmp_path / "era.835")).exit_code == 0
    read: list[str] = []
    whole = pq.read_table

    def counted(path: object, *args: object, **kwargs: object) -> object:
        read.append(Path(str(path)).name)
        return whole(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(denials.pq, "read_table", counted)
    out = _cli(tmp_path, db, "appeal", "--denied", "--out", str(tmp_path / "all"))
    assert out.exit_code == 0, out.output
    assert len(list((tmp_path / "all").iterdir())) == 4  # two claims, a PDF and a page each
    assert read == ["evidence.parquet"]


def test_frozen_evidence_holds_the_last_runs_only_and_reads_each_once_while_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Appeals across a year of runs: each run's file is read once while its claims are
    asked for in turn, and no more than ``keep`` runs' files are held at once."""
    import pyarrow as pa

    from rpmpipe.billing_export import denials

    for run in ("r1", "r2", "r3"):
        (tmp_path / run).mkdir()
        (tmp_path / run / denials.EVIDENCE_PARQUET).write_bytes(b"")
    read: list[str] = []

    def fake_read(path: object) -> pa.Table:
        run = Path(str(path)).parent.name
        read.append(run)
        return pa.table({"claim_id": [f"{run}-a", f"{run}-b"]})

    monkeypatch.setattr(denials.pq, "read_table", fake_read)
    monkeypatch.setattr(denials, "evidence_from_table", lambda t: t["claim_id"].to_pylist())
    frozen = denials.FrozenEvidence(tmp_path, keep=2)
    asked = [("r1", "a"), ("r1", "b"), ("r2", "a"), ("r1", "a"), ("r3", "b"), ("r1", "b")]
    got = [frozen.of_claim(run, f"{run}-{c}") for run, c in asked]
    assert got == [[f"{run}-{c}"] for run, c in asked]
    assert read == ["r1", "r2", "r3"]  # r1 stayed held: asked again before r3 came
    assert frozen.of_claim("r2", "r2-a") == ["r2-a"] and read[-1] == "r2"  # r2 had gone
    assert frozen.of_claim("r4", "r4-a") == []  # no such run: no evidence
