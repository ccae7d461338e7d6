"""The quarantine reason codes ingest can give, each with what it means (pure data).

Every ``DecodeError`` code and every code the pipeline assigns must be listed here: the CLI
checks ``--reason`` against these, and a test pins that the sources raise no other code.
"""

from __future__ import annotations

REASON_CODES: dict[str, str] = {
    "bad_activity": "a care activity field is missing or invalid",
    "bad_identifier": "an id holds characters outside A-Z a-z 0-9 _ . : -",
    "bad_json": "the payload is not valid UTF-8 JSON",
    "bad_status": (
        "the FHIR Observation status is not final, amended, corrected or preliminary "
        "(registered: no result yet)"
    ),
    "bad_time": "a time is not an ISO 8601 date-time or is out of range",
    "conflicting_duplicate": "a reading id already stored for the device with other values",
    "bad_value": "a measurement or flag has the wrong JSON type",
    "decoder_error": "the payload could not be decoded (unexpected shape)",
    "device_mismatch": "the payload's device differs from the topic's device",
    "empty_batch": "the payload holds no readings or activities",
    "internal_error": "handling the message failed with an unexpected error (its type is named)",
    "implausible_value": "a measurement is outside the physiologic range",
    "missing_field": "a required field is absent",
    "naive_time": "a time has no UTC offset, or is a date without a time of day",
    "not_a_measurement": (
        "a statistic (average, minimum, ...) or a value over an interval, not a reading on a day"
    ),
    "too_deep": "the JSON nests too deeply",
    "too_large": "the payload or its extra fields are too large",
    "too_many_items": "a batch holds too many readings",
    "unknown_device": "the device is not in the registry",
    "unknown_patient": "the activity's patient is not in the registry",
    "unknown_topic": "the topic is not a readings or activities topic of this topic root",
    "unknown_type": "the reading type is not one rpmpipe stores",
    "unknown_unit": "a unit is not one rpmpipe converts",
    "unsupported_format": (
        "the payload is JSON but not a native reading, Open mHealth data point or FHIR "
        "Observation/Bundle (a vendor API response, a webhook body, another FHIR resource)"
    ),
}


def check_reason_code(code: str) -> str:
    """``code`` if known; else ValueError with a sentence listing the known codes."""
    if code not in REASON_CODES:
        raise ValueError(
            f"unknown reason code {code!r}; known codes: {', '.join(sorted(REASON_CODES))}"
        )
    return code
