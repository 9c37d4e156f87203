"""Every limit and threshold of the data-credit capability, named, with a default.

These move into `creditflow.config.Settings` (prefix ``credit_``) when the capability is wired in; until
then `CreditSettings` carries the same names and defaults, and `from_settings` reads them from a
`Settings` object if it has them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class CreditSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    credit_import_max_file_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="largest data-source file")
    credit_import_max_rows: int = Field(200_000, ge=1, description="most rows in one data-source file")
    credit_sentiment_max_chars: int = Field(2000, ge=10, description="longest news or opinion text scored")
    credit_lookback_months: int = Field(24, ge=13, le=60, description="history read for one decision")
    credit_evaluate_max_rows: int = Field(500_000, ge=10, description="most rows `credit evaluate` reads")
    credit_evaluate_max_columns: int = Field(500, ge=1, description="most feature columns `credit evaluate` reads")
    credit_evaluate_min_class_rows: int = Field(10, ge=2, description="fewest rows of each class to evaluate")
    credit_folds: int = Field(5, ge=2, le=20, description="k of k-fold validation")
    credit_oot_fraction: float = Field(0.3, gt=0.05, lt=0.9, description="latest share of rows held out (time)")
    credit_seed: int = Field(20260301, description="seed of model training and fold assignment")
    credit_psi_bins: int = Field(10, ge=2, le=50, description="fixed bins (training deciles) for PSI")
    credit_psi_alarm: float = Field(0.25, gt=0, description="PSI above this raises an alarm")
    credit_policy_file: str | None = Field(None, description="decision policy JSON; default: the shipped one")
    credit_batch_max_rows: int = Field(1_000_000, ge=1, description="most rows scored in one batch call")
    # consent and four eyes (issue 13)
    credit_authorisation_max_days: int = Field(
        366, ge=1, le=3660, description="longest a business may authorise a bank's credit look-ups for"
    )
    credit_purpose_max_chars: int = Field(500, ge=10, le=500, description="longest purpose of an authorisation")
    credit_four_eyes: bool = Field(
        True,
        description="a bank's manual decision (on a referral, or overriding a decline) needs a second person",
    )


def from_settings(settings: Any | None) -> CreditSettings:
    """Take every ``credit_*`` field that ``settings`` (a `creditflow.config.Settings`) defines."""
    if settings is None:
        return CreditSettings()
    nested = getattr(settings, "credit", None)
    if isinstance(nested, CreditSettings):
        return nested
    values = {name: getattr(settings, name) for name in CreditSettings.model_fields if hasattr(settings, name)}
    return CreditSettings(**values)
