"""What `create_app` adds around the API so that it can face the internet (docs/ARCHITECTURE.md, "API
hardening"; docs/adr/0013-rate-limits-and-cors.md):

- rate limits: the `RateLimiter` on ``api.state``, per key in `caller` and per client address in
  `ClientRateLimitMiddleware` (`creditflow.http.ratelimit`);
- CORS, closed by default: no ``Access-Control-Allow-Origin`` for any origin unless
  ``cors_allow_origins`` names it (then only for those, without credentials);
- secrets kept out of the logs (`creditflow.http.redaction`);
- no U+0000 in any request's text (`nul_refusal`, called by the body limit, which has read the body);
- the error responses every operation may give, documented in the OpenAPI document in one place
  (`document_common_errors`): 401 where a key is required, 409 on every POST (``Idempotency-Key``),
  413 and 422 where there is input, 429 everywhere, 503 on writes.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Scope

from creditflow.bootstrap import App
from creditflow.http import redaction
from creditflow.http.problems import ProblemResponse, problem
from creditflow.http.ratelimit import STATE_ATTR, ClientRateLimitMiddleware, RateLimiter
from creditflow.http.schemas import ProblemOut
from creditflow.http.security import token_from_headers

CORS_METHODS = ["GET", "POST", "PUT"]
CORS_REQUEST_HEADERS = ["Authorization", "X-API-Key", "Content-Type", "Idempotency-Key"]
CORS_EXPOSED_HEADERS = ["Retry-After", "Idempotent-Replayed"]
CORS_MAX_AGE_S = 600
FORM = "application/x-www-form-urlencoded"


def install(api: FastAPI, app: App, rate_limiter: RateLimiter | None = None) -> None:
    """Call after the other middleware: these two wrap everything (CORS outermost, so that even a 413 or
    a 429 carries the CORS headers a browser needs to read it)."""
    redaction.install()
    limiter = rate_limiter if rate_limiter is not None else RateLimiter.from_settings(app.settings)
    setattr(api.state, STATE_ATTR, limiter)

    def known(headers: Headers) -> bool:
        """An API key this process has verified before (a memory look-up; no I/O)."""
        return app.access.cached(token_from_headers(headers)) is not None

    api.add_middleware(ClientRateLimitMiddleware, limiter=limiter, known=known)
    origins = list(app.settings.cors_allow_origins)
    if origins:
        api.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=CORS_METHODS,
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=CORS_EXPOSED_HEADERS,
            allow_credentials=False,  # API keys travel in headers; the pages' session cookie stays same-site
            max_age=CORS_MAX_AGE_S,
        )


# --- U+0000 -------------------------------------------------------------------------------------------------

# A JSON "\u0000" escape (not preceded by an escaped backslash, which would make it literal text)
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def nul_refusal(scope: Scope, body: bytes) -> ProblemResponse | None:
    """422 for the NUL character anywhere in the request's text: PostgreSQL cannot store it in a text
    column (SQLite can), so it would otherwise be refused by one store and kept by the other, or end as a
    500 halfway through a request. Checked once, for every endpoint, on the body the limit already read."""
    where = None
    if "\x00" in str(scope.get("path", "")):
        where = "path"
    elif b"%00" in scope.get("query_string", b"") or b"\x00" in scope.get("query_string", b""):
        where = "query"
    elif (
        b"\x00" in body
        or (b"u0000" in body and _JSON_NUL.search(body))
        or (b"%00" in body and Headers(scope=scope).get("content-type", "").startswith(FORM))
    ):
        where = "body"
    if where is None:
        return None
    return problem(
        422,
        "invalid_input",
        f"{where}: text may not contain the NUL character (U+0000)",
        instance=scope.get("path"),
        field=where,
    )


# --- the OpenAPI document ---------------------------------------------------------------------------------

PROBLEM_REF = {"$ref": "#/components/schemas/ProblemOut"}

COMMON_ERRORS = {
    "401": "no valid API key (`unauthenticated`)",
    "409": "`Idempotency-Key` reused for another request (`idempotency_key_reused`) or its first request "
    "still running (`idempotency_in_progress`), a replay of a request whose response carried a secret shown once "
    "(`idempotent_secret_not_replayable`), or a conflict with the current state",
    "413": "the body is over `request_max_bytes` (`request_too_large`)",
    "422": "invalid input; `field` names it (`invalid_input`, `invalid_amount`, ...)",
    "429": "over the rate limit of the API key, or of the client address without one (`rate_limited`); "
    "retry after `Retry-After` seconds",
    "503": "the ledger did not confirm in time (`ledger_timeout`: check before retrying) or the service is "
    "shutting down (`unavailable`)",
}

RETRY_AFTER_HEADER = {
    "Retry-After": {
        "description": "seconds to wait before retrying",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    }
}


def _problem_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/problem+json": {"schema": dict(PROBLEM_REF)}}}


def document_common_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Add to every operation of ``schema`` the error responses the layers around the endpoints may give
    (an endpoint's own, more specific, descriptions are kept)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    if "ProblemOut" not in components:
        components["ProblemOut"] = ProblemOut.model_json_schema(ref_template="#/components/schemas/{model}")
    for operations in schema.get("paths", {}).values():
        for method, operation in operations.items():
            statuses = ["429"]
            if operation.get("security"):
                statuses.append("401")
            if method == "post":
                statuses.append("409")
            if "requestBody" in operation:
                statuses += ["413", "422"]
            if operation.get("parameters"):
                statuses.append("422")
            if method in ("post", "put"):
                statuses.append("503")
            responses = operation.setdefault("responses", {})
            for status in statuses:
                responses.setdefault(status, _problem_response(COMMON_ERRORS[status]))
            responses["429"].setdefault("headers", RETRY_AFTER_HEADER)
            operation["responses"] = dict(sorted(responses.items()))
    return schema
