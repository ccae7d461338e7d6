"""The native fast path gives exactly the general decoder's readings and rejects."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from rpmpipe.ingest.decoders import decode, decode_into, native_fast
from rpmpipe.ingest.schema import ReadingColumns
from rpmpipe.simulators import build_fleet, simulate

RECEIVED = datetime(2026, 11, 3, 13, 0, tzinfo=UTC)
SKEW = timedelta(minutes=10)
DEVICE = "BP-000123"

# Valid and invalid values for each native field; a value of ABSENT leaves the field out.
ABSENT = object()
numbers = st.one_of(
    st.integers(min_value=-10, max_value=1200),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 20, 49.9, 50, 80, 82.5, 128, 200, 300, 300.0001, 500, 1000, 2**70]),
)
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=6),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
times = st.one_of(
    st.sampled_from(
        [
            "2026-11-03T07:12:44-05:00",
            "2026-11-03T12:12:44Z",
            "2026-11-03T13:09:59+00:00",
            "2026-11-03T13:30:00+00:00",  # beyond the clock skew: clock_suspect
            "2026-11-03T23:59:59.999999-14:00",
            "2026-11-03T07:12:44",  # naive
            "2026-11-03",  # a date alone
            "1999-12-31T23:59:59Z",  # before 2000
            "0001-01-01T00:00:00+01:00",  # out of range in UTC
            "2026-13-03T07:12:44Z",
            "",
            "x" * 41,
        ]
    ),
    st.datetimes(  # hypothesis takes naive bounds and adds the zone itself
        min_value=datetime(1990, 1, 1),  # noqa: DTZ001
        max_value=datetime(2030, 1, 1),  # noqa: DTZ001
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5, minutes=-30)), None]),
    ).map(lambda d: d.isoformat()),
)


valid_times = st.one_of(
    st.sampled_from(
        [
            "2026-11-03T07:12:44-05:00",
            "2026-11-03T12:12:44Z",
            "2026-11-03T13:30:00+00:00",  # beyond the clock skew: clock_suspect
            "2026-11-03T23:59:59.999999-14:00",
        ]
    ),
    st.datetimes(
        min_value=datetime(2000, 1, 2),  # noqa: DTZ001
        max_value=datetime(2030, 1, 1),  # noqa: DTZ001
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5, minutes=-30))]),
    ).map(lambda d: d.isoformat()),
)


@st.composite
def valid_native(draw: st.DrawFn) -> dict[str, object]:
    """A native reading the general decoder stores, of any type and optional fields."""
    kind = draw(
        st.sampled_from(["blood_pressure", "body_weight", "spo2", "blood_glucose", "heart_rate"])
    )
    doc: dict[str, object] = {"measured_at": draw(valid_times), "type": kind}
    if draw(st.booleans()):
        doc["device_id"] = DEVICE
    if draw(st.booleans()):
        doc["reading_id"] = draw(st.sampled_from(["BP-000123-5812", "r.1:2-3"]))
    if kind == "blood_pressure":
        systolic = draw(st.integers(min_value=60, max_value=300))
        doc["systolic_mmhg"] = systolic
        doc["diastolic_mmhg"] = draw(st.floats(min_value=20, max_value=systolic - 1))
    elif kind == "body_weight":
        if draw(st.booleans()):
            doc["weight_kg"] = draw(st.floats(min_value=0.5, max_value=500))
        else:
            doc["weight"] = draw(st.integers(min_value=2, max_value=400))
            doc["unit"] = draw(st.sampled_from(["kg", "lb", "LBS", "[stone_av]"]))
    elif kind == "spo2":
        doc["spo2_pct"] = draw(st.integers(min_value=50, max_value=100))
    elif kind == "blood_glucose":
        if draw(st.booleans()):
            doc["glucose_mg_dl"] = draw(st.integers(min_value=10, max_value=1000))
        else:
            doc["glucose"] = draw(st.floats(min_value=1, max_value=50))
            doc["glucose_unit"] = "mmol/L"
    if kind in ("blood_pressure", "heart_rate") or draw(st.booleans()):
        doc["pulse_bpm"] = draw(st.integers(min_value=20, max_value=300))
    for name in ("irregular_heartbeat", "manual_entry"):
        if draw(st.booleans()):
            doc[name] = draw(st.one_of(st.booleans(), st.none()))
    return doc


FIELD_VALUES: dict[str, st.SearchStrategy[object]] = {
    "device_id": st.sampled_from([DEVICE, "BP-000999", "bad id", ""]),
    "reading_id": st.sampled_from(["BP-000123-5812", "r.1:2-3", "", "../x", 12345]),
    "measured_at": times,
    "type": st.sampled_from(["blood_pressure", "heart_rate", "steps", "Blood_Pressure"]),
    "systolic_mmhg": numbers,
    "diastolic_mmhg": numbers,
    "pulse_bpm": numbers,
    "weight": numbers,
    "unit": st.sampled_from(["kg", "lb", "stone", "mmol/L"]),
    "weight_kg": numbers,
    "spo2_pct": numbers,
    "glucose": numbers,
    "glucose_unit": st.sampled_from(["mg/dL", "mmol/L", "g/L"]),
    "glucose_mg_dl": numbers,
    "irregular_heartbeat": st.booleans(),
    "manual_entry": st.booleans(),
    "firmware": st.text(max_size=4),  # not a native field: kept as extra
}


@st.composite
def native_docs(draw: st.DrawFn) -> dict[str, object]:
    """A valid native reading, most with one to three fields spoiled, dropped or added."""
    doc = draw(valid_native())
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2, 3]))):
        name = draw(st.sampled_from(sorted(FIELD_VALUES)))
        value = draw(st.one_of(FIELD_VALUES[name], junk, st.just(ABSENT)))
        if value is ABSENT:
            doc.pop(name, None)
        else:
            doc[name] = value
    return doc


@st.composite
def native_payloads(draw: st.DrawFn) -> bytes:
    """One native reading, or a batched sync of a few (an array, or an object with the
    sync's device_id or not), in any of which a field may be spoiled."""
    doc = draw(native_docs())
    shape = draw(st.sampled_from(["object", "object", "object", "array", "wrapped", "bytes"]))
    # The standard library's encoder, which also writes NaN, Infinity and integers beyond
    # 64 bits (JSON the decoders must refuse or read as the general decoder does).
    if shape in ("array", "wrapped"):
        docs = [doc, *draw(st.lists(native_docs(), max_size=3))]
        if shape == "array":
            return json.dumps(docs).encode()
        sync: dict[str, object] = {"readings": docs}
        named = draw(st.sampled_from([ABSENT, ABSENT, DEVICE, "BP-000999", None]))
        if named is not ABSENT:
            sync["device_id"] = named
        return json.dumps(sync).encode()
    raw = json.dumps(doc).encode()
    if shape == "bytes":
        cut = draw(st.integers(min_value=0, max_value=len(raw)))
        return raw[:cut] + draw(st.binary(max_size=3))
    return raw


def general(payload: bytes, device: str | None) -> tuple[ReadingColumns, tuple[object, ...]]:
    decoded = decode(device, payload, RECEIVED, SKEW)
    return ReadingColumns.of(decoded.readings), decoded.rejects


def assert_same(a: ReadingColumns, b: ReadingColumns) -> None:
    assert a.table().equals(b.table())
    assert a.dedup_key == b.dedup_key
    assert a.day == b.day


@settings(max_examples=600, deadline=None)
@given(payload=native_payloads(), device=st.sampled_from([DEVICE, "BP-000999", "bad/id"]))
def test_fast_path_gives_the_general_decoders_readings_and_rejects(
    payload: bytes, device: str
) -> None:
    expected, expected_rejects = general(payload, device)
    columns = ReadingColumns()
    rejects = decode_into(columns, device, payload, RECEIVED, SKEW)
    assert rejects == expected_rejects
    assert_same(columns, expected)
    assert [columns.reading(i) for i in range(len(columns))] == list(
        decode(device, payload, RECEIVED, SKEW).readings
    )
    # Whatever the fast path accepts on its own, the general decoder stores identically.
    alone = ReadingColumns()
    if native_fast(alone, device, payload, RECEIVED, SKEW):
        assert not expected_rejects
        assert_same(alone, expected)
    else:
        assert len(alone) == 0


def _simulated(patients: int, days: int, batched: bool) -> list[object]:
    fleet = build_fleet(patients=patients, start=date(2026, 10, 1), days=days, seed=3)
    until = datetime(2026, 10, 1 + days, tzinfo=UTC)
    sim = simulate(fleet, topic_root="t", fmt="native", until=until)
    return [m for m in sim.messages if m.kind != "activity" and (len(m.reading_ids) > 1) == batched]


def _take_fast(messages: list) -> set[str]:  # type: ignore[type-arg]
    """Each message takes the fast path and gives the general decoder's readings; the
    reading types seen."""
    kinds: set[str] = set()
    for m in messages:
        device = m.topic.split("/")[-2]
        columns = ReadingColumns()
        assert native_fast(columns, device, m.payload, RECEIVED, SKEW), m.topic
        expected, rejects = general(m.payload, device)
        assert not rejects
        assert_same(columns, expected)
        assert len(columns) == len(m.reading_ids)
        kinds.update(columns.type)
    return kinds


def test_the_simulators_single_native_readings_all_take_the_fast_path() -> None:
    singles = _simulated(30, 5, batched=False)
    assert len(singles) > 50
    assert _take_fast(singles) == {"blood_pressure", "body_weight"}


def test_the_simulators_batched_native_syncs_take_the_fast_path() -> None:
    syncs = _simulated(200, 20, batched=True)
    assert len(syncs) > 10
    _take_fast(syncs)


BASE = {
    "device_id": DEVICE,
    "reading_id": "BP-000123-5812",
    "measured_at": "2026-11-03T07:12:44-05:00",
    "type": "blood_pressure",
    "systolic_mmhg": 128,
    "diastolic_mmhg": 82,
    "pulse_bpm": 71,
}
EDGES: list[dict[str, object]] = [  # changes to BASE; ABSENT drops the field
    {},
    {"measured_at": "2026-11-03T07:12:44"},  # naive
    {"measured_at": "2026-11-03"},  # a date alone
    {"measured_at": "20261103T071244Z"},  # basic ISO form
    {"measured_at": "1999-12-31T23:59:59+00:00"},
    {"measured_at": "2026-11-03T13:10:01+00:00"},  # just beyond the skew: clock_suspect
    {"measured_at": "2026-11-03T13:10:00+00:00"},  # at the skew: not suspect
    {"measured_at": 1762170764},
    {"systolic_mmhg": True},
    {"systolic_mmhg": "128"},
    {"systolic_mmhg": 300.0},
    {"systolic_mmhg": 300.5},
    {"diastolic_mmhg": 128},
    {"pulse_bpm": None},
    {"reading_id": 5812},
    {"reading_id": ""},
    {"reading_id": None},
    {"reading_id": ABSENT},
    {"reading_id": "../5812"},
    {"device_id": "BP-000999"},
    {"device_id": None},
    {"device_id": ABSENT},
    {"pulse_bpm": ABSENT},
    {"type": "body_weight", "weight": 180, "unit": "lb"},
    {"type": "body_weight", "weight": 180, "unit": "stone"},
    {"type": "body_weight", "weight": 180, "weight_kg": 81.6},
    {"type": "body_weight"},
    {"type": "blood_glucose", "glucose": 5.5, "unit": "mmol/L"},
    {"type": "blood_glucose", "glucose": 5.5, "glucose_unit": "mmol/L", "unit": "mg/dL"},
    {"type": "steps"},
    {"irregular_heartbeat": True, "manual_entry": None},
    {"irregular_heartbeat": 1},
    {"manual_entry": 0},
    {"manual_entry": "yes"},
    {"firmware": "1.2"},
]


def test_fast_path_edges_match_the_general_decoder() -> None:
    taken = 0
    for change in EDGES:
        doc = {k: v for k, v in {**BASE, **change}.items() if v is not ABSENT}
        payload = json.dumps(doc).encode()
        expected, expected_rejects = general(payload, DEVICE)
        columns = ReadingColumns()
        if native_fast(columns, DEVICE, payload, RECEIVED, SKEW):
            taken += 1
            assert not expected_rejects, change
        assert decode_into(ReadingColumns(), DEVICE, payload, RECEIVED, SKEW) == expected_rejects
        if len(columns):
            assert_same(columns, expected)
    assert taken >= 10  # the valid edges do take the fast path
