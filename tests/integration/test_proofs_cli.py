"""Proofs for outsiders, end to end: `creditflow proof ...` writes them, `creditflow verify-proof` and
`creditflow.ledger.verifier` check them with nothing but the file (and, ideally, a pinned log key);
any changed hash, entry or size is refused. Also the demo, as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from conftest import CLI_SECRETS_ENV, issue_accepted, onboard
from creditflow.bootstrap import App
from creditflow.cli.main import cli
from creditflow.ledger import merkle
from creditflow.ledger.entries import sign_operation
from creditflow.ledger.sequencer import Receipt
from creditflow.ledger.signing import Signer
from creditflow.ledger.tables import ledger_entries, log_head, tree_heads
from creditflow.ledger.tree_head import TreeHead, sign_tree_head
from creditflow.ledger.verifier import (
    VerificationFailure,
    check_consistency_document,
    check_inclusion_document,
)

CLI_ENV = {"CREDITFLOW_KDF_OPSLIMIT": "1", "CREDITFLOW_KDF_MEMLIMIT_BYTES": "8388608", **CLI_SECRETS_ENV}


def run_cli(args: list[str], tmp_path: Path) -> Any:
    env = {**CLI_ENV, "CREDITFLOW_CONFIG": str(tmp_path / "absent.toml")}
    return CliRunner().invoke(cli, args, env=env)


def db_url(app: App) -> str:
    return app.engine.url.render_as_string(hide_password=False)


def leaves(app: App) -> list[bytes]:
    with app.engine.connect() as conn:
        return [
            bytes(h) for h in conn.execute(select(ledger_entries.c.leaf_hash).order_by(ledger_entries.c.seq)).scalars()
        ]


def trusted(app: App) -> dict[str, bytes]:
    return {app.log_signer.key_id: app.log_signer.public_key}


def small_log(app: App) -> str:
    """Onboarding (9 entries) and a short flow: 13 entries, one per group commit."""
    onboard(app)
    return short_flow(app)


def short_flow(app: App) -> str:
    root = issue_accepted(app, 1_000_000)  # entries 9 (issue) and 10 (accept)
    a, _b = app.ledger.split("factory", root, [700_000, 300_000]).result["piece_ids"]
    app.ledger.transfer("factory", str(a), "steel", 700_000)
    return root


# --- inclusion, through the command ----------------------------------------------------------------


@pytest.fixture
def proof_file(world: App, tmp_path: Path) -> tuple[Path, App, int]:
    short_flow(world)
    size = world.proofs.latest_head().tree_size
    url = db_url(world)
    world.close()
    out = tmp_path / "inclusion.json"
    index = 10  # the accept of the certificate
    result = run_cli(["proof", "inclusion", "--index", str(index), "--out", str(out), "--db", url], tmp_path)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["tree_head"]["tree_size"] == size
    return out, world, index


def test_inclusion_proof_verifies_offline(proof_file: tuple[Path, App, int], tmp_path: Path) -> None:
    out, app, index = proof_file
    unpinned = run_cli(["verify-proof", str(out)], tmp_path)
    assert unpinned.exit_code == 4, unpinned.output  # the math holds, the signer is unproven
    assert "math only, signer unproven" in unpinned.stdout
    assert "proved NOTHING about who signed" in " ".join(unpinned.stderr.split())
    pinned = run_cli(["verify-proof", str(out), "--log-key", app.log_signer.public_key.hex()], tmp_path)
    assert pinned.exit_code == 0, pinned.output
    summary = check_inclusion_document(json.loads(out.read_text()), trusted(app))
    assert summary["leaf_index"] == index
    assert summary["operation"]["type"] == "accept"


def _flip_hex(text: str, position: int) -> str:
    digit = text[position]
    return text[:position] + ("0" if digit != "0" else "1") + text[position + 1 :]


def _audit_path_hash(doc: dict[str, Any]) -> str:
    doc["audit_path"][1] = _flip_hex(doc["audit_path"][1], 7)
    return "audit_path"


def _entry(doc: dict[str, Any]) -> str:
    entry = bytes.fromhex(doc["entry"])
    doc["entry"] = entry.replace(b'"type":"accept"', b'"type":"reject"').hex()
    assert doc["entry"] != entry.hex()
    return "audit_path"


def _entry_byte(doc: dict[str, Any]) -> str:
    doc["entry"] = _flip_hex(doc["entry"], 20)
    return "audit_path"


def _tree_size(doc: dict[str, Any]) -> str:
    doc["tree_head"]["tree_size"] += 1
    return "tree_head"


def _root(doc: dict[str, Any]) -> str:
    doc["tree_head"]["root_hash"] = _flip_hex(doc["tree_head"]["root_hash"], 0)
    return "tree_head"


def _leaf_index(doc: dict[str, Any]) -> str:
    doc["leaf_index"] += 1
    return "audit_path"


def _path_dropped(doc: dict[str, Any]) -> str:
    doc["audit_path"].pop()
    return "audit_path"


TAMPERS = {
    "audit_path hash": _audit_path_hash,
    "entry changed": _entry,
    "entry byte": _entry_byte,
    "tree_size": _tree_size,
    "root_hash": _root,
    "leaf_index": _leaf_index,
    "audit_path shortened": _path_dropped,
}


@pytest.mark.parametrize("name", list(TAMPERS))
def test_tampered_inclusion_proof_is_refused(proof_file: tuple[Path, App, int], tmp_path: Path, name: str) -> None:
    out, app, _ = proof_file
    doc = json.loads(out.read_text())
    where = TAMPERS[name](doc)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    result = run_cli(["verify-proof", str(bad), "--log-key", app.log_signer.public_key.hex()], tmp_path)
    assert result.exit_code == 1, result.output
    assert f"PROOF INVALID at {where}" in result.stderr
    with pytest.raises(VerificationFailure) as failure:
        check_inclusion_document(doc, trusted(app))
    assert failure.value.where == where


def test_inclusion_proof_under_another_log_key_is_refused(proof_file: tuple[Path, App, int], tmp_path: Path) -> None:
    out, _app, _ = proof_file
    other = Signer.generate("log-1").public_key.hex()
    result = run_cli(["verify-proof", str(out), "--log-key", other], tmp_path)
    assert result.exit_code == 1, result.output
    assert "PROOF INVALID at tree_head" in result.stderr
    not_hex = run_cli(["verify-proof", str(out), "--log-key", "zz"], tmp_path)
    assert not_hex.exit_code == 3


def test_a_proof_re_signed_by_an_impostor_is_refused_under_the_pinned_key(
    proof_file: tuple[Path, App, int], tmp_path: Path
) -> None:
    """Someone rewrites the entry, recomputes a one-leaf tree and signs it with their own key, shipped
    inside the file: valid on its own terms, refused once the reader pins the real log key."""
    out, app, index = proof_file
    doc = json.loads(out.read_text())
    impostor = Signer.generate("log-1")
    entry = bytes.fromhex(doc["entry"]).replace(b'"type":"accept"', b'"type":"reject"')
    forged = sign_tree_head(
        impostor, index + 1, merkle.root_from_leaves([b"\0" * 32] * index + [merkle.leaf_hash(entry)]), 1
    )
    doc.update(
        entry=entry.hex(),
        tree_head=forged.to_json(),
        log_keys={"log-1": impostor.public_key.hex()},
        audit_path=[
            h.hex() for h in merkle.MemoryTree([b"\0" * 32] * index + [merkle.leaf_hash(entry)]).inclusion_proof(index)
        ],
    )
    fake = tmp_path / "impostor.json"
    fake.write_text(json.dumps(doc))
    assert run_cli(["verify-proof", str(fake)], tmp_path).exit_code == 4  # no pinned key: self-consistent only
    pinned = run_cli(["verify-proof", str(fake), "--log-key", app.log_signer.public_key.hex()], tmp_path)
    assert pinned.exit_code == 1
    assert "PROOF INVALID at tree_head" in pinned.stderr


# --- consistency -----------------------------------------------------------------------------------


def test_consistency_between_every_pair_of_sizes(app: App) -> None:
    small_log(app)
    hashes = leaves(app)
    n = len(hashes)
    assert n == 13
    keys = trusted(app)
    for old in range(1, n + 1):
        for new in range(old, n + 1):
            doc = app.proofs.consistency(old, new)
            summary = check_consistency_document(doc, keys)
            assert (summary["old_tree_size"], summary["new_tree_size"]) == (old, new)
            # The signed roots are the RFC 6962 roots of the log's own leaves.
            assert summary["old_root_hash"] == merkle.root_from_leaves(hashes[:old]).hex()
            assert summary["new_root_hash"] == merkle.root_from_leaves(hashes[:new]).hex()

            # A forged old root, not re-signed: the tree head's signature gives it away.
            unsigned = json.loads(json.dumps(doc))
            unsigned["old_tree_head"]["root_hash"] = _flip_hex(doc["old_tree_head"]["root_hash"], 3)
            with pytest.raises(VerificationFailure) as failure:
                check_consistency_document(unsigned, keys)
            assert failure.value.where == "old_tree_head"

            # A forged old root signed with the real log key (an equivocating log): the proof fails.
            forged_root = merkle.root_from_leaves([*hashes[: old - 1], b"\x07" * 32])
            equivocal = json.loads(json.dumps(doc))
            equivocal["old_tree_head"] = sign_tree_head(app.log_signer, old, forged_root, 1).to_json()
            with pytest.raises(VerificationFailure) as failure:
                check_consistency_document(equivocal, keys)
            assert failure.value.where == "proof", (old, new)


def test_an_auditors_old_tree_head_stays_consistent(app: App, tmp_path: Path) -> None:
    root = small_log(app)
    kept = app.proofs.latest_head()  # what an auditor stored yesterday
    kept_json = json.loads(json.dumps(kept.to_json()))
    piece = app.queries.pieces_by_holder("factory").items[0].id
    app.ledger.transfer("factory", piece, "ore", 100_000)
    for _ in range(5):
        issue_accepted(app, 10_000, holder="ore")
    assert root
    newest = app.proofs.latest_head()
    assert newest.tree_size > kept.tree_size + 10

    doc = app.proofs.consistency(kept.tree_size)
    assert doc["old_tree_head"] == kept_json  # the stored head, byte for byte
    assert doc["new_tree_head"] == newest.to_json()
    doc["old_tree_head"] = kept_json  # the auditor's own copy is what matters
    check_consistency_document(doc, trusted(app))

    # Through the command, on a closed database, with the key pinned.
    url = db_url(app)
    app.close()
    out = tmp_path / "consistency.json"
    written = run_cli(["proof", "consistency", "--old", str(kept.tree_size), "--out", str(out), "--db", url], tmp_path)
    assert written.exit_code == 0, written.output
    ok = run_cli(["verify-proof", str(out), "--log-key", app.log_signer.public_key.hex()], tmp_path)
    assert ok.exit_code == 0, ok.output
    assert "proof valid" in ok.stdout

    # One hash of the proof changed: refused.
    doc = json.loads(out.read_text())
    doc["proof"][0] = _flip_hex(doc["proof"][0], 0)
    out.write_text(json.dumps(doc))
    bad = run_cli(["verify-proof", str(out), "--log-key", app.log_signer.public_key.hex()], tmp_path)
    assert bad.exit_code == 1
    assert "PROOF INVALID at proof" in bad.stderr


def test_invalid_sizes_are_refused_by_the_command(world: App, tmp_path: Path) -> None:
    issue_accepted(world)
    url = db_url(world)
    size = world.proofs.latest_head().tree_size
    world.close()
    for args in (
        ["proof", "inclusion", "--index", str(size), "--db", url],
        ["proof", "inclusion", "--index", "0", "--tree-size", str(size + 1), "--db", url],
        ["proof", "consistency", "--old", "0", "--db", url],
        ["proof", "consistency", "--old", "5", "--new", "4", "--db", url],
    ):
        result = run_cli(args, tmp_path)
        assert result.exit_code == 2, (args, result.output)
        assert "error" in result.stderr


def _hold_the_log(app: App) -> Any:
    """A transaction that holds the log head's lock, so that the sequencer's next batch waits."""
    conn = app.engine.connect()
    conn.begin()  # SQLite: BEGIN IMMEDIATE takes the write lock
    if app.engine.dialect.name != "sqlite":
        conn.execute(select(log_head).with_for_update())
    return conn


def test_proofs_for_sizes_without_a_stored_tree_head(world: App) -> None:
    """Group commit signs one head per batch; a proof for a size inside a batch gets a head signed on
    demand over the root computed from the stored nodes, and verifies like any other."""
    root = issue_accepted(world)
    before = world.proofs.latest_head().tree_size
    operator = world.custody.signer("operator")
    futures: list[Future[Receipt]] = []
    hold = _hold_the_log(world)
    try:
        for i in range(12):
            kind = "freeze" if i % 2 == 0 else "unfreeze"
            payload = {
                "v": 1,
                "type": kind,
                "op_id": str(uuid.uuid4()),
                "actor": "operator",
                "piece_id": root,
                "reason": "audit",
            }
            futures.append(world.sequencer.submit_async(sign_operation(payload, [operator])))
        time.sleep(0.2)  # the writer takes what is queued and waits for the lock
    finally:
        hold.rollback()
        hold.close()
    receipts = [f.result(timeout=30) for f in futures]
    assert [r.seq for r in receipts] == list(range(before, before + 12))

    with world.engine.connect() as conn:
        stored = set(conn.execute(select(tree_heads.c.tree_size)).scalars())
    size = before + 12
    missing = [s for s in range(before + 1, size) if s not in stored]
    assert len(missing) >= 8, f"the ops were not grouped: heads at {sorted(stored)}"
    hashes = leaves(world)
    keys = trusted(world)
    for s in missing:
        for index in (0, s - 1, s // 2):
            doc = world.proofs.inclusion(index, s)
            assert doc["tree_head"]["tree_size"] == s
            assert TreeHead.from_json(doc["tree_head"]).root_hash == merkle.root_from_leaves(hashes[:s])
            check_inclusion_document(doc, keys)
        check_consistency_document(world.proofs.consistency(s), keys)
        check_consistency_document(world.proofs.consistency(1, s), keys)
        for other in missing:
            if other >= s:
                check_consistency_document(world.proofs.consistency(s, other), keys)
    assert world.verify().tree_heads == len(stored)


# --- the demo --------------------------------------------------------------------------------------


def demo_env(tmp_path: Path) -> dict[str, str]:
    """No passphrase at all: a demo's database opens with its own throwaway ones, later commands too."""
    env = {**os.environ, **CLI_ENV, "CREDITFLOW_CONFIG": str(tmp_path / "absent.toml")}
    return {k: v for k, v in env.items() if k not in CLI_SECRETS_ENV and k != "CREDITFLOW_DEV"}


def creditflow_exe() -> str:
    return str(Path(sys.executable).with_name("creditflow"))


def test_demo_runs_and_catches_tampering(tmp_path: Path) -> None:
    # No timing assertion: how long the demo takes belongs to benchmarks (a slower machine must not fail CI).
    # The timeout only guards against a hang.
    result = subprocess.run(
        [creditflow_exe(), "demo"], env=demo_env(tmp_path), capture_output=True, text=True, timeout=280, cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "verified" in out
    assert out.count("VERIFY FAILED") == 2  # the changed amount, then the forged entry
    assert "tampering NOT detected" not in out
    assert "valid" in out and "done" in out


def run_demo_and_verify(url: str, tmp_path: Path) -> dict[str, Any]:
    env = demo_env(tmp_path)
    demo = subprocess.run([creditflow_exe(), "demo", "--db", url], env=env, capture_output=True, text=True, timeout=220)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert demo.stdout.count("VERIFY FAILED") == 2
    check = subprocess.run(
        [creditflow_exe(), "verify", "--db", url, "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    report: dict[str, Any] = json.loads(check.stdout)
    assert report["ok"] is True
    return report


def test_demo_keeps_a_database_that_verifies(tmp_path: Path) -> None:
    report = run_demo_and_verify(f"sqlite:///{tmp_path / 'keep.db'}", tmp_path)
    assert report["entries"] >= 10 and report["certificates"] >= 1


@pytest.mark.slow
def test_demo_twice_on_one_database(tmp_path: Path) -> None:
    """A second run adds to the kept database (its ids are unique per run) and it still verifies."""
    url = f"sqlite:///{tmp_path / 'keep.db'}"
    first = run_demo_and_verify(url, tmp_path)
    second = run_demo_and_verify(url, tmp_path)
    assert second["entries"] > first["entries"]
    assert second["certificates"] > first["certificates"]


def test_demo_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    """The demo's PostgreSQL path (its tampered copy is a TEMPLATE copy of the database)."""
    report = run_demo_and_verify(pg_url, tmp_path)
    assert report["entries"] >= 10
