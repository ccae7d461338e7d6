"""The whole pipeline on embedded defaults, for a newcomer: ``rpmpipe demo``.

It starts the in-process broker, registers a simulated fleet, starts ingest, publishes the
fleet's syncs and care activity in accelerated time, waits until ingest has written (or
quarantined) every message, computes engagement as of today, exports the billable lines, and
returns the figures for a summary table. Each stage is the real one the production commands
run; only the broker and the database are the embedded defaults.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Engine

from rpmpipe.app.cycle import run_billing_cycle
from rpmpipe.app.demo_settings import DEMO_SETTINGS_NAME, demo_billing, write_demo_settings
from rpmpipe.app.report.build import build_report
from rpmpipe.asof import today_in
from rpmpipe.billing_export.export import ExportResult
from rpmpipe.embedded_broker import EmbeddedBroker
from rpmpipe.errors import RpmpipeError
from rpmpipe.ingest.stats import StatsSnapshot
from rpmpipe.ingest.subscriber import IngestService
from rpmpipe.records import (
    EngagementRecord,
    LineKind,
    Program,
    RecordKind,
    RecordStatus,
    billed_text,
)
from rpmpipe.registry.db import open_registry
from rpmpipe.registry.imports import import_rows
from rpmpipe.settings import Settings
from rpmpipe.simulators import Fleet, build_fleet, default_start, publish, simulate, write_manifest
from rpmpipe.simulators.fleet import ORDERING_PROVIDERS

MARKER = ".rpmpipe-demo"
DEMO_USERNAME = "rpmpipe-demo"


@dataclass(frozen=True)
class FinalPeriod:
    """A patient's last final 30-day period or month: what it earned and why."""

    start: date
    end: date
    transmission_days: int
    interactive_minutes: Decimal
    codes: str  # the lines as billed: "99454", "99457 + 2x 99458", or "-"
    status: str
    reason: str
    management_minutes: Decimal = Decimal(0)  # all care time of the month


@dataclass(frozen=True)
class PatientRow:
    patient_id: str
    supply: FinalPeriod | None  # the last device-supply period that ended before as-of
    month: FinalPeriod | None  # the last treatment-management month that ended before as-of

    @property
    def status(self) -> str:
        """``billable`` when either earned a code, else ``not billable``."""
        final = (self.supply, self.month)
        return (
            "billable"
            if any(p and p.status == RecordStatus.BILLABLE for p in final)
            else "not billable"
        )


@dataclass(frozen=True)
class DemoSummary:
    out: Path
    as_of: date
    patients: int
    devices: int
    messages: int
    readings_stored: int
    duplicates: int
    quarantined: dict[str, int]
    activities: int
    transmission_days: int
    interactive_minutes: Decimal
    management_minutes: Decimal
    lines_by_code: dict[str, int]
    status_by_kind: dict[str, dict[str, int]]
    export_dir: Path | None
    claims: int
    exported_lines: int
    total_charge: Decimal
    seconds: float
    per_patient: tuple[PatientRow, ...] = field(default=())
    appeal_packet: Path | None = None  # one packet for a demo claim, as if denied CO-16/N29
    report_index: Path | None = None


def prepare_out_dir(out: Path) -> None:
    """Empty a previous demo's output; refuse to touch a directory the demo did not make."""
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise RpmpipeError(
                f"{out} exists and was not made by rpmpipe demo; choose another --out or empty it"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    (out / MARKER).write_text("made by rpmpipe demo; rerunning the demo replaces this directory\n")


def run_demo(
    base: Settings,
    out: Path,
    *,
    patients: int,
    days: int,
    seed: int,
    now: datetime,
    progress: Callable[[str], None],
) -> DemoSummary:
    started = time.monotonic()
    prepare_out_dir(out)
    progress(f"output in {out}")
    # The demo bills as a made-up test clinic, from a settings file it writes beside its output
    # (rpmpipe has no built-in billing identity).
    billing = demo_billing(write_demo_settings(out))
    progress(
        f"billing settings in {out / DEMO_SETTINGS_NAME} (a test clinic, ISA15 {billing.usage})"
    )
    with EmbeddedBroker() as broker:
        settings = base.replace(
            data_dir=out / "data",
            database_url="",
            broker=replace(
                base.broker,
                url=broker.url,
                protocol="3.1.1",
                username=DEMO_USERNAME,
                password="",
                client_id="rpmpipe-demo-ingest",
                topic_root="rpm/v1",
                shared_group="",
            ),
            # The fleet's ordering practitioners render the claims; name them for the 837P.
            billing=replace(
                billing,
                rendering_providers={**ORDERING_PROVIDERS, **billing.rendering_providers},
            ),
        )
        progress(f"embedded MQTT broker on {broker.url}")
        engine = open_registry(settings.effective_database_url)

        fleet = build_fleet(patients=patients, start=default_start(now, days), days=days, seed=seed)
        for kind, rows in fleet.registry_rows().items():
            import_rows(engine, kind, rows, source="demo fleet")
        progress(f"registered {len(fleet.patients)} patients and {len(fleet.devices)} devices")

        sim = simulate(
            fleet, topic_root=settings.broker.topic_root, fmt="mixed", faults=True, until=now
        )
        if sim.manifest is not None:
            write_manifest(out / "faults.json", sim.manifest)

        service = IngestService(settings.ingest, engine)
        stop = threading.Event()
        worker = threading.Thread(target=service.run, args=(stop,), name="ingest", daemon=True)
        worker.start()
        _wait(lambda: service.stats.subscribed > 0, 20, "ingest did not subscribe to the broker")
        progress(f"ingest subscribed; publishing {len(sim.messages)} messages over {days} days")

        def show(p: object) -> None:
            stats = service.stats
            progress(
                f"  published {getattr(p, 'acked', 0)}/{len(sim.messages)}, "
                f"ingested {stats.processed}"
            )

        published = publish(settings.broker, sim.messages, speed="max", progress=show)
        _wait(
            lambda: service.stats.processed >= published.messages,
            60,
            "ingest did not finish the published messages in time",
        )
        stop.set()
        worker.join(30)
        stats = service.stats
        progress(
            f"ingested {stats.processed} messages: {stats.stored} readings stored, "
            f"{stats.duplicates} duplicates dropped, {stats.quarantined_total} quarantined"
        )

    as_of = today_in(settings.org_zone, now)
    cycle = run_billing_cycle(settings, engine, as_of, now, out_dir=out / "exports")
    records, result = list(cycle.records), cycle.export
    progress(f"computed {len(records)} engagement records as of {as_of}")
    progress(f"exported {result.lines} lines in {result.claims} claims to {result.run_dir}")
    packet = _demo_appeal(settings, engine, out, as_of)
    if packet is not None:
        progress(f"wrote an appeal packet for a demo claim: {packet}")
    report = build_report(settings, engine, as_of, out / "report", now=now, records=records)
    progress(f"wrote the report: {report.patients} patients")

    summary = _summarise(
        out, as_of, fleet, stats, published.messages, records, result, time.monotonic() - started
    )
    return replace(summary, appeal_packet=packet, report_index=report.index)


def _demo_appeal(settings: Settings, engine: Engine, out: Path, as_of: date) -> Path | None:
    """An appeal packet for the first management claim, answering a CO-16 / N29 denial."""
    from sqlalchemy import select

    from rpmpipe.billing_export.denials import build_packet, write_packet
    from rpmpipe.registry.models import ExportLedgerEntry

    e = ExportLedgerEntry
    with engine.connect() as conn:
        claim_id = conn.execute(
            select(e.claim_id)
            .where(e.line_kind == LineKind.ORIGINAL)
            .order_by((e.record_kind != RecordKind.TREATMENT_MANAGEMENT), e.id)
            .limit(1)
        ).scalar()
    if claim_id is None:
        return None
    packet = build_packet(engine, out / "exports", settings.billing, claim_id, as_of, "CO-16")
    packet = replace(packet, denial=replace(packet.denial, remarks=("N29",)))
    pdf, _html = write_packet(packet, out / "appeals", None)
    return pdf


def _wait(condition: Callable[[], bool], timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RpmpipeError(message)
        time.sleep(0.05)


def _summarise(
    out: Path,
    as_of: date,
    fleet: Fleet,
    stats: StatsSnapshot,
    messages: int,
    records: list[EngagementRecord],
    result: ExportResult,
    seconds: float,
) -> DemoSummary:
    lines: Counter[str] = Counter()
    status_by_kind: dict[str, Counter[str]] = {}
    days_total = 0
    minutes_total = Decimal(0)
    management_total = Decimal(0)
    last: dict[tuple[str, str], EngagementRecord] = {}
    for r in records:
        status_by_kind.setdefault(f"{r.program} {r.kind}", Counter())[r.status] += 1
        if r.kind == RecordKind.DEVICE_SUPPLY:
            days_total += r.transmission_days
        elif r.kind == RecordKind.TREATMENT_MANAGEMENT and r.program == Program.RPM:
            minutes_total += r.interactive_minutes
            management_total += r.management_minutes
        if r.status == RecordStatus.BILLABLE:
            for line in r.lines:
                lines[line.code] += line.units
        if r.period_end < as_of and r.program == Program.RPM:  # final: only these can be billed
            key = (r.patient_id, r.kind)
            if key not in last or last[key].period_start < r.period_start:
                last[key] = r
    per_patient = tuple(
        PatientRow(
            p.patient_id,
            final_period(last.get((p.patient_id, RecordKind.DEVICE_SUPPLY))),
            final_period(last.get((p.patient_id, RecordKind.TREATMENT_MANAGEMENT))),
        )
        for p in sorted(fleet.patients, key=lambda p: p.patient_id)
    )
    return DemoSummary(
        out=out,
        as_of=as_of,
        patients=len(fleet.patients),
        devices=len(fleet.devices),
        messages=messages,
        readings_stored=stats.stored,
        duplicates=stats.duplicates,
        quarantined=dict(stats.quarantined),
        activities=stats.activities,
        transmission_days=days_total,
        interactive_minutes=minutes_total,
        management_minutes=management_total,
        lines_by_code=dict(sorted(lines.items())),
        status_by_kind={k: dict(v) for k, v in sorted(status_by_kind.items())},
        export_dir=result.run_dir,
        claims=result.claims,
        exported_lines=result.lines,
        total_charge=result.total_charge,
        seconds=seconds,
        per_patient=per_patient,
    )


def final_period(record: EngagementRecord | None) -> FinalPeriod | None:
    """The summary's row of ``record``: its lines worded as everywhere else (billed_text)."""
    if record is None:
        return None
    codes = billed_text(record.lines) or "-"
    return FinalPeriod(
        record.period_start,
        record.period_end,
        record.transmission_days,
        record.interactive_minutes,
        codes,
        str(record.status),
        record.reason,
        record.management_minutes,
    )
