"""The offline verifier is `creditflow.ledger.verifier` and needs nothing but the standard library.

Each check runs a fresh interpreter under ``python -S`` (no site-packages: no PyNaCl, no SQLAlchemy) with only
our source tree on the path, on proofs the platform wrote; the pure-Python Ed25519 fallback does the signatures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import creditflow
from conftest import issue_accepted, onboard
from creditflow.bootstrap import App

SRC = str(Path(creditflow.__file__).resolve().parent.parent)


def run_stdlib(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": SRC}
    return subprocess.run(
        [sys.executable, "-S", "-m", "creditflow.ledger.verifier", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def write(tmp_path: Path, name: str, doc: dict[str, Any]) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(doc), encoding="utf-8")
    return str(path)


def test_python_minus_s_has_no_site_packages_and_uses_the_pure_fallback() -> None:
    probe = (
        "import sys\n"
        "import creditflow.ledger.verifier, creditflow.ledger.signing as s\n"
        "outside = sorted(m for m in {n.split('.')[0] for n in sys.modules} - set(sys.stdlib_module_names)"
        " if m not in ('creditflow', '__main__'))\n"
        "print(s.HAVE_NACL, s.verify_signature.__module__, outside)\n"
    )
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": SRC}
    out = subprocess.run([sys.executable, "-S", "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "creditflow.ledger.ed25519_pure", "[]"]


def test_inclusion_and_consistency_proofs_written_by_the_platform_verify_under_python_minus_s(
    app: App, tmp_path: Path
) -> None:
    onboard(app)
    issue_accepted(app)
    log_key = app.log_signer.public_key.hex()
    size = app.proofs.latest_head().tree_size
    inclusion = write(tmp_path, "inclusion.json", app.proofs.inclusion(size - 1))
    consistency = write(tmp_path, "consistency.json", app.proofs.consistency(3, size))

    ok = run_stdlib(inclusion, "--log-key", log_key)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("proof valid: ")
    assert json.loads(ok.stdout.removeprefix("proof valid: "))["leaf_index"] == size - 1

    ok = run_stdlib(consistency, "--log-key", log_key)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout.removeprefix("proof valid: "))["new_tree_size"] == size


def test_tampered_proofs_and_a_wrong_key_fail_with_exit_1(app: App, tmp_path: Path) -> None:
    onboard(app)
    issue_accepted(app)
    log_key = app.log_signer.public_key.hex()
    size = app.proofs.latest_head().tree_size
    doc = app.proofs.inclusion(size - 1)

    entry = bytearray.fromhex(doc["entry"])
    entry[-5] ^= 1
    bad = run_stdlib(write(tmp_path, "entry.json", {**doc, "entry": entry.hex()}), "--log-key", log_key)
    assert bad.returncode == 1 and "PROOF INVALID at audit_path" in bad.stderr

    head = dict(doc["tree_head"])
    head["tree_size"] = head["tree_size"] + 1
    bad = run_stdlib(write(tmp_path, "head.json", {**doc, "tree_head": head}), "--log-key", log_key)
    assert bad.returncode == 1 and "PROOF INVALID at tree_head" in bad.stderr

    other_key = bytes(32 - len(b"x")) + b"x"
    bad = run_stdlib(write(tmp_path, "good.json", doc), "--log-key", other_key.hex())
    assert bad.returncode == 1 and "signature does not verify" in bad.stderr

    unusable = run_stdlib(write(tmp_path, "good2.json", doc), "--log-key", "not-hex")
    assert unusable.returncode == 2


def test_a_tlog_proof_with_cosignatures_verifies_under_python_minus_s(app: App, tmp_path: Path) -> None:
    """The .tlog-proof path (checkpoint note, cosignature/v1, tlog-policy) on the standard library alone."""
    from proof_world import publish, witness

    onboard(app)
    issue_accepted(app)
    a, b = witness("witness-a.example"), witness("witness-b.example")
    publish(app, [a, b])
    index = app.proofs.latest_head().tree_size - 1
    proof = tmp_path / "entry.tlog-proof"
    proof.write_text(app.proofs.as_tlog_proof(app.proofs.inclusion(index)), encoding="utf-8")
    log, wa, wb = app.checkpoints.vkey, a.verifier.encode(), b.verifier.encode()

    ok = run_stdlib(str(proof), "--log-vkey", log, "--witness", wa, "--witness", wb)
    assert ok.returncode == 0, ok.stderr
    summary = json.loads(ok.stdout.removeprefix("proof valid: "))
    assert summary["leaf_index"] == index and summary["witnesses"] == ["witness-a.example", "witness-b.example"]

    policy = tmp_path / "policy"
    policy.write_text(f"log {log}\nwitness a {wa}\nwitness b {wb}\ngroup both all a b\nquorum both\n")
    assert run_stdlib(str(proof), "--policy", str(policy)).returncode == 0

    short = run_stdlib(str(proof), "--log-vkey", log, "--witness", wa, "--witness", witness("c").verifier.encode())
    assert short.returncode == 1
    assert "PROOF INVALID at cosignatures: 1 of the 2 trusted witnesses cosigned (witness-a.example)" in short.stderr

    untrusted = run_stdlib(str(proof))
    assert untrusted.returncode == 4 and untrusted.stdout.startswith("math only, signer unproven: ")
    assert "proved NOTHING about who signed" in untrusted.stderr

    assert run_stdlib(str(proof), "--log-vkey", "not a vkey").returncode == 2
