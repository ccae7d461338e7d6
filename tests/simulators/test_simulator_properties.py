"""Properties of any simulated fleet: ordering, causality, unique ids, fault bookkeeping."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from rpmpipe.simulators import FAULT_KINDS, build_fleet, simulate

fleets = st.tuples(
    st.integers(min_value=1, max_value=12),  # patients
    st.dates(min_value=date(2025, 1, 1), max_value=date(2027, 12, 31)),  # start
    st.integers(min_value=1, max_value=40),  # days
    st.integers(min_value=0, max_value=2**31),  # seed
    st.sampled_from(["native", "omh", "fhir", "mixed"]),
)


@settings(max_examples=30, deadline=None)
@given(fleets)
def test_any_fleet_sends_in_order_after_measuring_with_unique_ids(case: tuple) -> None:  # type: ignore[type-arg]
    patients, start, days, seed, fmt = case
    fleet = build_fleet(patients, start, days, seed)
    sim = simulate(fleet, fmt=fmt, faults=True)
    sends = [m.send_at for m in sim.messages]
    assert sends == sorted(sends)
    ids = Counter(rid for m in sim.messages for rid in m.reading_ids)
    assert sim.manifest is not None
    duplicated = {f.reading_ids[0] for f in sim.manifest.faults if f.kind == "duplicate"}
    assert {rid for rid, n in ids.items() if n > 1} == duplicated
    skewed = {rid for f in sim.manifest.faults if f.kind == "clock_skew" for rid in f.reading_ids}
    window = (fleet.start, fleet.end)
    for m in sim.messages:
        if m.kind == "activity" or m.fault in ("malformed_json", "naive_timestamp"):
            continue
        body = orjson.loads(m.payload)
        items = body["readings"] if isinstance(body, dict) and "readings" in body else body
        for item in items if isinstance(items, list) else [items]:
            when = (
                item.get("measured_at")
                or item.get("effectiveDateTime")
                or (item["body"]["effective_time_frame"]["date_time"])
            )
            measured = datetime.fromisoformat(when)
            rid = item.get("reading_id") or item.get("id") or item["header"]["id"]
            if rid in skewed:
                assert measured - m.send_at > timedelta(minutes=10)
                continue
            # Causality, allowing for the seconds a burst's last readings run past a clamp.
            assert measured <= m.send_at + timedelta(minutes=2)
            if m.fault != "unregistered_device":
                assert window[0] <= measured.date() <= window[1]
    assert set(sim.manifest.counts()) == set(FAULT_KINDS)
