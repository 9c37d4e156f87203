"""The HTTP API: ``create_app(app)`` turns a wired `App` (see `creditflow.bootstrap`) into a FastAPI
application. No globals: the `App` lives on ``api.state`` and reaches endpoints as a dependency.

Requests pass, outermost first, through:

0. CORS (only if ``cors_allow_origins`` names origins), then `ClientRateLimitMiddleware` (429 for a client
   address without a known API key over its rate; see `creditflow.http.hardening`);
1. `BodyLimitMiddleware`: ``request_max_bytes`` by Content-Length, and by the bytes actually read
   (413 ``request_too_large``); text with U+0000 in the path, query or body is 422 ``invalid_input``;
2. `CatchAllMiddleware`: an unexpected exception becomes a logged 500 ``internal_error``;
3. `IdempotencyMiddleware`: ``Idempotency-Key`` on POST (see `creditflow.http.idempotency`);
4. FastAPI: routing, validation, authentication, endpoints; `DomainError` -> problem+json.

``creditflow serve`` builds the `App` and runs ``create_app(app)`` under uvicorn.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from creditflow import __version__
from creditflow.bootstrap import App
from creditflow.http import hardening, problems
from creditflow.http.api import build_router
from creditflow.http.headers import SecurityHeadersMiddleware
from creditflow.http.idempotency import IdempotencyMiddleware, read_body, replaying
from creditflow.http.pages import common as web_pages
from creditflow.http.problems import PROBLEM_JSON, CatchAllMiddleware, problem
from creditflow.http.ratelimit import RateLimiter
from creditflow.http.security import SECURITY_SCHEMES, STATE_KEY, caller

DESCRIPTION = """\
Digital debt certificates on a verifiable ledger.

- Authenticate with `Authorization: Bearer cf_...` (or `X-API-Key: cf_...`).
- Money is an integer number of fen (`*_minor`, 1 yuan = 100 fen); floats are refused.
- Every error is RFC 9457 `application/problem+json` with a stable `code` and, where known, the `field`.
- Every POST accepts `Idempotency-Key` (1-200 characters): a retry with the same key and request returns
  the first response with `Idempotent-Replayed: true`.
- Lists take `limit` and `cursor` and return `{"items": [...], "next_cursor": ...}`.
- Objects of other organisations that the caller is not party to answer 404.
- Each API key may send `rate_limit_per_s` requests a second (bursts up to `rate_limit_burst`); requests
  without a known key count against their client address. Over it: 429 `rate_limited` with `Retry-After`.
- Request bodies are capped at `request_max_bytes` (ERP files: `erp_max_file_bytes`): 413 `request_too_large`.
- Browsers may call the API cross-origin only from the origins in `cors_allow_origins` (none by default).
"""

log = logging.getLogger(__name__)

TAGS = [
    {"name": "organisations", "description": "parties, their keys and API keys"},
    {"name": "certificates", "description": "payables and the certificates issued on them"},
    {"name": "pieces", "description": "holding, accepting, splitting and transferring pieces; signed operations"},
    {"name": "reports", "description": "liability and circulation"},
    {"name": "log", "description": "the public transparency log: keys, signed tree heads, proofs"},
    {"name": "health", "description": "liveness"},
    {"name": "erp", "description": "trade documents from ERP systems: import, look up, three-way match"},
    {"name": "trade finance", "description": "confirmation, credit lines, financing, clearing, network view"},
]


IDEMPOTENCY_PARAMETER: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "1-200 characters. A retry with the same key and the same request returns the first "
    "response (with `Idempotent-Replayed: true`); the same key with another request is 409 "
    "`idempotency_key_reused`; while the first is running, 409 `idempotency_in_progress`.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
}


class BodyLimitMiddleware:
    """413 for a body over ``max_bytes``: refused by Content-Length before reading, and counted while
    reading when there is none (chunked) or it lies. The body is read here and handed on whole."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, large: tuple[str, int] | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.large = large  # (path prefix, limit): ERP uploads may be larger than other requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        if self.large is not None and str(scope.get("path", "")).startswith(self.large[0]):
            limit = max(limit, self.large[1])
        declared = Headers(scope=scope).get("content-length")
        too_large = declared is not None and declared.isdigit() and int(declared) > limit
        try:
            body = None if too_large else await read_body(receive, limit)
        except ClientDisconnect:
            return  # nobody to answer; nothing was done
        if body is None:
            await problem(
                413,
                "request_too_large",
                f"the request body exceeds {limit} bytes",
                instance=scope.get("path"),
            )(scope, receive, send)
            return
        refused = hardening.nul_refusal(scope, body)  # 422: PostgreSQL cannot store U+0000 in text
        if refused is not None:
            await refused(scope, receive, send)
            return
        await self.app(scope, replaying(body, receive), send)


def _takes(dependant: Dependant, dependency: Any) -> bool:
    """Whether an endpoint depends on ``dependency``, directly or through another dependency."""
    return any(d.call is dependency or _takes(d, dependency) for d in dependant.dependencies)


def _openapi(api: FastAPI) -> dict[str, Any]:
    """The OpenAPI document, with error responses under ``application/problem+json``."""
    if api.openapi_schema is None:
        schema = get_openapi(
            title=api.title,
            version=api.version,
            description=api.description,
            routes=api.routes,
            tags=api.openapi_tags,
        )
        for operations in schema.get("paths", {}).values():
            for method, operation in operations.items():
                if method == "post":
                    operation.setdefault("parameters", []).append(IDEMPOTENCY_PARAMETER)
                for status, response in operation.get("responses", {}).items():
                    content = response.get("content")
                    if status[:1] in ("4", "5") and content and "application/json" in content:
                        body = content.pop("application/json")
                        if body.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
                            body["schema"] = {"$ref": "#/components/schemas/ProblemOut"}
                        content[PROBLEM_JSON] = body
        secured = {
            (route.path_format, method.lower())
            for route in iter_route_contexts(api.routes)
            if isinstance(route.original_route, APIRoute) and _takes(route.original_route.dependant, caller)
            for method in route.methods or ()
        }
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                if (path, method) in secured:
                    operation["security"] = [{name: []} for name in SECURITY_SCHEMES]
        if secured:
            schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
        components = schema.get("components", {}).get("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        api.openapi_schema = hardening.document_common_errors(schema)
    return api.openapi_schema


def _sweep(app: App) -> None:
    """One round of the housekeeping a running platform owes its users: pieces not accepted before
    their deadline go back to their senders (the ledger refuses a late acceptance either way)."""
    try:
        app.ledger.expire_due()
    except Exception:  # a failed round is logged and retried next interval; it must not kill the server
        log.exception("expiry sweep failed")


@asynccontextmanager
async def _lifespan(api: FastAPI) -> AsyncIterator[None]:
    app: App = getattr(api.state, STATE_KEY)
    interval = app.settings.expiry_sweep_interval_s

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            await anyio.to_thread.run_sync(_sweep, app)

    task = asyncio.create_task(loop()) if interval > 0 else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task


def create_app(app: App, *, rate_limiter: RateLimiter | None = None) -> FastAPI:
    """``rate_limiter``: tests pass one with their own clock; default: from the settings."""
    api = FastAPI(
        title="creditflow",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=_lifespan,
        # FastAPI's /docs and /redoc load their scripts from a CDN: the pages may fetch nothing from the
        # network, so the reference is /openapi.json and the page /ui/api-reference.
        docs_url=None,
        redoc_url=None,
        telemetry=None if app.settings.otel_telemetry else {"tracing": False, "metrics": False, "logs": False},
    )
    setattr(api.state, STATE_KEY, app)
    problems.install(api)
    api.include_router(build_router())
    web_pages.install(api)  # the pages of every role (creditflow.http), on the same services
    # add_middleware puts each new one outside the previous: innermost first.
    api.add_middleware(IdempotencyMiddleware, creditflow=app)
    api.add_middleware(CatchAllMiddleware)
    api.add_middleware(SecurityHeadersMiddleware, hsts=app.settings.web.cookie_secure)
    api.add_middleware(
        BodyLimitMiddleware,
        max_bytes=app.settings.request_max_bytes,
        large=("/v1/erp/", app.settings.erp_max_file_bytes),
    )
    hardening.install(api, app, rate_limiter)  # rate limits, CORS (outermost), log redaction
    api.openapi = lambda: _openapi(api)  # type: ignore[method-assign]
    return api
