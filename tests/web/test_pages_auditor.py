"""The auditor's (and operator's) pages: the latest signed tree head, the in-browser proof checker (its
JavaScript run under node against proofs the server produced, and against tampered ones), and exports
of the log, the tree heads and the reports."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import hashlib
import html
import io
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from web_helpers import add_user, sign_in

from conftest import issue_accepted, make_settings, onboard
from creditflow.bootstrap import App, build
from creditflow.http.app import create_app
from creditflow.http.pages import auditor as pages_auditor
from creditflow.http.templating import STATIC
from creditflow.ledger.note import NoteSigner, cosigned_message, parse_checkpoint, parse_note, parse_vkey
from creditflow.ledger.signing import Signer
from creditflow.ledger.tree_head import TreeHead, sign_tree_head
from proof_world import publish, witness

AUDIT_PAGES = ["/ui/audit", "/ui/audit/exports"]
PROOFS_JS = STATIC / "audit_proofs.js"


def auditor(web: TestClient, world: App, org: str = "auditor") -> str:
    add_user(world, org, f"{org}.user")
    return sign_in(web, f"{org}.user")


def test_audit_pages_render_for_auditor_and_operator_and_are_refused_to_others(web: TestClient, world: App) -> None:
    for org in ("bank", "factory"):
        auditor(web, world, org)
        for path in [*AUDIT_PAGES, "/ui/audit/export/entries.json", "/ui/audit/export/owed.csv"]:
            refused = web.get(path)
            assert refused.status_code == 403 and "these pages are for auditor, operator" in refused.text, path
    for org in ("auditor", "operator"):
        auditor(web, world, org)
        assert web.get("/ui").url.path == "/ui/audit"
        for path in AUDIT_PAGES:
            page = web.get(path)
            assert page.status_code == 200, path
            assert 'href="/ui/audit"' in page.text and 'href="/ui/audit/exports"' in page.text


def test_log_page_shows_the_latest_signed_tree_head(web: TestClient, world: App) -> None:
    issue_accepted(world)
    auditor(web, world)
    page = web.get("/ui/audit").text
    head = world.proofs.latest_head()
    assert head.tree_size > 9 and head.verify(world.log_keys)
    assert f'id="sth-size">{head.tree_size}<' in page
    assert f'id="sth-root">{head.root_hash.hex()}<' in page
    assert f'id="sth-signature" class="wrap">{head.signature.hex()}<' in page
    assert f'id="sth-key-id">{head.key_id}<' in page
    assert f'id="sth-log-key" class="wrap">{world.log_signer.public_key.hex()}<' in page
    assert 'id="sth-signature-check" data-valid="yes"' in page
    # The pinned key the browser checks signatures against starts as this server's log key.
    assert re.search(rf'id="sth-pinned-key"[^>]*value="{world.log_signer.public_key.hex()}"', page)
    # The proof checker: its script, inputs, buttons and result element.
    assert '<script src="/ui/static/audit_proofs.js" defer></script>' in page
    for element_id in (
        "proof-leaf-index",
        "proof-tree-size",
        "check-inclusion",
        "proof-old-size",
        "proof-old-root",
        "proof-new-size",
        "check-consistency",
        "proof-tamper",
        "proof-result",
        "proof-status",
        "proof-recomputed-root",
        "proof-expected-root",
        "proof-leaf-hash",
        "proof-inputs",
        "proof-steps",
        "proof-signature",
        "check-sth-signature",
        "sth-browser-check",
    ):
        assert f'id="{element_id}"' in page, element_id
    js = web.get("/ui/static/audit_proofs.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]


def test_the_proof_endpoints_the_page_calls_accept_the_session_cookie(web: TestClient, world: App) -> None:
    auditor(web, world)
    sth = web.get("/v1/log/tree-head").json()
    proof = web.get(f"/v1/log/proofs/inclusion?leaf_index=0&tree_size={sth['tree_size']}")  # needs a caller
    assert proof.status_code == 200 and proof.json()["tree_head"]["root_hash"] == sth["root_hash"]
    web.cookies.clear()
    assert web.get("/v1/log/proofs/inclusion?leaf_index=0").status_code == 401


# --- the proof checker's JavaScript, run under node --------------------------------------------------------


def run_node(tmp_path: Path, script: str, payload: dict[str, Any]) -> Any:
    """Run ``script`` under node with the page's audit_proofs.js as its argument and ``payload`` as JSON on
    stdin; its JSON output."""
    path = tmp_path / "check.js"
    path.write_text(script)
    run = subprocess.run(
        ["node", str(path), str(PROOFS_JS)],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


NODE_SCRIPT = r"""
const proofs = require(process.argv[2]);
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
(async () => {
  const out = { sha: [], inclusion: [], consistency: [] };
  for (const mode of ["auto", "pure"]) {
    proofs.setHashMode(mode);
    for (const hex of input.sha) out.sha.push(proofs.toHex(await proofs.sha256(proofs.fromHex(hex, "x"))));
    for (const doc of input.inclusion) {
      for (const tamper of [false, true]) {
        const r = await proofs.checkInclusion(doc, doc.tree_head.root_hash, { tamper });
        out.inclusion.push({ mode, tamper, hashing: r.hashing, verified: r.verified, root: r.recomputedRoot,
          leaf: r.leafHash, index: doc.leaf_index, size: doc.tree_head.tree_size });
      }
      const wrongRoot = doc.tree_head.root_hash.replace(/^./, (c) => (c === "0" ? "1" : "0"));
      const r = await proofs.checkInclusion(doc, wrongRoot, {});
      out.inclusion.push({ mode, tamper: "root", verified: r.verified, root: r.recomputedRoot });
    }
    for (const doc of input.consistency) {
      for (const tamper of [false, true]) {
        const r = await proofs.checkConsistency(doc, doc.old_tree_head.root_hash, doc.new_tree_head.root_hash, { tamper });
        out.consistency.push({ mode, tamper, verified: r.verified, old: r.recomputedOldRoot, root: r.recomputedRoot,
          sizes: [doc.old_tree_head.tree_size, doc.new_tree_head.tree_size], proofLength: doc.proof.length });
      }
    }
  }
  process.stdout.write(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the page's JavaScript")
def test_the_pages_proof_checker_recomputes_roots_and_fails_on_tampering(world: App, tmp_path: Path) -> None:
    for _ in range(3):
        issue_accepted(world)
    size = world.proofs.latest_head().tree_size
    assert size >= 15
    inclusion = [world.proofs.inclusion(i, n) for n in (1, 2, 7, 8, size) if n <= size for i in {0, n // 2, n - 1}]
    consistency = [world.proofs.consistency(m, n) for m, n in ((1, 2), (3, 7), (4, 8), (6, 8), (5, size), (size, size))]
    sha = ["", "00", "61" * 55, "62" * 56, "63" * 64, "64" * 1000]
    out = run_node(tmp_path, NODE_SCRIPT, {"sha": sha, "inclusion": inclusion, "consistency": consistency})
    # Both SHA-256 implementations (WebCrypto under node, and the pure-JS fallback) agree with hashlib.
    expected_sha = [hashlib.sha256(bytes.fromhex(h)).hexdigest() for h in sha]
    assert out["sha"] == expected_sha * 2
    assert {r["hashing"] for r in out["inclusion"] if "hashing" in r} == {
        "WebCrypto (crypto.subtle)",
        "pure JavaScript SHA-256",
    }
    for row in out["inclusion"]:
        if row["tamper"] == "root":  # the right path, checked against a root that is not the signed one
            assert not row["verified"], row
            continue
        doc = next(
            d for d in inclusion if (d["leaf_index"], d["tree_head"]["tree_size"]) == (row["index"], row["size"])
        )
        if row["tamper"]:  # one flipped bit in the path (or the entry): another root, FAILED
            assert not row["verified"] and row["root"] != doc["tree_head"]["root_hash"], row
        else:
            assert row["verified"] and row["root"] == doc["tree_head"]["root_hash"], row
            assert row["leaf"] == hashlib.sha256(b"\x00" + bytes.fromhex(doc["entry"])).hexdigest()
    for row in out["consistency"]:
        if row["tamper"] and row["proofLength"]:
            assert not row["verified"], row
        else:
            assert row["verified"], row
            doc = next(
                d
                for d in consistency
                if [d["old_tree_head"]["tree_size"], d["new_tree_head"]["tree_size"]] == row["sizes"]
            )
            assert (row["old"], row["root"]) == (doc["old_tree_head"]["root_hash"], doc["new_tree_head"]["root_hash"])
    assert sum(1 for r in out["inclusion"] if not r["verified"]) == len(inclusion) * 2 * 2  # tampered + wrong root


SIGNATURE_SCRIPT = r"""
const proofs = require(process.argv[2]);
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
(async () => {
  const out = { messages: [], checks: [] };
  for (const head of input.messages) out.messages.push(proofs.toHex(proofs.treeHeadMessage(head)));
  for (const [head, key] of input.checks) {
    try { out.checks.push(await proofs.verifyTreeHead(head, key)); } catch (e) { out.checks.push("error: " + e.message); }
  }
  process.stdout.write(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the page's JavaScript")
def test_the_page_checks_tree_head_signatures_as_the_ledger_does(world: App, tmp_path: Path) -> None:
    """The page rebuilds the signed bytes itself (CJ1 of the head) and checks Ed25519 with Web Crypto: the
    bytes must be the ledger's own, byte for byte, also for key ids that need escaping, and any change to
    a signed member, the signature or the key must fail."""
    issue_accepted(world)
    head = world.proofs.latest_head()
    key = world.log_signer.public_key.hex()
    odd = [
        sign_tree_head(Signer.generate(key_id), 7, bytes(range(32)), 1_795_739_804_188)
        for key_id in ('say "hi"', "back\\slash", "tab\tnew\nline\x01\x1f", "中文-é", " ")
    ]
    good = head.to_json()
    other_key = Signer.generate("other").public_key.hex()
    changed = [
        {**good, "tree_size": good["tree_size"] + 1},
        {**good, "ts_ms": good["ts_ms"] + 1},
        {**good, "root_hash": ("1" if good["root_hash"][0] == "0" else "0") + good["root_hash"][1:]},
        {**good, "key_id": good["key_id"] + "x"},
        {**good, "signature": ("1" if good["signature"][0] == "0" else "0") + good["signature"][1:]},
    ]
    checks = [[good, key], *([c, key] for c in changed), [good, other_key], [good, "zz"], [good, key[:-2]]]
    out = run_node(tmp_path, SIGNATURE_SCRIPT, {"messages": [h.to_json() for h in [head, *odd]], "checks": checks})
    assert out["messages"] == [h.message().hex() for h in [head, *odd]]
    assert out["checks"][0] is True
    assert out["checks"][1 : 1 + len(changed) + 1] == [False] * (len(changed) + 1)
    assert out["checks"][-2:] == ["error: log public key is not hex", "error: log public key must be 32 bytes"]


# --- exports ----------------------------------------------------------------------------------------------


def test_log_entries_export_as_csv_and_json(web: TestClient, world: App) -> None:
    issue_accepted(world)
    auditor(web, world)
    size = world.proofs.latest_head().tree_size
    as_csv = web.get(f"/ui/audit/export/entries.csv?start=2&end={size}")
    assert as_csv.status_code == 200 and as_csv.headers["content-type"] == "text/csv; charset=utf-8"
    assert as_csv.headers["content-disposition"] == f'attachment; filename="log-entries-2-{size}.csv"'
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [int(r["seq"]) for r in rows] == list(range(2, size))
    assert list(rows[0]) == list(pages_auditor.ENTRY_COLUMNS)
    for row in rows:
        entry = bytes.fromhex(row["entry"])
        assert row["leaf_hash"] == hashlib.sha256(b"\x00" + entry).hexdigest()
        proof = world.proofs.inclusion(int(row["seq"]), size)
        assert proof["entry"] == row["entry"]
    as_json = web.get("/ui/audit/export/entries.json")
    assert as_json.status_code == 200 and as_json.headers["content-type"] == "application/json"
    document = as_json.json()
    assert (document["kind"], document["start"], document["end"], document["tree_size"]) == (
        "creditflow.log_entries",
        0,
        size,
        size,
    )
    assert [e["seq"] for e in document["entries"]] == list(range(size))
    assert document["entries"][2:] == [{**r, "seq": int(r["seq"]), "ts_ms": int(r["ts_ms"])} for r in rows]
    beyond = web.get(f"/ui/audit/export/entries.json?start={size + 5}").json()
    assert beyond["entries"] == [] and beyond["start"] == beyond["end"] == size + 5


def test_exports_are_streamed_in_pages_and_ranges_are_bounded(
    web: TestClient, world: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    auditor(web, world)
    size = world.proofs.latest_head().tree_size
    monkeypatch.setattr(pages_auditor, "EXPORT_CHUNK", 2)  # many round trips: keyset paging must not skip a row
    monkeypatch.setattr(pages_auditor, "EXPORT_RANGE_MAX", 5)
    document = web.get("/ui/audit/export/entries.json?start=1").json()
    assert [e["seq"] for e in document["entries"]] == [1, 2, 3, 4, 5] and document["end"] == 6
    too_many = web.get("/ui/audit/export/entries.csv?start=0&end=6")
    assert too_many.status_code == 422 and too_many.json()["code"] == "export_range_too_large"
    backwards = web.get("/ui/audit/export/entries.csv?start=4&end=3")
    assert backwards.status_code == 422 and backwards.json()["code"] == "invalid_range"
    assert web.get("/ui/audit/export/entries.xml").status_code == 422
    assert size > 5


def test_tree_heads_export_verifies_under_the_log_key(web: TestClient, world: App) -> None:
    issue_accepted(world)
    auditor(web, world)
    latest = world.proofs.latest_head()
    document = web.get("/ui/audit/export/tree-heads.json").json()
    assert document["log_keys"] == world.proofs.log_keys_json()
    heads = [TreeHead.from_json({**h, "v": 1}) for h in document["tree_heads"]]
    assert heads and heads[-1] == latest
    assert [h.tree_size for h in heads] == sorted({h.tree_size for h in heads})
    assert all(h.verify(world.log_keys) for h in heads)
    as_csv = web.get("/ui/audit/export/tree-heads.csv")
    assert as_csv.headers["content-type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [(int(r["tree_size"]), r["root_hash"], r["signature"]) for r in rows] == [
        (h.tree_size, h.root_hash.hex(), h.signature.hex()) for h in heads
    ]


def test_report_exports_match_the_services(web: TestClient, world: App) -> None:
    world.financing.set_rating("xcmg", "AAA")
    world.financing.set_limit("bank", "xcmg", 10**9)
    world.financing.create_product(
        "bank", "discounting", {"AAA": {30: 300, 90: 350, 180: 400, 365: 450}}, product_id="p"
    )
    assert world.financing.request("factory", issue_accepted(world, 50_000_099), "bank", "p", 30_000_001).approved
    world.clock.advance(int(dt.timedelta(days=200).total_seconds() * 1000))  # past the 2026-09-01 maturity
    assert world.clearing.mark_overdue_due()
    auditor(web, world)
    owed = web.get("/ui/audit/export/owed.csv")
    assert owed.status_code == 200 and owed.headers["content-type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(owed.text)))
    expected = world.clearing.owed_report(None)
    assert len(rows) == len(expected) == 2
    assert sorted(int(r["owed_minor"]) for r in rows) == [20_000_098, 30_000_001]  # exact fen
    assert [{k: v for k, v in r.items()} for r in rows] == [
        {k: "" if v is None else str(v) for k, v in e.items()} for e in expected
    ]
    exposure = list(csv.DictReader(io.StringIO(web.get("/ui/audit/export/exposure.csv").text)))
    assert exposure == [{"bank": "bank", "core": "xcmg", "exposure_minor": "30000001"}]
    penetration = web.get("/ui/audit/export/penetration.csv?core=xcmg")
    tiers = list(csv.DictReader(io.StringIO(penetration.text)))
    assert [int(t["value_reached_minor"]) for t in tiers] == [
        t["value_reached_minor"] for t in world.network.penetration("xcmg")["tiers"]
    ]
    what_if = list(csv.DictReader(io.StringIO(web.get("/ui/audit/export/what-if-default.csv?core=xcmg").text)))
    by_org = {r["org_id"]: r for r in what_if}
    assert by_org["bank"]["direct_loss_minor"] == "30000001" and by_org["bank"]["loss_after_recourse_minor"] == "0"
    assert by_org["factory"]["loss_after_recourse_minor"] == "50000099"
    refused = web.get("/ui/audit/export/penetration.csv?core=factory")
    assert refused.status_code == 422 and refused.json()["code"] == "not_core_enterprise"
    page = web.get("/ui/audit/exports").text
    assert re.search(r'id="export-penetration-xcmg" href="/ui/audit/export/penetration.csv\?core=xcmg"', page)


# --- the newest checkpoint and its cosignatures (issue 14, point 7) ----------------------------------------


@pytest.fixture
def witnessed(sqlite_url: str, clock: Any) -> Iterator[tuple[App, list[NoteSigner]]]:
    """An app whose policy trusts witnesses A and B (quorum 2), with a checkpoint cosigned by A, B and C
    (C is not in the policy)."""
    a, b, c = witness("witness-a.example"), witness("witness-b.example"), witness("witness-c.example")
    configured = [
        {"name": "A", "vkey": a.verifier.encode(), "url": "http://127.0.0.1:9/a"},
        {"name": "witness-b.example", "vkey": b.verifier.encode(), "url": "http://127.0.0.1:9/b"},
    ]
    with build(make_settings(sqlite_url, witnesses=configured, witness_quorum=2), clock=clock) as app:
        onboard(app)
        issue_accepted(app)
        publish(app, [a, b, c])
        yield app, [a, b, c]


def test_log_page_shows_the_newest_checkpoint_its_cosignatures_and_the_policy(
    witnessed: tuple[App, list[NoteSigner]],
) -> None:
    app, (a, _b, c) = witnessed
    size, note = app.proofs.latest_checkpoint()
    with TestClient(create_app(app), base_url="http://127.0.0.1") as web:
        auditor(web, app)
        page = web.get("/ui/audit").text
    assert f'id="checkpoint-origin">{app.settings.origin}<' in page
    assert f'id="checkpoint-size">{size}<' in page and size == app.proofs.latest_head().tree_size
    assert f'id="checkpoint-root" class="wrap">{app.proofs.latest_head().root_hash.hex()}<' in page
    assert 'id="checkpoint" data-quorum="2"' in page
    assert "2 of 2 configured witnesses must cosign" in page
    rows = re.findall(r'<tr data-signer="([^"]+)" data-kind="([a-z]+)" data-in-policy="(yes|no)">', page)
    assert rows == [
        (app.settings.origin, "log", "no"),
        ("witness-a.example", "cosignature", "yes"),
        ("witness-b.example", "cosignature", "yes"),
        ("witness-c.example", "cosignature", "no"),
    ]
    when = dt.datetime.fromtimestamp(app.clock.now_ms() // 1000, dt.UTC).isoformat()
    assert page.count(f"<td>{when}</td>") == 3  # each cosignature's time, UTC
    assert "<td>witness-a.example (A)</td>" in page and "<td>yes: A</td>" in page
    assert f'data-name="A" data-vkey="{a.verifier.encode()}"' in page
    assert c.verifier.encode() not in page
    assert f'id="checkpoint-log-vkey" type="text" spellcheck="false" value="{app.checkpoints.vkey}"' in page
    textarea = re.search(r'<textarea id="checkpoint-note"[^>]*>(.*?)</textarea>', page, re.S)
    assert textarea and html.unescape(textarea.group(1)) == note


def test_log_page_without_witnesses_shows_the_log_signature_only(web: TestClient, world: App) -> None:
    issue_accepted(world)
    auditor(web, world)
    page = web.get("/ui/audit").text
    assert "no witnesses are configured" in page and 'id="checkpoint-no-witnesses"' in page
    assert re.findall(r'<tr data-signer="([^"]+)" data-kind="([a-z]+)"', page) == [(world.settings.origin, "log")]
    assert 'id="checkpoint" data-quorum="0"' in page


CHECKPOINT_SCRIPT = r"""
const proofs = require(process.argv[2]);
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
(async () => {
  const out = { vkeys: [], messages: [], checks: [] };
  for (const vkey of input.vkeys) {
    try { const k = await proofs.parseVkey(vkey); out.vkeys.push([k.name, k.type, proofs.toHex(k.keyId), proofs.toHex(k.publicKey)]); }
    catch (e) { out.vkeys.push("error: " + e.message); }
  }
  for (const [text, t] of input.messages) out.messages.push(proofs.toHex(proofs.cosignedMessage(text, t)));
  for (const [note, log, witnesses, quorum] of input.checks) {
    try { out.checks.push(await proofs.checkCheckpoint(note, log, witnesses, quorum)); }
    catch (e) { out.checks.push("error: " + e.message); }
  }
  process.stdout.write(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
"""


def _change_signature(note: str, name: str) -> str:
    """``note`` with one bit of ``name``'s signature flipped (its last byte)."""
    lines = note.split("\n")
    i = next(i for i, line in enumerate(lines) if line.startswith(f"\u2014 {name} "))
    raw = bytearray(base64.b64decode(lines[i].split(" ")[2]))
    raw[-1] ^= 1
    lines[i] = f"\u2014 {name} {base64.b64encode(raw).decode()}"
    return "\n".join(lines)


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the page's JavaScript")
def test_the_page_checks_a_checkpoint_and_its_cosignatures_as_the_ledger_does(
    witnessed: tuple[App, list[NoteSigner]], tmp_path: Path
) -> None:
    app, (a, b, c) = witnessed
    _, note = app.proofs.latest_checkpoint()
    log = app.checkpoints.vkey
    policy = [{"name": "A", "vkey": a.verifier.encode()}, {"name": "B", "vkey": b.verifier.encode()}]
    with_c = [*policy, {"name": "C", "vkey": c.verifier.encode()}]
    text = parse_note(note).text
    bad_id = log.split("+", 2)[0] + "+00000000+" + log.split("+", 2)[2]
    other_log = NoteSigner(app.settings.origin, Signer.generate("x")).verifier.encode()
    checks = [
        [note, log, policy, 2],  # honest: valid, A and B
        [_change_signature(note, "witness-a.example"), log, policy, 1],  # a trusted cosignature changed
        [_change_signature(note, app.settings.origin), log, policy, 2],  # the log's signature changed
        [note, log, with_c, 3],  # C is trusted and required, but its cosignature... is valid: 3 of 3
        [_change_signature(note, "witness-c.example"), log, policy, 2],  # an untrusted cosignature changed: ignored
        [note, other_log, policy, 2],  # another log key: its signature is missing
        [
            note.replace(f"\n{parse_checkpoint(text).size}\n", f"\n{parse_checkpoint(text).size + 1}\n", 1),
            log,
            policy,
            0,
        ],
        [note, log, [], 0],  # no witnesses configured
        [note, log, policy[:1], 2],  # quorum 2 of a policy of one... not met
        ["no blank line\n", log, [], 0],
    ]
    messages = [[text, 0], [text, 1_772_413_200], [text, 2**63 - 1]]
    plus = next(  # a key whose base64 holds a '+': the name and id end at the first two
        v
        for v in (NoteSigner("w.example", Signer(bytes([i]) * 32, "w"), 0x04).verifier.encode() for i in range(99))
        if "+" in v.split("+", 2)[2]
    )
    vkeys = [log, a.verifier.encode(), plus, bad_id, "no-plus-signs", log.replace("+", "+0", 1)]
    payload = {"vkeys": vkeys, "messages": [[t, str(n)] for t, n in messages], "checks": checks}  # times as text:
    out = run_node(tmp_path, CHECKPOINT_SCRIPT, payload)  # 2**63 - 1 is no JavaScript number
    assert out["messages"] == [cosigned_message(t, n).hex() for t, n in messages]
    parsed = [parse_vkey(v) for v in vkeys[:3]]
    assert out["vkeys"][:3] == [[k.name, k.sig_type, k.key_id.hex(), k.public_key.hex()] for k in parsed]
    assert out["vkeys"][3] == "error: verifier key id 00000000 does not match its name and key"
    assert out["vkeys"][4] == "error: a verifier key is name+hexid+base64key"
    assert out["vkeys"][5].startswith("error:")

    honest, cosig, logsig, three, untrusted, other, size_changed, alone, short, broken = out["checks"]
    assert (honest["verdict"], honest["cosigned"], honest["quorumMet"]) == ("valid", ["A", "B"], True)
    assert [(r["name"], r["kind"], r["witness"], r["valid"]) for r in honest["signatures"]] == [
        (app.settings.origin, "log", None, True),
        ("witness-a.example", "cosignature", "A", True),
        ("witness-b.example", "cosignature", "B", True),
        ("witness-c.example", "cosignature", None, None),  # not in the policy: shown, not counted
    ]
    when = dt.datetime.fromtimestamp(app.clock.now_ms() // 1000, dt.UTC).isoformat().replace("+00:00", "Z")
    assert [r["time"] for r in honest["signatures"]] == [None, when, when, when]
    assert (honest["origin"], honest["rootHash"]) == (app.settings.origin, app.proofs.latest_head().root_hash.hex())
    assert cosig["verdict"] == "INVALID" and cosig["signatures"][1]["valid"] is False
    assert cosig["reason"] == "1 signature(s) of trusted witnesses do not verify"
    assert (
        logsig["verdict"] == "INVALID" and logsig["reason"] == "the log's signature does not verify under the log key"
    )
    assert three["verdict"] == "valid" and three["cosigned"] == ["A", "B", "C"]
    assert untrusted["verdict"] == "valid" and untrusted["signatures"][3]["valid"] is None
    assert other["verdict"] == "INVALID" and other["reason"] == "the log's signature is missing"
    assert size_changed["verdict"] == "INVALID"  # the text changed: no signature holds
    assert alone["verdict"] == "valid" and alone["reason"] == "the log signed it; no witnesses are configured"
    assert short["verdict"] == "quorum NOT met"
    assert short["reason"] == "1 of the 1 trusted witnesses cosigned; the policy needs 2"
    assert broken == "error: the note has no blank line before its signatures"
