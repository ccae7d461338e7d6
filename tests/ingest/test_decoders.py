"""Decoders: every format, every reject code, and hostile input never raising."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rpmpipe.ingest.decoders import MAX_JSON_DEPTH, MAX_PAYLOAD_BYTES, Decoded, decode
from rpmpipe.ingest.reasons import REASON_CODES
from rpmpipe.ingest.validation import EARLIEST
from rpmpipe.records import Reading

RECEIVED = datetime(2026, 11, 3, 13, 0, tzinfo=UTC)


def native(**fields: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "device_id": "BP-000123",
        "reading_id": "BP-000123-5812",
        "measured_at": "2026-11-03T07:12:44-05:00",
        "type": "blood_pressure",
        "systolic_mmhg": 128,
        "diastolic_mmhg": 82,
        "pulse_bpm": 71,
    }
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not None}


def one(doc: object, topic_device: str | None = "BP-000123") -> Decoded:
    return decode(topic_device, orjson.dumps(doc), RECEIVED)


def reject_code(doc: object, topic_device: str | None = "BP-000123") -> str:
    result = one(doc, topic_device)
    assert not result.readings
    assert len(result.rejects) == 1
    return result.rejects[0].code


def test_native_blood_pressure_is_stored_in_utc_with_its_fields() -> None:
    result = one(native(cuff_size="L"))
    assert not result.rejects
    (r,) = result.readings
    assert r.measured_at == datetime(2026, 11, 3, 12, 12, 44, tzinfo=UTC)
    assert (r.systolic_mmhg, r.diastolic_mmhg, r.pulse_bpm) == (128, 82, 71)
    assert r.source_format == "native"
    assert r.dedup_key == "id:BP-000123:BP-000123-5812"
    assert orjson.loads(r.extra or "{}") == {"cuff_size": "L"}


def test_native_weight_in_pounds_is_converted_to_kilograms() -> None:
    doc = {
        "device_id": "SC-000044",
        "measured_at": "2026-11-03T06:58:10Z",
        "type": "body_weight",
        "weight": 179.4,
        "unit": "lb",
    }
    (r,) = one(doc, "SC-000044").readings
    assert r.weight_kg == pytest.approx(81.374, abs=0.001)
    assert r.reading_id is None
    assert r.dedup_key.startswith("dtm:SC-000044|body_weight|")


def test_native_weight_in_grams_is_converted_to_kilograms() -> None:
    doc = {
        "measured_at": "2026-11-03T06:58:10Z",
        "type": "body_weight",
        "weight": 81400,
        "unit": "g",
    }
    (r,) = one(doc, "SC-1").readings
    assert r.weight_kg == pytest.approx(81.4)
    assert r.device_id == "SC-1"  # taken from the topic when the payload has none


def test_batched_sync_keeps_good_items_and_rejects_bad_ones_with_their_own_bytes() -> None:
    good = native(reading_id="a1")
    bad = native(reading_id="a2", diastolic_mmhg=140)
    result = one({"device_id": "BP-000123", "readings": [good, bad, native(reading_id="a3")]})
    assert [r.reading_id for r in result.readings] == ["a1", "a3"]
    (rej,) = result.rejects
    assert rej.code == "implausible_value"
    assert rej.reason.startswith("item 2 of 3:")
    assert orjson.loads(rej.item) == bad


def test_json_array_of_readings_is_a_batched_sync() -> None:
    result = one([native(reading_id=f"r{i}") for i in range(5)])
    assert len(result.readings) == 5 and not result.rejects


def test_open_mhealth_blood_pressure_and_body_weight() -> None:
    bp = {
        "header": {
            "id": "9e0b3c5a-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
            "schema_id": {"namespace": "omh", "name": "blood-pressure", "version": "3.0"},
            "acquisition_provenance": {"source_name": "cuff", "modality": "self-reported"},
        },
        "body": {
            "systolic_blood_pressure": {"value": 160, "unit": "mmHg"},
            "diastolic_blood_pressure": {"value": 60, "unit": "mmHg"},
            "effective_time_frame": {"date_time": "2026-11-03T07:25:00-06:00"},
        },
    }
    weight = {
        "header": {
            "id": "w-1",
            "schema_id": {"namespace": "omh", "name": "body-weight", "version": "2.0"},
        },
        "body": {
            "body_weight": {"value": 200, "unit": "lb"},
            "effective_time_frame": {"date_time": "2026-11-03T07:25:00Z"},
        },
    }
    (r,) = one(bp).readings
    assert (r.type, r.systolic_mmhg, r.diastolic_mmhg, r.source_format) == (
        "blood_pressure",
        160,
        60,
        "openmhealth",
    )
    assert r.manual_entry is True
    assert r.measured_at == datetime(2026, 11, 3, 13, 25, tzinfo=UTC)
    (w,) = one(weight, "SC-9").readings
    assert w.weight_kg == pytest.approx(90.718, abs=0.001)


def fhir_bp(**extra: object) -> dict[str, object]:
    def comp(code: str, value: float) -> dict[str, object]:
        return {
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "valueQuantity": {
                "value": value,
                "unit": "mmHg",
                "system": "http://unitsofmeasure.org",
                "code": "mm[Hg]",
            },
        }

    doc: dict[str, object] = {
        "resourceType": "Observation",
        "id": "obs-1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "effectiveDateTime": "2026-11-03T07:12:44+01:00",
        "device": {"reference": "Device/BP-000123"},
        "component": [
            comp("8480-6", 131),
            comp("8462-4", 85),
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "valueQuantity": {"value": 66, "unit": "beats/minute", "code": "/min"},
            },
        ],
    }
    doc.update(extra)
    return doc


def test_fhir_blood_pressure_panel_with_heart_rate_component() -> None:
    (r,) = one(fhir_bp()).readings
    assert (r.systolic_mmhg, r.diastolic_mmhg, r.pulse_bpm) == (131, 85, 66)
    assert r.reading_id == "obs-1" and r.source_format == "fhir"
    assert r.measured_at == datetime(2026, 11, 3, 6, 12, 44, tzinfo=UTC)


def test_fhir_bundle_of_weight_and_heart_rate_observations() -> None:
    weight = {
        "resourceType": "Observation",
        "id": "w1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "effectiveDateTime": "2026-11-03T07:00:00Z",
        "device": {"identifier": {"value": "BP-000123"}},
        "valueQuantity": {"value": 180, "unit": "lbs", "code": "[lb_av]"},
    }
    pulse = {
        "resourceType": "Observation",
        "id": "h1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "effectiveDateTime": "2026-11-03T07:00:00Z",
        "valueQuantity": {"value": 72, "unit": "/min", "code": "/min"},
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": weight}, {"resource": pulse}],
    }
    result = one(bundle)
    assert not result.rejects
    assert sorted(r.type for r in result.readings) == ["body_weight", "heart_rate"]
    assert next(r for r in result.readings if r.type == "body_weight").weight_kg == pytest.approx(
        81.647, abs=0.001
    )


@pytest.mark.parametrize(
    ("doc", "code"),
    [
        (native(measured_at="2026-11-03T07:12:44"), "naive_time"),
        (native(measured_at="yesterday"), "bad_time"),
        (native(measured_at="1999-12-31T23:00:00Z"), "bad_time"),
        (native(measured_at=None), "missing_field"),
        (native(type="blood_sugar"), "unknown_type"),
        (native(type=None), "missing_field"),
        (native(systolic_mmhg=400), "implausible_value"),
        (native(diastolic_mmhg=128), "implausible_value"),
        (native(systolic_mmhg="128"), "bad_value"),
        (native(systolic_mmhg=True), "bad_value"),
        (native(systolic_mmhg=None), "missing_field"),
        (native(manual_entry="yes"), "bad_value"),
        (native(reading_id="../../etc/passwd"), "bad_identifier"),
        (
            {
                "type": "body_weight",
                "measured_at": "2026-11-03T06:58:10Z",
                "weight": 80,
                "unit": "stone",
            },
            "unknown_unit",
        ),
        (native(device_id="BP-999999"), "device_mismatch"),
        (
            native(extra={"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}}),
            "too_deep",
        ),
        (fhir_bp(status="entered-in-error"), "bad_status"),
        (
            fhir_bp(code={"coding": [{"system": "http://loinc.org", "code": "8310-5"}]}),
            "unknown_type",
        ),
        ({"resourceType": "Patient", "id": "p"}, "unsupported_format"),
        ({"resourceType": "Bundle"}, "missing_field"),
        ({"readings": []}, "empty_batch"),
        ({"readings": "nope"}, "bad_value"),
        (42, "unsupported_format"),
        ([1], "unsupported_format"),
    ],
)
def test_bad_items_are_rejected_with_a_reason_code(doc: object, code: str) -> None:
    assert reject_code(doc) == code


def test_path_like_device_id_without_topic_is_a_bad_identifier() -> None:
    assert reject_code(native(device_id="../x"), topic_device=None) == "bad_identifier"


def test_path_like_topic_device_is_rejected() -> None:
    assert reject_code(native(), topic_device="..") == "bad_identifier"


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\x00\xff\xfe binary", "bad_json"),
        (b'{"systolic_mmhg": NaN}', "bad_json"),
        (b'{"systolic_mmhg": 1e999}', "bad_json"),
        (b"[" * 5000 + b"]" * 5000, "too_deep"),
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, "too_deep"),
        (b" " * (MAX_PAYLOAD_BYTES + 1), "too_large"),
        (orjson.dumps([{}] * 10_001), "too_many_items"),
    ],
)
def test_hostile_payloads_are_rejected_not_raised(payload: bytes, code: str) -> None:
    result = decode("BP-000123", payload, RECEIVED)
    assert not result.readings
    assert [r.code for r in result.rejects] == [code]
    assert result.rejects[0].item == payload


def test_reading_timed_after_receipt_beyond_the_skew_is_stored_as_clock_suspect() -> None:
    late = (RECEIVED + timedelta(minutes=11)).isoformat()
    close = (RECEIVED + timedelta(minutes=9)).isoformat()
    (r1,) = one(native(measured_at=late)).readings
    (r2,) = one(native(measured_at=close)).readings
    assert r1.clock_suspect is True
    assert r2.clock_suspect is False


def test_clock_skew_comes_from_the_caller() -> None:
    late = (RECEIVED + timedelta(minutes=3)).isoformat()
    result = decode(
        "BP-000123", orjson.dumps(native(measured_at=late)), RECEIVED, timedelta(minutes=2)
    )
    assert result.readings[0].clock_suspect is True


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
field_values = (
    st.sampled_from(
        [
            "BP-000123",
            "2026-11-03T07:12:44Z",
            "2026-11-03T07:12:44",
            "blood_pressure",
            "body_weight",
            "lb",
            "kg",
            "../x",
            "",
            "mmHg",
        ]
    )
    | st.integers(-10, 400)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.none()
    | st.booleans()
)
native_like = st.dictionaries(
    st.sampled_from(
        [
            "device_id",
            "reading_id",
            "measured_at",
            "type",
            "systolic_mmhg",
            "diastolic_mmhg",
            "pulse_bpm",
            "weight",
            "unit",
            "weight_kg",
            "spo2_pct",
            "glucose",
            "manual_entry",
            "irregular_heartbeat",
            "readings",
            "resourceType",
            "header",
            "body",
            "other",
        ]
    ),
    field_values | json_values,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_give_readings_or_reasons_never_an_exception(payload: bytes) -> None:
    result = decode("BP-000123", payload, RECEIVED)
    assert result.readings or result.rejects
    assert all(r.code in REASON_CODES and r.reason for r in result.rejects)


@settings(max_examples=300, deadline=None)
@given(st.one_of(native_like, st.lists(native_like, max_size=3), json_values))
def test_any_json_gives_valid_readings_or_reasons(doc: object) -> None:
    result = decode("BP-000123", orjson.dumps(doc), RECEIVED)
    assert result.readings or result.rejects
    assert all(r.code in REASON_CODES for r in result.rejects)
    for r in result.readings:
        assert r.device_id == "BP-000123"
        assert r.measured_at >= EARLIEST and r.measured_at.tzinfo is not None
        if r.systolic_mmhg is not None and r.diastolic_mmhg is not None:
            assert r.diastolic_mmhg < r.systolic_mmhg


def _sim_reading(kind: str = "blood_pressure"):  # type: ignore[no-untyped-def]
    from zoneinfo import ZoneInfo

    from rpmpipe.simulators.payloads import SimReading, reading_id_for

    return SimReading(
        device_id="BP-000777",
        patient_id="P-1",
        reading_id=reading_id_for("BP-000777", 3, "omh"),
        type=kind,
        measured_at=datetime(2026, 11, 3, 7, 5, tzinfo=ZoneInfo("America/Chicago")),
        systolic=131,
        diastolic=84,
        pulse=70,
        weight=180.0,
        unit="lb",
    )


@pytest.mark.parametrize("kind", ["blood_pressure", "body_weight"])
def test_simulator_open_mhealth_payload_decodes_with_its_reading_id(kind: str) -> None:
    from rpmpipe.simulators.payloads import encode_readings

    sim = _sim_reading(kind)
    payload = encode_readings((sim,), "omh", batched=False)
    (on_topic,) = decode("BP-000777", payload, RECEIVED).readings
    assert on_topic.reading_id == sim.reading_id
    # A backfill line has no topic: the device comes from acquisition_provenance.source_name.
    (backfilled,) = decode(None, payload, RECEIVED).readings
    assert (backfilled.reading_id, backfilled.device_id) == (sim.reading_id, "BP-000777")
    batch = encode_readings((sim, sim), "omh", batched=True)
    assert [r.reading_id for r in decode("BP-000777", batch, RECEIVED).readings] == [
        sim.reading_id
    ] * 2


def _omh_bp(header: dict[str, object]) -> dict[str, object]:
    return {
        "header": {
            "schema_id": {"namespace": "omh", "name": "blood-pressure", "version": "3.0"},
            **header,
        },
        "body": {
            "systolic_blood_pressure": {"value": 120, "unit": "mmHg"},
            "diastolic_blood_pressure": {"value": 80, "unit": "mmHg"},
            "effective_time_frame": {"date_time": "2026-11-03T07:25:00Z"},
        },
    }


def test_open_mhealth_reading_id_from_header_id_or_uuid_id_preferred() -> None:
    (a,) = one(_omh_bp({"id": "omh-1"})).readings
    (b,) = one(_omh_bp({"uuid": "omh-2"})).readings
    (c,) = one(_omh_bp({"id": "omh-3", "uuid": "omh-4"})).readings
    assert (a.reading_id, b.reading_id, c.reading_id) == ("omh-1", "omh-2", "omh-3")


def test_open_mhealth_device_id_extension_wins_over_source_name() -> None:
    provenance = {"device_id": "BP-1", "source_name": "BP-2"}
    (r,) = one(_omh_bp({"id": "x", "acquisition_provenance": provenance}), None).readings
    assert r.device_id == "BP-1"
    # On a device topic, a source_name naming something else is not an identity clash.
    doc = _omh_bp({"id": "x", "acquisition_provenance": {"source_name": "Acme Cloud"}})
    (t,) = one(doc, "BP-000123").readings
    assert t.device_id == "BP-000123"
    # But without a topic, a source_name that is no device id is rejected, not stored.
    assert reject_code(doc, None) == "bad_identifier"


def test_deeply_nested_json_says_it_is_too_deep_not_invalid() -> None:
    (reject,) = decode("BP-000123", b"[" * 5000 + b"]" * 5000, RECEIVED).rejects
    assert reject.code == "too_deep"
    assert f"more than {MAX_JSON_DEPTH} levels deep" in reject.reason
    assert "not valid" not in reject.reason


def test_every_reason_code_in_the_ingest_sources_is_a_known_one() -> None:
    import re
    from pathlib import Path

    import rpmpipe.ingest as ingest

    # A literal code as the first argument of DecodeError/Reject/reject(m, ...), or returned
    # by the activity error mapping (activities._code).
    raised = re.compile(r'(?:DecodeError|Reject|reject)\(\s*(?:m,\s*)?"([a-z_]+)"')
    mapped = re.compile(r'return "([a-z_]+)"')
    found: set[str] = set()
    for path in Path(ingest.__file__).parent.glob("*.py"):
        text = path.read_text()
        found.update(raised.findall(text))
        if path.name == "activities.py":
            code_fn = text[text.index("def _code(") :]
            found.update(mapped.findall(code_fn[: code_fn.index("\ndef ")]))
    assert {"bad_json", "unknown_device", "unknown_topic", "unknown_patient"} <= found
    assert found - REASON_CODES.keys() == set()


# --- Field formats: what device clouds and gateways really send (README "File formats") ---

LOINC = "http://loinc.org"
MDC = "urn:iso:std:iso:11073:10101"
UCUM = "http://unitsofmeasure.org"


def coded(*codes: tuple[str, str]) -> dict[str, object]:
    return {"coding": [{"system": system, "code": code} for system, code in codes]}


def quantity(value: object, code: str, unit: str | None = None) -> dict[str, object]:
    return {"value": value, "unit": unit or code, "system": UCUM, "code": code}


def observation(code: dict[str, object], **fields: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "resourceType": "Observation",
        "id": "obs-7",
        "status": "final",
        "code": code,
        "effectiveDateTime": "2026-11-03T08:15:00-06:00",
        "device": {"reference": "Device/BP-000123"},
    }
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not None}


def bp_component(system: str, code: str, value: float) -> dict[str, object]:
    return {"code": coded((system, code)), "valueQuantity": quantity(value, "mm[Hg]", "mmHg")}


def omh(schema: str, body: dict[str, object]) -> dict[str, object]:
    return {
        "header": {"id": "omh-9", "schema_id": {"namespace": "omh", "name": schema}},
        "body": {"effective_time_frame": {"date_time": "2026-11-03T07:25:00Z"}, **body},
    }


def the_reading(doc: object, topic_device: str | None = "BP-000123") -> Reading:
    result = one(doc, topic_device)
    assert not result.rejects, result.rejects
    (reading,) = result.readings
    return reading


# 1. Statistics and intervals are not readings.


def test_open_mhealth_descriptive_statistic_is_not_a_measurement() -> None:
    weekly = omh(
        "blood-pressure",
        {
            "systolic_blood_pressure": {"value": 131, "unit": "mmHg"},
            "diastolic_blood_pressure": {"value": 84, "unit": "mmHg"},
            "descriptive_statistic": "average",
            "effective_time_frame": {
                "time_interval": {
                    "start_date_time": "2026-10-27T00:00:00Z",
                    "end_date_time": "2026-11-03T00:00:00Z",
                }
            },
        },
    )
    assert reject_code(weekly) == "not_a_measurement"
    daily_max = omh(
        "body-weight",
        {"body_weight": {"value": 80, "unit": "kg"}, "descriptive_statistic": "maximum"},
    )
    assert reject_code(daily_max, "SC-1") == "not_a_measurement"


@pytest.mark.parametrize(
    "interval",
    [
        {"start_date_time": "2026-11-03T07:00:00Z", "end_date_time": "2026-11-03T07:30:00Z"},
        {"start_date_time": "2026-11-03T07:00:00Z", "duration": {"value": 7, "unit": "d"}},
        {"duration": {"value": 1, "unit": "h"}, "end_date_time": "2026-11-03T08:00:00Z"},
        {"start_date_time": "2026-11-03T07:00:00Z"},
    ],
)
def test_open_mhealth_time_interval_that_spans_time_is_not_a_measurement(
    interval: dict[str, object],
) -> None:
    doc = omh(
        "oxygen-saturation",
        {
            "oxygen_saturation": {"value": 97, "unit": "%"},
            "effective_time_frame": {"time_interval": interval},
        },
    )
    assert reject_code(doc, "OX-1") == "not_a_measurement"


def test_fhir_average_blood_pressure_is_not_a_measurement() -> None:
    average = observation(
        coded((LOINC, "96607-7"), (LOINC, "85354-9")),
        effectiveDateTime=None,
        effectivePeriod={"start": "2026-11-01T06:00:00Z", "end": "2026-11-02T20:00:00Z"},
        component=[
            {
                "code": coded((LOINC, "96608-5"), (LOINC, "8480-6")),
                "valueQuantity": quantity(136, "mm[Hg]"),
            },
            {
                "code": coded((LOINC, "96609-3"), (LOINC, "8462-4")),
                "valueQuantity": quantity(86, "mm[Hg]"),
            },
        ],
    )
    result = one(average)
    assert not result.readings
    (reject,) = result.rejects
    assert reject.code == "not_a_measurement" and "statistic" in reject.reason
    # Coded as a plain panel but with mean components, it is still a statistic.
    plain = {**average, "code": coded((LOINC, "85354-9"))}
    assert reject_code(plain) == "not_a_measurement"


def test_fhir_effective_period_that_spans_time_is_not_a_measurement() -> None:
    doc = observation(
        coded((LOINC, "29463-7")),
        effectiveDateTime=None,
        effectivePeriod={"start": "2026-11-03T06:00:00Z", "end": "2026-11-03T06:05:00Z"},
        valueQuantity=quantity(80, "kg"),
    )
    (reject,) = one(doc, None).rejects
    assert reject.code == "not_a_measurement" and "spans time" in reject.reason


# 2. FHIR status.


def test_fhir_registered_status_is_refused_as_no_result_yet() -> None:
    (reject,) = one(fhir_bp(status="registered")).rejects
    assert reject.code == "bad_status" and "no result yet" in reject.reason
    for status in ("cancelled", "entered-in-error", "unknown", None):
        assert reject_code(fhir_bp(status=status)) == "bad_status"


@pytest.mark.parametrize("status", ["final", "amended", "corrected", "preliminary"])
def test_fhir_final_amended_corrected_and_preliminary_observations_are_stored(
    status: str,
) -> None:
    assert the_reading(fhir_bp(status=status)).systolic_mmhg == 131


# 3. Blood pressure coded as the vital-signs panel, or in MDC.


@pytest.mark.parametrize(
    ("panel", "systolic", "diastolic"),
    [
        ((LOINC, "55284-4"), (LOINC, "8480-6"), (LOINC, "8462-4")),
        ((MDC, "150020"), (MDC, "150021"), (MDC, "150022")),
        ((LOINC, "85354-9"), (MDC, "150021"), (LOINC, "8462-4")),
    ],
)
def test_fhir_blood_pressure_by_panel_code_and_components_in_any_order(
    panel: tuple[str, str], systolic: tuple[str, str], diastolic: tuple[str, str]
) -> None:
    doc = observation(
        coded(panel),
        component=[
            bp_component(MDC, "150023", 98),  # mean arterial pressure: ignored
            bp_component(*diastolic, 79),
            {"code": coded((MDC, "149546")), "valueQuantity": quantity(64, "{beats}/min")},
            bp_component(*systolic, 128),
        ],
    )
    r = the_reading(doc)
    assert (r.type, r.systolic_mmhg, r.diastolic_mmhg, r.pulse_bpm) == (
        "blood_pressure",
        128,
        79,
        64,
    )


# 4. SpO2 and glucose.


@pytest.mark.parametrize(
    "code", [(LOINC, "59408-5"), (LOINC, "2708-6"), (MDC, "150456")], ids=lambda c: c[1]
)
def test_fhir_oxygen_saturation_is_stored_as_spo2(code: tuple[str, str]) -> None:
    r = the_reading(observation(coded(code), valueQuantity=quantity(96, "%")), None)
    assert (r.type, r.spo2_pct, r.device_id) == ("spo2", 96, "BP-000123")


@pytest.mark.parametrize(
    ("code", "value", "unit", "mg_dl"),
    [
        ((LOINC, "2339-0"), 104, "mg/dL", 104),
        ((LOINC, "2345-7"), 99, "mg/dL", 99),
        ((LOINC, "41653-7"), 6.1, "mmol/L", 109.9),
        ((LOINC, "14743-9"), 5.5, "mmol/L", 99.1),
        ((MDC, "160184"), 120, "mg/dL", 120),
        ((MDC, "160196"), 7.0, "mmol/L", 126.1),
        ((MDC, "160368"), 88, "mg/dL", 88),
    ],
    ids=lambda v: str(v[1]) if isinstance(v, tuple) else None,
)
def test_fhir_glucose_is_stored_in_mg_per_dl(
    code: tuple[str, str], value: float, unit: str, mg_dl: float
) -> None:
    r = the_reading(observation(coded(code), valueQuantity=quantity(value, unit)), None)
    assert r.type == "blood_glucose"
    assert r.glucose_mg_dl == pytest.approx(mg_dl, abs=0.05)


def test_spo2_and_glucose_are_checked_like_native_readings() -> None:
    spo2 = coded((LOINC, "59408-5"))
    glucose = coded((LOINC, "2339-0"))
    assert reject_code(observation(spo2, valueQuantity=quantity(130, "%"))) == ("implausible_value")
    assert reject_code(observation(spo2, valueQuantity=quantity(0.96, "1"))) == "unknown_unit"
    assert reject_code(observation(glucose, valueQuantity=quantity(2, "g/L"))) == "unknown_unit"
    assert reject_code(observation(glucose, valueQuantity=quantity(4000, "mg/dL"))) == (
        "implausible_value"
    )
    assert reject_code(
        omh("oxygen-saturation", {"oxygen_saturation": {"value": 40, "unit": "%"}})
    ) == ("implausible_value")


def test_open_mhealth_oxygen_saturation_blood_glucose_and_heart_rate_are_stored() -> None:
    spo2 = the_reading(
        omh(
            "oxygen-saturation",
            {
                "oxygen_saturation": {"value": 95, "unit": "%"},
                "system": "peripheral capillary",
                "measurement_method": "pulse oximetry",
            },
        ),
        "OX-1",
    )
    glucose = the_reading(
        omh(
            "blood-glucose",
            {
                "blood_glucose": {"value": 6.4, "unit": "mmol/L"},
                "specimen_source": "capillary blood",
                "temporal_relationship_to_meal": "fasting",
            },
        ),
        "GL-1",
    )
    pulse = the_reading(omh("heart-rate", {"heart_rate": {"value": 61, "unit": "beats/min"}}))
    assert (spo2.type, spo2.spo2_pct, spo2.source_format) == ("spo2", 95, "openmhealth")
    assert glucose.type == "blood_glucose"
    assert glucose.glucose_mg_dl == pytest.approx(115.3, abs=0.05)
    assert (pulse.type, pulse.pulse_bpm) == ("heart_rate", 61)


# 5 and 6. Device references, and the context a gateway Bundle carries.

DEVICE_URN = "urn:uuid:8a3e1f52-7c0b-4c1e-9d7a-3f1b2c4d5e6f"
GATEWAY_URN = "urn:uuid:1b2c3d4e-5f60-4718-a9b0-c1d2e3f40516"
PATIENT_URN = "urn:uuid:0f1e2d3c-4b5a-4968-8776-655443322110"


def phd_device(
    serial: str = "SN-44107", sysid: str = "00-1C-05-FF-FE-00-71-2A"
) -> dict[str, object]:
    return {
        "resourceType": "Device",
        "identifier": [
            {"system": "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680", "value": sysid},
            {"system": "http://hl7.org/fhir/sid/eui-48/bluetooth", "value": "00-1C-05-71-2A-9E"},
        ],
        "serialNumber": serial,
        "type": coded((MDC, "65573")),
    }


def gateway_bundle(*observations: dict[str, object]) -> dict[str, object]:
    """A PHD gateway upload: Patient, PHD and gateway Devices, Provenance, then Observations."""
    entries: list[dict[str, object]] = [
        {
            "fullUrl": PATIENT_URN,
            "resource": {"resourceType": "Patient", "identifier": [{"value": "MRN-1"}]},
            "request": {"method": "POST", "url": "Patient"},
        },
        {"fullUrl": DEVICE_URN, "resource": phd_device(), "request": {"method": "POST"}},
        {
            "fullUrl": GATEWAY_URN,
            "resource": {
                "resourceType": "Device",
                "identifier": [{"value": "FE-ED-AB-EE-DE-AD-77-C3"}],
            },
        },
        {
            "fullUrl": "urn:uuid:5d6e7f80-91a2-4b3c-8d4e-5f6a7b8c9d0e",
            "resource": {
                "resourceType": "Provenance",
                "target": [{"reference": DEVICE_URN}],
                "agent": [{"who": {"reference": GATEWAY_URN}}],
            },
        },
        {
            "fullUrl": "urn:uuid:6e7f8091-a2b3-4c4d-9e5f-6a7b8c9d0e1f",
            "resource": {
                "resourceType": "Observation",
                "status": "final",
                "code": coded((MDC, "67975")),  # coincident time stamp: the device's clock
                "subject": {"reference": DEVICE_URN},
                "effectiveDateTime": "2026-11-03T14:16:02Z",
                "valueDateTime": "2026-11-03T14:16:00Z",
            },
        },
    ]
    for n, obs in enumerate(observations):
        entries.append({"fullUrl": f"urn:uuid:00000000-0000-4000-8000-{n:012d}", "resource": obs})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def phd_bp(device_ref: str = DEVICE_URN, **fields: object) -> dict[str, object]:
    return observation(
        coded((MDC, "150020")),
        id=None,
        identifier=[{"value": "00-1C-05-FF-FE-00-71-2A-20261103T141500"}],
        subject={"reference": PATIENT_URN},
        device={"reference": device_ref},
        extension=[
            {
                "url": "http://hl7.org/fhir/StructureDefinition/observation-gatewayDevice",
                "valueReference": {"reference": GATEWAY_URN},
            }
        ],
        component=[bp_component(MDC, "150021", 133), bp_component(MDC, "150022", 86)],
        **fields,
    )


def registry(*pairs: tuple[str, str]) -> Callable[[str], str | None]:
    """A resolver like ingest's: registered device ids, and serial numbers to device ids."""
    known = {device: device for _, device in pairs} | dict(pairs)
    return known.get


def test_gateway_bundle_context_entries_are_read_not_quarantined() -> None:
    result = one(gateway_bundle(phd_bp()), None)
    assert not result.rejects
    (r,) = result.readings
    assert (r.systolic_mmhg, r.diastolic_mmhg) == (133, 86)
    assert r.reading_id == "00-1C-05-FF-FE-00-71-2A-20261103T141500"
    # A Bundle of context only holds no readings: one reason, not one per entry.
    (reject,) = one(gateway_bundle(), None).rejects
    assert reject.code == "empty_batch"


def test_gateway_bundle_device_by_urn_uuid_maps_its_serial_number_to_the_registered_id() -> None:
    resolve = registry(("SN-44107", "BP-000123"))
    payload = orjson.dumps(
        gateway_bundle(phd_bp(), phd_bp(effectiveDateTime="2026-11-03T09:00:00-06:00"))
    )
    for topic_device in (None, "BP-000123"):
        result = decode(topic_device, payload, RECEIVED, resolve_device=resolve)
        assert not result.rejects
        assert [r.device_id for r in result.readings] == ["BP-000123", "BP-000123"]
    # The system identifier (EUI-64) registered as the serial number works the same way.
    by_sysid = registry(("00-1C-05-FF-FE-00-71-2A", "BP-000123"))
    (r,) = decode(
        None, orjson.dumps(gateway_bundle(phd_bp())), RECEIVED, resolve_device=by_sysid
    ).readings
    assert r.device_id == "BP-000123"
    # On another device's topic it is a mismatch, never stored under the topic's device.
    (reject,) = decode(
        "BP-000999",
        payload,
        RECEIVED,
        resolve_device=registry(("SN-44107", "BP-000123"), ("X", "BP-000999")),
    ).rejects[:1]
    assert reject.code == "device_mismatch"


def test_device_with_no_registered_identifier_is_an_unknown_device() -> None:
    payload = orjson.dumps(gateway_bundle(phd_bp()))
    (reject,) = decode(None, payload, RECEIVED, resolve_device=registry(("SN-1", "BP-1"))).rejects
    assert reject.code == "unknown_device" and "serial_number" in reject.reason
    assert "SN-44107" not in reject.reason


def test_contained_device_and_device_metric_source_are_resolved() -> None:
    resolve = registry(("SN-44107", "BP-000123"))
    contained = phd_bp("#cuff", contained=[{**phd_device(), "id": "cuff"}])
    (r,) = decode(None, orjson.dumps(contained), RECEIVED, resolve_device=resolve).readings
    assert r.device_id == "BP-000123"
    metric_urn = "urn:uuid:7f8091a2-b3c4-4d5e-8f60-7b8c9d0e1f20"
    bundle = gateway_bundle(phd_bp(metric_urn))
    entries = bundle["entry"]
    assert isinstance(entries, list)
    entries.insert(
        2,
        {
            "fullUrl": metric_urn,
            "resource": {
                "resourceType": "DeviceMetric",
                "type": coded((MDC, "150020")),
                "source": {"reference": DEVICE_URN},
                "category": "measurement",
            },
        },
    )
    (r,) = decode(None, orjson.dumps(bundle), RECEIVED, resolve_device=resolve).readings
    assert r.device_id == "BP-000123"
    # DeviceMetric/<id> listed in the Bundle by resource type and id.
    entries[2] = {"resource": {**entries[2]["resource"], "id": "m1"}}  # type: ignore[index]
    bundle["entry"] = [*entries[:-1], {"resource": phd_bp("DeviceMetric/m1")}]
    (r,) = decode(None, orjson.dumps(bundle), RECEIVED, resolve_device=resolve).readings
    assert r.device_id == "BP-000123"


def test_dangling_device_references_are_bad_identifiers() -> None:
    for ref in ("urn:uuid:00000000-0000-4000-8000-00000000dead", "#nothere", "DeviceMetric/m9"):
        assert reject_code(gateway_bundle(phd_bp(ref)), None) == "bad_identifier"


def test_device_reference_without_a_registry_takes_the_first_identifier() -> None:
    (r,) = one(gateway_bundle(phd_bp()), None).readings
    assert r.device_id == "SN-44107"
    # Device/<id> keeps meaning the registered device id, as before.
    assert the_reading(fhir_bp(), None).device_id == "BP-000123"


# 7. Periods and instants: one rule for FHIR and Open mHealth.


@pytest.mark.parametrize(
    ("start", "end", "outcome"),
    [
        (None, "2026-11-03T07:25:00-05:00", "instant"),
        ("2026-11-03T07:25:00-05:00", "2026-11-03T07:25:00-05:00", "instant"),
        ("2026-11-03T12:25:00Z", "2026-11-03T07:25:00-05:00", "instant"),
        ("2026-11-03T07:20:00-05:00", "2026-11-03T07:25:00-05:00", "not_a_measurement"),
        ("2026-11-03T07:25:00-05:00", None, "not_a_measurement"),
    ],
)
def test_fhir_period_and_open_mhealth_interval_follow_one_rule(
    start: str | None, end: str | None, outcome: str
) -> None:
    period = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
    interval = {
        k: v for k, v in (("start_date_time", start), ("end_date_time", end)) if v is not None
    }
    fhir = observation(
        coded((LOINC, "59408-5")),
        effectiveDateTime=None,
        effectivePeriod=period,
        valueQuantity=quantity(97, "%"),
    )
    open_mhealth = omh(
        "oxygen-saturation",
        {
            "oxygen_saturation": {"value": 97, "unit": "%"},
            "effective_time_frame": {"time_interval": interval},
        },
    )
    for doc in (fhir, open_mhealth):
        if outcome == "instant":
            assert the_reading(doc).measured_at == datetime(2026, 11, 3, 12, 25, tzinfo=UTC)
        else:
            assert reject_code(doc) == outcome


# 8. UCUM weight units.


@pytest.mark.parametrize(
    ("value", "code", "unit", "kg"),
    [
        (81400, "g", "g", 81.4),
        (2880, "[oz_av]", "ounces", 81.647),
        (12.8, "[stone_av]", "stone", 81.284),
        (179.4, "[lb_av]", "pounds", 81.374),
        (179.4, "[LB_AV]", "lb", 81.374),
    ],
)
def test_fhir_weight_in_ucum_units_uses_the_code_beside_the_text(
    value: float, code: str, unit: str, kg: float
) -> None:
    doc = observation(coded((LOINC, "29463-7")), valueQuantity=quantity(value, code, unit))
    assert the_reading(doc, None).weight_kg == pytest.approx(kg, abs=0.001)


def test_weight_given_only_as_text_outside_the_known_units_is_refused() -> None:
    doc = observation(coded((LOINC, "29463-7")), valueQuantity={"value": 180, "unit": "pounds"})
    assert reject_code(doc) == "unknown_unit"


# 9. Vendor payloads are said to be of an unsupported format.


@pytest.mark.parametrize(
    "doc",
    [
        {  # a cloud's "get measurements" response
            "status": 0,
            "body": {
                "updatetime": 1793800000,
                "measuregrps": [
                    {
                        "grpid": 1,
                        "date": 1793790000,
                        "measures": [{"value": 80500, "type": 1, "unit": -3}],
                    }
                ],
            },
        },
        {  # a webhook notification
            "event": "measurement.created",
            "data": {
                "deviceSerial": "SN-1",
                "systolic": 128,
                "diastolic": 82,
                "ts": "2026-11-03T07:00:00Z",
            },
        },
        {"bp": [{"dateTime": "2026-11-03T07:00:00Z", "sys": 128, "dia": 82}]},
        {"header": {"id": "x"}},
    ],
)
def test_vendor_api_payloads_are_unsupported_format_naming_the_accepted_formats(
    doc: dict[str, object],
) -> None:
    (reject,) = one(doc).rejects
    assert reject.code == "unsupported_format"
    assert "Open mHealth" in reject.reason and "FHIR" in reject.reason
    assert "native" in reject.reason


# 11. Date-only FHIR times.


@pytest.mark.parametrize("value", ["2026-11-03", "2026-11", "2026", "20261103"])
def test_date_only_fhir_time_is_naive_time_with_a_plain_reason(value: str) -> None:
    (reject,) = one(fhir_bp(effectiveDateTime=value)).rejects
    assert reject.code == "naive_time"
    assert "a date without a time of day" in reject.reason
    assert "patient's day" in reject.reason


# Any Bundle shape becomes readings or specific reasons: never an exception, and never the
# catch-all decoder_error that stands for one.

_times = (
    st.sampled_from(
        [
            "2026-11-03T07:25:00-05:00",
            "2026-11-03T12:25:00Z",
            "2026-11-03T07:30:00-05:00",
            "2026-11-03",
            "2026-11-03T07:25:00",
            "9999-12-31T23:59:59-14:00",
            "0001-01-01T00:00:00+01:00",
            "soon",
        ]
    )
    | st.none()
    | json_values
)
_refs = (
    st.sampled_from(
        [
            DEVICE_URN,
            GATEWAY_URN,
            PATIENT_URN,
            "urn:uuid:metric",
            "#c1",
            "#missing",
            "Device/BP-000123",
            "Device/",
            "DeviceMetric/m1",
            "https://fhir.example.org/Device/d1",
            "Patient/p1",
            "",
        ]
    )
    | json_values
)
_code_pool = st.sampled_from(
    [
        (LOINC, "85354-9"),
        (LOINC, "55284-4"),
        (MDC, "150020"),
        (LOINC, "8480-6"),
        (MDC, "150022"),
        (LOINC, "8867-4"),
        (LOINC, "29463-7"),
        (LOINC, "59408-5"),
        (LOINC, "2339-0"),
        (MDC, "160184"),
        (LOINC, "96607-7"),
        (MDC, "67975"),
        ("http://snomed.info/sct", "271649006"),
    ]
)
_codes = st.lists(_code_pool, max_size=3).map(lambda cs: coded(*cs)) | json_values
_quantities = st.fixed_dictionaries(
    {},
    optional={
        "value": st.integers(-5, 400)
        | st.floats(allow_nan=False, allow_infinity=False)
        | json_values,
        "unit": st.sampled_from(["mmHg", "%", "kg", "pounds", "mg/dL"]) | json_values,
        "code": st.sampled_from(["mm[Hg]", "%", "kg", "[lb_av]", "[stone_av]", "mmol/L", "/min"])
        | json_values,
        "system": st.sampled_from([UCUM, MDC]) | json_values,
    },
)
_components = st.lists(
    st.fixed_dictionaries({"code": _codes}, optional={"valueQuantity": _quantities}) | json_values,
    max_size=4,
)
_devices = st.fixed_dictionaries(
    {"resourceType": st.just("Device")},
    optional={
        "id": st.sampled_from(["c1", "d1", "BP-000123"]) | json_values,
        "serialNumber": st.sampled_from(["SN-44107", "SN-9", "", "../x"]) | json_values,
        "identifier": st.lists(
            st.fixed_dictionaries(
                {}, optional={"value": st.sampled_from(["SN-44107", "E-1"]) | json_values}
            )
            | json_values,
            max_size=3,
        )
        | json_values,
    },
)
_observations = st.fixed_dictionaries(
    {"resourceType": st.just("Observation")},
    optional={
        "id": st.sampled_from(["o1", "o2", "../o"]) | json_values,
        "status": st.sampled_from(["final", "preliminary", "registered", "cancelled"])
        | json_values,
        "code": _codes,
        "effectiveDateTime": _times,
        "effectivePeriod": st.fixed_dictionaries({}, optional={"start": _times, "end": _times})
        | json_values,
        "device": st.fixed_dictionaries(
            {},
            optional={
                "reference": _refs,
                "identifier": st.fixed_dictionaries({}, optional={"value": _refs}) | json_values,
            },
        )
        | json_values,
        "subject": st.fixed_dictionaries({}, optional={"reference": _refs}) | json_values,
        "valueQuantity": _quantities | json_values,
        "component": _components | json_values,
        "contained": st.lists(_devices | json_values, max_size=2) | json_values,
    },
)
_context = st.one_of(
    _devices,
    st.fixed_dictionaries(
        {"resourceType": st.just("DeviceMetric")},
        optional={
            "id": st.just("m1") | json_values,
            "source": st.fixed_dictionaries({}, optional={"reference": _refs}) | json_values,
        },
    ),
    st.fixed_dictionaries(
        {"resourceType": st.sampled_from(["Patient", "Provenance", "Condition"])}
    ),
)
_entries = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "fullUrl": st.sampled_from([DEVICE_URN, GATEWAY_URN, PATIENT_URN, "urn:uuid:metric"])
            | json_values,
            "resource": _observations | _context | json_values,
        },
    )
    | json_values,
    max_size=6,
)
_good_observations = st.builds(
    lambda ref, code, value, unit, when: observation(
        coded(code), device={"reference": ref}, valueQuantity=quantity(value, unit), **when
    ),
    _refs,
    _code_pool,
    st.integers(20, 200),
    st.sampled_from(["%", "kg", "[lb_av]", "mg/dL", "mmol/L", "/min"]),
    st.sampled_from(
        [
            {},
            {"effectiveDateTime": None, "effectivePeriod": {"end": "2026-11-03T07:25:00Z"}},
            {"effectiveDateTime": "2026-11-03T07:25:00"},
        ]
    ),
) | st.builds(phd_bp, _refs)
_bundles = st.fixed_dictionaries(
    {"resourceType": st.just("Bundle")},
    optional={
        "type": st.sampled_from(["transaction", "collection"]),
        "entry": _entries | json_values,
    },
) | st.builds(
    lambda good, extra: {**gateway_bundle(*good), "entry": gateway_bundle(*good)["entry"] + extra},
    st.lists(_good_observations, max_size=4),
    _entries,
)


@settings(max_examples=400, deadline=None)
@given(_bundles, st.sampled_from([None, "BP-000123"]), st.booleans())
def test_any_bundle_shape_gives_readings_or_specific_reasons(
    bundle: dict[str, object], topic_device: str | None, with_registry: bool
) -> None:
    resolve = registry(("SN-44107", "BP-000123")) if with_registry else None
    result = decode(topic_device, orjson.dumps(bundle), RECEIVED, resolve_device=resolve)
    assert result.readings or result.rejects
    assert all(r.code in REASON_CODES and r.code != "decoder_error" for r in result.rejects)
    for r in result.readings:
        assert r.measured_at >= EARLIEST and r.measured_at.tzinfo is not None
        if topic_device is not None:
            assert r.device_id == topic_device


def test_rejected_bundle_entry_is_kept_with_the_device_entries_it_refers_to() -> None:
    bad = phd_bp(status="registered")
    payload = orjson.dumps(gateway_bundle(phd_bp(), bad))
    (reject,) = decode(None, payload, RECEIVED).rejects
    kept = orjson.loads(reject.item)
    assert kept["resourceType"] == "Bundle"
    assert [e["resource"]["resourceType"] for e in kept["entry"]] == [
        "Device",
        "Device",
        "Observation",
    ]
    assert kept["entry"][-1]["resource"] == bad
    # Decoded again (a replay after the fix), the entry finds its device as the first time.
    fixed = reject.item.replace(b'"registered"', b'"final"')
    resolve = registry(("SN-44107", "BP-000123"))
    (r,) = decode(None, fixed, RECEIVED, resolve_device=resolve).readings
    assert r.device_id == "BP-000123"
