"""Settings: every limit named, with a default, validated at start-up.

Sources, highest first: keyword arguments (tests, `--db`), environment variables ``CREDITFLOW_*``,
a TOML file named by ``CREDITFLOW_CONFIG`` (default ``creditflow.toml`` if it exists), then defaults.
"""

from __future__ import annotations

import os
import re
from decimal import Decimal
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from creditflow.collateral.settings import IotSettings
from creditflow.credit.settings import CreditSettings
from creditflow.financing.settings import FinancingSettings
from creditflow.identity.settings import AccessSettings, WebSettings
from creditflow.ledger.note import COSIGNATURE_V1, NoteError, parse_vkey

# Public development secrets: used only with `--dev` (``dev=True``), never on real data (docs/SECURITY.md ("Secrets")).
DEV_PASSPHRASE = "creditflow-development-passphrase"
DEV_LOG_PASSPHRASE = "creditflow-development-log-passphrase"


class WitnessConfig(BaseModel):
    """One independent witness (c2sp.org/tlog-witness): its cosigner name, its vkey (type 0x04), its URL."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\s+]+$")
    vkey: str = Field(min_length=1, max_length=400)
    url: str = Field(min_length=1, max_length=400, pattern=r"^https?://")

    @field_validator("vkey")
    @classmethod
    def _vkey(cls, value: str) -> str:
        try:
            key = parse_vkey(value)
        except NoteError as exc:
            raise ValueError(str(exc)) from None
        if key.sig_type != COSIGNATURE_V1:
            raise ValueError("a witness's vkey is a cosignature/v1 (type 0x04) key")
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CREDITFLOW_", env_nested_delimiter="__", extra="forbid", frozen=True)

    db_url: str = Field("sqlite:///creditflow.db", description="SQLAlchemy URL: sqlite:///path or postgresql://...")
    key_passphrase: SecretStr | None = Field(
        None,
        description="derives the key that encrypts organisations' private keys (and device secrets) at rest; "
        "required unless `dev` (CREDITFLOW_KEY_PASSPHRASE)",
    )
    log_key_passphrase: SecretStr | None = Field(
        None,
        description="derives the key that seals the transparency log's signing key, apart from organisations' keys; "
        "must differ from key_passphrase (CREDITFLOW_LOG_KEY_PASSPHRASE); or use log_key_file",
    )
    log_key_file: Path | None = Field(
        None,
        description="a file (mode 0600, at least 32 random bytes: `creditflow keys log-key-file PATH`) whose "
        "contents seal the log's signing key, instead of log_key_passphrase (CREDITFLOW_LOG_KEY_FILE)",
    )
    dev: bool = Field(
        False,
        description="development mode (`--dev`): missing passphrases fall back to the public development ones "
        "and a log key still sealed with the organisations' keys opens, each with a warning; never on real data",
    )
    kdf_opslimit: int = Field(3, ge=1, description="Argon2id passes for the key-encryption key")
    kdf_memlimit_bytes: int = Field(64 * 1024 * 1024, ge=8 * 1024 * 1024)

    max_tenor_days: int = Field(365, ge=1, le=3650, description="longest issue-to-maturity span")
    accept_deadline_days: int = Field(7, ge=1, le=90, description="pending pieces return to sender after this")
    expiry_sweep_interval_s: float = Field(60.0, ge=0, description="how often `serve` returns expired pieces; 0: never")
    split_fanout_max: int = Field(50, ge=2, le=1000, description="most pieces one split may create")
    page_size_default: int = Field(50, ge=1, le=1000)
    page_size_max: int = Field(500, ge=1, le=10000)
    tree_max_nodes_per_query: int = Field(20000, ge=100, description="largest certificate tree returned at once")

    sequencer_batch_max: int = Field(512, ge=1, le=10000, description="operations committed in one group commit")
    sequencer_queue_max: int = Field(20000, ge=1, description="submissions waiting; full means back-pressure")
    sequencer_timeout_s: float = Field(30.0, gt=0, description="longest a submitter waits for its commit")
    sequencer_preverify: bool | None = Field(
        None,
        description="check signatures on a second thread ahead of the writer; unset: on for SQLite, off for "
        "PostgreSQL (measured: +40 % ops/s on SQLite, -7 % on PostgreSQL, whose driver thread contends for the GIL)",
    )

    request_max_bytes: int = Field(256 * 1024, ge=1024, description="largest HTTP request body")
    idempotency_retention_days: int = Field(7, ge=1)

    # trade documents (ERP import, three-way match)
    erp_max_file_bytes: int = Field(20 * 1024 * 1024, ge=1024, description="largest ERP file accepted")
    erp_max_rows: int = Field(200_000, ge=1, description="most rows in one ERP file")
    allowed_tax_rates_pct: tuple[int, ...] = Field((0, 1, 3, 6, 9, 13), description="VAT rates an invoice may use")
    match_quantity_tolerance_pct: Decimal = Field(Decimal("0"), ge=0, le=100, description="0 means exact")
    match_price_tolerance_pct: Decimal = Field(Decimal("1"), ge=0, le=100)

    # trade finance
    enforce_trade_rules: bool = Field(
        True,
        description="issue only on confirmed payables within the credit line; transfers cite an invoice",
    )
    approvals_required: int = Field(2, ge=2, le=5, description="distinct core-enterprise users who confirm a payable")
    penalty_rate_bps: int = Field(1825, ge=0, le=10_000, description="penalty interest on overdue amounts, per year")
    # payouts: the waiting period of an account change (CREDITFLOW_FINANCING__ACCOUNT_CHANGE_WAIT_S=86400)
    financing: FinancingSettings = Field(default_factory=FinancingSettings)

    # data credit: its limits and thresholds live in one nested block (CREDITFLOW_CREDIT__CREDIT_FOLDS=10)
    credit: CreditSettings = Field(default_factory=CreditSettings)
    # IoT-monitored collateral, the same way (CREDITFLOW_IOT__QUEUE_MAX=...)
    iot: IotSettings = Field(default_factory=IotSettings)
    # web pages and their sign-in (CREDITFLOW_WEB__SESSION_TTL_S=...)
    web: WebSettings = Field(default_factory=WebSettings)
    # API keys and the caches of who is calling (CREDITFLOW_ACCESS__AUTH_CACHE_TTL_S=...)
    access: AccessSettings = Field(default_factory=AccessSettings)

    # the transparency log in C2SP formats (docs/adr/0017-c2sp-checkpoints-tiles-and-witnesses.md)
    deployment_name: str = Field(
        "creditflow.localhost",
        min_length=1,
        max_length=200,
        pattern=r"^[^\s+]+$",
        description="this deployment's name, a schema-less URL (no spaces, no '+'): the default log origin",
    )
    log_origin: str | None = Field(
        None,
        max_length=200,
        pattern=r"^[^\s+]+$",
        description="the checkpoints' origin line and the log key's note name; default: <deployment_name>/log",
    )

    witnesses: list[WitnessConfig] = Field(
        default_factory=list,
        description='C2SP witnesses each new checkpoint is sent to: JSON [{"name", "vkey", "url"}] in '
        "CREDITFLOW_WITNESSES",
    )
    witness_quorum: int = Field(
        0, ge=0, description="cosignatures a checkpoint needs before clients should trust it (the default policy)"
    )
    checkpoint_interval_s: float = Field(
        1.0, ge=0, description="how often `serve` publishes a checkpoint when the log has grown; 0: never"
    )
    witness_timeout_s: float = Field(5.0, gt=0, le=120, description="longest wait for one witness's answer")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    otel_telemetry: bool = Field(
        False,
        description="FastAPI's OpenTelemetry spans, metrics and logs (they need a provider configured in the "
        "process); off: /metrics is the platform's own, and no request pays for looking up providers",
    )

    # API hardening (docs/adr/0013-rate-limits-and-cors.md)
    rate_limit_per_s: float = Field(
        2000.0, ge=0, description="requests a second per API key, and per client address without one; 0: no limit"
    )
    rate_limit_burst: int = Field(4000, ge=1, description="requests a bucket allows at once before the rate applies")
    cors_allow_origins: list[str] = Field(
        default_factory=list,
        description='origins that browsers may call the API from ("https://erp.example.com"); empty: none',
    )

    @field_validator("cors_allow_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?", origin):
                raise ValueError(f"{origin!r} is not an origin: scheme://host[:port], no path (or *)")
        return value

    @field_validator("db_url")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
            raise ValueError("db_url must be a sqlite:/// or postgresql:// URL")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = Path(os.environ.get("CREDITFLOW_CONFIG", "creditflow.toml"))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    @model_validator(mode="after")
    def _witness_policy(self) -> Settings:
        names = [w.name for w in self.witnesses]
        if len(set(names)) != len(names):
            raise ValueError("each witness is named once in CREDITFLOW_WITNESSES")
        if self.witness_quorum > len(self.witnesses):
            raise ValueError(
                f"witness_quorum {self.witness_quorum} is more than the {len(self.witnesses)} witnesses configured"
            )
        return self

    @property
    def origin(self) -> str:
        """The log's C2SP origin: `log_origin`, or derived from the deployment's name."""
        return self.log_origin or f"{self.deployment_name}/log"

    @property
    def uses_dev_passphrase(self) -> bool:
        """No passphrase configured (development mode supplies the public one) or the public one itself."""
        return self.key_passphrase is None or self.key_passphrase.get_secret_value() == DEV_PASSPHRASE
