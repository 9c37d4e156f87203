"""The C2SP tlog-tiles read API under /log/, on SQLite and PostgreSQL: after real operations a client with
nothing but the log's vkey fetches the checkpoint and the tiles over the ASGI app, rebuilds the root and
every proof with `TileHashReader`, and gets exactly what the log's own proofs say; entry bundles only
for the operator and the auditor."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from tile_world import BASE_ENTRIES, grow_to, start_log

from creditflow.bootstrap import App
from creditflow.http.app import create_app
from creditflow.kernel.errors import LimitExceeded
from creditflow.ledger import merkle, store, tiles
from creditflow.ledger.note import open_checkpoint, parse_vkey
from creditflow.ledger.tiles import TileHashReader, TileRef

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

# the cast's onboarding; a partial tile; one full tile (and a level-1 tile of width 1); just beyond; further
SIZES = (BASE_ENTRIES, 255, 256, 257, 300)


@pytest.fixture
def client(app: App) -> Iterator[TestClient]:
    with TestClient(create_app(app)) as c:
        yield c


def fetcher(client: TestClient, headers: dict[str, str] | None = None) -> Any:
    def fetch(path: str) -> bytes:
        response = client.get(f"/log/{path}", headers=headers or {})
        assert response.status_code == 200, (path, response.status_code, response.text[:200])
        assert response.headers["content-type"] == "application/octet-stream"
        assert "immutable" in response.headers["cache-control"]
        return response.content

    return fetch


def trusted_head(client: TestClient, app: App) -> tuple[int, bytes]:
    """What a client does first: verify the checkpoint with the log's vkey alone."""
    response = client.get("/log/checkpoint")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    opened = open_checkpoint(response.content, parse_vkey(app.checkpoints.vkey))
    assert opened.checkpoint.origin == app.settings.origin
    return opened.checkpoint.size, opened.checkpoint.root_hash


def test_a_client_rebuilds_root_and_proofs_from_the_tiles(app: App, client: TestClient) -> None:
    piece = start_log(app)
    auditor = {"Authorization": f"Bearer {app.access.create_key('auditor')}"}
    held: list[tuple[int, bytes]] = []
    for size in SIZES:
        piece = grow_to(app, piece, size)
        tree_size, root = trusted_head(client, app)
        assert tree_size == size
        reader = TileHashReader(tree_size, root, fetcher(client))
        for index in sorted({0, size // 2, size - 1}):
            path = [bytes.fromhex(h) for h in app.proofs.inclusion(index, size)["audit_path"]]
            assert reader.inclusion_proof(index) == path
        for old_size, old_root in held:
            proof = reader.consistency_proof(old_size)
            assert proof == [bytes.fromhex(h) for h in app.proofs.consistency(old_size, size)["proof"]]
            assert merkle.verify_consistency(old_size, size, old_root, root, proof)
        held.append((tree_size, root))
        # the entries: only with the auditor's (or operator's) key, and they hash to the level-0 tiles
        bundled = [
            e for ref in tiles.bundles_for_size(size) for e in tiles.decode_bundle(fetcher(client, auditor)(ref.path))
        ]
        assert [merkle.leaf_hash(e) for e in bundled] == reader.leaf_hashes(0, size)
        assert reader.fetched <= len(tiles.tiles_for_size(size))


def test_tiles_are_immutable_and_beyond_the_tree_is_404(app: App, client: TestClient) -> None:
    piece = start_log(app)
    grow_to(app, piece, 300)
    full = client.get("/log/tile/0/000")
    assert full.status_code == 200 and len(full.content) == 256 * 32
    assert full.headers["cache-control"] == "public, max-age=31536000, immutable"
    partial = client.get("/log/tile/0/001.p/44")
    assert partial.status_code == 200 and len(partial.content) == 44 * 32
    # an older partial tile (a client holding an older checkpoint) is the prefix of the newer one
    older = client.get("/log/tile/0/001.p/10")
    assert older.status_code == 200 and older.content == partial.content[: 10 * 32]
    assert client.get("/log/tile/1/000.p/1").content == tiles.subtree_hash(full.content)
    for beyond in ("tile/0/001", "tile/0/001.p/45", "tile/0/002.p/1", "tile/1/000", "tile/2/000.p/1"):
        r = client.get(f"/log/{beyond}")
        assert r.status_code == 404 and r.json()["code"] == "tile_not_found", (beyond, r.text)
    for bad in ("tile/0/0", "tile/00/000", "tile/0/000.p/256", "tile/0/x000/000", "tile/0/000.p/010", "tile/64/000"):
        r = client.get(f"/log/{bad}")
        assert r.status_code == 404 and r.json()["code"] == "tile_path_invalid", (bad, r.text)


@pytest.mark.parametrize("role", ["operator", "auditor", "factory", "xcmg"])
def test_entry_bundles_only_for_the_operator_and_the_auditor(app: App, client: TestClient, role: str) -> None:
    start_log(app)
    size = app.tiles.checkpoint()[0]
    path = f"/log/{tiles.entries_path(0, size)}"
    assert client.get(path).status_code == 401
    response = client.get(path, headers={"Authorization": f"Bearer {app.access.create_key(role)}"})
    if role in ("operator", "auditor"):
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "private, max-age=31536000, immutable"
        with app.engine.connect() as conn:
            assert tiles.decode_bundle(response.content) == [store.entry_at(conn, i) for i in range(size)]
        beyond = client.get(f"/log/{tiles.entries_path(0, size + 1)}", headers=response.request.headers)
        assert beyond.status_code == 404 and beyond.json()["code"] == "tile_not_found"
    else:
        assert response.status_code == 403 and response.json()["code"] == "role_not_allowed", response.text


def test_an_entry_too_long_for_a_bundle_is_refused_clearly(
    app: App, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    start_log(app)
    monkeypatch.setattr(store, "entry_run", lambda conn, first, count: [b"x" * 70_000] * count)
    with pytest.raises(LimitExceeded) as refused:
        app.tiles.bundle(TileRef(None, 0, 1))
    assert refused.value.code == "entry_too_long_for_bundle" and "70000 bytes" in refused.value.message


def test_an_empty_log_has_a_checkpoint_and_no_tiles(app: App, client: TestClient) -> None:
    size, root = trusted_head(client, app)
    assert (size, root) == (0, merkle.EMPTY_ROOT)
    r = client.get("/log/tile/0/000.p/1")
    assert r.status_code == 404 and r.json()["code"] == "tile_not_found"
