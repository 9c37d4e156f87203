"""Telemetry payloads: the canonical bytes devices sign (golden vector), parsing and physical ranges."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from creditflow.collateral.model import (
    DeviceKind,
    Rejected,
    RejectReason,
    canonical_payload,
    check_ranges,
    make_message,
    parse_message,
    verify_signature,
)

SECRET = bytes(range(32))


def test_canonical_payload_golden_vector() -> None:
    payload = canonical_payload("scale-1", 1772460000000, 42, {"weight_kg": 49875.5, "battery_pct": 88})
    assert (
        payload
        == b'{"device_id":"scale-1","seq":42,"ts":1772460000000,"values":{"battery_pct":88,"weight_kg":49875.5}}'
    )
    assert (
        hmac.new(SECRET, payload, hashlib.sha256).hexdigest()
        == json.loads(make_message(SECRET, "scale-1", 1772460000000, 42, {"weight_kg": 49875.5, "battery_pct": 88}))[
            "sig"
        ]
    )


def test_signed_message_round_trips_and_tampering_is_caught() -> None:
    raw = make_message(SECRET, "scale-1", 1772460000000, 1, {"weight_kg": 100.0})
    message = parse_message(raw, "scale-1", 16)
    verify_signature(message, SECRET)
    doc = json.loads(raw)
    doc["values"]["weight_kg"] = 90.0
    with pytest.raises(Rejected) as caught:
        verify_signature(parse_message(json.dumps(doc).encode(), "scale-1", 16), SECRET)
    assert caught.value.reason is RejectReason.BAD_SIGNATURE


@pytest.mark.parametrize(
    ("raw", "topic", "fragment"),
    [
        (b"{not json", None, "not JSON"),
        (b"[]", None, "JSON object"),
        (b'{"device_id":"a","ts":1,"seq":1,"values":{"weight_kg":1},"sig":"' + b"0" * 64 + b'"}', "b", "topic"),
        (b'{"device_id":"a","ts":"1","seq":1,"values":{"weight_kg":1},"sig":"' + b"0" * 64 + b'"}', None, "ts"),
        (b'{"device_id":"a","ts":1,"seq":-1,"values":{"weight_kg":1},"sig":"' + b"0" * 64 + b'"}', None, "seq"),
        (b'{"device_id":"a","ts":1,"seq":1,"values":{},"sig":"' + b"0" * 64 + b'"}', None, "values"),
        (b'{"device_id":"a","ts":1,"seq":1,"values":{"weight_kg":true},"sig":"' + b"0" * 64 + b'"}', None, "finite"),
        (b'{"device_id":"a","ts":1,"seq":1,"values":{"weight_kg":1},"sig":"ab"}', None, "sig"),
    ],
)
def test_malformed_messages_are_rejected_with_the_reason(raw: bytes, topic: str | None, fragment: str) -> None:
    with pytest.raises(Rejected) as caught:
        parse_message(raw, topic, 16)
    assert caught.value.reason is RejectReason.MALFORMED and fragment in caught.value.detail


def test_physical_ranges_and_metrics_per_device_kind() -> None:
    ok = parse_message(make_message(SECRET, "g", 1, 1, {"lat": 34.2, "lon": 117.1}), None, 16)
    check_ranges(ok, DeviceKind.TRACKER)
    for values, kind in (
        ({"lat": 95.0, "lon": 1.0}, DeviceKind.TRACKER),
        ({"weight_kg": -1.0}, DeviceKind.SCALE),
        ({"weight_kg": 5.0}, DeviceKind.CAMERA),
        ({"air_temp_c": 90.0}, DeviceKind.ENVIRONMENT),
    ):
        message = parse_message(make_message(SECRET, "d", 1, 1, values), None, 16)
        with pytest.raises(Rejected) as caught:
            check_ranges(message, kind)
        assert caught.value.reason is RejectReason.OUT_OF_RANGE
