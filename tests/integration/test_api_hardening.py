"""API hardening: rate limits per key and per client address, CORS closed by default, request-size limits
documented, secrets kept out of the logs, pagination on every list, and an OpenAPI document that says
all of it (examples, descriptions, every error response)."""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import ValidationError

from conftest import make_settings, onboard
from creditflow.bootstrap import App, build
from creditflow.config import Settings
from creditflow.http.app import create_app
from creditflow.http.ratelimit import RateLimiter
from creditflow.http.redaction import RedactingFilter, redact
from creditflow.kernel.clock import ManualClock
from creditflow.ledger.queries import decode_cursor, encode_cursor

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

PROBLEM = "application/problem+json"
FORM = "application/x-www-form-urlencoded"


class FakeClock:
    """Monotonic seconds, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def problem_of(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    assert (body["status"], body["code"]) == (status, code), body
    return body


@pytest.fixture
def cast(sqlite_app: App) -> App:
    onboard(sqlite_app, "xcmg", "factory", "steel", "bank", "operator")
    return sqlite_app


def limited(app: App, rate: float, burst: int) -> tuple[TestClient, FakeClock]:
    clock = FakeClock()
    return TestClient(create_app(app, rate_limiter=RateLimiter(rate, burst, clock=clock))), clock


# --- rate limits ----------------------------------------------------------------------------------------


def test_a_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2.0, 3, clock=clock)
    assert [limiter.acquire("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("k") == pytest.approx(0.5)  # one token comes back every 0.5 s
    clock.now += 0.25
    assert limiter.acquire("k") == pytest.approx(0.25)
    clock.now += 0.25
    assert limiter.acquire("k") == 0.0
    assert limiter.acquire("other") == 0.0  # another key, another bucket
    clock.now += 3600  # idle for an hour: full again, never more than the burst
    assert [limiter.acquire("k") for _ in range(4)][3] > 0
    clock.now -= 10  # a clock that steps back refills nothing and drains nothing
    assert limiter.acquire("other") == 0.0


def test_buckets_are_bounded_and_zero_rate_means_no_limit() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1.0, 1, clock=clock, max_buckets=3)
    for i in range(10):
        limiter.acquire(f"ip:10.0.0.{i}")
    assert len(limiter) == 3
    off = RateLimiter(0, 1, clock=clock)
    assert not off.enabled and all(off.acquire("k") == 0.0 for _ in range(100))
    with pytest.raises(ValueError):
        RateLimiter(-1, 1)


def test_the_defaults_do_not_limit_an_ordinary_load() -> None:
    settings = Settings()
    assert settings.rate_limit_per_s >= 2000 and settings.rate_limit_burst >= 4000
    assert settings.cors_allow_origins == []


def test_each_api_key_has_its_own_bucket(cast: App) -> None:
    client, clock = limited(cast, 1.0, 3)
    first, second = cast.access.create_key("factory"), cast.access.create_key("factory")
    steel = cast.access.create_key("steel")
    with client:
        for _ in range(3):
            assert client.get("/v1/me", headers=bearer(first)).status_code == 200
        refused = client.get("/v1/me", headers=bearer(first))
        body = problem_of(refused, 429, "rate_limited")
        assert refused.headers["Retry-After"] == "1" and body["instance"] == "/v1/me"
        # an endpoint that changes things is refused the same way, before it runs
        r = client.post("/v1/api-keys", headers={**bearer(first), "X-API-Key": "ignored"}, json={})
        problem_of(r, 429, "rate_limited")
        assert client.get("/v1/me", headers=bearer(second)).status_code == 200  # the same organisation's other key
        assert client.get("/v1/me", headers={"X-API-Key": steel}).status_code == 200
        clock.now += 1.0
        assert client.get("/v1/me", headers=bearer(first)).status_code == 200
        problem_of(client.get("/v1/me", headers=bearer(first)), 429, "rate_limited")


def test_requests_without_a_known_key_are_limited_by_client_address(cast: App) -> None:
    client, clock = limited(cast, 1.0, 3)
    key = cast.access.create_key("factory")
    with client:
        assert client.get("/v1/me", headers=bearer(key)).status_code == 200  # first use: the address pays too
        assert client.get("/healthz").status_code == 200
        problem_of(client.get("/v1/me", headers=bearer("cf_0123456789abcdef_guess")), 401, "unauthenticated")
        # the address's bucket is empty: public endpoints, missing and wrong keys are all refused now ...
        r = client.get("/healthz")
        problem_of(r, 429, "rate_limited")
        assert int(r.headers["Retry-After"]) >= 1
        problem_of(client.get("/v1/me"), 429, "rate_limited")
        problem_of(client.get("/v1/me", headers=bearer("cf_0123456789abcdef_guess2")), 429, "rate_limited")
        problem_of(client.get("/v1/no-such-thing"), 429, "rate_limited")
        # ... while a key the server knows is charged to its own bucket only
        assert client.get("/v1/me", headers=bearer(key)).status_code == 200
        clock.now += 1.0
        assert client.get("/healthz").status_code == 200


def test_an_idempotent_post_over_the_limit_keeps_its_key_free(cast: App) -> None:
    client, clock = limited(cast, 1.0, 3)
    key = bearer(cast.access.create_key("factory"))
    with client:
        assert client.get("/v1/me", headers=key).status_code == 200
        for idem in ("k1", "k2"):
            assert client.post("/v1/api-keys", headers={**key, "Idempotency-Key": idem}, json={}).status_code == 201
        refused = client.post("/v1/api-keys", headers={**key, "Idempotency-Key": "k3"}, json={"label": "x"})
        problem_of(refused, 429, "rate_limited")
        clock.now += 5.0
        # the refused request reserved nothing: the retry runs (it is neither a replay nor "in progress")
        retry = client.post("/v1/api-keys", headers={**key, "Idempotency-Key": "k3"}, json={"label": "x"})
        assert retry.status_code == 201, retry.text
        assert "Idempotent-Replayed" not in retry.headers and retry.json()["api_key"].startswith("cf_")
        again = client.post("/v1/api-keys", headers={**key, "Idempotency-Key": "k3"}, json={"label": "x"})
        # the key was shown once: the replay says so and never hands it out again (docs/SECURITY.md ("Secrets"))
        assert again.headers["Idempotent-Replayed"] == "true"
        problem_of(again, 409, "idempotent_secret_not_replayable")
        assert retry.json()["api_key"] not in again.text


def test_a_zero_rate_switches_limits_off(tmp_path: Any, clock: ManualClock) -> None:
    settings = make_settings(f"sqlite:///{tmp_path / 'cf.db'}", rate_limit_per_s=0, rate_limit_burst=1)
    with build(settings, clock=clock) as app, TestClient(create_app(app)) as client:
        assert all(client.get("/healthz").status_code == 200 for _ in range(20))


# --- CORS -----------------------------------------------------------------------------------------------


def test_cors_is_closed_by_default(cast: App) -> None:
    key = bearer(cast.access.create_key("factory"))
    with TestClient(create_app(cast)) as client:
        for origin in ("https://evil.example", "http://localhost:3000", "null"):
            r = client.get("/v1/me", headers={**key, "Origin": origin})
            assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
            preflight = client.options(
                "/v1/me",
                headers={
                    "Origin": origin,
                    "Access-Control-Request-Method": "GET",
                    "Access-Control-Request-Headers": "authorization",
                },
            )
            assert "access-control-allow-origin" not in preflight.headers
            assert "access-control-allow-headers" not in preflight.headers


def test_cors_answers_only_the_origins_it_names(tmp_path: Any, clock: ManualClock) -> None:
    allowed = "https://erp.example.com"
    settings = make_settings(f"sqlite:///{tmp_path / 'cf.db'}", cors_allow_origins=[allowed])
    with build(settings, clock=clock) as app:
        onboard(app, "factory")
        key = bearer(app.access.create_key("factory"))
        with TestClient(create_app(app)) as client:
            r = client.get("/v1/me", headers={**key, "Origin": allowed})
            assert r.headers["access-control-allow-origin"] == allowed
            assert "access-control-allow-credentials" not in r.headers
            assert "retry-after" in r.headers["access-control-expose-headers"].lower()
            preflight = client.options(
                "/v1/pieces",
                headers={
                    "Origin": allowed,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
                },
            )
            assert preflight.status_code == 200
            assert preflight.headers["access-control-allow-origin"] == allowed
            other = client.get("/v1/me", headers={**key, "Origin": "https://erp.example.com.evil.example"})
            assert "access-control-allow-origin" not in other.headers
            refused = client.options(
                "/v1/pieces", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
            )
            assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers


@pytest.mark.parametrize("origin", ["erp.example.com", "https://erp.example.com/", "https://x.example/app", ""])
def test_an_origin_must_be_scheme_host_and_port(origin: str) -> None:
    with pytest.raises(ValidationError, match="cors_allow_origins"):
        Settings(cors_allow_origins=[origin])


# --- request size ---------------------------------------------------------------------------------------


def test_every_body_is_capped_and_the_cap_is_documented(cast: App) -> None:
    api = create_app(cast)
    document = api.openapi()
    with_body = [
        (method, path, op)
        for path, ops in document["paths"].items()
        for method, op in ops.items()
        if "requestBody" in op
    ]
    assert len(with_body) > 20
    for method, path, op in with_body:
        response = op["responses"].get("413")
        assert response is not None, f"{method.upper()} {path} does not document 413"
        assert PROBLEM in response["content"], f"{method.upper()} {path}: 413 is not problem+json"
    key = bearer(cast.access.create_key("xcmg"))
    big = b'{"creditor": "factory", "amount_minor": 1, "reference": "' + b"x" * cast.settings.request_max_bytes + b'"}'
    with TestClient(api) as client:
        r = client.post("/v1/payables", content=big, headers={**key, "Content-Type": "application/json"})
        problem_of(r, 413, "request_too_large")
        assert str(cast.settings.request_max_bytes) in r.json()["detail"]


def test_text_with_nul_is_refused_before_any_store_sees_it(cast: App) -> None:
    """PostgreSQL cannot store U+0000 in text (SQLite can): refused the same way on both, for every route."""
    key = bearer(cast.access.create_key("xcmg"))
    operator = bearer(cast.access.create_key("operator"))
    payable = {"creditor": "factory", "amount_minor": 5, "reference": "PO-1"}
    with TestClient(create_app(cast)) as client:
        for body in ('{"label": "a\\u0000"}', '{"label": "\\\\\\u0000"}', '{"label": "\\u0000"}'):
            r = client.post("/v1/api-keys", content=body, headers={**key, "Content-Type": "application/json"})
            assert problem_of(r, 422, "invalid_input")["field"] == "body", body
        csv = b"org_id,period,shipments,on_time_rate\nshop\x00,2026-01,1,0.9\n"
        r = client.post(
            "/v1/credit/sources/logistics/import", content=csv, headers={**operator, "Content-Type": "text/csv"}
        )
        assert problem_of(r, 422, "invalid_input")["field"] == "body"
        assert problem_of(client.get("/v1/products?bank=a%00", headers=key), 422, "invalid_input")["field"] == "query"
        assert problem_of(client.get("/v1/pieces/a%00b", headers=key), 422, "invalid_input")["field"] == "path"
        r = client.post("/ui/sign-in", content=b"user_id=a%00&password=x", headers={"Content-Type": FORM})
        assert problem_of(r, 422, "invalid_input")["field"] == "body"
        # an escaped backslash before "u0000" is the literal text \u0000, which is fine
        r = client.post("/v1/payables", json={**payable, "reference": "\\u0000"}, headers=key)
        assert r.status_code == 201 and r.json()["reference"] == "\\u0000", r.text


# --- pagination -----------------------------------------------------------------------------------------


def _list_operations(document: dict[str, Any]) -> list[str]:
    """Every GET whose 200 answer is a page (``items`` and ``next_cursor``)."""
    schemas = document["components"]["schemas"]
    found = []
    for path, ops in document["paths"].items():
        get = ops.get("get")
        if get is None:
            continue
        content = get["responses"].get("200", {}).get("content", {}).get("application/json", {})
        schema = content.get("schema", {})
        if "$ref" in schema:
            schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
        if schema.get("type") == "array":
            raise AssertionError(f"GET {path} answers a bare list: page it (limit, cursor -> items, next_cursor)")
        if {"items", "next_cursor"} <= set(schema.get("properties", {})):
            found.append(path)
    return found


def test_every_list_is_paged_and_refuses_a_bad_cursor(cast: App) -> None:
    document = create_app(cast).openapi()
    lists = _list_operations(document)
    expected = {
        "/v1/pieces",
        "/v1/certificates",
        "/v1/organisations",
        "/v1/products",
        "/v1/financing/requests",
        "/v1/financing/agreements",
        "/v1/reports/owed",
        "/v1/network/exposure",
    }
    assert expected <= set(lists), sorted(expected - set(lists))
    key = bearer(cast.access.create_key("operator"))
    with TestClient(create_app(cast)) as client:
        for path in lists:
            names = {p["name"] for p in document["paths"][path]["get"].get("parameters", [])}
            assert {"limit", "cursor"} <= names, f"GET {path} lacks limit or cursor"
            ok = client.get(path, headers=key)
            assert ok.status_code == 200 and set(ok.json()) == {"items", "next_cursor"}, (path, ok.text)
            for bad in ("garbage", encode_cursor("x", 1, 2, 3), "eyJ4IjoxfQ", "a" * 201, "!!"):
                r = client.get(path, params={"cursor": bad}, headers=key)
                assert r.status_code == 422 and r.json()["field"] == "cursor", (path, bad, r.text)
            for limit in (0, -1, cast.settings.page_size_max + 1):
                r = client.get(path, params={"limit": limit}, headers=key)
                assert r.status_code == 422 and r.json()["field"] == "limit", (path, limit, r.text)


def test_cursors_are_opaque_and_checked() -> None:
    cursor = encode_cursor(12, "7d3c6f1e")
    assert ":" not in cursor and "7d3c6f1e" not in cursor
    assert decode_cursor(cursor, int, str) == (12, "7d3c6f1e")
    for bad, shape in [
        (cursor, (str, str)),
        (cursor, (int,)),
        (encode_cursor(True, "x"), (int, str)),  # type: ignore[arg-type]
        (encode_cursor(2**63, "x"), (int, str)),
        (encode_cursor(-1, "x"), (int, str)),
        ("12:7d3c6f1e", (int, str)),
        ("=" * 8, (int, str)),
    ]:
        with pytest.raises(Exception) as caught:
            decode_cursor(bad, *shape)
        assert getattr(caught.value, "code", None) == "invalid_input" and caught.value.field == "cursor"  # type: ignore[attr-defined]


def test_a_computed_report_pages_in_key_order_without_gaps(cast: App) -> None:
    rows = [{"bank": f"bank{i % 3}", "core": f"core{i}"} for i in range(11)]

    def key(r: dict[str, str]) -> tuple[str, str]:
        return (r["bank"], r["core"])

    seen, cursor = [], None
    for _ in range(10):
        page = cast.queries.page_of(reversed(rows), key, (str, str), cursor=cursor, limit=4)
        assert len(page.items) <= 4
        seen += page.items
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == sorted(rows, key=key)
    with pytest.raises(Exception, match="cursor"):
        cast.queries.page_of(rows, key, (str, str), cursor=encode_cursor(1, "x"))


def test_paging_walks_the_products_and_the_directory_without_gaps(cast: App) -> None:
    bank = bearer(cast.access.create_key("bank"))
    factory = bearer(cast.access.create_key("factory"))
    with TestClient(create_app(cast)) as client:
        made = []
        for i in range(7):
            body = {"name": f"discounting {i}", "rates_bps": {"AA": {"90": 350 + i}}}
            r = client.post("/v1/products", json=body, headers=bank)
            assert r.status_code == 201, r.text
            made.append(r.json()["id"])
        for path, key, want in [
            ("/v1/products", "id", sorted(made)),
            ("/v1/organisations", "org_id", sorted(p.org_id for p in cast.queries.parties())),
        ]:
            seen: list[str] = []
            cursor = None
            for _ in range(10):
                params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
                page = client.get(path, params=params, headers=factory).json()
                assert len(page["items"]) <= 3
                seen += [item[key] for item in page["items"]]
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            assert seen == want, path


# --- secrets never logged -------------------------------------------------------------------------------


def test_redaction_removes_every_kind_of_credential() -> None:
    key = "cf_0123456789abcdef_" + "S3cr3t-_x" * 5
    session = "cfs_" + "AbCdEfGh12345678_-" * 2
    cases = [
        f"GET /v1/me?api_key={key} HTTP/1.1",
        f"Authorization: Bearer {key}",
        f"{{'authorization': 'Bearer opaque-token-123456', 'x-api-key': '{key}'}}",
        f"cookie: cf_session={session}",
        "password=hunter2hunter2 and passphrase: 'correct horse'",
        'device {"secret": "9f86d081884c7d659a2feaa0c55ad015"}',
        f"X-CSRF-Token: {'z' * 43}",
    ]
    for text in cases:
        cleaned = redact(text)
        assert "[redacted]" in cleaned, text
        for secret in (key, session, "opaque-token-123456", "hunter2hunter2", "correct", "9f86d081884c7d65", "z" * 43):
            assert secret not in cleaned, (text, cleaned)
    assert redact("GET /v1/pieces?limit=5 200 OK") == "GET /v1/pieces?limit=5 200 OK"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s - %s %d", (f"Bearer {key}", key, 200), None)
    assert RedactingFilter().filter(record)
    assert key not in record.getMessage() and record.getMessage().endswith(" 200")


@pytest.fixture
def logged_server(tmp_path: Any, clock: ManualClock) -> Iterator[tuple[str, App, str]]:
    """A real uvicorn server with its access log on, every record captured by caplog (log_config=None)."""
    passphrase = f"passphrase-{uuid.uuid4().hex}"
    settings = make_settings(f"sqlite:///{tmp_path / 'cf.db'}", key_passphrase=passphrase)
    with build(settings, clock=clock) as app:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(app),
            log_config=None,
            log_level="debug",
            access_log=True,
            lifespan="off",
            ws="none",
            http="h11",
            loop="asyncio",
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{port}", app, passphrase
        finally:
            server.should_exit = True
            thread.join(timeout=20)
            sock.close()


def test_secrets_never_reach_the_logs(logged_server: tuple[str, App, str], caplog: pytest.LogCaptureFixture) -> None:
    base_url, app, passphrase = logged_server
    caplog.set_level(logging.DEBUG)
    onboard(app, "operator", "factory")
    operator, factory = app.access.create_key("operator"), app.access.create_key("factory")
    secrets_seen = [operator, factory, passphrase]
    with httpx.Client(base_url=base_url, timeout=30) as http:
        assert http.get("/v1/me", headers=bearer(operator)).status_code == 200
        assert http.get("/v1/pieces", headers={"X-API-Key": factory}).status_code == 200
        # a client that puts its key in the URL: the access log prints the URL
        assert http.get(f"/v1/me?api_key={factory}").status_code == 401
        wrong = "cf_0123456789abcdef_" + uuid.uuid4().hex
        secrets_seen.append(wrong)
        assert http.get("/v1/me", headers=bearer(wrong)).status_code == 401
        created = http.post(
            "/v1/organisations",
            json={"org_id": "newco", "name": "Newco", "role": "supplier", "uscc": "913203001347802005"},
            headers=bearer(operator),
        )
        assert created.status_code == 201, created.text
        secrets_seen.append(created.json()["api_key"])
        another = http.post("/v1/api-keys", json={"label": "ci"}, headers={"X-API-Key": factory})
        secrets_seen.append(another.json()["api_key"])
        asset = {
            "asset_id": "lot-1",
            "kind": "warehouse_lot",
            "name": "rebar",
            "commodity": "steel",
            "receipt_no": "W1",
            "quantity_kg": 1000,
        }
        assert http.post("/v1/iot/assets", json=asset, headers=bearer(factory)).status_code == 201
        device = http.post(
            "/v1/iot/devices", json={"device_id": "sc-1", "asset_id": "lot-1", "kind": "scale"}, headers=bearer(factory)
        )
        assert device.status_code == 201, device.text
        secrets_seen.append(device.json()["secret"])
        password = f"pw-{uuid.uuid4().hex}"
        secrets_seen.append(password)
        http.post("/ui/sign-in", data={"user_id": "nobody", "password": password, "csrf_token": "x", "next": "/ui"})
    text = caplog.text + "".join(r.exc_text or "" for r in caplog.records)
    assert '"GET /v1/me' in text and "/v1/organisations" in text, "the access log was not captured"
    assert "api_key=[redacted]" in text  # the key in the URL was logged, redacted
    for secret in secrets_seen:
        assert secret not in text
        assert secret[-20:] not in text


# --- the OpenAPI document -------------------------------------------------------------------------------


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    for option in schema.get("anyOf", []):  # an optional body: the model is one of the options
        if "$ref" in option:
            return _resolve(document, option)
    return schema


def test_every_operation_is_described_with_examples_and_its_errors(cast: App) -> None:
    document = create_app(cast).openapi()
    undescribed: set[str] = set()
    problems: list[str] = []
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            label = f"{method.upper()} {path}"
            if not op.get("summary") or not op.get("description"):
                undescribed.add(label)
            body = op.get("requestBody")
            if body is not None:
                for media, content in body["content"].items():
                    schema = _resolve(document, content.get("schema", {}))
                    if not (content.get("example") or content.get("examples") or schema.get("examples")):
                        problems.append(f"{label} {media}: no example")
            responses = op["responses"]
            expected = {"429"} | ({"401"} if op.get("security") else set()) | ({"409"} if method == "post" else set())
            for status in expected - set(responses):
                problems.append(f"{label}: {status} not documented")
            for status, response in responses.items():
                if status[0] in "45" and PROBLEM not in response.get("content", {}):
                    problems.append(f"{label}: {status} is not problem+json")
            if "Retry-After" not in responses.get("429", {}).get("headers", {}):
                problems.append(f"{label}: 429 without Retry-After")
    assert not undescribed, f"operations without a summary or a description: {sorted(undescribed)}"
    assert not problems, problems
