"""Episodes of care: runs of a patient's enrollments in a program close together in time (pure).

A new enrollment that starts within ``episode_gap_days`` after the previous one ended (or
while it is still open) continues the same episode: supply periods run back to back across
it, never overlapping, and setup (99453) is billed once for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from rpmpipe.metrics.snapshot import Enrollment


@dataclass(frozen=True, slots=True)
class Episode:
    """Enrollments of one patient (by start date) forming one episode of care.

    ``positions`` are the enrollments' indexes in the sorted enrollment list the episode was
    built from. ``consent_date`` is the first consent on file among them (None: none).
    """

    patient_id: str
    enrollments: tuple[Enrollment, ...]
    positions: tuple[int, ...]

    @property
    def start_date(self) -> date:
        return self.enrollments[0].start_date

    @property
    def end_date(self) -> date | None:
        ends = [e.end_date for e in self.enrollments]
        if any(e is None for e in ends):
            return None
        return max(e for e in ends if e is not None)

    @property
    def consent_date(self) -> date | None:
        consents = [e.consent_date for e in self.enrollments if e.consent_date is not None]
        return min(consents) if consents else None

    def covering_end(self, start: date, end: date) -> date:
        """``end``, or when no enrollment of the episode covers it, the last enrollment end on
        ``start .. end``: no date of service falls after the end of the enrollment that was
        running (a period in a gap between enrollments keeps ``end``)."""
        last: date | None = None
        for e in self.enrollments:
            if e.start_date <= end and (e.end_date is None or e.end_date >= end):
                return end
            if e.end_date is not None and start <= e.end_date <= end:
                last = e.end_date if last is None else max(last, e.end_date)
        return end if last is None else last

    def enrollment_on(self, day: date) -> Enrollment:
        """The enrollment running on ``day`` (the latest started), else the last started
        before it, else the first."""
        chosen = self.enrollments[0]
        for e in self.enrollments:
            if e.start_date <= day:
                chosen = e
        for e in reversed(self.enrollments):
            if e.start_date <= day and (e.end_date is None or e.end_date >= day):
                return e
        return chosen


def episodes_of(enrollments: Sequence[Enrollment], gap_days: int) -> list[Episode]:
    """The episodes of ``enrollments`` (sorted by patient, then start date), in that order."""
    out: list[Episode] = []
    members: list[Enrollment] = []
    positions: list[int] = []
    reach: date | None = None  # last day of the current episode (None: open)
    open_ended = False
    for i, e in enumerate(enrollments):
        same_patient = bool(members) and members[0].patient_id == e.patient_id
        continues = same_patient and (
            open_ended or (reach is not None and (e.start_date - reach).days - 1 <= gap_days)
        )
        if members and not continues:
            out.append(Episode(members[0].patient_id, tuple(members), tuple(positions)))
            members, positions, reach, open_ended = [], [], None, False
        members.append(e)
        positions.append(i)
        if e.end_date is None:
            open_ended = True
        elif reach is None or e.end_date > reach:
            reach = e.end_date
    if members:
        out.append(Episode(members[0].patient_id, tuple(members), tuple(positions)))
    return out
