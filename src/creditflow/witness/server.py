"""The witness over HTTP: ``POST /add-checkpoint`` (c2sp.org/tlog-witness), plus ``GET /`` saying who it is.

A bare Starlette app (no FastAPI, no database): the witness is meant to run on another organisation's machine
with nothing of the platform behind it. The endpoint is synchronous on purpose: Starlette runs it in its thread
pool, and the per-log lock in `StateDir` serialises concurrent submissions for one log.
"""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from creditflow.witness.core import MAX_BODY_BYTES, Answer, Witness

log = logging.getLogger("creditflow.witness")
# Refusals that may mean the log misbehaves (a fork, a forged signature), not a client that is merely behind.
_MISBEHAVIOUR = frozenset({"fork_at_held_size", "bad_consistency_proof", "bad_log_signature"})


async def _read_body(request: Request) -> bytes | None:
    """The body, or None past MAX_BODY_BYTES (read in chunks: a huge body is never held whole)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def create_witness_app(witness: Witness) -> Starlette:
    async def add_checkpoint(request: Request) -> Response:
        body = await _read_body(request)
        if body is None:
            answer = Answer(413, "request body is too large\n", "too_large")
        else:
            try:
                answer = await run_in_threadpool(witness.add_checkpoint, body)
            except Exception:  # a disk error while persisting: no cosignature, nothing half-written
                log.exception("add-checkpoint failed")
                answer = Answer(500, "the witness could not persist its state\n", "internal_error")
        if answer.code in _MISBEHAVIOUR:
            log.warning(
                "add-checkpoint refused: %s %s (kept in evidence/ when the log signed it)", answer.status, answer.code
            )
        elif answer.status != 200:
            log.info("add-checkpoint refused: %s %s", answer.status, answer.code)
        # The content type is set as is: Starlette would add "; charset=utf-8" to text/x.tlog.size.
        return Response(answer.body, status_code=answer.status, headers={"content-type": answer.content_type})

    async def about(_: Request) -> Response:
        return PlainTextResponse(f"c2sp.org/tlog-witness\n{witness.vkey}\n")

    return Starlette(
        routes=[
            Route("/add-checkpoint", add_checkpoint, methods=["POST"]),
            Route("/", about, methods=["GET"]),
        ]
    )
