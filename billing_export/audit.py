"""The documentation audit: does each line have the documentation its program requires?

What a line needs is data (``audit_rules.toml``, per program and code, plus the payer's
profile); this module only knows how to check each named requirement against the facts that
stand behind the line (its days with data, activities and enrollment). A line missing an
element is held with a reason that names it, e.g. "no care-plan goal review recorded in
2026-10 for 99490". Reasons carry codes, months and dates only, never PHI.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources
from zoneinfo import ZoneInfo

from rpmpipe.billing_export.evidence import ActivityEvidence, RecordFacts

RULES_FILE = "audit_rules.toml"
REQUIREMENTS = (
    "consent",
    "order",
    "care_plan",
    "interactive_communication",
    "time_log",
    "days_with_data",
    "pro",
    "goal_review",
)


@dataclass(frozen=True, slots=True)
class AuditedLine:
    """A line as the audit sees it: what was billed, and when."""

    patient_id: str
    program: str
    record_kind: str
    code: str
    period_start: date
    period_end: date
    date_of_service: date


@dataclass(frozen=True, slots=True)
class Finding:
    requirement: str
    reason: str


@dataclass(frozen=True, slots=True)
class ProgramRules:
    every_line: tuple[str, ...]
    codes: Mapping[str, tuple[str, ...]]


def parse_rules(doc: Mapping[str, object], source: str = RULES_FILE) -> dict[str, ProgramRules]:
    """Program rules from the TOML document; unknown requirement names are refused."""
    programs = doc.get("programs")
    if not isinstance(programs, dict):
        raise ValueError(f"{source}: no [programs] table")
    out = {}
    for program, table in programs.items():
        every = tuple(table.get("every_line", ()))
        codes = {str(c): tuple(reqs) for c, reqs in (table.get("codes") or {}).items()}
        for name in (*every, *(r for reqs in codes.values() for r in reqs)):
            if name not in REQUIREMENTS:
                raise ValueError(f"{source}: programs.{program}: unknown requirement {name!r}")
        out[str(program)] = ProgramRules(every, codes)
    return out


@cache
def default_rules() -> dict[str, ProgramRules]:
    text = (resources.files("rpmpipe.billing_export") / RULES_FILE).read_text(encoding="utf-8")
    return parse_rules(tomllib.loads(text))


def requirements_for(
    line: AuditedLine, rules: Mapping[str, ProgramRules], payer_requires: Iterable[str] = ()
) -> tuple[str, ...]:
    program = rules.get(line.program)
    found: list[str] = []
    if program is not None:
        found.extend(program.every_line)
        found.extend(program.codes.get(line.code, ()))
    found.extend(payer_requires)
    return tuple(dict.fromkeys(found))


def _month(day: date) -> str:
    return f"{day:%Y-%m}"


def _in_period(line: AuditedLine, day: date) -> bool:
    return line.period_start <= day <= line.period_end


def audit_line(
    line: AuditedLine,
    facts: RecordFacts,
    rules: Mapping[str, ProgramRules],
    payer_requires: Iterable[str] = (),
) -> list[Finding]:
    """Every requirement the line misses (empty: documentation complete)."""
    return line_findings(line, facts, requirements_for(line, rules, payer_requires))


def line_findings(line: AuditedLine, facts: RecordFacts, needed: Iterable[str]) -> list[Finding]:
    """Every requirement of ``needed`` (see :func:`requirements_for`) the line misses."""
    findings = []
    in_period: tuple[ActivityEvidence, ...] | None = None  # found when a check needs them
    for name in needed:
        if name in _NEEDS_ACTIVITIES and in_period is None:
            tz = ZoneInfo(facts.zone)
            in_period = tuple(
                a for a in facts.activities if _in_period(line, a.started_at.astimezone(tz).date())
            )
        reason = _CHECKS[name](line, facts, in_period or ())
        if reason is not None:
            findings.append(Finding(name, reason))
    return findings


def _where(line: AuditedLine) -> str:  # only for a finding: most lines miss nothing
    return f"in {_month(line.period_end)} for {line.code}"


def _consent(
    line: AuditedLine, facts: RecordFacts, _acts: Sequence[ActivityEvidence]
) -> str | None:
    span = facts.enrollment
    if (
        span is not None
        and span.consent_date is not None
        and span.consent_date <= line.date_of_service
    ):
        return None
    return f"no consent on file on or before {line.date_of_service.isoformat()} for {line.code}"


def _order(line: AuditedLine, facts: RecordFacts, _acts: Sequence[ActivityEvidence]) -> str | None:
    span = facts.enrollment
    return (
        None if span is not None and span.ordering_npi else f"no ordering provider for {line.code}"
    )


def _care_plan(
    line: AuditedLine, facts: RecordFacts, _acts: Sequence[ActivityEvidence]
) -> str | None:
    if facts.care_plan_on is not None and facts.care_plan_on <= line.period_end:
        return None
    return f"no care plan on file {_where(line)}"


def _interactive(
    line: AuditedLine, _facts: RecordFacts, acts: Sequence[ActivityEvidence]
) -> str | None:
    if any(a.interactive for a in acts):
        return None
    return f"no timestamped interactive communication recorded {_where(line)}"


def _time_log(
    line: AuditedLine, _facts: RecordFacts, acts: Sequence[ActivityEvidence]
) -> str | None:
    if any(a.minutes > 0 and a.staff_id for a in acts):
        return None
    return f"no time log with staff and minutes recorded {_where(line)}"


def _days_with_data(
    line: AuditedLine, facts: RecordFacts, _acts: Sequence[ActivityEvidence]
) -> str | None:
    if facts.every_day_read:
        return None
    return (
        f"no device readings behind the days with data for {line.code} "
        f"({line.period_start.isoformat()} to {line.period_end.isoformat()})"
    )


def _pro(line: AuditedLine, facts: RecordFacts, acts: Sequence[ActivityEvidence]) -> str | None:
    if any(a.pro_instrument for a in facts.period_activities or acts):
        return None
    return f"no patient-reported outcome recorded {_where(line)}"


def _goal_review(
    line: AuditedLine, facts: RecordFacts, acts: Sequence[ActivityEvidence]
) -> str | None:
    if any(a.goals_reviewed for a in facts.period_activities or acts):
        return None
    return f"no care-plan goal review recorded {_where(line)}"


_Check = Callable[[AuditedLine, RecordFacts, Sequence[ActivityEvidence]], "str | None"]
_CHECKS: dict[str, _Check] = {
    "consent": _consent,
    "order": _order,
    "care_plan": _care_plan,
    "interactive_communication": _interactive,
    "time_log": _time_log,
    "days_with_data": _days_with_data,
    "pro": _pro,
    "goal_review": _goal_review,
}
# The checks that look at the activities of the line's period (the record's counted ones):
# PROs and goal reviews look there only when the period's other activities were not read.
_NEEDS_ACTIVITIES = frozenset({"interactive_communication", "time_log", "pro", "goal_review"})
assert set(_CHECKS) == set(REQUIREMENTS)


def payer_requirements(text: str) -> tuple[str, ...]:
    """A payer profile's ``audit_requires`` ("pro, goal_review") as requirement names."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in REQUIREMENTS]
    if unknown:
        raise ValueError(
            f"unknown audit requirement {unknown[0]!r}; expected some of {', '.join(REQUIREMENTS)}"
        )
    return names
