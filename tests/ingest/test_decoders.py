"""Decoders: every format, every reject code, and hostile input never raising."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rpmpipe.ingest.decoders import MAX_JSON_DEPTH, MAX_PAYLOAD_BYTES, Decoded, decode
from rpmpipe.ingest.reasons import REASON_CODES
from rpmpipe.ingest.validation import EARLIEST

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
            fhir_bp(code={"coding": [{"system": "http://loinc.org", "code": "2339-0"}]}),
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
