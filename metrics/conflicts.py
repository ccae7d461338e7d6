"""Exclusions between programs: which of a patient's lines are held, and why (pure).

Inside a program a rule set never produces two exclusive codes (:mod:`metrics.programs`).
Between programs, for one patient:

- RPM and RTM are never billed for overlapping periods: the later enrollment's lines are held.
- APCM bundles CCM and PCM of the same practitioner in the month: those lines are held.
- PCM is not billed with CCM by the same practitioner in a month: the later enrollment's
  lines are held.
- 99091 is not billed in a period with 99457 unless the payer allows it: 99091 is held.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

from rpmpipe.metrics.reasons import bundled_into, never_together, not_with_99457
from rpmpipe.records import Program

# The programs held against each other (the module docstring says why): APCM bundles
# these two; of each pair below, the later enrollment's lines are held.
BUNDLED_INTO_APCM = (Program.CCM, Program.PCM)
CCM_AND_PCM = (Program.CCM, Program.PCM)
RPM_AND_RTM = (Program.RPM, Program.RTM)
# Pairs of programs a patient enrolled in both can have lines held for (99091 aside).
EXCLUSIVE_PROGRAMS = (
    frozenset(RPM_AND_RTM),
    frozenset(CCM_AND_PCM),
    *(frozenset({Program.APCM, p}) for p in BUNDLED_INTO_APCM),
)


@dataclass(frozen=True, slots=True)
class Claim:
    """The billable lines of one record, as the exclusions need them."""

    program: str
    period_start: date
    period_end: date
    practitioner: str  # the owning enrollment's ordering NPI
    enrolled_on: date  # the owning enrollment's start
    codes: frozenset[str]


def _overlap(a: Claim, b: Claim) -> bool:
    return a.period_start <= b.period_end and b.period_start <= a.period_end


def _same_month(a: Claim, b: Claim) -> bool:
    return (a.period_end.year, a.period_end.month) == (b.period_end.year, b.period_end.month)


def _later(a: Claim, b: Claim) -> bool:
    """True when ``a``'s enrollment is the later one (ties: the program named later)."""
    return (a.enrolled_on, a.program) > (b.enrolled_on, b.program)


def held_reasons(claims: Sequence[Claim], allow_99091_with_99457: bool) -> dict[int, str]:
    """Index of each held claim -> reason. A held claim never holds another."""
    held: dict[int, str] = {}
    live = [i for i, c in enumerate(claims) if c.codes]

    def blockers(i: int) -> list[int]:
        return [j for j in live if j != i and j not in held]

    for i in live:  # APCM bundles CCM and PCM of the same practitioner
        c = claims[i]
        if c.program not in BUNDLED_INTO_APCM:
            continue
        for j in blockers(i):
            o = claims[j]
            if o.program == Program.APCM and o.practitioner == c.practitioner and _same_month(c, o):
                held[i] = bundled_into(c.program, min(o.codes), o.period_end)
                break
    same_month = "in the same month by the same practitioner"
    _later_held(claims, live, held, CCM_AND_PCM, _same_practitioner_month, same_month)
    _later_held(claims, live, held, RPM_AND_RTM, _overlap, "for overlapping periods")
    if not allow_99091_with_99457:
        for i in live:
            c = claims[i]
            if i in held or "99091" not in c.codes:
                continue
            for j in blockers(i):
                o = claims[j]
                if "99457" in o.codes and _overlap(c, o):
                    held[i] = not_with_99457(o.period_start, o.period_end)
                    break
    return held


def _same_practitioner_month(a: Claim, b: Claim) -> bool:
    return a.practitioner == b.practitioner and _same_month(a, b)


def _later_held(
    claims: Sequence[Claim],
    live: Sequence[int],
    held: dict[int, str],
    pair: tuple[str, str],
    clash: Callable[[Claim, Claim], bool],
    words: str,
) -> None:
    """Hold the later enrollment's claim wherever the two programs of ``pair`` clash."""
    for i in live:
        c = claims[i]
        if i in held or c.program not in pair:
            continue
        for j in live:
            o = claims[j]
            if j == i or j in held or o.program not in pair or o.program == c.program:
                continue
            if clash(c, o) and _later(c, o):
                held[i] = never_together(
                    pair, words, c.program, c.enrolled_on, o.program, o.enrolled_on
                )
                break
