"""Blocks of patients: ranges of ids that cover a fleet once, selected alike in Python and SQL."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import create_engine, text

from rpmpipe.metrics.blocks import WHOLE_FLEET, PatientBlock, fleet_blocks, split

# Ids whose order differs between code points and a language's collation: upper before lower
# case, accents after every ASCII letter, digits by character not by value.
IDS = ["B2", "a1", "Z9", "é3", "b0", "P10", "P9", "p1", "Ä", "_x", "0", "10", "9"]


@given(
    ids=st.lists(st.text(min_size=1, max_size=6), unique=True, max_size=40),
    parts=st.integers(1, 6),
    probes=st.lists(st.text(max_size=6), max_size=20),
)
def test_the_blocks_cover_every_id_once_in_order_and_about_evenly(
    ids: list[str], parts: int, probes: list[str]
) -> None:
    ordered = sorted(ids)
    blocks = split(ordered, parts)
    for probe in [*ordered, *probes]:  # ids listed or not
        assert sum(b.holds(probe) for b in blocks) == 1
    # In order: each block's ids come before the next block's.
    held = [[i for i in ordered if b.holds(i)] for b in blocks]
    assert [i for part in held for i in part] == ordered
    if len(blocks) > 1:
        assert len(blocks) == parts
        sizes = [len(h) for h in held]
        assert max(sizes) - min(sizes) <= 1


def _selected(url: str, column_type: str, block: PatientBlock) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"CREATE TABLE ids (patient_id {column_type} PRIMARY KEY)"))
            conn.execute(text("INSERT INTO ids VALUES (:p)"), [{"p": i} for i in IDS])
        where, params = block.where(engine, "patient_id")
        with engine.connect() as conn:
            cursor = conn.connection.cursor()
            cursor.execute(f"SELECT patient_id FROM ids WHERE {where}", params)  # noqa: S608
            return sorted(p for (p,) in cursor.fetchall())
    finally:
        engine.dispose()


@pytest.mark.parametrize("k", [0, 1, 2])
def test_a_blocks_rows_in_sqlite_are_the_ids_it_holds(tmp_path, k: int) -> None:  # type: ignore[no-untyped-def]
    block = split(sorted(IDS), 3)[k]
    got = _selected(f"sqlite:///{tmp_path / 'ids.db'}", "VARCHAR(64)", block)
    assert got == sorted(i for i in IDS if block.holds(i))
    assert got


@pytest.mark.parametrize("k", [0, 1, 2])
def test_a_blocks_rows_in_postgresql_are_the_ids_it_holds_whatever_the_collation(
    pg_schema_url: str, k: int
) -> None:
    """A column in a language's collation (ICU's root order puts ``a1`` before ``B2``) still
    gives each block the ids Python's order gives it: the block compares in code points."""
    block = split(sorted(IDS), 3)[k]
    got = _selected(pg_schema_url, 'VARCHAR(64) COLLATE "und-x-icu"', block)
    assert got == sorted(i for i in IDS if block.holds(i))
    assert got


def test_a_whole_fleet_block_selects_everything(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert _selected(f"sqlite:///{tmp_path / 'ids.db'}", "TEXT", WHOLE_FLEET) == sorted(IDS)


def test_a_small_fleet_or_one_worker_is_not_split(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from rpmpipe.registry.db import open_registry

    engine = open_registry(f"sqlite:///{tmp_path / 'registry.db'}")
    try:
        assert fleet_blocks(engine, 2) == [WHOLE_FLEET]  # no enrollment at all
        assert fleet_blocks(engine, 1, least=0) == [WHOLE_FLEET]
    finally:
        engine.dispose()
    memory = open_registry("sqlite://")
    try:
        assert fleet_blocks(memory, 2, least=0) == [WHOLE_FLEET]  # another process cannot open it
    finally:
        memory.dispose()


def test_a_fleet_larger_than_workers_times_the_cap_is_cut_into_more_blocks(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A worker's block never holds more than the cap, whatever the fleet: 10 enrolled
    patients, 2 workers and a cap of 3 give 4 blocks of 2 or 3 patients, in order."""
    engine = create_engine(f"sqlite:///{tmp_path / 'enrolled.db'}")  # what fleet_blocks reads
    ids = [f"P-{k:03d}" for k in range(10)]
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE enrollments (patient_id TEXT, program TEXT)"))
            for pid in ids:
                for program in ("RPM", "CCM"):  # a patient of two programs is one patient
                    conn.execute(
                        text("INSERT INTO enrollments VALUES (:p, :g)"), {"p": pid, "g": program}
                    )
        capped = fleet_blocks(engine, 2, least=0, most=3)
        assert [sum(b.holds(i) for i in ids) for b in capped] == [2, 3, 2, 3]
        assert fleet_blocks(engine, 2, least=0, most=5) == split(ids, 2)
        assert fleet_blocks(engine, 1, least=0, most=3) == [WHOLE_FLEET]
    finally:
        engine.dispose()


def _enrolled(url: str, column_type: str, ids: list[str]):  # type: ignore[no-untyped-def]
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE enrollments (patient_id {column_type}, program TEXT)"))
        for pid in ids:
            for program in ("RPM", "CCM"):  # a patient of two programs is one patient
                conn.execute(
                    text("INSERT INTO enrollments VALUES (:p, :g)"), {"p": pid, "g": program}
                )
    return engine


@pytest.mark.parametrize("parts", [2, 3, 5])
def test_the_blocks_a_database_bounds_are_the_blocks_of_the_sorted_ids(
    tmp_path, parts: int
) -> None:  # type: ignore[no-untyped-def]
    engine = _enrolled(f"sqlite:///{tmp_path / 'enrolled.db'}", "TEXT", IDS)
    try:
        assert fleet_blocks(engine, parts, least=0) == split(sorted(IDS), parts)
    finally:
        engine.dispose()


@pytest.mark.parametrize("parts", [2, 3, 5])
def test_the_blocks_postgresql_bounds_are_in_code_points_whatever_the_collation(
    pg_schema_url: str, parts: int
) -> None:
    engine = _enrolled(pg_schema_url, 'VARCHAR(64) COLLATE "und-x-icu"', IDS)
    try:
        assert fleet_blocks(engine, parts, least=0) == split(sorted(IDS), parts)
    finally:
        engine.dispose()
