"""The collateral rules engine. Pure: readings and times in, alarm changes out.

Each rule is a *condition* per (asset, alarm type) with hysteresis (`Cond.track`): it raises once the
condition has held for the rule's sustain time (0 = at once) and clears only after the condition has been
false for ``clear_holdoff_ms``. Times are device times, except when a device's clock is skewed beyond the
bound (then its receive time) and for "offline", which is judged on receive time only.

A late reading (device time older than the newest already seen from that device) is stored and flagged by
the service but does not move any rule: "latest" is the reading with the newest device time.

| alarm type              | severity | condition                                                             |
| ----------------------- | -------- | --------------------------------------------------------------------- |
| unauthorised_outbound   | CRITICAL | expected - measured weight > tolerance (camera motion: confidence high) |
| geofence_breach         | CRITICAL | tracker position outside the asset's polygon                          |
| after_hours_movement    | MAJOR    | moving (speed or displacement) outside business hours                 |
| device_offline          | MAJOR    | a bound device silent for N heartbeats (receive time)                 |
| camera_tamper           | CRITICAL | occlusion or tamper reported                                          |
| crop_frost / crop_heat / crop_drought / crop_waterlogging / crop_low_light | MAJOR/MINOR | sustained beyond the crop profile |

Each rule is one pure function plus one entry in `RULES` (its alarm types with their severity, its parameters
with defaults and validation bounds); `SEVERITY`, `RULE_PARAMS` and the rule settings of
`creditflow.collateral.settings.IotSettings` are derived from the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from creditflow.collateral.model import (
    AssetKind,
    DeviceKind,
    Point,
    Severity,
    distance_m,
    inside,
    kg_to_g,
    local_hour,
)

OUTBOUND = "unauthorised_outbound"
GEOFENCE = "geofence_breach"
AFTER_HOURS = "after_hours_movement"
OFFLINE = "device_offline"
TAMPER = "camera_tamper"
CROP_FROST = "crop_frost"
CROP_HEAT = "crop_heat"
CROP_DROUGHT = "crop_drought"
CROP_WATERLOGGING = "crop_waterlogging"
CROP_LOW_LIGHT = "crop_low_light"


@dataclass(frozen=True, slots=True)
class Param:
    """A rule parameter: its name (also the setting's: ``IotSettings.<name>``, ``CREDITFLOW_IOT__<NAME>``),
    type, default and validation bounds."""

    name: str
    annotation: Any
    default: Any = None
    default_factory: Callable[[], Any] | None = None
    ge: float | None = None
    le: float | None = None
    description: str | None = None

    def default_value(self) -> Any:
        return self.default_factory() if self.default_factory is not None else self.default


# Parameters more than one rule reads (and the price import, for local dates).
SHARED_PARAMS = (
    Param("clear_holdoff_ms", int, 5 * 60_000, ge=0, description="back in range this long before an alarm clears"),
    Param("utc_offset_minutes", int, 8 * 60, ge=-720, le=840, description="local time of sites (China: +08:00)"),
)
OFFLINE_PARAMS = (
    Param("heartbeat_ms", int, 60_000, ge=1_000, description="devices report at least this often"),
    Param("offline_missed_heartbeats", int, 3, ge=1, le=100, description="silent this many heartbeats = offline"),
)
OUTBOUND_PARAMS = (
    Param("outbound_tolerance_bps", int, 100, ge=0, le=10_000, description="weight drop tolerated, of expected"),
    Param("outbound_tolerance_g", int, 50_000, ge=0, description="weight drop tolerated, absolute floor (g)"),
    Param("motion_window_ms", int, 10 * 60_000, ge=0, description="camera motion this close raises confidence"),
)
EQUIPMENT_PARAMS = (
    Param(
        "business_hours", tuple[int, int], (7, 19), description="local [start, end) hours; movement outside is MAJOR"
    ),
    Param("move_speed_kmh", float, 3.0, ge=0),
    Param("move_distance_m", float, 50.0, ge=0),
)


@dataclass(frozen=True, slots=True)
class CropProfile:
    soil_moisture_min_pct: float = 20.0
    soil_moisture_max_pct: float = 85.0
    frost_c: float = 0.0
    heat_c: float = 35.0
    light_min_lux: float = 2_000.0
    daylight_hours: tuple[int, int] = (10, 15)  # local hours when low light counts
    frost_sustain_ms: int = 30 * 60_000
    heat_sustain_ms: int = 2 * 3_600_000
    drought_sustain_ms: int = 6 * 3_600_000
    waterlogging_sustain_ms: int = 12 * 3_600_000
    low_light_sustain_ms: int = 3 * 3_600_000
    penalty: tuple[tuple[str, int], ...] = (
        (CROP_FROST, 40),
        (CROP_HEAT, 25),
        (CROP_DROUGHT, 30),
        (CROP_WATERLOGGING, 20),
        (CROP_LOW_LIGHT, 15),
    )


def _default_crop_profiles() -> dict[str, CropProfile]:
    return {
        "default": CropProfile(),
        "tea": CropProfile(
            soil_moisture_min_pct=25.0, soil_moisture_max_pct=80.0, frost_c=0.0, heat_c=35.0, light_min_lux=3_000.0
        ),
    }


CROP_PARAMS = (Param("crop_profiles", dict[str, CropProfile], default_factory=_default_crop_profiles),)
_PARAM_DEFAULTS = {
    p.name: p.default_value() for p in SHARED_PARAMS + OFFLINE_PARAMS + OUTBOUND_PARAMS + EQUIPMENT_PARAMS
}


@dataclass(frozen=True, slots=True)
class RuleParams:
    """The rules' parameters as the engine takes them; names and defaults are the registry's (`RULES`), the
    settings (`IotSettings.rule_params`) fill them. Only ``crop_profiles`` has a smaller default here (the
    ``default`` profile alone) than the settings give."""

    outbound_tolerance_bps: int = _PARAM_DEFAULTS["outbound_tolerance_bps"]  # 1 % of the expected quantity ...
    outbound_tolerance_g: int = _PARAM_DEFAULTS["outbound_tolerance_g"]  # ... or 50 kg, whichever is larger
    motion_window_ms: int = _PARAM_DEFAULTS["motion_window_ms"]
    clear_holdoff_ms: int = _PARAM_DEFAULTS["clear_holdoff_ms"]
    heartbeat_ms: int = _PARAM_DEFAULTS["heartbeat_ms"]
    offline_missed_heartbeats: int = _PARAM_DEFAULTS["offline_missed_heartbeats"]
    business_hours: tuple[int, int] = _PARAM_DEFAULTS["business_hours"]  # local [start, end)
    utc_offset_minutes: int = _PARAM_DEFAULTS["utc_offset_minutes"]
    move_speed_kmh: float = _PARAM_DEFAULTS["move_speed_kmh"]
    move_distance_m: float = _PARAM_DEFAULTS["move_distance_m"]
    crop_profiles: Mapping[str, CropProfile] = field(default_factory=lambda: {"default": CropProfile()})

    def profile(self, crop: str) -> CropProfile:
        return self.crop_profiles.get(crop) or self.crop_profiles.get("default") or CropProfile()


@dataclass(frozen=True, slots=True)
class AssetContext:
    """What the rules need to know about an asset, from the registry."""

    asset_id: str
    kind: AssetKind
    devices: Mapping[str, tuple[DeviceKind, int]]  # device id -> (kind, bound since, receive time ms)
    expected_g: int = 0
    geofence: tuple[Point, ...] = ()
    crop: str = ""


@dataclass(frozen=True, slots=True)
class Reading:
    device_id: str
    kind: DeviceKind
    device_ts_ms: int
    received_ms: int
    values: Mapping[str, float]
    skewed: bool = False

    @property
    def rule_ts_ms(self) -> int:
        return self.received_ms if self.skewed else self.device_ts_ms


@dataclass(frozen=True, slots=True)
class AlarmChange:
    alarm_type: str
    action: Literal["raise", "clear", "update"]
    ts_ms: int
    details: dict[str, Any]

    @property
    def severity(self) -> Severity:
        return SEVERITY[self.alarm_type]


@dataclass(slots=True)
class Cond:
    active: bool = False
    true_since: int | None = None
    false_since: int | None = None

    def track(
        self, ts: int, is_true: bool, raise_after_ms: int, clear_after_ms: int
    ) -> Literal["raise", "clear"] | None:
        if is_true:
            self.false_since = None
            if self.true_since is None or ts < self.true_since:
                self.true_since = ts
            if not self.active and ts - self.true_since >= raise_after_ms:
                self.active = True
                return "raise"
            return None
        self.true_since = None
        if not self.active:
            return None
        if self.false_since is None or ts < self.false_since:
            self.false_since = ts
        if ts - self.false_since >= clear_after_ms:
            self.active = False
            self.false_since = None
            return "clear"
        return None


@dataclass(slots=True)
class AssetState:
    """The engine's memory of one asset, stored as JSON beside the asset (so any worker can continue it)."""

    latest: dict[str, tuple[int, dict[str, float]]] = field(default_factory=dict)  # device -> (device ts, values)
    last_rx: dict[str, int] = field(default_factory=dict)
    conds: dict[str, Cond] = field(default_factory=dict)
    last_motion_ts: int | None = None
    last_position: tuple[float, float, int] | None = None
    measured_g: int | None = None
    health_index: int = 100
    offline: tuple[str, ...] = ()

    def cond(self, alarm_type: str) -> Cond:
        c = self.conds.get(alarm_type)
        if c is None:
            c = self.conds[alarm_type] = Cond()
        return c

    def to_json(self) -> dict[str, Any]:
        return {
            "latest": {d: [ts, v] for d, (ts, v) in self.latest.items()},
            "last_rx": self.last_rx,
            "conds": {t: [c.active, c.true_since, c.false_since] for t, c in self.conds.items()},
            "last_motion_ts": self.last_motion_ts,
            "last_position": list(self.last_position) if self.last_position else None,
            "measured_g": self.measured_g,
            "health_index": self.health_index,
            "offline": list(self.offline),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any] | None) -> AssetState:
        if not doc:
            return cls()
        pos = doc.get("last_position")
        return cls(
            latest={d: (int(v[0]), dict(v[1])) for d, v in doc.get("latest", {}).items()},
            last_rx={d: int(t) for d, t in doc.get("last_rx", {}).items()},
            conds={t: Cond(bool(c[0]), c[1], c[2]) for t, c in doc.get("conds", {}).items()},
            last_motion_ts=doc.get("last_motion_ts"),
            last_position=(float(pos[0]), float(pos[1]), int(pos[2])) if pos else None,
            measured_g=doc.get("measured_g"),
            health_index=int(doc.get("health_index", 100)),
            offline=tuple(doc.get("offline", ())),
        )


def is_late(state: AssetState, reading: Reading) -> bool:
    seen = state.latest.get(reading.device_id)
    return seen is not None and reading.device_ts_ms < seen[0]


def apply_reading(ctx: AssetContext, state: AssetState, reading: Reading, p: RuleParams) -> list[AlarmChange]:
    """Fold one accepted reading into the asset's state; return the alarm changes it causes."""
    state.last_rx[reading.device_id] = max(reading.received_ms, state.last_rx.get(reading.device_id, 0))
    changes = _offline(ctx, state, reading.received_ms, p)
    if is_late(state, reading):
        return changes  # stored and flagged by the caller; the newest device time stays "latest"
    state.latest[reading.device_id] = (reading.device_ts_ms, dict(reading.values))
    ts = reading.rule_ts_ms
    values = reading.values
    if reading.kind is DeviceKind.CAMERA:
        changes += _camera(state, ts, values, p)
    if ctx.kind is AssetKind.WAREHOUSE_LOT and (reading.kind is DeviceKind.SCALE or OUTBOUND in state.conds):
        changes += _outbound(ctx, state, ts, p)
    elif ctx.kind is AssetKind.EQUIPMENT and reading.kind is DeviceKind.TRACKER:
        changes += _equipment(ctx, state, ts, values, p)
    elif ctx.kind is AssetKind.CROP_FIELD and reading.kind is DeviceKind.ENVIRONMENT:
        changes += _crop(ctx, state, ts, values, p)
    return changes


def tick(ctx: AssetContext, state: AssetState, now_rx_ms: int, p: RuleParams) -> list[AlarmChange]:
    """Time passing with no reading: only "offline" can change."""
    return _offline(ctx, state, now_rx_ms, p)


def reevaluate(ctx: AssetContext, state: AssetState, ts_ms: int, p: RuleParams) -> list[AlarmChange]:
    """Re-run the quantity rule after the expected quantity changed (an authorised release)."""
    if ctx.kind is AssetKind.WAREHOUSE_LOT:
        return _outbound(ctx, state, ts_ms, p)
    return []


def _change(
    alarm_type: str, action: Literal["raise", "clear"] | None, ts: int, details: dict[str, Any]
) -> list[AlarmChange]:
    return [AlarmChange(alarm_type, action, ts, details)] if action else []


def _offline(ctx: AssetContext, state: AssetState, now_rx: int, p: RuleParams) -> list[AlarmChange]:
    limit = p.heartbeat_ms * p.offline_missed_heartbeats
    offline = tuple(
        sorted(d for d, (_kind, since) in ctx.devices.items() if now_rx - state.last_rx.get(d, since) > limit)
    )
    state.offline = offline
    action = state.cond(OFFLINE).track(now_rx, bool(offline), 0, p.clear_holdoff_ms)
    return _change(OFFLINE, action, now_rx, {"devices": list(offline), "silent_for_ms_over": limit})


def _camera(state: AssetState, ts: int, values: Mapping[str, float], p: RuleParams) -> list[AlarmChange]:
    changes: list[AlarmChange] = []
    if values.get("motion", 0) >= 0.5:
        state.last_motion_ts = max(ts, state.last_motion_ts or ts)
        out = state.conds.get(OUTBOUND)
        if out is not None and out.active:
            changes.append(AlarmChange(OUTBOUND, "update", ts, {"confidence": "high", "motion_ts_ms": ts}))
    if "occlusion" in values or "tamper" in values:
        tampered = values.get("occlusion", 0) >= 0.5 or values.get("tamper", 0) >= 0.5
        action = state.cond(TAMPER).track(ts, tampered, 0, p.clear_holdoff_ms)
        changes += _change(TAMPER, action, ts, {"occlusion": values.get("occlusion"), "tamper": values.get("tamper")})
    return changes


def _outbound(ctx: AssetContext, state: AssetState, ts: int, p: RuleParams) -> list[AlarmChange]:
    scales = [d for d, (kind, _) in ctx.devices.items() if kind is DeviceKind.SCALE]
    if not scales or any(d not in state.latest or "weight_kg" not in state.latest[d][1] for d in scales):
        return []  # not every scale has reported: no measured quantity yet
    measured = sum(kg_to_g(state.latest[d][1]["weight_kg"]) for d in scales)
    state.measured_g = measured
    tolerance = max(ctx.expected_g * p.outbound_tolerance_bps // 10_000, p.outbound_tolerance_g)
    drop = ctx.expected_g - measured
    action = state.cond(OUTBOUND).track(ts, drop > tolerance, 0, p.clear_holdoff_ms)
    motion = state.last_motion_ts is not None and abs(ts - state.last_motion_ts) <= p.motion_window_ms
    details = {
        "expected_g": ctx.expected_g,
        "measured_g": measured,
        "drop_g": drop,
        "tolerance_g": tolerance,
        "confidence": "high" if motion else "medium",
    }
    return _change(OUTBOUND, action, ts, details)


def _equipment(
    ctx: AssetContext, state: AssetState, ts: int, values: Mapping[str, float], p: RuleParams
) -> list[AlarmChange]:
    if "lat" not in values or "lon" not in values:
        return []
    here = (float(values["lat"]), float(values["lon"]))
    changes: list[AlarmChange] = []
    if ctx.geofence:
        outside = not inside(here, ctx.geofence)
        action = state.cond(GEOFENCE).track(ts, outside, 0, p.clear_holdoff_ms)
        changes += _change(GEOFENCE, action, ts, {"lat": here[0], "lon": here[1]})
    moved = 0.0
    if state.last_position is not None:
        moved = distance_m((state.last_position[0], state.last_position[1]), here)
    moving = values.get("speed_kmh", 0.0) > p.move_speed_kmh or moved > p.move_distance_m
    hour = local_hour(ts, p.utc_offset_minutes)
    after_hours = not p.business_hours[0] <= hour < p.business_hours[1]
    action = state.cond(AFTER_HOURS).track(ts, moving and after_hours, 0, p.clear_holdoff_ms)
    changes += _change(AFTER_HOURS, action, ts, {"local_hour": hour, "moved_m": round(moved, 1)})
    state.last_position = (here[0], here[1], ts)
    return changes


def _crop(
    ctx: AssetContext, state: AssetState, ts: int, values: Mapping[str, float], p: RuleParams
) -> list[AlarmChange]:
    profile = p.profile(ctx.crop)
    checks: list[tuple[str, bool, int]] = []
    if "air_temp_c" in values:
        checks.append((CROP_FROST, values["air_temp_c"] <= profile.frost_c, profile.frost_sustain_ms))
        checks.append((CROP_HEAT, values["air_temp_c"] >= profile.heat_c, profile.heat_sustain_ms))
    if "soil_moisture_pct" in values:
        moisture = values["soil_moisture_pct"]
        checks.append((CROP_DROUGHT, moisture < profile.soil_moisture_min_pct, profile.drought_sustain_ms))
        checks.append((CROP_WATERLOGGING, moisture > profile.soil_moisture_max_pct, profile.waterlogging_sustain_ms))
    if "light_lux" in values:
        hour = local_hour(ts, p.utc_offset_minutes)
        if profile.daylight_hours[0] <= hour < profile.daylight_hours[1]:
            checks.append((CROP_LOW_LIGHT, values["light_lux"] < profile.light_min_lux, profile.low_light_sustain_ms))
    changes: list[AlarmChange] = []
    for alarm_type, is_true, sustain in checks:
        action = state.cond(alarm_type).track(ts, is_true, sustain, p.clear_holdoff_ms)
        changes += _change(alarm_type, action, ts, {k: v for k, v in values.items() if k != "battery_pct"})
    penalties = dict(profile.penalty)
    lost = sum(penalties.get(t, 0) for t, c in state.conds.items() if c.active and t in penalties)
    state.health_index = max(0, 100 - lost)
    return changes


# --- the registry ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: its pure function, the alarm types it raises with their severity, and the parameters it
    reads (beyond `SHARED_PARAMS`). `IotSettings` derives its rule settings from these entries."""

    name: str
    alarms: tuple[tuple[str, Severity], ...]
    params: tuple[Param, ...]
    check: Callable[..., list[AlarmChange]]


RULES: tuple[Rule, ...] = (
    Rule("outbound", ((OUTBOUND, Severity.CRITICAL),), OUTBOUND_PARAMS, _outbound),
    Rule("equipment", ((GEOFENCE, Severity.CRITICAL), (AFTER_HOURS, Severity.MAJOR)), EQUIPMENT_PARAMS, _equipment),
    Rule("offline", ((OFFLINE, Severity.MAJOR),), OFFLINE_PARAMS, _offline),
    Rule("camera", ((TAMPER, Severity.CRITICAL),), (), _camera),
    Rule(
        "crop",
        (
            (CROP_FROST, Severity.MAJOR),
            (CROP_HEAT, Severity.MAJOR),
            (CROP_DROUGHT, Severity.MAJOR),
            (CROP_WATERLOGGING, Severity.MINOR),
            (CROP_LOW_LIGHT, Severity.MINOR),
        ),
        CROP_PARAMS,
        _crop,
    ),
)
SEVERITY: dict[str, Severity] = {alarm_type: severity for rule in RULES for alarm_type, severity in rule.alarms}
ALARM_TYPES = tuple(SEVERITY)
RULE_PARAMS: tuple[Param, ...] = SHARED_PARAMS + tuple(p for rule in RULES for p in rule.params)

assert len(ALARM_TYPES) == sum(len(rule.alarms) for rule in RULES), "every alarm type is raised by one rule"
assert [p.name for p in RULE_PARAMS] and len({p.name for p in RULE_PARAMS}) == len(RULE_PARAMS), "one entry a name"
assert {f.name for f in fields(RuleParams)} == {p.name for p in RULE_PARAMS}, "RuleParams has the registry's names"
