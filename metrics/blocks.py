"""Blocks of patients: the CSV run counts a fleet in independent parts, one per process.

Every rule of metrics looks at one patient at a time (their devices, enrollments, care time
and the exclusions between their programs), so a fleet splits into ranges of patient ids
that are counted apart and rendered one after the other. A range is taken in code-point
order, which is Python's ``str`` order, SQLite's ``BINARY`` collation and PostgreSQL's
``"C"`` collation alike: the registry's rows of a block are selected in SQL, and the rows
a block renders come out in the same order as a single run's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from rpmpipe.registry.tables import ENROLLMENTS

# Below this many enrolled patients a run is not split: starting a process and scanning the
# readings once more costs more than the half of the counting it saves.
MIN_PATIENTS_TO_SPLIT = 10_000
# A block holds at most this many patients, so a worker's memory does not grow with the fleet:
# a larger fleet is cut into more blocks than workers, counted a few at a time. Each block
# scans all the readings once more: four blocks of a 200k-patient fleet instead of two cost
# about a tenth more time, for about a third less memory.
MAX_BLOCK_PATIENTS = 50_000


@dataclass(frozen=True)
class PatientBlock:
    """The patients whose id is at least ``first`` and below ``end`` (None: unbounded)."""

    first: str | None = None
    end: str | None = None

    def holds(self, patient_id: str) -> bool:
        return (self.first is None or patient_id >= self.first) and (
            self.end is None or patient_id < self.end
        )

    def where(self, engine: Engine, column: str) -> tuple[str, tuple[str, ...]]:
        """An SQL condition on ``column`` (a patient id) and its parameters, in the driver's
        parameter style; ``1 = 1`` for the whole fleet."""
        dialect = engine.dialect
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        # PostgreSQL compares text in the database's collation unless told otherwise.
        subject = f'{column} COLLATE "C"' if dialect.name == "postgresql" else column
        terms: list[str] = []
        params: list[str] = []
        if self.first is not None:
            terms.append(f"{subject} >= {mark}")
            params.append(self.first)
        if self.end is not None:
            terms.append(f"{subject} < {mark}")
            params.append(self.end)
        return (" AND ".join(terms) or "1 = 1"), tuple(params)


WHOLE_FLEET = PatientBlock()


def split(ids: Sequence[str], parts: int) -> list[PatientBlock]:
    """``parts`` blocks of about as many of ``ids`` (sorted, distinct) each, covering every
    id there is, listed or not (the first is open below, the last above)."""
    if parts < 2 or len(ids) < parts:
        return [WHOLE_FLEET]
    return _between([ids[at] for at in _bound_positions(len(ids), parts)])


def _bound_positions(n: int, parts: int) -> list[int]:
    """Where in the sorted list of ``n`` ids each of the ``parts - 1`` bounds is."""
    return [n * k // parts for k in range(1, parts)]


def _between(bounds: Sequence[str]) -> list[PatientBlock]:
    """The blocks between consecutive ``bounds`` (the first open below, the last above)."""
    edges: list[str | None] = [None, *bounds, None]
    return [PatientBlock(a, b) for a, b in zip(edges, edges[1:], strict=False)]


def fleet_blocks(
    engine: Engine, parts: int, least: int | None = None, most: int | None = None
) -> list[PatientBlock]:
    """The blocks a run of ``parts`` processes counts: ``parts``, or more when a block
    would hold more than ``most`` (default :data:`MAX_BLOCK_PATIENTS`) patients; one (the
    whole fleet) for one process, when fewer than ``least`` (default
    :data:`MIN_PATIENTS_TO_SPLIT`) patients are enrolled, or when the registry lives in
    memory (a second process cannot open it)."""
    least = MIN_PATIENTS_TO_SPLIT if least is None else least
    most = MAX_BLOCK_PATIENTS if most is None else most
    if parts < 2 or engine.url.database in (None, "", ":memory:"):
        return [WHOLE_FLEET]
    table = ENROLLMENTS
    # In code points, as blocks compare (PostgreSQL sorts in the database's collation).
    ordered = 'patient_id COLLATE "C"' if engine.dialect.name == "postgresql" else "patient_id"
    mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
    with engine.connect() as conn:
        cursor: Any = conn.connection.cursor()
        try:
            cursor.execute(f"SELECT COUNT(DISTINCT patient_id) FROM {table}")  # noqa: S608
            (enrolled,) = cursor.fetchone()
            if enrolled < max(least, parts):
                return [WHOLE_FLEET]
            blocks = max(parts, -(-enrolled // max(most, 1)))
            # Each bound is the id split() takes from the sorted list of every id, found by
            # the database's index: no list of a fleet's ids in this process.
            bounds = []
            for at in _bound_positions(enrolled, blocks):
                cursor.execute(
                    f"SELECT DISTINCT {ordered} FROM {table} ORDER BY 1 LIMIT 1 OFFSET {mark}",  # noqa: S608
                    (at,),
                )
                bounds.append(cursor.fetchone()[0])
        finally:
            cursor.close()
    return _between(bounds)
