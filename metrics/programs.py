"""Every care-management program as data: a rule set per program per calendar year.

A ``ProgramRules`` value lists what one program bills in one calendar year: supply codes by
days with data (RPM, RTM), time codes by minutes (treatment management, CCM, PCM, BHI, 99091),
monthly levels (APCM), who must perform the time, what the patient must have on file, and the
codes never billed together. The functions below read those tables and never name a code, so
next year's changes are a new value, not new branches. RPM's tiers are the very ``Tier`` values
of :mod:`metrics.rules` (one copy of each threshold).

Sources (what each rule below rests on):

- CMS, *Chronic Care Management Services*, MLN909188 (May 2024): CCM 99490 (>= 20 min of
  clinical staff time, calendar month) with 99439 (each further 20); 99491 (>= 30 min personally
  by the physician/QHP) with 99437 (each further 30); complex CCM 99487 (>= 60 min staff, care
  plan established or substantially revised, moderate/high complexity decision making) with
  99489 (each further 30). Two or more chronic conditions expected to last >= 12 months;
  consent; a comprehensive care plan, a copy given to the patient. One practitioner per month.
- NGS Medicare, *Care Management* articles 3451732 (CCM) and 3451840 (PCM): the CCM code list
  above; PCM 99424/99425 (physician/QHP, first 30 / each further 30) and 99426/99427 (clinical
  staff, first 30 / each further 30) for a single high-risk condition with a disease-specific
  care plan; NGS *Behavioral Health Integration* 3411132: general BHI 99484, >= 20 min of
  clinical staff time per calendar month, for a mental or behavioural health condition.
- CPT guidance as quoted by coding references (Codapedia, AAPC): 99491 is not reported in a
  month with 99487, 99489 or 99490; complex and non-complex CCM never in one month; 99439 at
  most twice a month (a setting: ``rules.max_99439_units``, default 2); PCM physician and staff
  codes never in one month; 99091 (>= 30 min physician/QHP interpretation each 30 days) is not
  reported with 99457/99458.
- CY2025 PFS final rule (89 FR 97710) and AAFP, *Using APCM codes G0556, G0557 and G0558*:
  APCM is monthly with no time threshold; G0556 one or fewer chronic conditions, G0557 two or
  more, G0558 two or more and Qualified Medicare Beneficiary; it bundles CCM (99437, 99439,
  99487-99491) and PCM (99424-99427) for the same practitioner in the month.
- CY2026 PFS final rule (90 FR 49266, FR Doc 2025-19787) and CMS CR 14250: RTM device supply
  98976 (respiratory), 98977 (musculoskeletal), 98978 (cognitive behavioural therapy) for 16-30
  days in 30 days, and new 98984/98985/98986 for 2-15 days, never with the 16-30 code of the
  period; 98975 setup; treatment management 98980 (first 20 min, one interactive communication
  in the month), 98981 (each further 20), and new 98979 (10-19 min), never with 98980. RTM data
  may be self-reported. New RPM 99445/99470 (see :mod:`metrics.rules`).
- CMS 2024 PFS final rule restatement (Prevounce, ACR summaries): RPM and RTM may not be billed
  for one patient in the same period; CCM, PCM, BHI may run beside RPM or RTM when no time is
  counted twice.

Decisions where sources are silent or differ (each a documented default):

- A chronic condition is a distinct ICD-10-CM category (the first three characters) outside the
  chapters in ``rules.non_chronic_icd10_chapters`` (default ``RSTVWXYZ``: symptoms, injuries,
  external causes, health-status factors).
- Physician/QHP time counts toward clinical-staff codes (CPT: the practitioner may perform
  clinical staff work); a month bills one track of a program: complex CCM when the care plan was
  established or revised that month and it reaches 60 minutes, else the physician track when the
  practitioner's own time reaches its threshold, else the staff track.
- BHI needs a diagnosis in ICD-10 chapter F. PCM and CCM need a care plan established and given
  to the patient on or before the month's end. APCM with no QMB status on file bills G0557.
- PCM and CCM by the same practitioner in one month: the later enrollment's lines are held.
  RPM and RTM for one patient in overlapping periods: the later enrollment's lines are held.
  APCM and CCM/PCM of the same practitioner in a month: the CCM/PCM lines are held (bundled).
- RTM bills the codes of ``rules.rtm_modality`` (default ``musculoskeletal``).
- 99091 counts RPM time a physician/QHP logs as ``data_review``, per 30-day period; that time is
  interpretation, never 99457 time. With a 99457 in the period it is held unless the payer's
  ``bill_99091_with_99457`` is set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import cache

from rpmpipe.metrics.rules import RPM_CY2025, RPM_CY2026, RuleSet, Tier, rule_set_for
from rpmpipe.records import PERFORMERS, PROGRAMS, Program, RecordKind, ServiceLine

__all__ = ["PERFORMERS", "PROGRAMS"]  # re-exported: the programs this module has rules for
RTM_MODALITIES = ("respiratory", "musculoskeletal", "cognitive_behavioral")
ANYONE = frozenset(PERFORMERS)
PHYSICIAN = frozenset({"physician"})


def _d(value: int) -> Decimal:
    return Decimal(value)


@dataclass(frozen=True, slots=True)
class TimeTrack:
    """Time codes billed together in one period: tiers (highest admitted wins) and an add-on.

    ``add_on`` bills one unit per further full ``add_on_step`` minutes beyond the top tier's
    minimum, at most ``cap`` units (``cap_setting`` names the setting that overrides it; None
    with no setting: no cap).
    """

    name: str
    tiers: tuple[Tier, ...]
    performers: frozenset[str] = ANYONE
    add_on: str | None = None
    add_on_step: Decimal = Decimal(0)
    cap: int | None = None
    cap_setting: str | None = None
    needs_interactive: bool = False
    needs_care_plan_change: bool = False  # established or substantially revised this month

    @property
    def top(self) -> Tier:
        return max(self.tiers, key=lambda t: t.minimum)

    @property
    def lowest(self) -> Tier:
        return min(self.tiers, key=lambda t: t.minimum)


@dataclass(frozen=True, slots=True)
class Level:
    """A monthly code with no time threshold, chosen by the patient's complexity (APCM)."""

    code: str
    min_chronic: int
    max_chronic: int | None = None
    qmb: bool | None = None  # None: either


@dataclass(frozen=True, slots=True)
class Eligibility:
    """What the patient must have on file for the program to bill a month."""

    min_chronic: int = 0
    needs_care_plan: bool = False
    needs_behavioral_diagnosis: bool = False


@dataclass(frozen=True, slots=True, eq=False)
class ProgramRules:
    """The codes of one program in one calendar year (compared by identity: one value each)."""

    name: str
    program: str
    effective_from: date
    effective_to: date  # inclusive
    supply: Mapping[str, tuple[Tier, ...]]  # by modality ("physiologic" for RPM); {} none
    setup_code: str | None
    setup_min_days: int
    tracks: tuple[TimeTrack, ...]  # tried in order; a month bills at most one
    interpretation: TimeTrack | None  # 99091, per 30-day period
    levels: tuple[Level, ...]  # monthly codes (APCM)
    eligibility: Eligibility
    counts_self_reported: bool  # manual / patient-reported data counts as a day with data
    exclusive: tuple[frozenset[str], ...]

    def applies_on(self, day: date) -> bool:
        return self.effective_from <= day <= self.effective_to

    def codes(self) -> frozenset[str]:
        found = {t.code for tiers in self.supply.values() for t in tiers}
        if self.setup_code:
            found.add(self.setup_code)
        for track in (*self.tracks, *((self.interpretation,) if self.interpretation else ())):
            found.update(t.code for t in track.tiers)
            if track.add_on:
                found.add(track.add_on)
        found.update(level.code for level in self.levels)
        return frozenset(found)


_FIRST = date(1900, 1, 1)  # the oldest rules we know apply to anything earlier
_LAST = date(9999, 12, 31)  # until a CY2027 set is added
_END_2025 = date(2025, 12, 31)
_START_2026 = date(2026, 1, 1)


def _rpm_track(rs: RuleSet) -> TimeTrack:
    add = rs.add_on
    return TimeTrack(
        RecordKind.TREATMENT_MANAGEMENT,
        rs.management_tiers,
        add_on=add.code if add else None,
        add_on_step=add.step if add else Decimal(0),
        cap=2,
        cap_setting="max_99458_units",
        needs_interactive=rs.requires_interactive,
    )


INTERPRETATION_99091 = TimeTrack("interpretation", (Tier("99091", _d(30)),), PHYSICIAN)


def _rpm(rs: RuleSet) -> ProgramRules:
    return ProgramRules(
        name=rs.name,
        program=Program.RPM,
        effective_from=rs.effective_from,
        effective_to=rs.effective_to,
        supply={"physiologic": rs.supply_tiers},
        setup_code=rs.setup_code,
        setup_min_days=rs.setup_min_days,
        tracks=(_rpm_track(rs),),
        interpretation=INTERPRETATION_99091,
        levels=(),
        eligibility=Eligibility(),
        counts_self_reported=False,
        exclusive=(*rs.exclusive, frozenset({"99091", "99457"})),
    )


RPM_RULES_CY2025 = _rpm(RPM_CY2025)
RPM_RULES_CY2026 = _rpm(RPM_CY2026)

_RTM_16_30 = {"respiratory": "98976", "musculoskeletal": "98977", "cognitive_behavioral": "98978"}
_RTM_2_15 = {"respiratory": "98984", "musculoskeletal": "98985", "cognitive_behavioral": "98986"}


def _rtm(name: str, start: date, end: date, short: bool) -> ProgramRules:
    supply = {
        m: (
            (Tier(_RTM_16_30[m], _d(16)), Tier(_RTM_2_15[m], _d(2), _d(15)))
            if short
            else (Tier(_RTM_16_30[m], _d(16)),)
        )
        for m in RTM_MODALITIES
    }
    tiers = (Tier("98980", _d(20)), Tier("98979", _d(10))) if short else (Tier("98980", _d(20)),)
    exclusive = [frozenset({"98979", "98980"})] if short else []
    exclusive += [frozenset({_RTM_16_30[m], _RTM_2_15[m]}) for m in RTM_MODALITIES if short]
    return ProgramRules(
        name=name,
        program=Program.RTM,
        effective_from=start,
        effective_to=end,
        supply=supply,
        setup_code="98975",
        setup_min_days=2 if short else 16,
        tracks=(
            TimeTrack(
                RecordKind.TREATMENT_MANAGEMENT,
                tiers,
                add_on="98981",
                add_on_step=_d(20),
                needs_interactive=True,
            ),
        ),
        interpretation=None,
        levels=(),
        eligibility=Eligibility(),
        counts_self_reported=True,
        exclusive=tuple(exclusive),
    )


RTM_RULES_CY2025 = _rtm("CY2025", _FIRST, _END_2025, short=False)
RTM_RULES_CY2026 = _rtm("CY2026", _START_2026, _LAST, short=True)

_CCM_TRACKS = (
    TimeTrack(
        "complex",
        (Tier("99487", _d(60)),),
        add_on="99489",
        add_on_step=_d(30),
        needs_care_plan_change=True,
    ),
    TimeTrack("physician", (Tier("99491", _d(30)),), PHYSICIAN, add_on="99437", add_on_step=_d(30)),
    TimeTrack(
        "clinical_staff",
        (Tier("99490", _d(20)),),
        add_on="99439",
        add_on_step=_d(20),
        cap=2,
        cap_setting="max_99439_units",
    ),
)
_CCM_EXCLUSIVE = (
    frozenset({"99490", "99487"}),
    frozenset({"99490", "99491"}),
    frozenset({"99491", "99487"}),
)
_PCM_TRACKS = (
    TimeTrack("physician", (Tier("99424", _d(30)),), PHYSICIAN, add_on="99425", add_on_step=_d(30)),
    TimeTrack("clinical_staff", (Tier("99426", _d(30)),), add_on="99427", add_on_step=_d(30)),
)
_BHI_TRACKS = (TimeTrack("clinical_staff", (Tier("99484", _d(20)),)),)
_APCM_LEVELS = (
    Level("G0558", 2, None, qmb=True),
    Level("G0557", 2, None),
    Level("G0556", 0, 1),
)


def _time_program(
    program: str,
    name: str,
    start: date,
    end: date,
    tracks: tuple[TimeTrack, ...],
    eligibility: Eligibility,
    exclusive: tuple[frozenset[str], ...] = (),
    levels: tuple[Level, ...] = (),
) -> ProgramRules:
    return ProgramRules(
        name=name,
        program=program,
        effective_from=start,
        effective_to=end,
        supply={},
        setup_code=None,
        setup_min_days=0,
        tracks=tracks,
        interpretation=None,
        levels=levels,
        eligibility=eligibility,
        counts_self_reported=False,
        exclusive=exclusive,
    )


_CCM_ELIGIBLE = Eligibility(min_chronic=2, needs_care_plan=True)
_PCM_ELIGIBLE = Eligibility(min_chronic=1, needs_care_plan=True)
_BHI_ELIGIBLE = Eligibility(needs_behavioral_diagnosis=True)
_PCM_EXCLUSIVE = (frozenset({"99424", "99426"}),)

RULE_SETS: tuple[ProgramRules, ...] = (
    RPM_RULES_CY2025,
    RPM_RULES_CY2026,
    RTM_RULES_CY2025,
    RTM_RULES_CY2026,
    _time_program(
        Program.CCM, "CY2025", _FIRST, _END_2025, _CCM_TRACKS, _CCM_ELIGIBLE, _CCM_EXCLUSIVE
    ),
    _time_program(
        Program.CCM, "CY2026", _START_2026, _LAST, _CCM_TRACKS, _CCM_ELIGIBLE, _CCM_EXCLUSIVE
    ),
    _time_program(
        Program.PCM, "CY2025", _FIRST, _END_2025, _PCM_TRACKS, _PCM_ELIGIBLE, _PCM_EXCLUSIVE
    ),
    _time_program(
        Program.PCM, "CY2026", _START_2026, _LAST, _PCM_TRACKS, _PCM_ELIGIBLE, _PCM_EXCLUSIVE
    ),
    _time_program(Program.BHI, "CY2025", _FIRST, _END_2025, _BHI_TRACKS, _BHI_ELIGIBLE),
    _time_program(Program.BHI, "CY2026", _START_2026, _LAST, _BHI_TRACKS, _BHI_ELIGIBLE),
    # APCM exists from CY2025 (89 FR 97710); before that no rule set covers it.
    _time_program(
        Program.APCM, "CY2025", date(2025, 1, 1), _END_2025, (), Eligibility(), levels=_APCM_LEVELS
    ),
    _time_program(
        Program.APCM, "CY2026", _START_2026, _LAST, (), Eligibility(), levels=_APCM_LEVELS
    ),
)


@cache
def program_rules_for(program: str, date_of_service: date) -> ProgramRules | None:
    """The rule set of ``program`` in force on ``date_of_service`` (None: not billable then)."""
    for rs in RULE_SETS:
        if rs.program == program and rs.applies_on(date_of_service):
            return rs
    return None


# --- supply programs (days with data in 30-day periods) -------------------------------------


@dataclass(frozen=True, slots=True)
class SupplyProgram:
    """A program that bills device supply by days with data, and a setup code once per
    episode (RPM, RTM), with the modality its supply codes are chosen by."""

    program: str
    modality: str = "physiologic"

    @property
    def counts_self_reported(self) -> bool:
        """Self-reported (manually entered) data counts as a day with data (RTM)."""
        return any(rs.counts_self_reported for rs in RULE_SETS if rs.program == self.program)

    def rule_set(self, date_of_service: date) -> RuleSet:
        """The supply and setup codes in force on ``date_of_service``."""
        return supply_rules_for(self.program, self.modality, date_of_service)


RPM_SUPPLY = SupplyProgram(Program.RPM)


@cache
def supply_rules_for(program: str, modality: str, date_of_service: date) -> RuleSet:
    """A supply program's codes on ``date_of_service`` in the shape the supply periods read
    (:class:`metrics.rules.RuleSet`): RPM's own; RTM's for ``modality``."""
    if program == Program.RPM:
        return rule_set_for(program, date_of_service)
    rs = program_rules_for(program, date_of_service)
    if rs is None or modality not in rs.supply or rs.setup_code is None:
        raise LookupError(f"no {program} {modality} supply codes on {date_of_service.isoformat()}")
    return _supply_view(rs, modality)


@cache
def _supply_view(rs: ProgramRules, modality: str) -> RuleSet:
    assert rs.setup_code is not None
    return RuleSet(
        name=rs.name,
        program=rs.program,
        effective_from=rs.effective_from,
        effective_to=rs.effective_to,
        period_days=30,
        supply_tiers=rs.supply[modality],
        setup_code=rs.setup_code,
        setup_min_days=rs.setup_min_days,
        management_tiers=(),
        add_on=None,
        requires_interactive=False,
        exclusive=rs.exclusive,
    )


# --- patient facts --------------------------------------------------------------------------


def chronic_conditions(icd10_codes: Sequence[str], non_chronic_chapters: str) -> int:
    """Distinct ICD-10-CM categories (first three characters) outside the excluded chapters."""
    excluded = set(non_chronic_chapters.upper())
    categories = {
        code.strip().upper().replace(".", "")[:3]
        for code in icd10_codes
        if code.strip() and code.strip()[0].upper() not in excluded
    }
    return len(categories)


def has_behavioral_diagnosis(icd10_codes: Sequence[str]) -> bool:
    """A mental, behavioural or neurodevelopmental diagnosis (ICD-10-CM chapter F)."""
    return any(code.strip().upper().startswith("F") for code in icd10_codes)


@dataclass(frozen=True, slots=True)
class CarePlanState:
    """The care plan of a program as it stood at a month's end."""

    on_file: bool  # established and given to the patient by the month's end
    changed_this_month: bool  # established or substantially revised inside the month


@dataclass(frozen=True, slots=True)
class CarePlanVersion:
    """One row of ``rpmpipe import care-plans``: a plan established, or revised."""

    established_on: date
    revised_on: date | None = None
    shared_with_patient_on: date | None = None


def care_plan_state(
    versions: Sequence[CarePlanVersion], month_start: date, month_end: date
) -> CarePlanState:
    """Whether a plan was on file (established and given to the patient) by ``month_end``,
    and whether it was established or substantially revised inside the month."""
    on_file = any(
        v.established_on <= month_end
        and v.shared_with_patient_on is not None
        and v.shared_with_patient_on <= month_end
        for v in versions
    )
    changed = any(
        d is not None and month_start <= d <= month_end
        for v in versions
        for d in (v.established_on, v.revised_on)
    )
    return CarePlanState(on_file, on_file and changed)


# --- time codes -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CareMinutes:
    """Counted minutes of one program in one period, by who performed them."""

    clinical_staff: Decimal = Decimal(0)
    physician: Decimal = Decimal(0)

    def by(self, performers: frozenset[str]) -> Decimal:
        total = Decimal(0)
        if "clinical_staff" in performers:
            total += self.clinical_staff
        if "physician" in performers:
            total += self.physician
        return total

    @property
    def total(self) -> Decimal:
        return self.clinical_staff + self.physician


@dataclass(frozen=True, slots=True)
class TimeOutcome:
    """The lines of a month (or 30-day period) and the track they came from."""

    lines: tuple[ServiceLine, ...]
    track: str | None
    minutes_used: Decimal  # the minutes the lines stand on (never more than counted)


NOTHING = TimeOutcome((), None, Decimal(0))


def _cap(track: TimeTrack, caps: Mapping[str, int]) -> int | None:
    if track.cap_setting is not None and track.cap_setting in caps:
        return caps[track.cap_setting]
    return track.cap


def track_lines(
    track: TimeTrack, minutes: Decimal, date_of_service: date, caps: Mapping[str, int]
) -> TimeOutcome:
    """The base code and add-on units ``minutes`` earn on one track. No rounding: 19.9 is not
    20, and a further unit needs a further full step."""
    base: Tier | None = None
    for tier in sorted(track.tiers, key=lambda t: t.minimum, reverse=True):
        if tier.admits(minutes):
            base = tier
            break
    if base is None:
        return NOTHING
    lines = [ServiceLine(base.code, 1, date_of_service)]
    used = base.minimum
    cap = _cap(track, caps)
    if track.add_on and base is track.top and track.add_on_step > 0:
        units = int((minutes - base.minimum) // track.add_on_step)
        if cap is not None:
            units = min(units, cap)
        if units > 0:
            lines.append(ServiceLine(track.add_on, units, date_of_service))
            used += track.add_on_step * units
    return TimeOutcome(tuple(lines), track.name, used)


def time_lines(
    rs: ProgramRules,
    minutes: CareMinutes,
    interactive_communications: int,
    care_plan_changed: bool,
    date_of_service: date,
    caps: Mapping[str, int],
) -> TimeOutcome:
    """The one track of ``rs`` a month bills, tried in order, and its lines (or nothing)."""
    for track in rs.tracks:
        if track.needs_interactive and interactive_communications < 1:
            continue
        if track.needs_care_plan_change and not care_plan_changed:
            continue
        outcome = track_lines(track, minutes.by(track.performers), date_of_service, caps)
        if outcome.lines:
            check_exclusive(rs, outcome.lines)
            return outcome
    return NOTHING


def interpretation_line(
    rs: ProgramRules, physician_minutes: Decimal, date_of_service: date
) -> TimeOutcome:
    """99091 for one 30-day period: >= 30 minutes of physician/QHP data interpretation."""
    if rs.interpretation is None:
        return NOTHING
    return track_lines(rs.interpretation, physician_minutes, date_of_service, {})


# --- supply and monthly levels --------------------------------------------------------------


def supply_line_code(rs: ProgramRules, modality: str, days: int) -> str | None:
    """The one supply code a 30-day period with ``days`` days of data earns, or None."""
    tiers = rs.supply.get(modality, ())
    value = _d(days)
    for tier in sorted(tiers, key=lambda t: t.minimum, reverse=True):
        if tier.admits(value):
            return tier.code
    return None


def monthly_level(rs: ProgramRules, chronic: int, qmb: bool | None) -> str | None:
    """The APCM level of a month: by chronic conditions and QMB status (unknown: not QMB)."""
    for level in rs.levels:
        if chronic < level.min_chronic:
            continue
        if level.max_chronic is not None and chronic > level.max_chronic:
            continue
        if level.qmb is not None and bool(qmb) != level.qmb:
            continue
        return level.code
    return None


def check_exclusive(rs: ProgramRules, lines: Sequence[ServiceLine]) -> None:
    """Raise if ``lines`` hold two codes the rule set never bills together, or an add-on
    without its base code."""
    codes = {line.code for line in lines}
    for pair in rs.exclusive:
        if pair <= codes:
            raise ValueError(f"{rs.program} {rs.name}: {sorted(pair)} are never billed together")
    for track in rs.tracks:
        if track.add_on in codes and not codes & {track.top.code}:
            raise ValueError(f"{rs.program} {rs.name}: {track.add_on} needs {track.top.code}")
