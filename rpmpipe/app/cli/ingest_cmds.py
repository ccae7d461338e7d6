"""``rpmpipe ingest``, ``compact``, ``quarantine list|replay`` and ``import readings``."""

from __future__ import annotations

import gc
import signal
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import orjson
import typer

from rpmpipe.app.cli.common import fail, settings_of
from rpmpipe.app.cli.progress import progress_bar
from rpmpipe.errors import (
    EXIT_UNAVAILABLE,
    RpmpipeError,
    ServiceUnavailable,
    UsageError,
)

if TYPE_CHECKING:
    from sqlalchemy import Engine

# Quarantined lines listed by `import readings`; the rest are counted (see quarantine list).
MAX_LINES_SHOWN = 20

quarantine_app = typer.Typer(
    help=(
        "Inspect and re-ingest quarantined payloads (bad JSON, unknown devices, implausible "
        "values, ...). Quarantine lives in DATA_DIR/quarantine/ as Parquet."
    ),
    no_args_is_help=True,
)


def ingest(
    ctx: typer.Context,
    shared_group: Annotated[
        str | None,
        typer.Option(
            "--shared-group",
            help="Subscribe through $share/NAME/... so several ingest processes split the stream.",
        ),
    ] = None,
    client_id: Annotated[
        str | None,
        typer.Option(
            "--client-id",
            help="MQTT client id (the persistent session's name). Default: broker.client_id.",
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port", help="Serve Prometheus counters on http://127.0.0.1:PORT/metrics."
        ),
    ] = None,
    once: Annotated[
        bool,
        typer.Option(
            "--once",
            help="Drain what the broker has queued, then exit 0 (exit 4 if it refuses us).",
        ),
    ] = False,
) -> None:
    """Subscribe to device readings and care activity and store them, exactly once.

    Messages are acknowledged only after their readings (or quarantine records) are durably
    on disk. SIGTERM or Ctrl-C flushes, acknowledges, disconnects and exits 0. Before
    subscribing it checks that the data dir is writable, the registry answers and the broker
    accepts CONNECT; if not, it prints one line and exits 4 (a service unavailable), as it
    does when its session is taken over repeatedly by another client with its client id.
    """
    from rpmpipe.ingest.stats import serve_metrics
    from rpmpipe.ingest.subscriber import IngestService

    settings = settings_of(ctx)
    engines: list[Engine] = []

    def open_engine() -> Engine:
        # On ingest's writer thread, while the broker connection is made. An unreachable
        # registry ends at the command line's edge all the same: one line, exit 4.
        from rpmpipe.registry.db import open_registry

        engines.append(open_registry(settings.effective_database_url))
        return engines[-1]

    try:
        service = IngestService(
            settings.ingest, open_engine, client_id=client_id, shared_group=shared_group
        )
    except RpmpipeError as exc:
        raise fail(str(exc), exc.exit_code) from None
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = serve_metrics(service.counters, metrics_port) if metrics_port else None
    # Everything imported so far lives as long as the process: freezing it spares the cyclic
    # GC from re-scanning it, and a larger young generation means fewer collections on the
    # per-message hot path (ingest makes few reference cycles).
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    try:
        service.run(stop, once=once)
    except ServiceUnavailable as exc:
        raise fail(str(exc), EXIT_UNAVAILABLE) from None
    finally:
        if server is not None:
            server.shutdown()
        for engine in engines:
            engine.dispose()


def compact(
    ctx: typer.Context,
    before: Annotated[
        str | None,
        typer.Option(
            "--before",
            help="Compact days strictly before this UTC date (YYYY-MM-DD). Default: yesterday.",
        ),
    ] = None,
    grace_minutes: Annotated[
        float,
        typer.Option(
            "--grace-minutes",
            help="Keep merged-away files this long for readers mid-listing; a later run deletes them.",
        ),
    ] = 10.0,
) -> None:
    """Merge the small Parquet files of closed days into one file per day.

    Rows stay exactly-once (de-duplicated on dedup_key) and readers never miss a row: the
    merged file appears before the small ones go. Safe to run while ingest is running.
    """
    from rpmpipe.asof import parse_day
    from rpmpipe.ingest.compact import compact as run_compact

    settings = settings_of(ctx)
    # Partitions are UTC dates (the readings' date= folders), so "yesterday" is UTC's here.
    cutoff = parse_day(before, "--before") if before else datetime.now(UTC).date() - timedelta(1)
    with progress_bar("compacting days") as bar:
        s = run_compact(
            settings.readings_dir, cutoff, grace_seconds=grace_minutes * 60, progress=bar
        )
    typer.echo(
        f"compacted {s.partitions} day(s): {s.files_before} files -> {s.files_after}, "
        f"{s.rows} rows, {s.duplicates_removed} duplicates removed, "
        f"{s.files_deleted} merged-away files deleted"
    )


def _check_reason(reason: str | None) -> None:
    from rpmpipe.ingest.reasons import check_reason_code

    if reason is not None:
        try:
            check_reason_code(reason)
        except ValueError as exc:
            raise UsageError(f"--reason: {exc}", option="--reason") from None


@quarantine_app.command("list")
def quarantine_list(
    ctx: typer.Context,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Only this reason code (e.g. unknown_device).")
    ] = None,
    output: Annotated[str, typer.Option("--format", help="table or json.")] = "table",
) -> None:
    """List quarantined payloads: id, received time, reason code and reason (never the payload).

    The reason is the first failure; a replay that failed again adds its own, as the latest.
    Topics are shown by kind only (readings, activities, backfill, other): a topic is chosen
    by the sender and can carry PHI.
    """
    from rpmpipe.ingest.quarantine import read_quarantine

    settings = settings_of(ctx)
    if output not in ("table", "json"):
        raise UsageError(f"--format: expected table or json, got {output!r}", option="--format")
    _check_reason(reason)

    import pyarrow.compute as pc

    table = read_quarantine(settings.quarantine_dir)
    if reason:
        table = table.filter(pc.equal(table.column("reason_code"), reason))
    table = table.sort_by([("received_at", "ascending"), ("quarantine_id", "ascending")])
    rows = table.to_pylist()
    root = settings.broker.topic_root
    for row in rows:  # a topic is chosen by the sender and can carry PHI: show its kind only
        row["topic_kind"] = _topic_kind(row.pop("topic"), root)
    if output == "json":
        shown = []
        for row in rows:
            payload = row.pop("payload")
            row["received_at"] = row["received_at"].isoformat()
            row["payload_bytes"] = len(payload)
            shown.append(row)
        typer.echo(orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode())
        return
    for r in rows:
        latest = (
            f"  (latest replay: {r['last_reason_code']}: {r['last_reason']})"
            if r.get("last_reason_code")
            else ""
        )
        typer.echo(
            f"{r['quarantine_id']}  {r['received_at'].isoformat(timespec='seconds')}  "
            f"{r['reason_code']:<18} {r['reason']}  [{r['topic_kind']}]{latest}"
        )
    counts = Counter(r["reason_code"] for r in rows)
    summary = ", ".join(f"{code}: {n}" for code, n in sorted(counts.items())) or "empty"
    typer.echo(f"{len(rows)} quarantined ({summary})")


def _topic_kind(topic: str, topic_root: str) -> str:
    from rpmpipe.ingest.pipeline import topic_device

    kind, _device = topic_device(topic, topic_root)
    return {"reading": "readings", "activity": "activities"}.get(kind, kind).replace(
        "unknown", "other topic"
    )


@quarantine_app.command("replay")
def quarantine_replay(
    ctx: typer.Context,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Replay only this reason code.")
    ] = None,
) -> None:
    """Decode quarantined payloads again (say, after registering a device) and store them.

    Still exactly-once: readings stored before are not stored twice. Records that now succeed
    leave quarantine; those that still fail stay with their first reason, and the latest
    attempt's reason is recorded beside it.
    """
    from rpmpipe.ingest.replay import replay
    from rpmpipe.registry.db import open_registry

    settings = settings_of(ctx)
    _check_reason(reason)
    engine = open_registry(settings.effective_database_url)
    try:
        s = replay(settings.ingest, engine, reason)
    finally:
        engine.dispose()
    typer.echo(
        f"replayed {s.considered} record(s): {s.stored} readings stored, "
        f"{s.duplicates} already stored, {s.replayed} left quarantine, "
        f"{s.still_quarantined} still quarantined"
    )


def import_readings(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            readable=True,
            help="JSONL: one payload per line (native, Open mHealth, FHIR Observation or Bundle).",
        ),
    ],
    device: Annotated[
        str | None,
        typer.Option(
            "--device",
            help=(
                "Import every line for this registered device, as its MQTT topic does for live "
                "traffic: for payloads that name no device. A line naming another device is "
                "quarantined (device_mismatch)."
            ),
        ),
    ] = None,
) -> None:
    """Backfill readings from FILE.jsonl with the same validation and dedup as MQTT ingest.

    A bad line goes to quarantine with its line number; the good lines are stored. The first
    20 quarantined lines are printed with their reason codes (never their content).
    """
    from rpmpipe.ingest.backfill import backfill_file
    from rpmpipe.registry.db import open_registry

    settings = settings_of(ctx)
    engine = open_registry(settings.effective_database_url)
    try:
        # FILE was checked readable above; an OSError here is the data dir (the edge names it).
        s = backfill_file(settings.ingest, engine, file, datetime.now(UTC), device_id=device)
    except RpmpipeError as exc:
        raise fail(f"{exc}; nothing was imported", exc.exit_code) from None
    finally:
        engine.dispose()
    bad = ", ".join(f"{code}: {n}" for code, n in sorted(s.quarantined.items())) or "none"
    typer.echo(
        f"readings: {s.lines} lines, {s.stored} readings stored, {s.duplicates} already stored, "
        f"quarantined: {bad}"
    )
    # Line numbers and codes only: the payload is PHI. A line may hold several bad items.
    by_line: dict[int, list[str]] = {}
    for number, code in s.rejected_lines:
        codes = by_line.setdefault(number, [])
        if code not in codes:
            codes.append(code)
    for number in sorted(by_line)[:MAX_LINES_SHOWN]:
        typer.echo(f"  line {number}: {', '.join(by_line[number])}")
    if len(by_line) > MAX_LINES_SHOWN:
        typer.echo(
            f"  ... and {len(by_line) - MAX_LINES_SHOWN} more line(s); "
            "see `rpmpipe quarantine list`"
        )


def register(app: typer.Typer) -> None:
    """Attach this module's commands to ``app`` (``import readings`` is in registry_cmds)."""
    app.command("ingest")(ingest)
    app.command("compact")(compact)
    app.add_typer(quarantine_app, name="quarantine")
