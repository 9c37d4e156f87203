"""Every limit of the IoT-collateral capability, named, with a default.

`IotSettings.from_settings` reads ``iot_*`` fields from the application's settings object where they exist
(their names are these names with an ``iot_`` prefix), so moving them into `Settings` is a small change. This
module does not import `creditflow.config` (config nests `IotSettings` as ``Settings.iot``): the settings
object is taken as it comes, by its attributes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from creditflow.collateral.model import LtvBands
from creditflow.collateral.rules import RULE_PARAMS, Param, RuleParams


class _IotSettings(BaseModel):
    """`IotSettings` without the rule settings, which are added from the registry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # ingest
    queue_max: int = Field(50_000, ge=1, description="messages waiting for the writer; full = back-pressure")
    batch_max: int = Field(1_000, ge=1, le=20_000, description="messages written in one transaction")
    batch_linger_ms: float = Field(
        2.0,
        ge=0,
        le=100,
        description="when the writer finds fewer than batch_max messages waiting, it lets more arrive for this "
        "long before writing (fewer, larger transactions; adds at most this to latency); 0 = write at once",
    )
    enqueue_timeout_s: float = Field(10.0, gt=0, description="longest a producer blocks on a full queue")
    message_max_bytes: int = Field(4_096, ge=256, description="largest telemetry message")
    values_max: int = Field(16, ge=1, le=64, description="most metrics in one message")
    http_batch_max: int = Field(1_000, ge=1, description="most messages in one HTTP batch")
    clock_skew_max_ms: int = Field(5 * 60_000, ge=0, description="device vs receive time beyond this is flagged")
    dead_letter_payload_max_bytes: int = Field(2_048, ge=64, description="bytes of a rejected payload kept")
    device_cache_max: int = Field(100_000, ge=1, description="devices whose secrets are held in memory")
    tick_interval_ms: int = Field(1_000, ge=50, description="how often the offline sweep runs")
    mqtt_topic_prefix: str = Field("creditflow/v1", min_length=1, description="devices publish under it")
    mqtt_share_group: str = Field("creditflow-ingest", min_length=1, description="MQTT shared-subscription group")
    mqtt_receive_max: int = Field(
        8_000,
        ge=1,
        le=65_535,
        description="unacknowledged QoS 1 messages in flight per connection (MQTT 5 Receive Maximum). The broker "
        "holds at most its max_queued_messages (Mosquitto: 1000) beyond this and drops the rest, so this window is "
        "what absorbs an ingest stall: window x connections / rate seconds of it lose nothing",
    )
    mqtt_keepalive_s: int = Field(30, ge=5)

    # rules: their settings are derived from the rules registry (`creditflow.collateral.rules.RULES`), below

    # valuation and LTV
    ltv_bands_bps: dict[str, tuple[int, int, int]] = Field(
        default_factory=lambda: {"default": (6_000, 7_000, 8_000)},
        description="per commodity: warning, margin call, liquidation (bps)",
    )
    ltv_hysteresis_bps: int = Field(100, ge=0, le=2_000, description="LTV this far below a band to leave it")

    # notifications
    notify_min_interval_ms: int = Field(60_000, ge=0, description="one raise/update notification per alarm this often")
    sse_queue_max: int = Field(1_000, ge=1, description="events buffered per dashboard stream; overflow disconnects")
    sse_subscribers_max: int = Field(100, ge=1)
    webhook_timeout_s: float = Field(5.0, gt=0)
    webhook_batch_max: int = Field(100, ge=1, description="notifications delivered per dispatcher pass")
    webhook_attempts_max: int = Field(8, ge=1)

    @model_validator(mode="after")
    def _check(self) -> _IotSettings:
        if "default" not in self.ltv_bands_bps:
            raise ValueError("ltv_bands_bps needs a 'default' entry")
        for values in self.ltv_bands_bps.values():
            LtvBands(*values)
        start, end = getattr(self, "business_hours", (0, 24))
        if not 0 <= start < end <= 24:
            raise ValueError("business_hours must be 0 <= start < end <= 24")
        return self

    @classmethod
    def from_settings(cls, settings: object | None, **overrides: Any) -> Self:
        """From ``settings.iot`` if it is an `IotSettings`, else from its ``iot_<name>`` attributes."""
        values: dict[str, Any] = {}
        nested = getattr(settings, "iot", None)
        if isinstance(nested, cls):  # wired as a nested block: Settings.iot (CREDITFLOW_IOT__QUEUE_MAX=...)
            return nested.model_copy(update=overrides) if overrides else nested
        if settings is not None:
            for name in cls.model_fields:
                if hasattr(settings, f"iot_{name}"):
                    values[name] = getattr(settings, f"iot_{name}")
        values.update(overrides)
        return cls(**values)

    def bands(self, key: str) -> LtvBands:
        return LtvBands(*self.ltv_bands_bps.get(key, self.ltv_bands_bps["default"]))

    def rule_params(self) -> RuleParams:
        values = {p.name: getattr(self, p.name) for p in RULE_PARAMS}
        values["crop_profiles"] = dict(values["crop_profiles"])
        return RuleParams(**values)


def _rule_field(p: Param) -> tuple[Any, Any]:
    if p.default_factory is not None:
        return p.annotation, Field(default_factory=p.default_factory, description=p.description, ge=p.ge, le=p.le)
    return p.annotation, Field(p.default, description=p.description, ge=p.ge, le=p.le)


if TYPE_CHECKING:
    IotSettings = _IotSettings
else:
    IotSettings = create_model(
        "IotSettings", __base__=_IotSettings, __module__=__name__, **{p.name: _rule_field(p) for p in RULE_PARAMS}
    )
