"""The patient index maps its ids to integers once: the records of episodes without consent
ask for a patient's days one patient at a time, and each ask had built the whole map again
(2,000 such patients of a 50,000-patient block: 10-20 s instead of 0.04 s)."""

from __future__ import annotations

from datetime import date

import numpy as np

from rpmpipe.metrics.days import PatientDays, PatientIndex, day_number, days_with_data

ZONE = "America/New_York"


def test_the_index_builds_its_map_of_ids_once_and_it_is_right() -> None:
    ids = tuple(f"P{i:05d}" for i in range(1000))
    index = PatientIndex(ids, (ZONE,) * len(ids))
    first = index.position()
    assert index.position() is first
    assert first == {p: i for i, p in enumerate(ids)}


def test_each_patients_days_come_from_the_one_map() -> None:
    ids = ("P1", "P2", "P3")
    index = PatientIndex(ids, (ZONE,) * 3)
    days = [day_number(date(2026, 9, d)) for d in (1, 2, 5)]
    found = PatientDays(index, np.array([0, 0, 2], np.int32), np.array(days, np.int32), {})
    span = (date(2026, 9, 1), date(2026, 9, 30))
    assert days_with_data(found, "P1", *span) == [date(2026, 9, 1), date(2026, 9, 2)]
    assert days_with_data(found, "P2", *span) == []
    assert days_with_data(found, "P3", *span) == [date(2026, 9, 5)]
    assert days_with_data(found, "P9", *span) == []
    assert found.index.position() is index.position()
