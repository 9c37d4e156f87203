"""Idempotent POSTs: ``Idempotency-Key: <1-200 characters>``.

For an authenticated POST carrying the header, keyed by (organisation, key):

1. the key is *reserved* first (a row with status 0 is inserted, in its own transaction), so two
   concurrent requests with the same key never both execute: the loser of the insert reads the row;
2. a row for the same request (SHA-256 of method, path, query, body and the calling person) with a stored response is
   replayed: same status, same body, plus ``Idempotent-Replayed: true``;
3. a row for a different request is 409 ``idempotency_key_reused``; a row still at status 0 (its
   first request is running) is 409 ``idempotency_in_progress``;
4. after the request ran, its response (2xx, and 4xx problems too, which changed nothing and will
   give the same answer) is stored before it is sent; a 5xx, a 429 or an exception deletes the
   reservation so that the client may retry; except 503 ``ledger_timeout``, whose operation may still commit:
   that key stays reserved (``idempotency_in_progress``) so that a retry can never run it twice.

5. a response that carries a secret (an API key, a device secret: shown once) is never stored. An endpoint
   declares it with ``dependencies=[carries_secret("how to get a new one")]``; its 2xx response is sent once,
   and the row keeps only its status and that note (``secret_withheld``). A replay of the same request
   answers 409 ``idempotent_secret_not_replayable`` (with ``Idempotent-Replayed: true``: the first request
   did run) saying how to get a new secret. ``tests/integration/test_secret_responses.py`` checks that every
   route whose response model has a secret-looking field declares it.

Rows older than ``idempotency_retention_days`` no longer count and are replaced on reuse. A reservation
left by a process that died mid-request answers ``idempotency_in_progress`` until it expires: the
request may or may not have run, and a second execution is the one thing this must never cause.

The caller's rate limit (`creditflow.http.ratelimit`) is charged here, once the key is known and
before anything is reserved; `caller` then finds the principal and does not charge it again.

Requests without a key, non-POST requests and requests without a valid API key (they get their 401
from the endpoint) pass straight through. The keys' table is identity's (`creditflow.identity.idempotency`,
SQLite and PostgreSQL alike); this module is the HTTP side of it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import anyio.to_thread
from fastapi import Depends, Request
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from creditflow.bootstrap import App
from creditflow.http.problems import LEDGER_TIMEOUT, PROBLEM_JSON, domain_problem, problem
from creditflow.http.ratelimit import principal_wait, rate_limited
from creditflow.http.security import token_from_headers
from creditflow.identity.access import Principal
from creditflow.identity.idempotency import SECRET_NOT_REPLAYABLE, IdempotencyKeys, Refusal, StoredResponse
from creditflow.kernel.errors import Conflict, DomainError, Unauthenticated

log = logging.getLogger("creditflow.api")

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_MAX = 200
SECRET_MARK = "creditflow.carries_secret"  # key in the request's state: the note stored instead of the response


def carries_secret(how_to_get_a_new_one: str) -> Any:
    """A route dependency that marks the route's response as carrying a secret shown once, e.g.
    ``@router.post("/v1/api-keys", dependencies=[carries_secret("create another: POST /v1/api-keys")])``.
    Its response is then never stored for `Idempotency-Key` replays; a replay answers 409
    ``idempotent_secret_not_replayable`` with ``how_to_get_a_new_one`` in its detail."""

    def mark(request: Request) -> None:
        request.scope.setdefault("state", {})[SECRET_MARK] = how_to_get_a_new_one

    mark.__name__ = "carries_secret"
    return Depends(mark)


def request_digest(method: str, path: str, query: bytes, body: bytes, person: str | None = None) -> bytes:
    """The request as the key's row remembers it. ``person`` (the caller's user id, if a person calls) is
    part of it: another person of the organisation reusing the key is a different request (409), never
    a replay of the first person's answer (an approval is the approver's own)."""
    h = hashlib.sha256()
    parts = [method.upper().encode(), path.encode(), query, body]
    if person is not None:  # (an organisation-wide key's requests hash as they always did)
        parts.append(person.encode())
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.digest()


def reserve(keys: IdempotencyKeys, org_id: str, key: str, digest: bytes) -> StoredResponse | None:
    """Reserve ``key`` for this request (None), or return the stored response to replay.
    Raises `Conflict` for a key reused with another request or still in progress. Blocking: run it in a
    worker thread."""
    outcome = keys.reserve(org_id, key, digest)
    if outcome is Refusal.REUSED:
        raise Conflict(
            f"{HEADER} {key!r} was already used for a different request",
            code="idempotency_key_reused",
            field=HEADER,
        )
    if outcome is Refusal.IN_PROGRESS:
        raise Conflict(
            f"the first request with {HEADER} {key!r} is still being processed; retry shortly",
            code="idempotency_in_progress",
            field=HEADER,
        )
    return outcome


# --- ASGI helpers -------------------------------------------------------------------------------------


async def read_body(receive: Receive, limit: int | None = None) -> bytes | None:
    """Read the whole request body; None if it grows past ``limit`` bytes. Raises `ClientDisconnect`
    if the client goes away first (a partial body must never be acted on, nor hashed for a key)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands out ``body`` once, then defers to the real one (disconnect events)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, *, creditflow: App):
        self.app = app
        self.creditflow = creditflow
        self.keys = IdempotencyKeys(creditflow.engine, creditflow.clock, creditflow.settings.idempotency_retention_days)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        key = headers.get(HEADER)
        if key is None:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        try:
            token = token_from_headers(headers)
            principal = await anyio.to_thread.run_sync(self.creditflow.access.authenticate, token)
        except Unauthenticated:
            await self.app(scope, receive, send)  # the endpoint answers 401
            return
        if not 1 <= len(key) <= KEY_MAX or not key.isprintable():
            await problem(
                422,
                "invalid_input",
                f"{HEADER} must be 1-{KEY_MAX} printable characters",
                instance=path,
                field=HEADER,
            )(scope, receive, send)
            return
        wait = principal_wait(scope.get("app"), principal)  # charged here, not again by `caller`
        if wait > 0:
            await rate_limited(wait, path)(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        body = await read_body(receive) or b""
        digest = request_digest(scope["method"], path, scope.get("query_string", b""), body, principal.user_id)
        try:
            stored = await anyio.to_thread.run_sync(reserve, self.keys, principal.org_id, key, digest)
        except DomainError as exc:
            await domain_problem(exc, path)(scope, receive, send)
            return
        if stored is not None:
            await _replay(stored, path)(scope, receive, send)
            return
        await self._execute(scope, replaying(body, receive), send, principal, key)

    async def _execute(self, scope: Scope, receive: Receive, send: Send, principal: Principal, key: str) -> None:
        messages: list[Message] = []
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            messages.append(message)

        async def release() -> None:
            await anyio.to_thread.run_sync(self.keys.release, principal.org_id, key)

        try:
            await self.app(scope, receive, capture)
        except Exception:
            await release()
            raise
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        if (status >= 500 and not _outcome_unknown(status, body)) or status == 429:
            await release()  # nothing happened and a retry may succeed: the key is free again
        elif status < 500:
            secret_note = scope.get("state", {}).get(SECRET_MARK)
            try:
                if secret_note is not None and 200 <= status < 300:
                    await anyio.to_thread.run_sync(
                        self.keys.complete_withheld, principal.org_id, key, status, str(secret_note)
                    )
                else:
                    await anyio.to_thread.run_sync(
                        self.keys.complete, principal.org_id, key, status, body.decode("utf-8")
                    )
            except Exception:  # the request ran; keep the reservation so that it is never run twice
                log.exception("could not store the response for %s %r", principal.org_id, key)
        for message in messages:
            await send(message)


def _outcome_unknown(status: int, body: bytes) -> bool:
    """A ledger timeout may still commit: keep the reservation so that a retry cannot run it twice."""
    if status != 503:
        return False
    try:
        return bool(json.loads(body).get("code") == LEDGER_TIMEOUT)
    except (ValueError, AttributeError):
        return False


def _replay(stored: StoredResponse, path: str) -> Response:
    if stored.secret_withheld:
        return problem(
            409,
            SECRET_NOT_REPLAYABLE,
            f"the first request with this {HEADER} ran and returned a secret, which is shown only once and never "
            f"stored; it cannot be shown again: {stored.how_to_get_a_new_one}",
            instance=path,
            field=HEADER,
            headers={REPLAYED_HEADER: "true"},
        )
    media_type = PROBLEM_JSON if stored.status_code >= 400 else "application/json"
    return Response(
        content=stored.body.encode("utf-8"),
        status_code=stored.status_code,
        media_type=media_type,
        headers={REPLAYED_HEADER: "true"},
    )
