"""Errors as RFC 9457 problem details (``application/problem+json``), mapped in one place.

Every error the API returns has the same shape::

    {"type": "https://creditflow.example/problems/piece_already_spent",
     "title": "Piece already spent", "status": 409, "detail": "the piece has already been spent",
     "code": "piece_already_spent", "field": "piece_id", "instance": "/v1/pieces/.../split"}

- `DomainError` subclasses keep their stable ``code`` and their ``status`` (422, 404, 403, 401, 409, 400, 413).
- Request validation (FastAPI/pydantic) is 422 ``invalid_input`` naming the first bad field (``errors``
  lists them all); a bad amount field (``*_minor``) is ``invalid_amount``, the code the domain uses.
- Unknown routes are 404 ``not_found``, wrong methods 405 ``method_not_allowed``, bodies over the limit
  413 ``request_too_large``; a body that is not UTF-8 is 422 ``invalid_input`` like any invalid JSON.
- Over the rate limit is 429 ``rate_limited`` with ``Retry-After`` (`creditflow.http.ratelimit`).
- A ledger commit not confirmed within ``sequencer_timeout_s`` is 503 ``ledger_timeout`` (it may still
  happen); a sequencer shutting down is 503 ``unavailable`` (nothing happened).
- Anything unexpected is 500 ``internal_error``: logged with its traceback, never shown to the client.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from creditflow.kernel.errors import DomainError
from creditflow.ledger.sequencer import SequencerClosed

log = logging.getLogger("creditflow.api")

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://creditflow.example/problems/"
LEDGER_TIMEOUT = "ledger_timeout"

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


# pydantic error types that mean "this value is not a valid amount" (as opposed to a missing field or a
# list of the wrong length): reported with the domain's own code for bad amounts.
_AMOUNT_ERRORS = frozenset(
    {"int_type", "int_parsing", "int_from_float", "greater_than", "greater_than_equal", "less_than", "less_than_equal"}
)


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_JSON


def title_for(code: str) -> str:
    return code.replace("_", " ").capitalize()


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    instance: str | None = None,
    field: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> ProblemResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": title_for(code),
        "status": status,
        "detail": detail,
        "code": code,
    }
    if field is not None:
        body["field"] = field
    if instance is not None:
        body["instance"] = instance
    body.update({k: v for k, v in extensions.items() if k not in body})
    all_headers = dict(headers or {})
    if status == 401:
        all_headers.setdefault("WWW-Authenticate", 'Bearer realm="creditflow"')
    return ProblemResponse(body, status_code=status, headers=all_headers)


def _json_safe(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def domain_problem(exc: DomainError, instance: str | None) -> ProblemResponse:
    extras = {k: v for k, v in exc.details.items() if _json_safe(v)}
    wait = exc.details.get("retry_after_s")
    headers = {"Retry-After": str(max(1, int(wait)))} if isinstance(wait, int) else None
    return problem(exc.status, exc.code, exc.message, instance=instance, field=exc.field, headers=headers, **extras)


def field_name(loc: Sequence[int | str]) -> str:
    """``("body", "amounts_minor", 1)`` -> ``"amounts_minor[1]"``; ``("query", "limit")`` -> ``"limit"``."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        source = parts.pop(0)
        if not parts:
            return str(source)
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "body"


def _validation_problem(errors: Sequence[Any], instance: str, *, json_body: bool = True) -> ProblemResponse:
    listed = []
    for err in errors:
        loc = err.get("loc", ()) if isinstance(err, Mapping) else ()
        name = field_name(loc)
        kind = str(err.get("type", "")) if isinstance(err, Mapping) else ""
        message = str(err.get("msg", "is not valid")) if isinstance(err, Mapping) else "is not valid"
        if kind == "extra_forbidden":
            message = "is not a known field"
        elif kind == "json_invalid":
            name, message = "body", "is not valid JSON"
        elif name == "body" and not json_body:
            message = "must be a JSON object sent with Content-Type: application/json"
        listed.append({"field": name, "message": message, "type": kind})
    if not listed:
        listed.append({"field": "body", "message": "is not valid", "type": ""})
    first = listed[0]
    leaf = first["field"].split(".")[-1].split("[")[0]
    code = "invalid_amount" if leaf.endswith("_minor") and first["type"] in _AMOUNT_ERRORS else "invalid_input"
    return problem(
        422,
        code,
        f"{first['field']}: {first['message']}",
        instance=instance,
        field=first["field"],
        errors=listed,
    )


async def _domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    return domain_problem(exc, request.url.path)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    json_body = "json" in request.headers.get("content-type", "").lower()
    return _validation_problem(exc.errors(), request.url.path, json_body=json_body)


async def _ledger_timeout(request: Request, exc: Exception) -> Response:
    log.warning("ledger commit not acknowledged in time on %s %s", request.method, request.url.path)
    return problem(
        503,
        LEDGER_TIMEOUT,
        "the ledger did not confirm the operation in time and it may still complete: check the object's "
        "state before retrying (its Idempotency-Key stays reserved, so a retry with it cannot run it twice)",
        instance=request.url.path,
        headers={"Retry-After": "5"},
    )


async def _sequencer_closed(request: Request, exc: Exception) -> Response:
    return problem(
        503,
        "unavailable",
        "the service is shutting down; nothing was done, retry shortly",
        instance=request.url.path,
        headers={"Retry-After": "5"},
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and isinstance(exc.__cause__, ValueError):
        # FastAPI's answer to a body it cannot decode (not UTF-8, say): the same 422 as a body that is
        # not JSON, so that a client sees one rule for one mistake.
        return _validation_problem([{"loc": ("body",), "type": "json_invalid"}], request.url.path)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    if exc.status_code == 404:
        detail = f"no resource at {request.url.path}"
    elif exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    else:
        detail = exc.detail if isinstance(exc.detail, str) else title_for(code)
    return problem(exc.status_code, code, detail, instance=request.url.path, headers=exc.headers)


def install(api: FastAPI) -> None:
    """Register the handlers on ``api``; `CatchAllMiddleware` covers what no handler catches."""
    api.add_exception_handler(DomainError, _domain_error)
    api.add_exception_handler(RequestValidationError, _validation_error)
    api.add_exception_handler(StarletteHTTPException, _http_error)
    api.add_exception_handler(TimeoutError, _ledger_timeout)
    api.add_exception_handler(SequencerClosed, _sequencer_closed)


class CatchAllMiddleware:
    """Turn an unexpected exception into a 500 problem (logged, not shown), instead of letting it
    reach the server. Sits inside the body limit and outside idempotency, so that idempotency sees
    the exception (and drops its reservation) and the client still gets problem+json."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:  # too late for a clean answer; let the server drop the connection
                raise
            response = problem(
                500,
                "internal_error",
                "the server failed to handle this request; it has been logged",
                instance=scope.get("path"),
            )
            await response(scope, receive, send)
