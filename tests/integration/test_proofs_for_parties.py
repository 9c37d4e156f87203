"""Inclusion proofs for every party an entry names (issue 14, point 5): the issuer and the recipient of an
issue, the holder and the recipient of a transfer, the holder and the co-signing bank of a financing, the
organisation a registration is about; by log index or by operation id. A stranger is refused: 403
``not_a_party`` by index (the index is public: the tree size says it exists), and by operation id the very
answer an unknown id gets (no existence oracle). Then the same proofs as C2SP tlog-proof files, proved in
the newest published checkpoint with its witnesses' cosignatures, and checked under a policy."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from creditflow.bootstrap import App
from creditflow.http.app import create_app
from creditflow.ledger.entries import parse_entry
from creditflow.ledger.note import parse_note
from creditflow.ledger.tlog_proof import MEDIA_TYPE, parse_tlog_proof
from creditflow.ledger.verifier import VerificationFailure, check_inclusion_document, verify_file
from proof_world import Flow, publish, small_flow, witness

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

PATH = "/v1/log/proofs/inclusion"
STRANGERS = ("ore", "rival", "other")


@pytest.fixture
def client(world: App) -> Iterator[TestClient]:
    with TestClient(create_app(world), base_url="http://127.0.0.1") as c:
        yield c


def key(app: App, org: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {app.access.create_key(org)}"}


def op_id_at(app: App, seq: int) -> str:
    return str(parse_entry(bytes.fromhex(app.proofs.inclusion(seq)["entry"])).signed.op.op_id)


def answer(response: Any) -> tuple[int, dict[str, Any]]:
    """Status and body of a problem, without what echoes the request (its path and query)."""
    body = response.json()
    return response.status_code, {k: v for k, v in body.items() if k not in ("instance", "request_id")}


def test_every_party_an_entry_names_gets_its_proof_and_nobody_else_does(world: App, client: TestClient) -> None:
    flow: Flow = small_flow(world)
    named = {
        flow.issue_seq: {"xcmg", "factory"},
        flow.transfer_seq: {"factory", "steel"},
        flow.finance_seq: {"factory", "bank"},
        flow.register_steel_seq: {"steel"},
    }
    keys = {org: key(world, org) for org in {*STRANGERS, "auditor", "operator", *set().union(*named.values())}}
    unknown = answer(client.get(PATH, params={"op_id": str(uuid.uuid4())}, headers=keys["ore"]))
    assert unknown[0] == 404 and unknown[1]["code"] == "entry_not_found"
    for seq, parties in named.items():
        op_id = op_id_at(world, seq)
        for org in sorted(parties | {"auditor", "operator"}):
            for params in ({"leaf_index": seq}, {"op_id": op_id}):
                got = client.get(PATH, params=params, headers=keys[org])
                assert got.status_code == 200, (seq, org, params, got.text)
                summary = check_inclusion_document(got.json(), world.log_keys)
                assert summary["leaf_index"] == seq and summary["operation"]["op_id"] == op_id
        for org in STRANGERS:
            refused = client.get(PATH, params={"leaf_index": seq}, headers=keys[org])
            assert (refused.status_code, refused.json()["code"]) == (403, "not_a_party"), (seq, org)
            by_id = client.get(PATH, params={"op_id": op_id}, headers=keys[org])
            assert answer(by_id) == unknown, (seq, org)  # the same answer as for an id that does not exist
            # ... also when asking for a tree size that does not hold it, or for the tlog-proof file
            small = client.get(PATH, params={"op_id": op_id, "tree_size": 1, "format": "tlog-proof"}, headers=keys[org])
            assert answer(small) == unknown, (seq, org)


def test_the_asking_is_checked(world: App, client: TestClient) -> None:
    small_flow(world)
    auditor = key(world, "auditor")
    for params, status, code in (
        ({}, 422, "leaf_index_or_op_id"),
        ({"leaf_index": 0, "op_id": str(uuid.uuid4())}, 422, "leaf_index_or_op_id"),
        ({"op_id": "not-a-uuid"}, 422, "invalid_input"),
        ({"leaf_index": 10**6}, 404, "entry_not_found"),
        ({"leaf_index": 0, "format": "xml"}, 422, None),
    ):
        got = client.get(PATH, params=params, headers=auditor)
        assert got.status_code == status, (params, got.text)
        if code:
            assert got.json()["code"] == code, (params, got.text)


def test_a_tlog_proof_is_proved_in_the_newest_published_checkpoint_with_its_cosignatures(
    world: App, client: TestClient
) -> None:
    flow = small_flow(world)
    a, b, c = witness("witness-a.example"), witness("witness-b.example"), witness("witness-c.example")
    published_size, published = publish(world, [a, b])
    later = world.ledger.accept("steel", world.queries.pieces_by_holder("steel").items[0].id)
    current = world.proofs.latest_head().tree_size
    assert current > published_size > flow.transfer_seq

    steel = key(world, "steel")
    got = client.get(PATH, params={"leaf_index": flow.transfer_seq, "format": "tlog-proof"}, headers=steel)
    assert got.status_code == 200, got.text
    assert got.headers["content-type"].startswith(MEDIA_TYPE)
    assert (
        got.headers["content-disposition"] == f'attachment; filename="creditflow-entry-{flow.transfer_seq}.tlog-proof"'
    )
    proof = parse_tlog_proof(got.text)
    assert proof.index == flow.transfer_seq and proof.checkpoint == published  # verbatim, cosignatures included
    assert proof.extra == bytes.fromhex(world.proofs.inclusion(flow.transfer_seq)["entry"])
    as_json = client.get(PATH, params={"leaf_index": flow.transfer_seq}, headers=steel).json()
    assert as_json["checkpoint"] == published and as_json["tree_head"]["tree_size"] == published_size
    assert as_json["log_vkey"] == world.checkpoints.vkey

    log = world.checkpoints.vkey
    vkeys = [w.verifier.encode() for w in (a, b, c)]
    verdict = verify_file(got.content, log_vkeys=[log], witness_vkeys=vkeys, quorum=2)
    assert verdict.trusted and verdict.summary["witnesses"] == ["witness-a.example", "witness-b.example"]
    assert verdict.summary["tree_size"] == published_size and verdict.summary["operation"]["to"] == "steel"
    assert verify_file(as_json_bytes(as_json), log_vkeys=[log], witness_vkeys=vkeys, quorum=2).trusted
    with pytest.raises(VerificationFailure) as failure:
        verify_file(got.content, log_vkeys=[log], witness_vkeys=vkeys, quorum=3)
    assert failure.value.where == "cosignatures"
    assert failure.value.what.startswith("2 of the 3 trusted witnesses cosigned (witness-a.example, witness-b.example)")

    # A consistency proof carries tree heads, no cosignatures: pinned, it verifies; a quorum cannot be met by it.
    consistency = as_json_bytes(world.proofs.consistency(1, published_size))
    assert verify_file(consistency, log_vkeys=[log]).trusted
    with pytest.raises(VerificationFailure) as failure:
        verify_file(consistency, log_vkeys=[log], witness_vkeys=vkeys, quorum=1)
    assert failure.value.where == "cosignatures"

    # An entry after the newest published checkpoint: proved in a checkpoint signed now, with no cosignature.
    newest = client.get(PATH, params={"op_id": later.op_id, "format": "tlog-proof"}, headers=steel)
    assert newest.status_code == 200, newest.text
    fresh = parse_tlog_proof(newest.text)
    assert parse_note(fresh.checkpoint).text.split("\n")[1] == str(current)
    assert len(parse_note(fresh.checkpoint).signatures) == 1
    assert verify_file(newest.content, log_vkeys=[log]).trusted
    with pytest.raises(VerificationFailure) as failure:
        verify_file(newest.content, log_vkeys=[log], witness_vkeys=vkeys[:2], quorum=1)
    assert failure.value.what.startswith("0 of the 2 trusted witnesses cosigned (none)")

    # An explicit tree size gets the checkpoint of that size: the published one when it is the published size.
    exact = client.get(
        PATH,
        params={"leaf_index": 0, "tree_size": published_size, "format": "tlog-proof"},
        headers=key(world, "auditor"),
    )
    assert parse_tlog_proof(exact.text).checkpoint == published


def as_json_bytes(doc: dict[str, Any]) -> bytes:
    import json

    return json.dumps(doc).encode()
