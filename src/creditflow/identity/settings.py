"""Every limit of identity, named, with a default: the web pages and their sign-in (``Settings.web``;
environment: ``CREDITFLOW_WEB__SESSION_TTL_S=...``) and API keys (``Settings.access``;
``CREDITFLOW_ACCESS__AUTH_CACHE_TTL_S=...``). docs/SECURITY.md ("Keys, sessions and sign-in") explains them."""

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
    # Sign-in throttling (creditflow.identity.throttle): growing delays, never a long hard lock. Each wrong
    # password counts, atomically in the database, for (user, client address), for the client address
    # across users, and, once per new address, for the user; past its free failures each doubles its delay
    # from ``sign_in_delay_base_s`` up to its cap.
    sign_in_max_failures: int = Field(
        5, ge=1, description="wrong passwords for one user from one address before its delays start"
    )
    sign_in_delay_base_s: int = Field(1, ge=1, description="the first delay; each further failure doubles it")
    sign_in_delay_max_s: int = Field(
        15 * 60, ge=1, description="longest delay for one user from one address (and for one address)"
    )
    sign_in_user_free_addresses: int = Field(
        5, ge=1, description="distinct addresses failing for one user before the user's own (softer) delay starts"
    )
    sign_in_user_delay_max_s: int = Field(
        60, ge=1, description="longest delay for a user whatever the address (what a distributed attack imposes)"
    )
    sign_in_address_max_failures: int = Field(
        20, ge=1, description="wrong passwords from one address, across users, before that address waits"
    )
    sign_in_failure_window_s: int = Field(
        3600, ge=60, description="failures older than this (since the last one) are forgotten"
    )
    forwarded_for_hops: int = Field(
        0,
        ge=0,
        le=5,
        description="reverse proxies in front that append X-Forwarded-For (0: trust no header, use the TCP "
        "peer; n: the n-th address from the right of X-Forwarded-For is the client's)",
    )
    password_reset_ttl_s: int = Field(24 * 3600, ge=300, description="how long an admin's reset token stays valid")
    cookie_secure: bool = Field(
        False, description="send the session cookie over HTTPS only (set true behind a TLS proxy)"
    )


class AccessSettings(BaseModel):
    """API keys and the in-memory caches of who is calling (``Settings.access``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    auth_cache_ttl_s: int = Field(
        5,
        ge=0,
        le=300,
        description="a process answers a known API key or session from memory for at most this long before it "
        "asks the database again: the bound within which a revocation, a sign-out, a password reset or a role "
        "change made by another process takes effect here (0: ask every time)",
    )
    api_key_ttl_default_s: int = Field(
        365 * 24 * 3600, ge=60, description="an API key's lifetime when its creator names none"
    )
    api_key_ttl_max_s: int = Field(2 * 365 * 24 * 3600, ge=60, description="the longest lifetime an API key may have")
