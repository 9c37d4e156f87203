"""The C2SP tlog-tiles read API under /log/: the checkpoint, hash tiles and entry bundles.

Any client that speaks tlog-tiles (Go's sumdb/tlog, a witness, a monitor) reads the log here with code
nobody at creditflow wrote. Checkpoint and hash tiles reveal only hashes: no authentication. Entry
bundles name parties and amounts: only the operator and the auditor get them (a deviation from
tlog-tiles, whose bundles are public; docs/transparency/tiles.md).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from creditflow.http.common import error_responses
from creditflow.http.security import AppDep, Caller, is_overseer
from creditflow.kernel.errors import Forbidden

router = APIRouter(tags=["log"])

IMMUTABLE = "public, max-age=31536000, immutable"
PRIVATE_IMMUTABLE = "private, max-age=31536000, immutable"  # never in a shared cache: it is not public
CHECKPOINT_CACHE = "no-cache"  # tlog-tiles: a mutable resource, no caching beyond a few seconds
OCTETS = "application/octet-stream"


def _binary(description: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"description": description, "content": {OCTETS: {"schema": {"type": "string", "format": "binary"}}}}}


@router.get(
    "/log/checkpoint",
    response_class=Response,
    responses={200: {"description": "a C2SP signed note", "content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def log_checkpoint(app: AppDep) -> Response:
    """The newest checkpoint (c2sp.org/tlog-checkpoint): origin, size and root, signed by the log key, with
    the witnesses' cosignatures when they were collected. No authentication; not cached."""
    _size, note = app.tiles.checkpoint()
    return Response(note, media_type="text/plain; charset=utf-8", headers={"Cache-Control": CHECKPOINT_CACHE})


# Before the hash tiles' route: ``/log/tile/{tile:path}`` would match ``entries/...`` too.
@router.get(
    "/log/tile/entries/{bundle:path}",
    response_class=Response,
    responses={**_binary("an entry bundle (uint16-length-prefixed entries)"), **error_responses(401, 403, 404, 413)},
)
def log_entry_bundle(bundle: str, app: AppDep, who: Caller) -> Response:
    """Entry bundle ``tile/entries/<N>[.p/<W>]``: the log entries of level-0 tile N. Entries name parties and
    amounts, so only the operator and the auditor get them (tlog-tiles has them public; creditflow does not)."""
    if not is_overseer(who):
        raise Forbidden("only the operator and the auditor read the log's entries", code="role_not_allowed")
    data = app.tiles.bundle(app.tiles.parse(f"tile/entries/{bundle}"))
    return Response(data, media_type=OCTETS, headers={"Cache-Control": PRIVATE_IMMUTABLE})


@router.get(
    "/log/tile/{tile:path}",
    response_class=Response,
    responses={**_binary("concatenated 32-byte node hashes"), **error_responses(404)},
)
def log_hash_tile(tile: str, app: AppDep) -> Response:
    """Hash tile ``tile/<L>/<N>[.p/<W>]`` (c2sp.org/tlog-tiles): W node hashes at Merkle level 8L. No
    authentication: hashes only. Immutable, partial tiles too; 404 ``tile_not_found`` beyond the tree."""
    data = app.tiles.tile(app.tiles.parse(f"tile/{tile}"))
    return Response(data, media_type=OCTETS, headers={"Cache-Control": IMMUTABLE})
