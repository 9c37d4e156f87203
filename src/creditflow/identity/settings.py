"""Every limit of the web pages and their sign-in, named, with a default (``Settings.web``;
environment: ``CREDITFLOW_WEB__SESSION_TTL_S=...``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class WebSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Argon2id for user passwords (memory-hard: a GPU farm pays in memory for every guess). The defaults
    # follow RFC 9106's second recommended option (64 MiB, 3 passes); tests lower the memory.
    password_time_cost: int = Field(3, ge=1, le=20, description="Argon2id passes")
    password_memory_kib: int = Field(64 * 1024, ge=8 * 1024, description="Argon2id memory per hash, KiB")
    password_parallelism: int = Field(1, ge=1, le=16, description="Argon2id lanes")
    password_min_length: int = Field(10, ge=8, le=128, description="shortest password a user may set")
    session_ttl_s: int = Field(8 * 3600, ge=60, description="a sign-in lasts this long (seconds)")
    sign_in_max_failures: int = Field(5, ge=1, description="wrong passwords in a row before a lock-out")
    sign_in_lockout_s: int = Field(15 * 60, ge=1, description="how long a locked-out user waits")
    cookie_secure: bool = Field(
        False, description="send the session cookie over HTTPS only (set true behind a TLS proxy)"
    )
