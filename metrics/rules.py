"""CMS billing rule sets as data, one per calendar year, chosen by date of service.

A rule set lists the codes of a program with their thresholds; the routing functions below
read those tables and never name a code themselves, so RTM, CCM or next year's changes are a
new ``RuleSet`` value, not new branches.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import cache

from rpmpipe.records import Program, ServiceLine


@dataclass(frozen=True, slots=True)
class Tier:
    """A code billed when a measure (days or minutes) lies in ``[minimum, maximum]``."""

    code: str
    minimum: Decimal
    maximum: Decimal | None = None  # None: no upper bound

    def admits(self, value: Decimal) -> bool:
        return value >= self.minimum and (self.maximum is None or value <= self.maximum)


@dataclass(frozen=True, slots=True)
class AddOn:
    """One unit per further full ``step`` minutes beyond ``base``'s minimum (99458 on 99457)."""

    code: str
    base_code: str
    step: Decimal


@dataclass(frozen=True, slots=True, eq=False)
class RuleSet:
    """The codes of one program in one calendar year (compared by identity: one value each)."""

    name: str
    program: str
    effective_from: date
    effective_to: date  # inclusive
    period_days: int
    supply_tiers: tuple[Tier, ...]  # at most one per period; highest admitted wins
    setup_code: str
    setup_min_days: int  # a supply period qualifies for setup with at least this many days
    management_tiers: tuple[Tier, ...]  # at most one per month; highest admitted wins
    add_on: AddOn | None
    requires_interactive: bool  # management codes need >= 1 interactive communication
    exclusive: tuple[frozenset[str], ...]  # codes never billed together

    def applies_on(self, day: date) -> bool:
        return self.effective_from <= day <= self.effective_to

    @property
    def supply_full_days(self) -> int:
        """Days needed for the full supply code (16 for 99454)."""
        return _supply_bounds(self)[1]

    @property
    def supply_min_days(self) -> int:
        return _supply_bounds(self)[0]

    @property
    def supply_full_code(self) -> str:
        """The full supply code (99454; RTM's 16-30 day code of the modality)."""
        return max(self.supply_tiers, key=lambda t: t.minimum).code


@cache
def _supply_bounds(rs: RuleSet) -> tuple[int, int]:
    minimums = [int(t.minimum) for t in rs.supply_tiers]
    return min(minimums), max(minimums)


def _d(value: int) -> Decimal:
    return Decimal(value)


RPM_CY2025 = RuleSet(
    name="CY2025",
    program=Program.RPM,
    effective_from=date(1900, 1, 1),  # the oldest rules we know apply to anything earlier
    effective_to=date(2025, 12, 31),
    period_days=30,
    # 16 days and up: "16-30" is the length of a period, not a cap (a calendar month may
    # have 31 days with data).
    supply_tiers=(Tier("99454", _d(16)),),
    setup_code="99453",
    setup_min_days=16,
    management_tiers=(Tier("99457", _d(20)),),
    add_on=AddOn("99458", "99457", _d(20)),
    requires_interactive=True,
    exclusive=(),
)

RPM_CY2026 = RuleSet(
    name="CY2026",
    program=Program.RPM,
    effective_from=date(2026, 1, 1),
    effective_to=date(9999, 12, 31),  # until a CY2027 set is added
    period_days=30,
    supply_tiers=(Tier("99454", _d(16)), Tier("99445", _d(2), _d(15))),
    setup_code="99453",
    setup_min_days=2,
    management_tiers=(Tier("99457", _d(20)), Tier("99470", _d(10))),
    add_on=AddOn("99458", "99457", _d(20)),
    requires_interactive=True,
    exclusive=(frozenset({"99445", "99454"}), frozenset({"99470", "99457"})),
)

RULE_SETS: tuple[RuleSet, ...] = (RPM_CY2025, RPM_CY2026)


@cache
def rule_set_for(program: str, date_of_service: date) -> RuleSet:
    """The rule set of ``program`` in force on ``date_of_service``."""
    for rs in RULE_SETS:
        if rs.program == program and rs.applies_on(date_of_service):
            return rs
    raise LookupError(f"no {program} rule set covers {date_of_service.isoformat()}")


@cache
def supply_code(rs: RuleSet, days: int) -> str | None:
    """The one supply code a period with ``days`` days of data earns, or None."""
    value = _d(days)
    # Tiers are tried highest first, so exactly one supply code per period is possible.
    for tier in sorted(rs.supply_tiers, key=lambda t: t.minimum, reverse=True):
        if tier.admits(value):
            return tier.code
    return None


def management_lines(
    rs: RuleSet,
    minutes: Decimal,
    interactive_communications: int,
    date_of_service: date,
    max_add_on_units: int,
) -> tuple[ServiceLine, ...]:
    """Management lines for one month: a base code and, above it, add-on units (capped).

    No rounding: 19.99 minutes is not 20. Without an interactive communication nothing is
    billed when the rule set requires one.
    """
    if rs.requires_interactive and interactive_communications < 1:
        return ()
    base: Tier | None = None
    for tier in sorted(rs.management_tiers, key=lambda t: t.minimum, reverse=True):
        if minutes >= tier.minimum:
            base = tier
            break
    if base is None:
        return ()
    lines = [ServiceLine(base.code, 1, date_of_service)]
    add = rs.add_on
    if add is not None and add.base_code == base.code and max_add_on_units > 0:
        units = min(int((minutes - base.minimum) // add.step), max_add_on_units)
        if units > 0:
            lines.append(ServiceLine(add.code, units, date_of_service))
    check_exclusive(rs, lines)
    return tuple(lines)


def check_exclusive(rs: RuleSet, lines: list[ServiceLine] | tuple[ServiceLine, ...]) -> None:
    """Raise if ``lines`` hold two codes the rule set never bills together."""
    codes = {line.code for line in lines}
    for pair in rs.exclusive:
        if pair <= codes:
            raise ValueError(f"{rs.name}: codes {sorted(pair)} are never billed together")
    add = rs.add_on
    if add is not None and add.code in codes and add.base_code not in codes:
        raise ValueError(f"{rs.name}: {add.code} is billed only with {add.base_code}")
