"""The collateral services as one object, ``IotSystem.collateral``: assets and devices (`assets`), loans,
prices, pledges and releases (`loans`), alarms and webhooks (`alarms`). It adds nothing of its own: its
callers (the HTTP routes, pages, CLI, tools) reach every collateral command through the one attribute.
"""

from __future__ import annotations

from creditflow.collateral.alarms import AlarmService
from creditflow.collateral.assets import AssetService
from creditflow.collateral.loans import LoanService


class CollateralService(AssetService, LoanService, AlarmService):
    """Every collateral command and query; each one is a method of the service of its concept."""
