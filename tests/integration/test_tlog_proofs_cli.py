"""`creditflow proof inclusion --format tlog-proof` writes a C2SP .tlog-proof file, by index or by operation id;
`creditflow verify-proof` checks it (and JSON proofs) offline under a policy of trusted log and witness keys:
the command-line keys, or a c2sp.org/tlog-policy file. Without a trusted log key it checks the Merkle math and
says plainly that this proved nothing about who signed (exit 4)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from test_proofs_cli import db_url, run_cli

from creditflow.bootstrap import App
from creditflow.ledger.entries import parse_entry
from creditflow.ledger.tlog_proof import parse_tlog_proof
from proof_world import publish, small_flow, witness


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_a_tlog_proof_file_written_and_checked_under_a_policy(world: App, tmp_path: Path) -> None:
    flow = small_flow(world)
    a, b, c = witness("witness-a.example"), witness("witness-b.example"), witness("witness-c.example")
    size, published = publish(world, [a, b])
    op_id = str(parse_entry(bytes.fromhex(world.proofs.inclusion(flow.finance_seq)["entry"])).signed.op.op_id)
    log_vkey, log_hex = world.checkpoints.vkey, world.log_signer.public_key.hex()
    url = db_url(world)
    world.close()

    out = tmp_path / "finance.tlog-proof"
    written = run_cli(
        ["proof", "inclusion", "--op-id", op_id, "--format", "tlog-proof", "--out", str(out), "--db", url], tmp_path
    )
    assert written.exit_code == 0, written.output
    proof = parse_tlog_proof(out.read_text())
    assert proof.index == flow.finance_seq and proof.checkpoint == published
    as_json = tmp_path / "finance.json"
    assert (
        run_cli(
            ["proof", "inclusion", "--index", str(flow.finance_seq), "--out", str(as_json), "--db", url], tmp_path
        ).exit_code
        == 0
    )
    assert json.loads(as_json.read_text())["checkpoint"] == published
    bad_format = run_cli(["proof", "inclusion", "--index", "0", "--format", "xml", "--db", url], tmp_path)
    assert bad_format.exit_code == 3 and "json or tlog-proof" in bad_format.stderr

    def verify(*args: str, file: Path = out) -> tuple[int, str, str]:
        result = run_cli(["verify-proof", str(file), *args], tmp_path)
        return result.exit_code, _flat(result.stdout), _flat(result.stderr)

    wa, wb, wc = (w.verifier.encode() for w in (a, b, c))
    code, stdout, _ = verify("--log-vkey", log_vkey, "--witness", wa, "--witness", wb)
    assert code == 0 and "proof valid" in stdout and '"witnesses": ["witness-a.example", "witness-b.example"]' in stdout
    assert f'"tree_size": {size}' in stdout and '"type": "finance"' in stdout
    assert verify("--log-key", log_hex, "--witness", wa, "--quorum", "1")[0] == 0
    assert verify("--log-vkey", log_vkey, "--witness", wa, "--witness", wb, file=as_json)[0] == 0

    # c2sp.org/tlog-policy: met by a and b; a policy that needs c as well is not.
    policy = tmp_path / "policy.txt"
    policy.write_text(
        f"log {log_vkey}\nwitness A {wa}\nwitness B {wb}\nwitness C {wc}\ngroup two 2 A B C\nquorum two\n"
    )
    assert verify("--policy", str(policy))[0] == 0
    strict = tmp_path / "strict.txt"
    strict.write_text(
        f"log {log_vkey}\nwitness A {wa}\nwitness B {wb}\nwitness C {wc}\ngroup all3 all A B C\nquorum all3\n"
    )
    code, _, stderr = verify("--policy", str(strict))
    assert code == 1
    assert (
        "PROOF INVALID at cosignatures: 2 of the 3 trusted witnesses cosigned (witness-a.example, "
        "witness-b.example); the policy needs 3 of (A, B, C)"
    ) in stderr
    assert verify("--log-vkey", log_vkey, "--witness", wa, "--witness", wb, "--witness", wc)[0] == 1  # all 3 needed

    # No trusted log key: the math is checked, and the verdict says it proved nothing about who signed.
    code, stdout, stderr = verify()
    assert code == 4 and "math only, signer unproven" in stdout
    assert "UNTRUSTED: the Merkle math holds, but no trusted log key was given" in stderr
    assert "proved NOTHING about who signed" in stderr

    # Another log's key; a cosignature changed; the entry changed: refused, saying where.
    other_log = witness("x").verifier  # a cosigner key is not a log key: unusable input
    assert verify("--log-vkey", other_log.encode())[0] == 3
    assert verify("--log-vkey", log_vkey, "--policy", str(policy))[0] == 3  # --policy says it all
    assert verify("--log-vkey", log_vkey, "--witness", wa, "--quorum", "2")[0] == 3  # more than given
    lines = out.read_text().split("\n")
    cosig = next(i for i, line in enumerate(lines) if line.startswith("\u2014 witness-a.example "))
    raw = bytearray(base64.b64decode(lines[cosig].split(" ")[2]))
    raw[-1] ^= 1
    tampered = tmp_path / "tampered.tlog-proof"
    tampered.write_text(
        "\n".join([*lines[:cosig], f"\u2014 witness-a.example {base64.b64encode(raw).decode()}", *lines[cosig + 1 :]])
    )
    code, _, stderr = verify("--log-vkey", log_vkey, "--witness", wa, "--quorum", "1", file=tampered)
    assert code == 1 and "PROOF INVALID at cosignatures: the signature of witness-a.example does not verify" in stderr
    assert verify("--log-vkey", log_vkey, "--witness", wb, "--quorum", "1", file=tampered)[0] == 0  # a not trusted
    changed = tmp_path / "entry.tlog-proof"
    entry = base64.b64encode(proof.extra.replace(b'"finance"', b'"transfer"') if proof.extra else b"").decode()
    changed.write_text(out.read_text().replace(lines[1], f"extra {entry}"))
    code, _, stderr = verify("--log-vkey", log_vkey, file=changed)
    assert code == 1 and "PROOF INVALID at audit_path" in stderr
    impostor = witness("impostor")  # signs nothing the log signed: a note under another log key
    code, _, stderr = verify("--log-key", impostor.signer.public_key.hex())
    assert code == 1 and "PROOF INVALID at checkpoint" in stderr
