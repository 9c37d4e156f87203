"""The collateral rules, in the domain's own language: readings in, alarm changes out."""

from __future__ import annotations

import datetime as dt

from creditflow.collateral.model import AssetKind, DeviceKind
from creditflow.collateral.rules import (
    AFTER_HOURS,
    CROP_DROUGHT,
    CROP_FROST,
    GEOFENCE,
    OFFLINE,
    OUTBOUND,
    TAMPER,
    AssetContext,
    AssetState,
    Reading,
    RuleParams,
    apply_reading,
    reevaluate,
    tick,
)

TZ = dt.timezone(dt.timedelta(hours=8))
NOON = int(dt.datetime(2026, 3, 2, 12, 0, tzinfo=TZ).timestamp() * 1000)
NIGHT = int(dt.datetime(2026, 3, 2, 23, 0, tzinfo=TZ).timestamp() * 1000)
MIN = 60_000
P = RuleParams(clear_holdoff_ms=5 * MIN)

LOT = AssetContext(
    "lot",
    AssetKind.WAREHOUSE_LOT,
    {"s1": (DeviceKind.SCALE, NOON), "s2": (DeviceKind.SCALE, NOON), "cam": (DeviceKind.CAMERA, NOON)},
    expected_g=100_000_000,
)
SITE = ((34.26, 117.18), (34.26, 117.19), (34.27, 117.19), (34.27, 117.18))
DIGGER = AssetContext("digger", AssetKind.EQUIPMENT, {"gps": (DeviceKind.TRACKER, NOON)}, geofence=SITE)
FIELD = AssetContext("tea", AssetKind.CROP_FIELD, {"env": (DeviceKind.ENVIRONMENT, NOON)}, crop="tea")


def scale(device: str, kg: float, ts: int, rx: int | None = None) -> Reading:
    return Reading(device, DeviceKind.SCALE, ts, rx if rx is not None else ts, {"weight_kg": kg})


def weigh(state: AssetState, kg_each: float, ts: int, ctx: AssetContext = LOT) -> list[str]:
    out = []
    for d in ("s1", "s2"):
        out += [f"{c.action}:{c.alarm_type}" for c in apply_reading(ctx, state, scale(d, kg_each, ts), P)]
    return [o for o in out if o.endswith(OUTBOUND)]  # the silent camera goes offline; not the subject here


def test_weight_drop_beyond_tolerance_is_critical_and_raised_once() -> None:
    state = AssetState()
    assert weigh(state, 50_000, NOON) == []
    changes = apply_reading(LOT, state, scale("s1", 48_000, NOON + MIN), P)
    assert [(c.action, c.alarm_type, c.severity.value) for c in changes] == [("raise", OUTBOUND, "CRITICAL")]
    assert changes[0].details["drop_g"] == 2_000_000 and changes[0].details["confidence"] == "medium"
    assert weigh(state, 48_000, NOON + 2 * MIN) == []  # still short: no second raise


def test_drop_within_tolerance_raises_nothing() -> None:
    state = AssetState()
    weigh(state, 50_000, NOON)
    assert weigh(state, 49_600, NOON + MIN) == []  # 800 kg of 100 t: within 1 %


def test_camera_motion_in_the_window_raises_confidence() -> None:
    state = AssetState()
    weigh(state, 50_000, NOON)
    apply_reading(LOT, state, Reading("cam", DeviceKind.CAMERA, NOON + MIN, NOON + MIN, {"motion": 1.0}), P)
    changes = apply_reading(LOT, state, scale("s1", 47_000, NOON + 2 * MIN), P)
    assert changes[0].details["confidence"] == "high"
    # motion after the raise upgrades the active alarm
    state2 = AssetState()
    weigh(state2, 50_000, NOON)
    apply_reading(LOT, state2, scale("s1", 47_000, NOON + MIN), P)
    update = apply_reading(
        LOT, state2, Reading("cam", DeviceKind.CAMERA, NOON + 2 * MIN, NOON + 2 * MIN, {"motion": 1.0}), P
    )
    assert [(c.action, c.details["confidence"]) for c in update] == [("update", "high")]


def test_clearing_waits_for_the_hold_off() -> None:
    state = AssetState()
    weigh(state, 50_000, NOON)
    weigh(state, 48_000, NOON + MIN)
    assert weigh(state, 50_000, NOON + 2 * MIN) == []  # back in range, hold-off starts
    assert weigh(state, 48_000, NOON + 3 * MIN) == []  # short again: hold-off resets, no flapping
    assert weigh(state, 50_000, NOON + 4 * MIN) == []
    assert weigh(state, 50_000, NOON + 8 * MIN) == []
    assert weigh(state, 50_000, NOON + 9 * MIN) == ["clear:unauthorised_outbound"]


def test_authorised_release_makes_the_matching_drop_silent() -> None:
    state = AssetState()
    weigh(state, 50_000, NOON)
    released = AssetContext(LOT.asset_id, LOT.kind, LOT.devices, expected_g=LOT.expected_g - 10_000_000)
    assert reevaluate(released, state, NOON + MIN, P) == []
    assert weigh(state, 45_000, NOON + 2 * MIN, released) == []
    assert state.measured_g == 90_000_000
    assert weigh(state, 43_000, NOON + 3 * MIN, released) == ["raise:unauthorised_outbound"]  # beyond the release


def test_out_of_order_reading_does_not_move_the_latest_value() -> None:
    state = AssetState()
    weigh(state, 50_000, NOON + 10 * MIN)
    # a reading from before (buffered on the device) arrives late: an old, lower weight must not raise
    assert apply_reading(LOT, state, scale("s1", 40_000, NOON, rx=NOON + 11 * MIN), P) == []
    assert state.latest["s1"][0] == NOON + 10 * MIN and state.measured_g == 100_000_000
    assert state.last_rx["s1"] == NOON + 11 * MIN  # but it proves the device is alive


def test_leaving_the_geofence_is_critical_and_moving_at_night_major() -> None:
    state = AssetState()
    day_out = apply_reading(
        DIGGER,
        state,
        Reading("gps", DeviceKind.TRACKER, NOON, NOON, {"lat": 34.30, "lon": 117.185, "speed_kmh": 20.0}),
        P,
    )
    assert [(c.action, c.alarm_type) for c in day_out] == [("raise", GEOFENCE)]  # business hours: no MAJOR
    night = AssetState()
    apply_reading(DIGGER, night, Reading("gps", DeviceKind.TRACKER, NIGHT, NIGHT, {"lat": 34.265, "lon": 117.185}), P)
    moved = apply_reading(
        DIGGER, night, Reading("gps", DeviceKind.TRACKER, NIGHT + MIN, NIGHT + MIN, {"lat": 34.266, "lon": 117.185}), P
    )
    assert [(c.alarm_type, c.severity.value) for c in moved] == [(AFTER_HOURS, "MAJOR")]  # 111 m inside the site


def test_offline_after_missed_heartbeats_by_receive_time() -> None:
    state = AssetState()
    ctx = AssetContext("lot", AssetKind.WAREHOUSE_LOT, {"s1": (DeviceKind.SCALE, NOON)}, expected_g=50_000_000)
    apply_reading(ctx, state, scale("s1", 50_000, NOON), P)
    assert tick(ctx, state, NOON + 3 * MIN, P) == []  # exactly 3 heartbeats: not yet
    changes = tick(ctx, state, NOON + 3 * MIN + 1, P)
    assert [(c.action, c.alarm_type, c.details["devices"]) for c in changes] == [("raise", OFFLINE, ["s1"])]
    # device time far in the past, received now: it is alive (offline is judged on receive time)
    assert apply_reading(ctx, state, scale("s1", 50_000, NOON - 60 * MIN, rx=NOON + 4 * MIN), P) == []
    back = [
        (c.action, c.alarm_type)
        for m in range(5, 10)
        for c in apply_reading(ctx, state, scale("s1", 50_000, NOON + m * MIN), P)
    ]
    assert back == [("clear", OFFLINE)]  # 5 minutes back (the hold-off), on receive time


def test_camera_occlusion_is_critical() -> None:
    state = AssetState()
    changes = apply_reading(LOT, state, Reading("cam", DeviceKind.CAMERA, NOON, NOON, {"occlusion": 1.0}), P)
    assert [(c.alarm_type, c.severity.value) for c in changes] == [(TAMPER, "CRITICAL")]


def test_crop_stress_must_be_sustained_and_lowers_health() -> None:
    state = AssetState()

    def env(ts: int, **values: float) -> list[str]:
        return [
            f"{c.action}:{c.alarm_type}"
            for c in apply_reading(FIELD, state, Reading("env", DeviceKind.ENVIRONMENT, ts, ts, values), P)
        ]

    assert env(NIGHT, air_temp_c=-2.0) == []  # a single cold spike
    assert env(NIGHT + 10 * MIN, air_temp_c=3.0) == []  # gone again: nothing
    assert env(NIGHT + 20 * MIN, air_temp_c=-1.0) == []
    assert env(NIGHT + 49 * MIN, air_temp_c=-1.5) == []
    assert env(NIGHT + 50 * MIN, air_temp_c=-1.5) == [f"raise:{CROP_FROST}"]  # 30 minutes sustained
    assert state.health_index == 60
    assert env(NIGHT + 60 * MIN, soil_moisture_pct=10.0) == []
    assert env(NIGHT + 60 * MIN + 6 * 3_600_000, soil_moisture_pct=12.0) == [f"raise:{CROP_DROUGHT}"]
    assert state.health_index == 30


def test_state_survives_json_round_trip() -> None:
    state = AssetState()
    weigh(state, 50_000, NOON)
    weigh(state, 48_000, NOON + MIN)
    again = AssetState.from_json(state.to_json())
    assert again == state
