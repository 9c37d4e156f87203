"""IoT-monitored collateral: assets, devices, telemetry payloads, valuation and loan-to-value. Pure.

Units: money in integer fen (``*_minor``); quantities in integer grams (``*_g``) once they leave the
sensor (a scale reports ``weight_kg`` as a JSON number, rounded half-even to the gram on arrival); prices
in integer fen per kilogram (``price_minor_per_kg``); ratios in basis points (``*_bps``, 10 000 = 100 %).

Rounding, one rule each, both in the bank's favour:

* value ``= quantity_g x price_minor_per_kg x (10 000 - haircut_bps) // (1 000 x 10 000)`` (floor);
* LTV ``= ceil(outstanding_minor x 10 000 / value_minor)``; a zero value has no LTV and is in the
  liquidation band.

A telemetry message is ``{"device_id", "ts", "seq", "values", "sig"}``; ``sig`` is the lowercase hex
HMAC-SHA256, under the device's secret, of `canonical_payload` (see ADR 0009).
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from creditflow.kernel.errors import InvalidInput

BPS = 10_000
G_PER_KG = 1_000
MAX_QUANTITY_G = 10**13  # ten million tonnes: far above any lot, far below int64
MAX_PRICE_MINOR_PER_KG = 10**9


class AssetKind(enum.StrEnum):
    WAREHOUSE_LOT = "warehouse_lot"
    EQUIPMENT = "equipment"
    CROP_FIELD = "crop_field"


class DeviceKind(enum.StrEnum):
    SCALE = "scale"
    CAMERA = "camera"
    TRACKER = "tracker"  # GPS or satellite
    ENVIRONMENT = "environment"


class Severity(enum.StrEnum):
    CRITICAL = "CRITICAL"
    MAJOR = "MAJOR"
    MINOR = "MINOR"
    WARNING = "WARNING"


class LtvBand(enum.StrEnum):
    NORMAL = "NORMAL"
    WARNING = "WARNING"
    MARGIN_CALL = "MARGIN_CALL"
    LIQUIDATION = "LIQUIDATION"


BAND_ORDER = (LtvBand.NORMAL, LtvBand.WARNING, LtvBand.MARGIN_CALL, LtvBand.LIQUIDATION)

# --- telemetry ---------------------------------------------------------------------------------------

# metric -> (device kinds that may report it, lowest, highest physically possible value)
METRICS: dict[str, tuple[frozenset[DeviceKind], float, float]] = {
    "weight_kg": (frozenset({DeviceKind.SCALE}), 0.0, 1e7),
    "motion": (frozenset({DeviceKind.CAMERA}), 0.0, 1.0),
    "occlusion": (frozenset({DeviceKind.CAMERA}), 0.0, 1.0),
    "tamper": (frozenset({DeviceKind.CAMERA}), 0.0, 1.0),
    "person_count": (frozenset({DeviceKind.CAMERA}), 0.0, 1000.0),
    "lat": (frozenset({DeviceKind.TRACKER}), -90.0, 90.0),
    "lon": (frozenset({DeviceKind.TRACKER}), -180.0, 180.0),
    "speed_kmh": (frozenset({DeviceKind.TRACKER}), 0.0, 400.0),
    "soil_moisture_pct": (frozenset({DeviceKind.ENVIRONMENT}), 0.0, 100.0),
    "air_temp_c": (frozenset({DeviceKind.ENVIRONMENT}), -60.0, 70.0),
    "soil_temp_c": (frozenset({DeviceKind.ENVIRONMENT}), -40.0, 80.0),
    "light_lux": (frozenset({DeviceKind.ENVIRONMENT}), 0.0, 200_000.0),
    "humidity_pct": (frozenset({DeviceKind.ENVIRONMENT}), 0.0, 100.0),
    "battery_pct": (frozenset(DeviceKind), 0.0, 100.0),
}
ALLOWED_DEVICES: dict[AssetKind, frozenset[DeviceKind]] = {
    AssetKind.WAREHOUSE_LOT: frozenset({DeviceKind.SCALE, DeviceKind.CAMERA}),
    AssetKind.EQUIPMENT: frozenset({DeviceKind.TRACKER, DeviceKind.CAMERA}),
    AssetKind.CROP_FIELD: frozenset({DeviceKind.ENVIRONMENT, DeviceKind.CAMERA}),
}


class RejectReason(enum.StrEnum):
    MALFORMED = "malformed"
    UNKNOWN_DEVICE = "unknown_device"
    BAD_SIGNATURE = "bad_signature"
    OUT_OF_RANGE = "out_of_range"
    REPLAYED_SEQ = "replayed_seq"
    DUPLICATE = "duplicate"  # the same message again (a QoS 1 redelivery): already stored, nothing to do
    TOO_LARGE = "too_large"


@dataclass(frozen=True, slots=True)
class Telemetry:
    """A parsed, not yet authenticated, message. ``values_json`` is `canonical_values` of ``values``:
    serialised once, both signed over and stored."""

    device_id: str
    ts_ms: int
    seq: int
    values: dict[str, float]
    sig: str
    values_json: str


class Rejected(Exception):
    """A message refused by ingest: counted and dead-lettered, never raised past the pipeline."""

    def __init__(self, reason: RejectReason, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def canonical_values(values: Mapping[str, float]) -> str:
    """The ``values`` object as it appears in `canonical_payload` (and as readings store it)."""
    return _CANONICAL_JSON.encode(dict(values))


def canonical_payload(
    device_id: str, ts_ms: int, seq: int, values: Mapping[str, float], *, values_json: str | None = None
) -> bytes:
    """The bytes a device signs: compact JSON, keys sorted, ASCII only, numbers as Python writes them
    (shortest round-trip form; integers without a decimal point).

    That is ``{"device_id":...,"seq":...,"ts":...,"values":{...}}`` (the keys in sorted order), so it is
    assembled from its parts, reusing ``values_json`` when the caller already has it."""
    if type(ts_ms) is not int or type(seq) is not int or not isinstance(device_id, str):
        body = {"device_id": device_id, "seq": seq, "ts": ts_ms, "values": dict(values)}
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()
    if values_json is None:
        values_json = canonical_values(values)
    return f'{{"device_id":{json.dumps(device_id)},"seq":{seq},"ts":{ts_ms},"values":{values_json}}}'.encode()


def sign_payload(
    secret: bytes, device_id: str, ts_ms: int, seq: int, values: Mapping[str, float], *, values_json: str | None = None
) -> str:
    payload = canonical_payload(device_id, ts_ms, seq, values, values_json=values_json)
    return hmac.new(secret, payload, hashlib.sha256).hexdigest()


def make_message(secret: bytes, device_id: str, ts_ms: int, seq: int, values: Mapping[str, float]) -> bytes:
    """A signed message as a device publishes it."""
    sig = sign_payload(secret, device_id, ts_ms, seq, values)
    return json.dumps({"device_id": device_id, "ts": ts_ms, "seq": seq, "values": dict(values), "sig": sig}).encode()


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_message(raw: bytes | str | Mapping[str, Any], topic_device_id: str | None, max_values: int) -> Telemetry:
    """Parse and shape-check a message; raise `Rejected` (``malformed``) naming what is wrong. When the
    message came on a device topic, the topic's device id must match the payload's."""
    if isinstance(raw, Mapping):
        doc: Any = raw
    else:
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise Rejected(RejectReason.MALFORMED, f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise Rejected(RejectReason.MALFORMED, "the message must be a JSON object")
    device_id = doc.get("device_id", topic_device_id)
    if not isinstance(device_id, str) or not device_id:
        raise Rejected(RejectReason.MALFORMED, "device_id must be a non-empty string")
    if topic_device_id is not None and device_id != topic_device_id:
        raise Rejected(RejectReason.MALFORMED, "device_id does not match the topic")
    ts, seq, values, sig = doc.get("ts"), doc.get("seq"), doc.get("values"), doc.get("sig")
    if isinstance(ts, bool) or not isinstance(ts, int) or ts <= 0:
        raise Rejected(RejectReason.MALFORMED, "ts must be a positive integer (ms since the epoch)")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 2**63:
        raise Rejected(RejectReason.MALFORMED, "seq must be a non-negative integer")
    if not isinstance(values, dict) or not values or len(values) > max_values:
        raise Rejected(RejectReason.MALFORMED, f"values must be an object with 1 to {max_values} entries")
    for name, value in values.items():
        if not _number(value):
            raise Rejected(RejectReason.MALFORMED, f"values.{name} must be a finite number")
    if not isinstance(sig, str) or len(sig) != 64:
        raise Rejected(RejectReason.MALFORMED, "sig must be 64 hex characters")
    return Telemetry(device_id, ts, seq, values, sig.lower(), canonical_values(values))


def verify_signature(message: Telemetry, secret: bytes) -> None:
    expected = sign_payload(
        secret, message.device_id, message.ts_ms, message.seq, message.values, values_json=message.values_json
    )
    if not hmac.compare_digest(expected, message.sig):
        raise Rejected(RejectReason.BAD_SIGNATURE, "the signature does not match the device's secret")


def check_ranges(message: Telemetry, kind: DeviceKind) -> None:
    for name, value in message.values.items():
        spec = METRICS.get(name)
        if spec is None or kind not in spec[0]:
            raise Rejected(RejectReason.OUT_OF_RANGE, f"values.{name} is not a metric of a {kind.value}")
        if not spec[1] <= value <= spec[2]:
            raise Rejected(RejectReason.OUT_OF_RANGE, f"values.{name}={value} outside [{spec[1]:g}, {spec[2]:g}]")


def kg_to_g(kg: float) -> int:
    return round(kg * G_PER_KG)


# --- geometry ----------------------------------------------------------------------------------------

Point = tuple[float, float]  # (lat, lon)


def check_polygon(points: Sequence[Sequence[float]], *, field: str = "geofence") -> list[Point]:
    if not 3 <= len(points) <= 1000:
        raise InvalidInput(f"{field} needs 3 to 1000 points", code="invalid_geofence", field=field)
    out: list[Point] = []
    for p in points:
        if len(p) != 2 or not all(_number(c) for c in p) or not (-90 <= p[0] <= 90 and -180 <= p[1] <= 180):
            raise InvalidInput(f"{field} points are [lat, lon] pairs in range", code="invalid_geofence", field=field)
        out.append((float(p[0]), float(p[1])))
    return out


def inside(point: Point, polygon: Sequence[Point]) -> bool:
    """Ray casting (even-odd); a polygon a few km across is flat enough for lat/lon as plane coordinates."""
    lat, lon = point
    result = False
    j = len(polygon) - 1
    for i in range(len(polygon)):
        lat_i, lon_i = polygon[i]
        lat_j, lon_j = polygon[j]
        if (lon_i > lon) != (lon_j > lon):
            cross = (lat_j - lat_i) * (lon - lon_i) / (lon_j - lon_i) + lat_i
            if lat < cross:
                result = not result
        j = i
    return result


def distance_m(a: Point, b: Point) -> float:
    """Great-circle distance (haversine), metres."""
    r = 6_371_000.0
    p1, p2 = math.radians(a[0]), math.radians(b[0])
    dp, dl = p2 - p1, math.radians(b[1] - a[1])
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(min(1.0, math.sqrt(h)))


def local_hour(ts_ms: int, utc_offset_minutes: int) -> int:
    return dt.datetime.fromtimestamp(ts_ms / 1000 + utc_offset_minutes * 60, dt.UTC).hour


# --- valuation and LTV -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LtvBands:
    warning_bps: int
    margin_call_bps: int
    liquidation_bps: int

    def __post_init__(self) -> None:
        if not 0 < self.warning_bps < self.margin_call_bps < self.liquidation_bps <= 100 * BPS:
            raise InvalidInput("LTV bands must rise: 0 < warning < margin call < liquidation", code="invalid_bands")

    def threshold(self, band: LtvBand) -> int:
        return {
            LtvBand.NORMAL: 0,
            LtvBand.WARNING: self.warning_bps,
            LtvBand.MARGIN_CALL: self.margin_call_bps,
            LtvBand.LIQUIDATION: self.liquidation_bps,
        }[band]


def check_haircut(haircut_bps: int) -> int:
    if isinstance(haircut_bps, bool) or not isinstance(haircut_bps, int) or not 0 <= haircut_bps < BPS:
        raise InvalidInput("haircut_bps must be an integer in [0, 10000)", code="invalid_haircut", field="haircut_bps")
    return haircut_bps


def goods_value_minor(quantity_g: int, price_minor_per_kg: int, haircut_bps: int) -> int:
    """Lendable value of goods: quantity x price x (1 - haircut), floored to the fen."""
    assert quantity_g >= 0 and price_minor_per_kg >= 0 and 0 <= haircut_bps < BPS
    return quantity_g * price_minor_per_kg * (BPS - haircut_bps) // (G_PER_KG * BPS)


def crop_value_minor(expected_yield_g: int, price_minor_per_kg: int, health_index: int, haircut_bps: int) -> int:
    """Value of the expected harvest scaled by the field's health index (0-100)."""
    assert 0 <= health_index <= 100
    return expected_yield_g * health_index * price_minor_per_kg * (BPS - haircut_bps) // (100 * G_PER_KG * BPS)


def appraised_value_minor(appraised_minor: int, haircut_bps: int) -> int:
    return appraised_minor * (BPS - haircut_bps) // BPS


def ltv_bps(outstanding_minor: int, value_minor: int) -> int | None:
    """ceil(outstanding / value) in bps; None when there is no value to lend against."""
    assert outstanding_minor >= 0 and value_minor >= 0
    if value_minor == 0:
        return None if outstanding_minor > 0 else 0
    return -(-outstanding_minor * BPS // value_minor)


def band_for(ltv: int | None, bands: LtvBands, current: LtvBand = LtvBand.NORMAL, hysteresis_bps: int = 0) -> LtvBand:
    """The band an LTV falls in. Moving up is immediate; moving down needs the LTV ``hysteresis_bps``
    below the current band's threshold, so a loan hovering on a line does not flap."""
    if ltv is None:
        return LtvBand.LIQUIDATION
    raw = LtvBand.NORMAL
    for band in BAND_ORDER[1:]:
        if ltv >= bands.threshold(band):
            raw = band
    if BAND_ORDER.index(raw) >= BAND_ORDER.index(current):
        return raw
    # Going down: step down only as far as the hysteresis allows.
    result = current
    while BAND_ORDER.index(result) > BAND_ORDER.index(raw) and ltv < bands.threshold(result) - hysteresis_bps:
        result = BAND_ORDER[BAND_ORDER.index(result) - 1]
    return result


def blocks_financing(band: LtvBand) -> bool:
    return band in (LtvBand.MARGIN_CALL, LtvBand.LIQUIDATION)


# --- consent: what a borrower and a lender sign ------------------------------------------------------------

CONSENT_CONTEXT = b"creditflow/collateral-consent/v1\x00"


class ProposalStatus(enum.StrEnum):
    """A loan or a pledge: proposed by the lender until the borrower (the asset's owner) decides."""

    PROPOSED = "proposed"
    ACCEPTED = "accepted"
    REFUSED = "refused"


def loan_terms(
    loan_id: str, borrower: str, lender: str, outstanding_minor: int, currency: str, bands_key: str, proposed_ts_ms: int
) -> dict[str, Any]:
    """The terms of a collateral loan both parties sign (the principal as proposed)."""
    return {
        "v": 1,
        "kind": "collateral_loan",
        "loan_id": loan_id,
        "borrower": borrower,
        "lender": lender,
        "principal_minor": outstanding_minor,
        "currency": currency,
        "bands_key": bands_key,
        "proposed_ts_ms": proposed_ts_ms,
    }


def pledge_terms(
    proposal_id: str,
    loan_id: str,
    loan_terms_digest: str,
    asset_id: str,
    haircut_bps: int,
    lender: str,
    borrower: str,
    proposed_ts_ms: int,
) -> dict[str, Any]:
    """The terms of one pledge: this asset secures that loan (named by its terms' digest) at this haircut."""
    return {
        "v": 1,
        "kind": "collateral_pledge",
        "proposal_id": proposal_id,
        "loan_id": loan_id,
        "loan_terms_digest": loan_terms_digest,
        "asset_id": asset_id,
        "haircut_bps": haircut_bps,
        "lender": lender,
        "borrower": borrower,
        "proposed_ts_ms": proposed_ts_ms,
    }


def consent_message(canonical_terms: bytes) -> bytes:
    """What each party's Ed25519 key signs: the context prefix and the canonical bytes of the terms."""
    return CONSENT_CONTEXT + canonical_terms


def terms_digest(canonical_terms: bytes) -> str:
    return hashlib.sha256(consent_message(canonical_terms)).hexdigest()
