"""CSV cells that a spreadsheet opens as text, never as a formula (OWASP "CSV injection").

Every CSV rpmpipe writes (charges, corrections, metrics, broker credentials) goes through this
module. A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return would
be run as a formula by Excel, LibreOffice or Google Sheets (``=HYPERLINK(...)``,
``+cmd|' /C calc'!A0``); such a cell gets a leading single quote, as OWASP recommends, and the
csv module quotes it. Plain numbers (``-2.50``) are left as they are: they are not formulas.
The 837P is not a spreadsheet and keeps the real value.

rpmpipe's own readers of its CSVs undo the quote with :func:`restore_cell`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
# First characters after which a cell needs a look (a formula, or quotes before one).
_LOOK = frozenset((*FORMULA_TRIGGERS, "'"))
# What CSV quotes (delimiter, quote, line ends).
_QUOTED_CHARS = ',"\r\n'
_QUOTED = re.compile(f"[{re.escape(_QUOTED_CHARS)}]")
# A cell that is not written as it is: it may be a formula (or quotes before one), or it
# holds what CSV quotes. The same test as :func:`_plain`, for Arrow string arrays
# (pyarrow.compute's RE2 syntax).
NOT_PLAIN_CELL = f"^[{re.escape(''.join(sorted(_LOOK)))}]|[{re.escape(_QUOTED_CHARS)}]"
_PLAIN_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")


def _is_formula(value: str) -> bool:
    return bool(value) and value[0] in FORMULA_TRIGGERS and not _PLAIN_NUMBER.match(value)


def neutralise_cell(value: str) -> str:
    """``value`` made safe to open in a spreadsheet (a leading ``'`` before a formula).

    A value that already starts with quotes before a formula gets one more, so that
    :func:`restore_cell` always gives back exactly the value.
    """
    if _is_formula(value.lstrip("'")):
        return "'" + value
    return value


def restore_cell(value: str) -> str:
    """The value :func:`neutralise_cell` was given (for rpmpipe reading its own CSVs)."""
    if value[:1] == "'" and _is_formula(value.lstrip("'")):
        return value[1:]
    return value


def csv_field(text: str) -> str:
    """One neutralised CSV field with RFC 4180 quoting, only when needed.

    For writers that build lines themselves (the csv module scans every character of every
    field, which dominates on long evidence lists).
    """
    text = neutralise_cell(text)
    if "," in text or '"' in text or "\n" in text or "\r" in text:
        return '"' + text.replace('"', '""') + '"'
    return text


def _plain(cell: str) -> bool:
    return cell[:1] not in _LOOK and not _QUOTED.search(cell)


# A character of _LOOK after a separator: a cell of a joined row that needs a look. A search
# that starts with a literal (the comma) is a fast scan; an alternation of character classes
# would cost more than the per-cell tests it saves.
_LOOK_AFTER_SEPARATOR = re.compile(f",[{re.escape(''.join(sorted(_LOOK)))}]")


def _plain_row(line: str, cells: Sequence[str]) -> bool:
    """Whether every cell joined in ``line`` is :func:`_plain`, by looking at the row once:
    only its separators are commas, and no cell starts with a character of _LOOK or holds
    one that CSV quotes."""
    return (
        line.count(",") == len(cells) - 1
        and line[:1] not in _LOOK
        and '"' not in line
        and "\n" not in line
        and "\r" not in line
        and not _LOOK_AFTER_SEPARATOR.search(line)
    )


def csv_row(cells: Sequence[str]) -> str:
    """The line :class:`SafeCsvWriter` writes for ``cells``, without its line end.

    For writers that assemble many rows from pieces: plain cells are joined as they are,
    the others are :func:`csv_field`. The joined row is checked once (a regular expression
    per cell was most of the cost of writing the evidence CSV); only a row that check stops
    on is looked at cell by cell.
    """
    line = ",".join(cells)
    if _plain_row(line, cells):
        return line
    return ",".join(c if _plain(c) else csv_field(c) for c in cells)


class SafeCsvWriter:
    """``csv.writer`` whose every cell is neutralised first (``\\n`` line endings).

    A cell holding a carriage return is quoted too. Python 3.11's writer quotes only the
    characters of its own line end, so with ``\\n`` it would write a lone ``\\r`` bare and a
    reader would split the row there; such rows are written with a ``\\r\\n`` line end, which
    makes the writer quote both, and the line end is then put back to ``\\n``.
    """

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._writer = csv.writer(out, lineterminator="\n")
        self._buffer = io.StringIO()
        self._quoting_cr = csv.writer(self._buffer, lineterminator="\r\n")

    def _write(self, cells: list[str]) -> None:
        if not any("\r" in c for c in cells):
            self._writer.writerow(cells)
            return
        self._buffer.seek(0)
        self._buffer.truncate()
        self._quoting_cr.writerow(cells)
        self._out.write(self._buffer.getvalue()[:-2] + "\n")

    def writerow(self, row: Iterable[Any]) -> None:
        self._write(_safe(row))

    def writerows_after(self, head: Iterable[Any], rows: Iterable[Iterable[Any]]) -> int:
        """One row per item of ``rows``, each after the same ``head`` cells (neutralised
        once); returns the number of rows."""
        first = _safe(head)
        count = 0
        for row in rows:
            self._write(first + _safe(row))
            count += 1
        return count


def _safe(row: Iterable[Any]) -> list[str]:
    cells = [v if isinstance(v, str) else str(v) for v in row]
    # Most cells start with a letter or digit: only the others go through neutralise_cell.
    return [neutralise_cell(v) if v[:1] in _LOOK else v for v in cells]
