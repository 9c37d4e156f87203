"""The IoT-collateral capability as one object for the composition root: ``App.iot = IotSystem(...)``."""

from __future__ import annotations

from typing import Any

from creditflow.collateral.ingest import IngestPipeline
from creditflow.collateral.notify import Broadcaster, WebhookDispatcher
from creditflow.collateral.registry import CollateralService
from creditflow.collateral.secrets import IotSecrets
from creditflow.collateral.settings import IotSettings
from creditflow.config import Settings
from creditflow.kernel.clock import Clock
from creditflow.kernel.engine import Engine
from creditflow.ledger.custody import Custody


class IotSystem:
    """``custody`` holds the key that seals device and webhook secrets at rest (see `iot_secrets`); any clear
    secret left by a database from before sealing is sealed here, before the ingest can start."""

    def __init__(
        self,
        engine: Engine,
        settings: IotSettings,
        clock: Clock,
        *,
        custody: Custody,
        sweep_offline: bool = True,
        webhook_transport: Any = None,
    ):
        self.settings = settings
        self.secrets = IotSecrets(custody, settings.device_cache_max)
        self.secrets.seal_clear_secrets(engine)
        self.broadcaster = Broadcaster(settings)
        self.pipeline = IngestPipeline(
            engine, settings, clock, self.secrets, on_events=self.broadcaster.publish, sweep_offline=sweep_offline
        )
        self.collateral = CollateralService(
            engine, settings, clock, self.secrets, on_events=self.broadcaster.publish, custody=custody
        )
        self.webhooks = WebhookDispatcher(engine, settings, clock, self.secrets, transport=webhook_transport)

    @classmethod
    def from_app_parts(
        cls, engine: Engine, settings: Settings, clock: Clock, *, custody: Custody, **overrides: Any
    ) -> IotSystem:
        return cls(engine, IotSettings.from_settings(settings, **overrides), clock, custody=custody)

    def close(self) -> None:
        self.pipeline.close()
        self.webhooks.close()
