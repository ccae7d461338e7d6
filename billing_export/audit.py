"""The documentation audit: does each line have the documentation its program requires?

What a line needs is data (``audit_rules.toml``, per program and code, plus the payer's
profile); this module only knows how to check each named requirement against the facts that
stand behind the line (its days with data, activities and enrollment). A line missing an
element is held with a reason that names it, e.g. "no care-plan goal review recorded in
2026-10 for 99490". Reasons carry codes, months and dates only, never PHI.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib import resources
from zoneinfo import ZoneInfo

from rpmpipe.billing_export.evidence import RecordFacts

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
    tz = ZoneInfo(facts.zone)
    acts = [a for a in facts.activities if _in_period(line, a.started_at.astimezone(tz).date())]
    documented = facts.period_activities or tuple(acts)
    span = facts.enrollment

    def where() -> str:  # only for a finding: most lines miss nothing
        return f"in {_month(line.period_end)} for {line.code}"

    checks: dict[str, Callable[[], str | None]] = {
        "consent": lambda: (
            None
            if span is not None
            and span.consent_date is not None
            and span.consent_date <= line.date_of_service
            else f"no consent on file on or before {line.date_of_service.isoformat()} for "
            f"{line.code}"
        ),
        "order": lambda: (
            None
            if span is not None and span.ordering_npi
            else f"no ordering provider for {line.code}"
        ),
        "care_plan": lambda: (
            None
            if facts.care_plan_on is not None and facts.care_plan_on <= line.period_end
            else f"no care plan on file {where()}"
        ),
        "interactive_communication": lambda: (
            None
            if any(a.interactive for a in acts)
            else f"no timestamped interactive communication recorded {where()}"
        ),
        "time_log": lambda: (
            None
            if any(a.minutes > 0 and a.staff_id for a in acts)
            else f"no time log with staff and minutes recorded {where()}"
        ),
        "days_with_data": lambda: (
            None
            if facts.every_day_read
            else f"no device readings behind the days with data for {line.code} "
            f"({line.period_start.isoformat()} to {line.period_end.isoformat()})"
        ),
        "pro": lambda: (
            None
            if any(a.pro_instrument for a in documented)
            else f"no patient-reported outcome recorded {where()}"
        ),
        "goal_review": lambda: (
            None
            if any(a.goals_reviewed for a in documented)
            else f"no care-plan goal review recorded {where()}"
        ),
    }
    findings = []
    for name in requirements_for(line, rules, payer_requires):
        reason = checks[name]()
        if reason is not None:
            findings.append(Finding(name, reason))
    return findings


def payer_requirements(text: str) -> tuple[str, ...]:
    """A payer profile's ``audit_requires`` ("pro, goal_review") as requirement names."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in REQUIREMENTS]
    if unknown:
        raise ValueError(
            f"unknown audit requirement {unknown[0]!r}; expected some of {', '.join(REQUIREMENTS)}"
        )
    return names
