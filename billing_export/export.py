"""One export run: registry in, run directory + ledger rows out.

Crash safety (why this order)
-----------------------------
The ledger decides what is billed; the run directory is what the billing team picks up.
A run therefore goes through four steps, each safe to die after:

1. allocate control numbers and claim numbers (own commit; a crashed run only leaves a gap,
   which X12 allows);
2. write every file into ``<exports>/.partial-<run_id>/`` (temp file, fsync, rename, fsync
   dir; ``manifest.json`` last) — a dot directory the billing team never picks up. The claim
   files are written by a forked child (:mod:`rpmpipe.forked`) while this process writes the
   evidence; the manifest waits for both, and a child that fails or dies fails the run here;
3. insert all the run's lines into ``export_ledger``, and the run with its exports
   directory into ``export_runs``, in ONE transaction, durable when it returns (SQLite runs
   with ``synchronous=FULL``);
4. rename ``.partial-<run_id>`` to ``<run_id>``, fsync the exports directory, mark the run
   published.

A crash before 3 commits leaves a partial directory with no ledger rows: nothing was billed,
so the next run deletes that directory and exports the same lines again (nothing lost). A
crash after 3 and before 4 leaves complete, fsynced files whose lines are in the ledger: the
next run, whatever ``--out`` it is given, finds the run in ``export_runs`` and publishes that
directory by finishing the rename (nothing billed twice, nothing lost); if the files are gone
from a directory that still exists, it rolls the run's lines back so they go out again. The
next run does this recovery first, under the lock file that keeps two exports from working in
one exports directory at once; across machines, the ledger's unique constraint makes the
second of two racing runs fail before it publishes anything.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import io
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TextIO

from sqlalchemy import Engine

from rpmpipe import __version__
from rpmpipe.asof import check_as_of
from rpmpipe.billing_export.charge_csv import write_charge_csv, write_corrections_csv
from rpmpipe.billing_export.claims import Claim, PatientInfo, Receiver, claims_file_for
from rpmpipe.billing_export.holds import Held, group_held
from rpmpipe.billing_export.ledger import (
    Allocation,
    RunStamp,
    allocate_control_numbers,
    load_final_records,
    load_ledger,
    load_patients,
    mark_run,
    nothing_to_export,
    record_ledger,
    roll_back_run,
    run_is_recorded,
    run_status,
    unfinished_runs,
)
from rpmpipe.billing_export.plan import (
    ExportPlan,
    LedgerState,
    PlanDraft,
    Work,
    draft_plan,
    price_plan,
    select_work,
)
from rpmpipe.billing_export.x12 import (
    CLAIMS_PER_TRANSACTION,
    ControlNumbers,
    transactions_needed,
    write_837p,
)
from rpmpipe.collector import gc_paused
from rpmpipe.errors import ConfigError, ExportError
from rpmpipe.files import atomic_write, fsync_dir, private_dir
from rpmpipe.forked import ChildDied, Forked, forked
from rpmpipe.logs import get_logger
from rpmpipe.progress import SILENT, Progress, tracked
from rpmpipe.records import LineSig, RecordKey
from rpmpipe.settings import BillingSettings, ExportSettings

if TYPE_CHECKING:
    import pyarrow as pa

    from rpmpipe.billing_export.evidence_files import RunEvidence
    from rpmpipe.billing_export.evidence_load import RunFacts

log = get_logger(__name__)

PARTIAL_PREFIX = ".partial-"
LOCK_NAME = ".export.lock"
CHARGES = "charges.csv"
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
    recovered: tuple[str, ...] = ()  # unfinished runs published, rolled back or discarded
    held_back: tuple[Held, ...] = ()  # the held records, with reasons; ``held`` counts lines
    usage: str = "T"  # ISA15: T test, P production
    claims_files: tuple[str, ...] = ()  # one .837 per receiver


def run_export(
    settings: ExportSettings,
    engine: Engine,
    as_of: date,
    out_dir: Path | None = None,
    *,
    now: datetime,
    progress: Progress = SILENT,
    _after_files: CrashPoint | None = None,
    _after_ledger: CrashPoint | None = None,
) -> ExportResult:
    """Export every final, billable, not-yet-exported line (and corrections) as of ``as_of``.

    ``now`` is the caller's clock (timezone-aware). An ``as_of`` after today in the
    organisation's zone is refused: periods ending on or after today are not over yet. So is
    a run without the billing identity (no claim is written for a made-up clinic).
    ``progress`` hears each step and the records, lines and files done out of its total.
    """
    # Resumed once the run's objects are freed: resumed inside, the first collection would
    # walk all of them once more.
    with gc_paused():
        return _run_export(
            settings,
            engine,
            as_of,
            out_dir,
            now=now,
            progress=progress,
            _after_files=_after_files,
            _after_ledger=_after_ledger,
        )


def _run_export(
    settings: ExportSettings,
    engine: Engine,
    as_of: date,
    out_dir: Path | None,
    *,
    now: datetime,
    progress: Progress,
    _after_files: CrashPoint | None,
    _after_ledger: CrashPoint | None,
) -> ExportResult:
    check_as_of(as_of, settings.org_zone, now)
    billing = settings.billing
    root = Path(out_dir) if out_dir is not None else settings.store.exports_dir
    private_dir(root)
    check_billing_identity(billing)  # before anything is recovered, read or written
    with _exclusive(root / LOCK_NAME):
        recovered = recover_unfinished(root, engine, now)
        progress.step("loading the final records and the ledger")
        with engine.connect() as conn:
            if nothing_to_export(conn, as_of):
                return _nothing_new(as_of, recovered, billing.usage)
            # Imported only now that there is something to do: the documentation audit and
            # the evidence bring pyarrow and numpy, about a second of a process's start-up
            # that a rerun with nothing new does not pay.
            from rpmpipe.billing_export.evidence_files import run_evidence
            from rpmpipe.billing_export.evidence_load import collect_evidence

            stored: dict[RecordKey, tuple[str, LineSig]] = {}
            records = load_final_records(conn, as_of, stored)
            ledger = load_ledger(conn)
            patients = load_patients(conn, {r.patient_id for r in records} | _ids(ledger))
        progress.step("checking the records against the ledger", len(records))
        work = select_work(tracked(records, progress), ledger, patients, billing, as_of=as_of)
        facts: RunFacts | None = None
        if billing.audit_before_export and work.originals:
            work, facts = _audited(engine, settings, work, patients, progress)
        progress.step("building the claims")
        # Grouped and ordered once; numbered once the ledger has issued the claim numbers.
        draft = draft_plan(work, patients, billing)
        _log_held(draft.held)
        if draft.is_empty:
            # Nothing to write (changed records may all be held): no empty run directory.
            return _nothing_new(as_of, recovered, billing.usage, draft.held)
        plan, interchanges, run_id = _numbered(draft, engine, patients, billing, now)

        partial = root / f"{PARTIAL_PREFIX}{run_id}"
        final = root / run_id
        if final.exists():
            raise ExportError(f"run directory {final} already exists")
        private_dir(partial)
        header = RunHeader(run_id, as_of, now, interchanges)
        # The claim files are written by a forked child while this process collects and
        # writes the evidence: two independent jobs from the same plan, on two cores.
        with forked(
            lambda: _write_claim_files(partial, plan, settings, header),
            name=f"rpmpipe-export-{run_id}",
        ) as claim_files:
            progress.step("collecting the evidence of each line")
            found = collect_evidence(engine, settings.store.readings_dir, plan.claims, facts)
            evidence = run_evidence(plan.claims, run_id, found.records, found.days)
            _write_run_files(partial, plan, settings, header, evidence, claim_files, progress)
        if _after_files:
            _after_files(partial)

        try:
            record_ledger(
                engine, plan.ledger, _run_stamp(run_id, now, root, interchanges), stored, progress
            )
        except ExportError:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        if _after_ledger:
            _after_ledger(partial)
        _publish(partial, final)
        mark_run(engine, run_id, "published", now)
    return _published(run_id, final, plan, interchanges, recovered, billing.usage)


def _nothing_new(
    as_of: date, recovered: tuple[str, ...], usage: str, held: tuple[Held, ...] = ()
) -> ExportResult:
    """The result of a run that writes nothing (``held``: the records it held back)."""
    log.info("export_nothing_new", as_of=as_of.isoformat(), held=_lines(held))
    return ExportResult(
        None,
        None,
        0,
        0,
        0,
        _lines(held),
        Decimal("0.00"),
        None,
        recovered=recovered,
        held_back=held,
        usage=usage,
    )


def _audited(
    engine: Engine,
    settings: ExportSettings,
    work: Work,
    patients: Mapping[str, PatientInfo],
    progress: Progress,
) -> tuple[Work, RunFacts]:
    """The work with the lines whose documentation falls short held, and the facts read for
    the audit (read once: they are also the evidence frozen with the run)."""
    from rpmpipe.billing_export.audit_run import audit_lines, hold_undocumented, line_facts

    progress.step("auditing the documentation of each line", len(work.originals))
    facts = line_facts(engine, settings.store.readings_dir, work.originals)
    audits = audit_lines(
        engine,
        settings.store.readings_dir,
        work.originals,
        patients,
        settings.billing,
        facts.records,
        progress,
    )
    return hold_undocumented(work, audits), facts


def _numbered(
    draft: PlanDraft,
    engine: Engine,
    patients: Mapping[str, PatientInfo],
    billing: BillingSettings,
    now: datetime,
) -> tuple[ExportPlan, tuple[Interchange, ...], str]:
    """The priced plan with the claim and control numbers the ledger issues, its .837
    interchanges (none for a run of corrections only) and the run's id."""
    if not draft.drafts:
        plan = price_plan(draft, patients, billing, first_claim_number=1)
        return plan, (), f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-corrections-{uuid.uuid4().hex[:8]}"
    sizes = [transactions_needed(n) for _r, n in draft.receivers(patients, billing)]
    allocation = allocate_control_numbers(engine, sizes, len(draft.drafts))
    plan = price_plan(draft, patients, billing, allocation.first_claim_number)
    interchanges = _interchanges(plan.claims, allocation, billing)
    plan = dataclasses.replace(plan, claims=tuple(c for i in interchanges for c in i.claims))
    first = interchanges[0].control.interchange
    return plan, interchanges, f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{first:09d}"


def _run_stamp(
    run_id: str, now: datetime, root: Path, interchanges: Sequence[Interchange]
) -> RunStamp:
    """What the ledger records of the run for each claim: its file, control numbers and
    transaction."""
    return RunStamp(
        run_id,
        CORRECTIONS,
        now,
        str(root.resolve()),
        claims_file_of={c.claim_id: i.file_name for i in interchanges for c in i.claims},
        control_of={c.claim_id: i.control for i in interchanges for c in i.claims},
        transaction_of={
            c.claim_id: i.control.transaction + n // CLAIMS_PER_TRANSACTION
            for i in interchanges
            for n, c in enumerate(i.claims)
        },
    )


def _published(
    run_id: str,
    final: Path,
    plan: ExportPlan,
    interchanges: tuple[Interchange, ...],
    recovered: tuple[str, ...],
    usage: str,
) -> ExportResult:
    result = ExportResult(
        run_id=run_id,
        run_dir=final,
        lines=sum(len(c.lines) for c in plan.claims),
        claims=len(plan.claims),
        corrections=len(plan.corrections),
        held=_lines(plan.held),
        total_charge=sum((c.total for c in plan.claims), Decimal("0.00")),
        control=interchanges[0].control if interchanges else None,
        transactions=sum(i.transactions for i in interchanges),
        recovered=recovered,
        held_back=plan.held,
        usage=usage,
        claims_files=tuple(i.file_name for i in interchanges),
    )
    log.info(
        "export_finished",
        run_id=run_id,
        claims=result.claims,
        lines=result.lines,
        corrections=result.corrections,
        held=result.held,
        interchanges=len(interchanges),
    )
    return result


@dataclass(frozen=True, slots=True)
class Interchange:
    """One .837 of a run: the claims of one receiver and their control numbers."""

    receiver: Receiver
    file_name: str
    control: ControlNumbers
    transactions: int
    claims: tuple[Claim, ...]


def _by_receiver(claims: Sequence[Claim]) -> list[tuple[Receiver, list[Claim]]]:
    groups: dict[Receiver, list[Claim]] = {}
    for claim in claims:
        groups.setdefault(claim.receiver, []).append(claim)
    return list(groups.items())


def _interchanges(
    claims: Sequence[Claim], allocation: Allocation, billing: BillingSettings
) -> tuple[Interchange, ...]:
    out = []
    for (receiver, group), control in zip(
        _by_receiver(claims), allocation.interchanges, strict=True
    ):
        stamped = tuple(
            dataclasses.replace(c, interchange_control=control.interchange) for c in group
        )
        out.append(
            Interchange(
                receiver,
                claims_file_for(receiver, billing),
                control,
                transactions_needed(len(group)),
                stamped,
            )
        )
    return tuple(out)


def check_billing_identity(billing: BillingSettings, why: str = "no claim can be written") -> None:
    """Refuse to export (or to write what else names the practice, ``why`` it is needed)
    without the billing identity, naming every missing key."""
    missing = billing.missing_identity()
    if missing:
        raise ConfigError(
            f"the billing identity is not set, so {why}: set "
            + ", ".join(missing)
            + " in the settings file ([billing] in --config or RPMPIPE_CONFIG) or as "
            "RPMPIPE_BILLING_* variables (rpmpipe demo brings its own test identity)"
        )


def _publish(partial: Path, final: Path) -> None:
    os.replace(partial, final)
    fsync_dir(final.parent)


def recover_unfinished(root: Path, engine: Engine, now: datetime) -> tuple[str, ...]:
    """Finish every run the ledger recorded but did not publish, wherever it was written;
    then publish or delete the partial run dirs found in ``root``.

    A recorded run whose partial directory exists is published; one whose files are gone
    from a directory that still exists is rolled back (its ledger lines are removed, so this
    run exports them again). A recorded run whose exports directory cannot be found stops
    the export: billing late is better than billing twice.
    """
    done = []
    here = root.resolve()
    for run_id, exports_dir in unfinished_runs(engine):
        where = Path(exports_dir)
        if not where.is_dir():
            raise ExportError(
                f"export run {run_id} is recorded in the ledger but not published, and its "
                f"exports directory {where} cannot be found; make it reachable (or create it "
                "empty to roll the run back and export its lines again), then rerun"
            )
        lock = contextlib.nullcontext() if where.resolve() == here else _exclusive_wait(where)
        with lock:
            if run_status(engine, run_id) != "recorded":
                continue  # the run that wrote it finished meanwhile
            partial = where / f"{PARTIAL_PREFIX}{run_id}"
            if partial.is_dir():
                _publish(partial, where / run_id)
                mark_run(engine, run_id, "published", now)
                log.warning("export_run_recovered", run_id=run_id, action="published")
            elif (where / run_id).is_dir():
                mark_run(engine, run_id, "published", now)
            else:
                lines = roll_back_run(engine, run_id, now)
                log.warning(
                    "export_run_recovered", run_id=run_id, action="rolled_back", lines=lines
                )
        done.append(run_id)
    for partial in sorted(root.glob(f"{PARTIAL_PREFIX}*")):
        if not partial.is_dir():
            continue
        run_id = partial.name[len(PARTIAL_PREFIX) :]
        status = run_status(engine, run_id)
        # Recorded means billed: publish it whatever state it is in, never delete it.
        if status in ("recorded", "published") or (
            status is None and run_is_recorded(engine, run_id)
        ):
            _publish(partial, root / run_id)
            log.warning("export_run_recovered", run_id=run_id, action="published")
        else:
            shutil.rmtree(partial)
            fsync_dir(root)
            log.warning("export_run_recovered", run_id=run_id, action="discarded")
        if run_id not in done:
            done.append(run_id)
    return tuple(done)


@dataclass(frozen=True, slots=True)
class RunHeader:
    """What names one export run in its files: id, as-of, clock and its interchanges (one
    .837 per receiver, with their X12 control numbers; none for a corrections-only run)."""

    run_id: str
    as_of: date
    created_at: datetime
    interchanges: tuple[Interchange, ...] = ()


def _write_claim_files(
    run_dir: Path, plan: ExportPlan, settings: ExportSettings, run: RunHeader
) -> dict[str, str]:
    """Write the run's charge CSV, its .837 files and its corrections CSV (the files built
    from the plan alone); returns each file's sha256 by name."""
    billing = settings.billing
    # The interchange's dates and times (ISA09/10, GS04/05, BHT04/05) are the organisation's.
    local = run.created_at.astimezone(settings.org_zone)
    files: dict[str, str] = {}
    if plan.claims:
        files[CHARGES] = _write_atomic(
            run_dir / CHARGES, "utf-8", lambda f: write_charge_csv(f, plan.claims, billing)
        )
    for i in run.interchanges:
        files[i.file_name] = _write_atomic(
            run_dir / i.file_name,
            "ascii",
            lambda f, i=i: write_837p(  # type: ignore[misc]
                f, i.claims, billing, i.control, local, receiver=i.receiver
            ),
        )
    if plan.corrections:
        files[CORRECTIONS] = _write_atomic(
            run_dir / CORRECTIONS, "utf-8", lambda f: write_corrections_csv(f, plan.corrections)
        )
    return files


def _write_run_files(
    run_dir: Path,
    plan: ExportPlan,
    settings: ExportSettings,
    run: RunHeader,
    evidence: RunEvidence,
    claim_files: Forked[dict[str, str]],
    progress: Progress = SILENT,
) -> None:
    """Write the evidence files, take the claim files' digests from ``claim_files`` (the
    work writing them) and write the manifest last."""
    from rpmpipe.billing_export.evidence import EVIDENCE_CSV, EVIDENCE_PARQUET
    from rpmpipe.billing_export.evidence_files import write_evidence_csv

    billing, now, interchanges = settings.billing, run.created_at, run.interchanges
    claim_count = (1 if plan.claims else 0) + len(interchanges) + (1 if plan.corrections else 0)
    count = (2 if plan.claims else 0) + claim_count + 1
    progress.step("writing the run's files", count)
    files: dict[str, str] = {}
    if plan.claims:
        # The evidence behind every line, frozen with the run (never rewritten later).
        files[EVIDENCE_PARQUET] = _write_parquet_atomic(run_dir / EVIDENCE_PARQUET, evidence.table)
        progress.advance()
        files[EVIDENCE_CSV] = _write_bytes_atomic(
            run_dir / EVIDENCE_CSV, lambda raw: write_evidence_csv(raw, evidence)
        )
        progress.advance()
    try:
        files.update(claim_files.result())
    except ChildDied as exc:
        raise ExportError(
            f"the claim files of run {run.run_id} were not written ({exc}); nothing of the "
            "run was recorded, so rerun the export"
        ) from None
    progress.advance(claim_count)
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
        "interchanges": [
            {
                "file": i.file_name,
                "receiver_id": i.receiver.receiver_id,
                "isa13": i.control.interchange,
                "gs06": i.control.group,
                "st02": [i.control.transaction + n for n in range(i.transactions)],
                "claims": len(i.claims),
            }
            for i in interchanges
        ],
        "usage": billing.usage,
        "test": billing.usage == "T",
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
    progress.advance()


def _write_parquet_atomic(path: Path, table: pa.Table) -> str:
    """Write a Parquet table atomically (0600); return its sha256."""
    import pyarrow.parquet as pq

    atomic_write(path, lambda raw: pq.write_table(table, raw, compression="zstd"))
    return _sha256(path)


def _write_bytes_atomic(path: Path, produce: Callable[[BinaryIO], object]) -> str:
    """Write bytes atomically (0600, fsync, rename, fsync dir); return their sha256."""
    atomic_write(path, produce)
    return _sha256(path)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as check:
        for chunk in iter(lambda: check.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_atomic(path: Path, encoding: str, produce: Callable[[TextIO], object]) -> str:
    """Write text atomically (0600, fsync, rename, fsync dir); return its sha256."""

    def write_text(raw: BinaryIO) -> None:
        text = io.TextIOWrapper(raw, encoding=encoding, newline="")
        produce(text)
        text.flush()
        text.detach()  # leave the raw file open for atomic_write's fsync

    atomic_write(path, write_text)
    return _sha256(path)


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextmanager
def _exclusive_wait(exports_dir: Path, seconds: float = 60.0) -> Iterator[None]:
    """The lock of another exports directory, waited for at most ``seconds`` (two exports
    recovering each other's runs must not wait for each other forever)."""
    fd = os.open(exports_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ExportError(
                        f"another export is working in {exports_dir}; rerun when it is done"
                    ) from None
                time.sleep(0.2)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _ids(ledger: Mapping[RecordKey, LedgerState]) -> set[str]:
    return {key[0] for key in ledger}


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
