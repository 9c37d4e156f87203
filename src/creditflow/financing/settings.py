"""Every limit of trade finance's payouts, named, with a default (``Settings.financing``; environment:
``CREDITFLOW_FINANCING__ACCOUNT_CHANGE_WAIT_S=...``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FinancingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    account_change_wait_s: int = Field(
        24 * 3600,
        ge=0,
        le=30 * 86400,
        description="a change of an organisation's settlement account takes effect after this many seconds (its "
        "admins are told at once and may cancel it meanwhile; payouts use the previous account until then). The "
        "first account an organisation sets takes effect at once. 0: at once (tests and demos only: a stolen key "
        "could then redirect a payout before anyone notices)",
    )
