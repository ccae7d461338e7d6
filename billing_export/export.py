"""One export run: registry in, run directory + ledger rows out.

Crash safety (why this order)
-----------------------------
The ledger decides what is billed; the run directory is what the billing team picks up.
A run therefore goes through four steps, each safe to die after:

1. allocate control numbers (own commit; a crashed run only leaves a gap, which X12 allows);
2. write every file into ``<exports>/.partial-<run_id>/`` (temp file, fsync, rename, fsync
   dir; ``manifest.json`` last) — a dot directory the billing team never picks up;
3. insert all the run's lines into ``export_ledger`` in ONE transaction;
4. rename ``.partial-<run_id>`` to ``<run_id>`` and fsync the exports directory.

A crash before 3 commits leaves a partial directory with no ledger rows: nothing was billed,
so the next run deletes that directory and exports the same lines again (nothing lost). A
crash after 3 and before 4 leaves complete, fsynced files whose lines are in the ledger: the
next run publishes that directory by finishing the rename (nothing billed twice, nothing
lost). The next run does this recovery first, under the same lock file that keeps two
exports from working in one exports directory at once; across machines, the ledger's unique
constraint makes the second of two racing runs fail before it publishes anything.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import BinaryIO, TextIO

from sqlalchemy import Engine

from rpmpipe import __version__
from rpmpipe.asof import check_as_of
from rpmpipe.billing_export.charge_csv import write_charge_csv, write_corrections_csv
from rpmpipe.billing_export.holds import Held, group_held
from rpmpipe.billing_export.ledger import (
    RunStamp,
    allocate_control_numbers,
    load_final_records,
    load_ledger,
    load_patients,
    record_ledger,
    run_is_recorded,
)
from rpmpipe.billing_export.plan import ExportPlan, build_plan, select_work
from rpmpipe.billing_export.x12 import (
    CLAIMS_PER_TRANSACTION,
    ControlNumbers,
    transactions_needed,
    write_837p,
)
from rpmpipe.errors import ExportError
from rpmpipe.files import atomic_write, fsync_dir, private_dir
from rpmpipe.logs import get_logger
from rpmpipe.settings import BillingSettings, Settings

log = get_logger(__name__)

PARTIAL_PREFIX = ".partial-"
LOCK_NAME = ".export.lock"
CHARGES = "charges.csv"
CLAIMS = "claims.837"
CORRECTIONS = "corrections.csv"
MANIFEST = "manifest.json"

# Test-only seam: called with the partial run dir after step 2 / after step 3 above. Tests
# raise from it to simulate a crash at that point; production never passes it.
CrashPoint = Callable[[Path], None]


@dataclass(frozen=True, slots=True)
class ExportResult:
    run_id: str | None
    run_dir: Path | None
    lines: int
    claims: int
    corrections: int
    held: int
    total_charge: Decimal
    control: ControlNumbers | None
    transactions: int = 0
    recovered: tuple[str, ...] = ()  # partial run dirs published or discarded first
    held_back: tuple[Held, ...] = ()  # the held records, with reasons; ``held`` counts lines


def run_export(
    settings: Settings,
    engine: Engine,
    as_of: date,
    out_dir: Path | None = None,
    *,
    now: datetime,
    _after_files: CrashPoint | None = None,
    _after_ledger: CrashPoint | None = None,
) -> ExportResult:
    """Export every final, billable, not-yet-exported line (and corrections) as of ``as_of``.

    ``now`` is the caller's clock (timezone-aware). An ``as_of`` after today in the
    organisation's zone is refused: periods ending on or after today are not over yet.
    """
    check_as_of(as_of, settings.org_zone, now)
    root = Path(out_dir) if out_dir is not None else settings.exports_dir
    private_dir(root)
    with _exclusive(root / LOCK_NAME):
        recovered = recover_unfinished(root, engine)
        with engine.connect() as conn:
            records = load_final_records(conn, as_of)
            ledger = load_ledger(conn)
            patients = load_patients(conn, {r.patient_id for r in records})
        work = select_work(records, ledger, patients, settings.billing)
        plan = (
            build_plan(work, patients, settings.billing, interchange=0)
            if not work.is_empty
            else ExportPlan((), (), (), work.held)
        )
        _log_held(plan.held)
        if not plan.claims and not plan.corrections:
            # Nothing to write (changed records may all be held): no empty run directory.
            log.info("export_nothing_new", as_of=as_of.isoformat(), held=_lines(plan.held))
            return ExportResult(
                None,
                None,
                0,
                0,
                0,
                _lines(plan.held),
                Decimal("0.00"),
                None,
                recovered=recovered,
                held_back=plan.held,
            )
        control: ControlNumbers | None = None
        transactions = 0
        if plan.claims:
            transactions = transactions_needed(len(plan.claims))
            control = allocate_control_numbers(engine, transactions)
            plan = build_plan(work, patients, settings.billing, control.interchange)
            run_id = f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{control.interchange:09d}"
        else:
            run_id = f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-corrections-{uuid.uuid4().hex[:8]}"

        partial = root / f"{PARTIAL_PREFIX}{run_id}"
        final = root / run_id
        if final.exists():
            raise ExportError(f"run directory {final} already exists")
        private_dir(partial)
        _write_run_files(
            partial, plan, settings.billing, RunHeader(run_id, as_of, now, control, transactions)
        )
        if _after_files:
            _after_files(partial)

        transaction_of = {
            claim.claim_id: (control.transaction + i // CLAIMS_PER_TRANSACTION) if control else 0
            for i, claim in enumerate(plan.claims)
        }
        stamp = RunStamp(run_id, CLAIMS, CORRECTIONS, control, now)
        try:
            record_ledger(engine, plan.ledger, stamp, transaction_of)
        except ExportError:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        if _after_ledger:
            _after_ledger(partial)
        os.replace(partial, final)
        fsync_dir(root)

    result = ExportResult(
        run_id=run_id,
        run_dir=final,
        lines=sum(len(c.lines) for c in plan.claims),
        claims=len(plan.claims),
        corrections=len(plan.corrections),
        held=_lines(plan.held),
        total_charge=sum((c.total for c in plan.claims), Decimal("0.00")),
        control=control,
        transactions=transactions,
        recovered=recovered,
        held_back=plan.held,
    )
    log.info(
        "export_finished",
        run_id=run_id,
        claims=result.claims,
        lines=result.lines,
        corrections=result.corrections,
        held=result.held,
    )
    return result


def recover_unfinished(root: Path, engine: Engine) -> tuple[str, ...]:
    """Publish partial run dirs whose lines the ledger holds; delete the others."""
    done = []
    for partial in sorted(root.glob(f"{PARTIAL_PREFIX}*")):
        if not partial.is_dir():
            continue
        run_id = partial.name[len(PARTIAL_PREFIX) :]
        # Recorded means billed: publish it whatever state it is in, never delete it.
        if run_is_recorded(engine, run_id):
            os.replace(partial, root / run_id)
            log.warning("export_run_recovered", run_id=run_id, action="published")
        else:
            shutil.rmtree(partial)
            log.warning("export_run_recovered", run_id=run_id, action="discarded")
        done.append(run_id)
    if done:
        fsync_dir(root)
    return tuple(done)


@dataclass(frozen=True, slots=True)
class RunHeader:
    """What names one export run in its files: id, as-of, clock and X12 control numbers."""

    run_id: str
    as_of: date
    created_at: datetime
    control: ControlNumbers | None
    transactions: int  # ST/SE envelopes in claims.837 (0 for a corrections-only run)


def _write_run_files(
    run_dir: Path, plan: ExportPlan, billing: BillingSettings, run: RunHeader
) -> None:
    control, now = run.control, run.created_at
    files: dict[str, str] = {}
    if plan.claims:
        assert control is not None
        files[CHARGES] = _write_atomic(
            run_dir / CHARGES, "utf-8", lambda f: write_charge_csv(f, plan.claims, billing)
        )
        files[CLAIMS] = _write_atomic(
            run_dir / CLAIMS, "ascii", lambda f: write_837p(f, plan.claims, billing, control, now)
        )
    if plan.corrections:
        files[CORRECTIONS] = _write_atomic(
            run_dir / CORRECTIONS, "utf-8", lambda f: write_corrections_csv(f, plan.corrections)
        )
    manifest = {
        "run_id": run.run_id,
        "rpmpipe_version": __version__,
        "as_of": run.as_of.isoformat(),
        "created_at": now.astimezone(UTC).isoformat(),
        "files": [{"name": name, "sha256": digest} for name, digest in sorted(files.items())],
        "claims": len(plan.claims),
        "lines": sum(len(c.lines) for c in plan.claims),
        "corrections": len(plan.corrections),
        "total_charge": f"{sum((c.total for c in plan.claims), Decimal('0.00')):.2f}",
        "control_numbers": None
        if control is None
        else {
            "isa13": control.interchange,
            "gs06": control.group,
            "st02": [control.transaction + n for n in range(run.transactions)],
        },
        "usage": billing.usage,
        "rule_sets": sorted({cl.line.rule_set for c in plan.claims for cl in c.lines}),
        "held": [
            {
                "patient_id": h.patient_id,
                "record_kind": h.record_kind,
                "period_start": h.period_start.isoformat(),
                "lines": h.lines,
                "reason": h.reason,
            }
            for h in plan.held
        ],
    }
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    _write_atomic(run_dir / MANIFEST, "utf-8", lambda f: f.write(text))


def _write_atomic(path: Path, encoding: str, produce: Callable[[TextIO], object]) -> str:
    """Write text atomically (0600, fsync, rename, fsync dir); return its sha256."""

    def write_text(raw: BinaryIO) -> None:
        text = io.TextIOWrapper(raw, encoding=encoding, newline="", write_through=True)
        produce(text)
        text.flush()
        text.detach()  # leave the raw file open for atomic_write's fsync

    atomic_write(path, write_text)
    digest = hashlib.sha256()
    with path.open("rb") as check:
        for chunk in iter(lambda: check.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _lines(held: tuple[Held, ...]) -> int:
    return sum(h.lines for h in held)


def _log_held(held: tuple[Held, ...]) -> None:
    for group in group_held(held):
        log.warning(
            "export_lines_held",
            reason=group.cause.text,
            lines=group.lines,
            patients=len(group.patient_ids),
        )
