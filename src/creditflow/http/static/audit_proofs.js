// Auditor page: check an inclusion or consistency proof in the browser.
//
// The proof and the signed tree head come from the JSON log endpoints; the RFC 6962 root is recomputed
// here (RFC 9162 §2.1.3.2 and §2.1.4.2, as creditflow.ledger.merkle does): leaf = SHA-256(0x00 || entry),
// node = SHA-256(0x01 || left || right). SHA-256 is WebCrypto's where the page is a secure context, else
// the small pure-JS implementation below. The same file runs under node (module.exports) for tests.
"use strict";

(function (root) {
  // --- SHA-256 (FIPS 180-4), pure JS -------------------------------------------------------------------
  const K = new Uint32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
  ]);

  function sha256Pure(bytes) {
    const length = bytes.length;
    const padded = new Uint8Array(((length + 9 + 63) >> 6) << 6);
    padded.set(bytes);
    padded[length] = 0x80;
    const view = new DataView(padded.buffer);
    view.setUint32(padded.length - 8, Math.floor(length / 0x20000000));  // length in bits, high word
    view.setUint32(padded.length - 4, (length << 3) >>> 0);  // low word
    const h = new Uint32Array([
      0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    ]);
    const w = new Uint32Array(64);
    const rotr = (x, n) => (x >>> n) | (x << (32 - n));
    for (let offset = 0; offset < padded.length; offset += 64) {
      for (let i = 0; i < 16; i++) w[i] = view.getUint32(offset + 4 * i);
      for (let i = 16; i < 64; i++) {
        const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
        const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
        w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
      }
      let [a, b, c, d, e, f, g, hh] = h;
      for (let i = 0; i < 64; i++) {
        const t1 = (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) >>> 0;
        const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
        hh = g; g = f; f = e; e = (d + t1) >>> 0; d = c; c = b; b = a; a = (t1 + t2) >>> 0;
      }
      h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
    }
    const out = new Uint8Array(32);
    const outView = new DataView(out.buffer);
    for (let i = 0; i < 8; i++) outView.setUint32(4 * i, h[i]);
    return out;
  }

  // "auto": WebCrypto when available (secure contexts), else pure JS; "pure" forces the fallback.
  let hashMode = "auto";
  function subtle() {
    const c = root.crypto;
    return hashMode === "auto" && c && c.subtle && typeof c.subtle.digest === "function" ? c.subtle : null;
  }
  function hashImplementation() {
    return subtle() ? "WebCrypto (crypto.subtle)" : "pure JavaScript SHA-256";
  }
  function setHashMode(mode) {
    hashMode = mode === "pure" ? "pure" : "auto";
  }
  async function sha256(bytes) {
    const s = subtle();
    return s ? new Uint8Array(await s.digest("SHA-256", bytes)) : sha256Pure(bytes);
  }

  // --- bytes and hex -------------------------------------------------------------------------------------
  function fromHex(text, what) {
    if (typeof text !== "string" || text.length % 2 || !/^[0-9a-fA-F]*$/.test(text)) {
      throw new Error(what + " is not hex");
    }
    const out = new Uint8Array(text.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(text.substr(2 * i, 2), 16);
    return out;
  }
  function toHex(bytes) {
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }
  function hash32(text, what) {
    const bytes = fromHex(text, what);
    if (bytes.length !== 32) throw new Error(what + " must be 32 bytes");
    return bytes;
  }
  function concat(...parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  }

  async function leafHash(entry) {
    return sha256(concat(Uint8Array.of(0x00), entry));
  }
  async function nodeHash(left, right, steps) {
    const out = await sha256(concat(Uint8Array.of(0x01), left, right));
    if (steps) steps.push("SHA-256(01 || " + toHex(left) + " || " + toHex(right) + ") = " + toHex(out));
    return out;
  }

  // Sizes are BigInt: log sizes may exceed the 32 bits JavaScript's bit operators work on.
  const ONE = BigInt(1), ZERO = BigInt(0);
  const odd = (n) => (n & ONE) === ONE;

  /** RFC 9162 §2.1.3.2: the root an audit path leads to, or null when the path cannot be right. */
  async function rootFromInclusion(leaf, index, size, path, steps) {
    let fn = BigInt(index), sn = BigInt(size) - ONE, r = leaf;
    if (fn < ZERO || fn > sn) return null;
    for (const p of path) {
      if (sn === ZERO) return null;
      if (odd(fn) || fn === sn) {
        r = await nodeHash(p, r, steps);
        while (!odd(fn) && fn !== ZERO) { fn >>= ONE; sn >>= ONE; }
      } else {
        r = await nodeHash(r, p, steps);
      }
      fn >>= ONE; sn >>= ONE;
    }
    return sn === ZERO ? r : null;
  }

  /** RFC 9162 §2.1.4.2: the old and new roots a consistency proof leads to, or null when it cannot be right. */
  async function rootsFromConsistency(oldSize, newSize, oldRoot, proof, steps) {
    const m = BigInt(oldSize), n = BigInt(newSize);
    if (m <= ZERO || m > n) return null;
    if (m === n) return proof.length ? null : { oldRoot: oldRoot, newRoot: oldRoot };
    if (!proof.length) return null;
    const path = (m & (m - ONE)) === ZERO ? [oldRoot, ...proof] : proof.slice();
    let fn = m - ONE, sn = n - ONE;
    while (odd(fn)) { fn >>= ONE; sn >>= ONE; }
    let fr = path[0], sr = path[0];
    for (const c of path.slice(1)) {
      if (sn === ZERO) return null;
      if (odd(fn) || fn === sn) {
        fr = await nodeHash(c, fr, steps);
        sr = await nodeHash(c, sr, steps);
        while (!odd(fn) && fn !== ZERO) { fn >>= ONE; sn >>= ONE; }
      } else {
        sr = await nodeHash(sr, c, steps);
      }
      fn >>= ONE; sn >>= ONE;
    }
    return sn === ZERO ? { oldRoot: fr, newRoot: sr } : null;
  }

  function flipBit(bytes) {
    const out = bytes.slice();
    out[out.length - 1] ^= 0x01;
    return out;
  }

  /**
   * Check a creditflow.inclusion_proof document against the root it must lead to (``expectedRoot``: the
   * signed tree head's, hex). ``tamper`` flips one bit of the first path hash (of the entry if the path is
   * empty) first. Returns everything that went in and came out, for the page to show.
   */
  async function checkInclusion(doc, expectedRoot, options) {
    const tamper = Boolean(options && options.tamper);
    const steps = [];
    const size = doc.tree_head.tree_size;
    let entry = fromHex(doc.entry, "entry");
    let path = doc.audit_path.map((h, i) => hash32(h, "audit_path[" + i + "]"));
    if (tamper) {
      if (path.length) path = [flipBit(path[0]), ...path.slice(1)];
      else entry = flipBit(entry);
    }
    const leaf = await leafHash(entry);
    steps.push("leaf: SHA-256(00 || entry of " + entry.length + " bytes) = " + toHex(leaf));
    const recomputed = await rootFromInclusion(leaf, doc.leaf_index, size, path, steps);
    const recomputedHex = recomputed ? toHex(recomputed) : null;
    const verified = recomputedHex !== null && recomputedHex === String(expectedRoot).toLowerCase();
    return {
      kind: "inclusion",
      verified: verified,
      tampered: tamper,
      leafIndex: doc.leaf_index,
      treeSize: size,
      leafHash: toHex(leaf),
      path: path.map(toHex),
      recomputedRoot: recomputedHex,
      expectedRoot: String(expectedRoot).toLowerCase(),
      steps: steps,
      hashing: hashImplementation(),
      reason: verified ? "the audit path leads from the entry to the signed root"
        : recomputedHex === null ? "the audit path has the wrong length for this index and tree size"
          : "the recomputed root differs from the signed root",
    };
  }

  /**
   * Check a creditflow.consistency_proof document: ``oldRoot`` is the root the auditor kept for the old
   * size (default: the document's old signed head), ``newRoot`` the signed root of the new size.
   */
  async function checkConsistency(doc, oldRoot, newRoot, options) {
    const tamper = Boolean(options && options.tamper);
    const steps = [];
    let proof = doc.proof.map((h, i) => hash32(h, "proof[" + i + "]"));
    if (tamper && proof.length) proof = [flipBit(proof[0]), ...proof.slice(1)];
    const oldBytes = hash32(oldRoot, "old root");
    const roots = await rootsFromConsistency(
      doc.old_tree_head.tree_size, doc.new_tree_head.tree_size, oldBytes, proof, steps,
    );
    const oldHex = roots ? toHex(roots.oldRoot) : null;
    const newHex = roots ? toHex(roots.newRoot) : null;
    const expectedOld = String(oldRoot).toLowerCase(), expectedNew = String(newRoot).toLowerCase();
    const verified = roots !== null && oldHex === expectedOld && newHex === expectedNew;
    return {
      kind: "consistency",
      verified: verified,
      tampered: tamper,
      oldSize: doc.old_tree_head.tree_size,
      treeSize: doc.new_tree_head.tree_size,
      path: proof.map(toHex),
      recomputedOldRoot: oldHex,
      expectedOldRoot: expectedOld,
      recomputedRoot: newHex,
      expectedRoot: expectedNew,
      steps: steps,
      hashing: hashImplementation(),
      reason: verified ? "the old tree is a prefix of the new one: the log only grew"
        : roots === null ? "the proof has the wrong shape for these tree sizes"
          : oldHex !== expectedOld ? "the proof does not lead to the old root"
            : "the proof does not lead to the new signed root",
    };
  }

  // --- signed tree heads ----------------------------------------------------------------------------------
  // The bytes the log key signs (creditflow.ledger.tree_head.TreeHead.message): a context string, then the
  // CJ1 canonical JSON of the five members, keys in byte order, no whitespace. For these members CJ1 and
  // JSON.stringify escape strings alike, and the integers are far below 2^53.
  const STH_CONTEXT = "creditflow/sth/v1\u0000";
  function integerText(value, what) {
    if (!Number.isSafeInteger(value) || value < 0) throw new Error(what + " must be a non-negative integer");
    return String(value);
  }
  function treeHeadMessage(head) {
    if (typeof head.key_id !== "string") throw new Error("key_id must be a string");
    hash32(head.root_hash, "root_hash");
    const body = '{"key_id":' + JSON.stringify(head.key_id) + ',"root_hash":' + JSON.stringify(head.root_hash) +
      ',"tree_size":' + integerText(head.tree_size, "tree_size") + ',"ts_ms":' + integerText(head.ts_ms, "ts_ms") +
      ',"v":' + integerText(head.v, "v") + "}";
    return new TextEncoder().encode(STH_CONTEXT + body);
  }
  // True when ``head.signature`` is the Ed25519 signature of the head under ``publicKeyHex`` (Web Crypto;
  // Chromium 137+, Firefox 129+, Safari 17+, node 20). Throws when the input or the browser cannot tell.
  async function verifyTreeHead(head, publicKeyHex) {
    const c = root.crypto;
    if (!c || !c.subtle) throw new Error("this browser has no Web Crypto (crypto.subtle)");
    const publicKey = fromHex(publicKeyHex, "log public key");
    if (publicKey.length !== 32) throw new Error("log public key must be 32 bytes");
    const signature = fromHex(head.signature, "signature");
    const message = treeHeadMessage(head);
    let key;
    try {
      key = await c.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
    } catch (error) {
      throw new Error("this browser cannot check Ed25519 signatures (" + error.message + ")");
    }
    return c.subtle.verify({ name: "Ed25519" }, key, signature, message);
  }

  // --- C2SP checkpoints: signed notes, vkeys, cosignature/v1 (as creditflow.ledger.note) ---------------------
  // c2sp.org/signed-note: text, a blank line, then lines "— name base64(keyid(4) || signature)". A vkey is
  // "name+hexid+base64(type || key)", the id SHA-256(name || 0x0A || type || key)[:4]. The log signs the text
  // (type 0x01, Ed25519); a witness signs "cosignature/v1\ntime T\n" + text (type 0x04), its signature being
  // u64 T (big-endian) || Ed25519.
  const ED25519 = 0x01, COSIGNATURE_V1 = 0x04;
  const EM_DASH = "\u2014";
  const B64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

  function fromBase64(text, what) {
    if (typeof text !== "string" || !B64_RE.test(text)) throw new Error(what + " is not base64");
    const raw = root.atob(text);
    return Uint8Array.from(raw, (c) => c.charCodeAt(0));
  }
  function toBase64(bytes) {
    return root.btoa(Array.from(bytes, (b) => String.fromCharCode(b)).join(""));
  }
  const utf8 = (text) => new TextEncoder().encode(text);

  async function noteKeyId(name, type, publicKey) {
    return (await sha256(concat(utf8(name), Uint8Array.of(0x0a, type), publicKey))).slice(0, 4);
  }

  /** A vkey: {name, type, publicKey, keyId}; throws when it is malformed or its id does not match. */
  async function parseVkey(vkey) {
    const text = String(vkey).trim();
    const first = text.indexOf("+"), second = first < 0 ? -1 : text.indexOf("+", first + 1);
    if (second < 0) throw new Error("a verifier key is name+hexid+base64key");  // (base64 may hold '+' too)
    const name = text.slice(0, first), hexId = text.slice(first + 1, second), raw64 = text.slice(second + 1);
    if (!name || /\s/.test(name)) throw new Error("a verifier key's name has no spaces");
    const raw = fromBase64(raw64, "the verifier key");
    const keyId = fromHex(hexId, "the verifier key id");
    if (keyId.length !== 4 || raw.length !== 33 || (raw[0] !== ED25519 && raw[0] !== COSIGNATURE_V1)) {
      throw new Error("a verifier key is an Ed25519 (0x01) or cosignature/v1 (0x04) key of 32 bytes");
    }
    const publicKey = raw.slice(1);
    if (toHex(await noteKeyId(name, raw[0], publicKey)) !== toHex(keyId)) {
      throw new Error("verifier key id " + hexId + " does not match its name and key");
    }
    return { name: name, type: raw[0], publicKey: publicKey, keyId: keyId };
  }

  /** A signed note: {text, signatures: [{name, keyId, signature}]} (the text ends at the last blank line). */
  function parseNote(data) {
    if (!data.endsWith("\n")) data += "\n";  // a pasted note may lose its final newline; nothing signed is changed
    const split = data.lastIndexOf("\n\n");
    if (split < 0) throw new Error("the note has no blank line before its signatures");
    const text = data.slice(0, split + 1);
    const lines = data.slice(split + 2).split("\n").slice(0, -1);
    if (!lines.length) throw new Error("the note has no signatures");
    const signatures = lines.map((line) => {
      const fields = line.startsWith(EM_DASH + " ") ? line.slice(2).split(" ") : [];
      if (fields.length !== 2) throw new Error("malformed signature line " + JSON.stringify(line.slice(0, 60)));
      const raw = fromBase64(fields[1], "the signature of " + fields[0]);
      if (raw.length < 5) throw new Error("the signature of " + fields[0] + " is too short");
      return { name: fields[0], keyId: raw.slice(0, 4), signature: raw.slice(4) };
    });
    return { text: text, signatures: signatures };
  }

  /** The checkpoint lines of a note text: origin, size (decimal string), root hash (hex). */
  function parseCheckpoint(text) {
    const lines = text.split("\n");
    if (lines.length < 4 || lines[lines.length - 1] !== "") throw new Error("a checkpoint has an origin, a size and a root");
    if (!/^(0|[1-9][0-9]{0,19})$/.test(lines[1])) throw new Error("the checkpoint size is not a decimal number");
    const rootHash = fromBase64(lines[2], "the checkpoint root");
    if (rootHash.length !== 32) throw new Error("the checkpoint root must be 32 bytes");
    return { origin: lines[0], size: lines[1], rootHash: toHex(rootHash) };
  }

  function cosignedMessage(text, timestamp) {
    return utf8("cosignature/v1\ntime " + BigInt(timestamp).toString() + "\n" + text);
  }

  async function verifyEd25519(publicKey, message, signature) {
    const c = root.crypto;
    if (!c || !c.subtle) throw new Error("this browser has no Web Crypto (crypto.subtle)");
    let key;
    try {
      key = await c.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
    } catch (error) {
      throw new Error("this browser cannot check Ed25519 signatures (" + error.message + ")");
    }
    return c.subtle.verify({ name: "Ed25519" }, key, signature, message);
  }

  /**
   * Check a signed checkpoint: the log's signature under ``logVkey``, each cosignature under the witnesses'
   * vkeys (``witnesses``: [{name, vkey}], the policy), and whether ``quorum`` of them cosigned. Signatures of
   * keys outside the policy are shown and ignored (signed-note); a trusted key whose signature fails makes
   * the checkpoint INVALID.
   */
  async function checkCheckpoint(noteText, logVkey, witnesses, quorum) {
    const note = parseNote(noteText);
    const checkpoint = parseCheckpoint(note.text);
    const log = await parseVkey(logVkey);
    if (log.type !== ED25519) throw new Error("the log's verifier key must be an Ed25519 (0x01) key");
    const trusted = [];
    for (const w of witnesses) trusted.push({ name: w.name, key: await parseVkey(w.vkey) });
    const same = (sig, key) => sig.name === key.name && toHex(sig.keyId) === toHex(key.keyId);
    const rows = [];
    let logValid = false, invalid = 0;
    const cosigned = new Set();
    for (const sig of note.signatures) {
      const row = { name: sig.name, keyId: toHex(sig.keyId), kind: "unknown", time: null, witness: null, valid: null };
      if (sig.signature.length === 72) {
        const t = new DataView(sig.signature.buffer, sig.signature.byteOffset, 8).getBigUint64(0);
        row.time = t < BigInt(8640000000000) ? new Date(Number(t) * 1000).toISOString().replace(".000Z", "Z") : t.toString();
      }
      if (same(sig, log)) {
        row.kind = "log";
        row.time = null;
        row.valid = await verifyEd25519(log.publicKey, utf8(note.text), sig.signature);
        logValid = logValid || row.valid;
      } else {
        const match = trusted.find((w) => same(sig, w.key) && w.key.type === COSIGNATURE_V1);
        if (sig.signature.length === 72) row.kind = "cosignature";
        if (match) {
          row.witness = match.name;
          const t = new DataView(sig.signature.buffer, sig.signature.byteOffset, 8).getBigUint64(0);
          row.valid = row.kind === "cosignature" && t < (BigInt(1) << BigInt(63)) &&
            await verifyEd25519(match.key.publicKey, cosignedMessage(note.text, t), sig.signature.slice(8));
          if (row.valid) cosigned.add(match.name);
        }
      }
      if (row.valid === false) invalid += 1;
      rows.push(row);
    }
    const quorumMet = cosigned.size >= quorum;
    let verdict, reason;
    if (!logValid || invalid) {
      verdict = "INVALID";
      reason = !note.signatures.some((s) => same(s, log)) ? "the log's signature is missing"
        : !logValid ? "the log's signature does not verify under the log key"
          : invalid + " signature(s) of trusted witnesses do not verify";
    } else if (!quorumMet) {
      verdict = "quorum NOT met";
      reason = cosigned.size + " of the " + trusted.length + " trusted witnesses cosigned; the policy needs " + quorum;
    } else {
      verdict = "valid";
      reason = "the log signed it" + (trusted.length ? " and " + cosigned.size + " of the " + trusted.length +
        " trusted witnesses cosigned (the policy needs " + quorum + ")" : "; no witnesses are configured");
    }
    return {
      origin: checkpoint.origin, size: checkpoint.size, rootHash: checkpoint.rootHash, signatures: rows,
      logValid: logValid, cosigned: Array.from(cosigned), quorum: quorum, quorumMet: quorumMet,
      verdict: verdict, reason: reason,
    };
  }

  const exported = {
    sha256, sha256Pure, setHashMode, hashImplementation, fromHex, toHex, leafHash, nodeHash,
    rootFromInclusion, rootsFromConsistency, checkInclusion, checkConsistency, treeHeadMessage, verifyTreeHead,
    fromBase64, toBase64, parseVkey, parseNote, parseCheckpoint, cosignedMessage, checkCheckpoint,
  };
  if (typeof module !== "undefined" && module.exports) module.exports = exported;
  root.creditflowProofs = exported;

  // --- the page --------------------------------------------------------------------------------------------
  if (typeof document === "undefined") return;

  async function getJson(path) {
    return root.creditflow.api("GET", path);
  }

  function show(result) {
    const box = document.getElementById("proof-result");
    box.dataset.status = result.verified ? "verified" : "failed";
    box.dataset.kind = result.kind;
    const text = (id, value) => { document.getElementById(id).textContent = value === null || value === undefined ? "-" : value; };
    text("proof-status", result.verified ? "verified" : "FAILED");
    text("proof-kind", result.kind + (result.tampered ? " (tampered on purpose)" : ""));
    text("proof-recomputed-root", result.recomputedRoot || "(no root: the proof has the wrong shape)");
    text("proof-expected-root", result.expectedRoot);
    text("proof-old-roots", result.kind === "consistency" ? (result.recomputedOldRoot || "-") + " / " + result.expectedOldRoot : "-");
    text("proof-leaf-hash", result.leafHash);
    text("proof-hash-impl", result.hashing);
    text("proof-signature", result.signature);
    text("proof-reason", result.reason);
    const inputs = { kind: result.kind, tree_size: result.treeSize, path: result.path };
    if (result.kind === "inclusion") { inputs.leaf_index = result.leafIndex; inputs.leaf_hash = result.leafHash; }
    else { inputs.old_size = result.oldSize; inputs.old_root = result.expectedOldRoot; }
    inputs.expected_root = result.expectedRoot;
    text("proof-inputs", JSON.stringify(inputs, null, 2));
    const list = document.getElementById("proof-steps");
    list.replaceChildren(...result.steps.map((s) => { const li = document.createElement("li"); li.textContent = s; return li; }));
  }

  function showError(error) {
    const box = document.getElementById("proof-result");
    box.dataset.status = "error";
    document.getElementById("proof-status").textContent = "could not check: " + error.message;
    document.getElementById("proof-reason").textContent = error.code || "-";
  }

  async function run(check) {
    const box = document.getElementById("proof-result");
    box.dataset.status = "checking";
    document.getElementById("proof-status").textContent = "checking…";
    try {
      show(await check(document.getElementById("proof-tamper").checked));
    } catch (error) {
      showError(error);
    }
  }

  function pinnedKey() {
    return document.getElementById("sth-pinned-key").value.trim();
  }

  // A root is only worth something if the log signed it: check the signature of every tree head whose root
  // the proof was checked against, under the key in the "log public key" field (the one the auditor pinned).
  async function withSignatures(result, heads) {
    const notes = [];
    for (const head of heads) {
      let ok = false;
      let why = null;
      try {
        ok = await verifyTreeHead(head, pinnedKey());
        if (!ok) why = "the signature of tree head " + head.tree_size + " does not verify under the log key";
      } catch (error) {
        why = error.message;
      }
      notes.push("tree head " + head.tree_size + ": " + (ok ? "valid" : "INVALID"));
      result.steps.push("Ed25519 signature of tree head " + head.tree_size + " under the log key: " + (ok ? "valid" : "INVALID (" + why + ")"));
      if (!ok && result.verified) {
        result.verified = false;
        result.reason = why;
      }
    }
    result.signature = notes.join("; ");
    return result;
  }

  async function checkShownHead() {
    const box = document.getElementById("sth-browser-check");
    const card = document.getElementById("sth");
    const head = {
      v: 1,
      tree_size: Number(card.dataset.treeSize),
      root_hash: card.dataset.rootHash,
      ts_ms: Number(document.getElementById("sth-time").dataset.tsMs),
      key_id: document.getElementById("sth-key-id").textContent.trim(),
      signature: document.getElementById("sth-signature").textContent.trim(),
    };
    box.dataset.status = "checking";
    box.textContent = "checking…";
    try {
      const ok = await verifyTreeHead(head, pinnedKey());
      box.dataset.status = ok ? "verified" : "failed";
      box.textContent = ok ? "valid: checked in this browser (Web Crypto Ed25519) under the key above"
        : "INVALID: the signature does not verify under the key above";
    } catch (error) {
      box.dataset.status = "error";
      box.textContent = "could not check: " + error.message;
    }
  }

  async function inclusion(tamper) {
    const sth = await getJson("/v1/log/tree-head");
    const index = document.getElementById("proof-leaf-index").value.trim();
    const wanted = document.getElementById("proof-tree-size").value.trim();
    const size = wanted || String(sth.tree_size);
    const doc = await getJson("/v1/log/proofs/inclusion?leaf_index=" + encodeURIComponent(index) +
      "&tree_size=" + encodeURIComponent(size));
    // The root to reach: the latest STH's when the proof is for that size, else the head the proof carries.
    const head = doc.tree_head.tree_size === sth.tree_size ? sth : doc.tree_head;
    return withSignatures(await checkInclusion(doc, head.root_hash, { tamper: tamper }), [head]);
  }

  async function consistency(tamper) {
    const sth = await getJson("/v1/log/tree-head");
    const oldSize = document.getElementById("proof-old-size").value.trim();
    const kept = document.getElementById("proof-old-root").value.trim();
    const wanted = document.getElementById("proof-new-size").value.trim();
    const newSize = wanted || String(sth.tree_size);
    const doc = await getJson("/v1/log/proofs/consistency?old_size=" + encodeURIComponent(oldSize) +
      "&new_size=" + encodeURIComponent(newSize));
    const newHead = doc.new_tree_head.tree_size === sth.tree_size ? sth : doc.new_tree_head;
    const result = await checkConsistency(doc, kept || doc.old_tree_head.root_hash, newHead.root_hash, { tamper: tamper });
    // A root the auditor kept is their own evidence; otherwise the old root is only as good as its signature.
    return withSignatures(result, kept ? [newHead] : [doc.old_tree_head, newHead]);
  }

  async function checkShownCheckpoint() {
    const box = document.getElementById("checkpoint-browser-check");
    const quorumBox = document.getElementById("checkpoint-quorum");
    const card = document.getElementById("checkpoint");
    const witnesses = Array.from(document.querySelectorAll("#checkpoint-witnesses li[data-vkey]"),
      (li) => ({ name: li.dataset.name, vkey: li.dataset.vkey }));
    box.dataset.status = "checking";
    box.textContent = "checking…";
    try {
      const result = await checkCheckpoint(document.getElementById("checkpoint-note").value,
        document.getElementById("checkpoint-log-vkey").value, witnesses, Number(card.dataset.quorum || 0));
      const body = document.querySelector("#checkpoint-signatures tbody");
      body.replaceChildren(...result.signatures.map((r) => {
        const tr = document.createElement("tr");
        tr.dataset.signer = r.name;
        tr.dataset.kind = r.kind;
        tr.dataset.inPolicy = r.witness ? "yes" : "no";
        const kind = { log: "log signature", cosignature: "cosignature/v1", unknown: "unknown signature" }[r.kind];
        const policy = r.kind === "log" ? "this log" : r.witness ? "yes: " + r.witness : "no";
        const check = r.valid === null ? "not checked: not a trusted key" : r.valid ? "valid" : "INVALID";
        for (const value of [r.name, kind, r.keyId, r.time || "-", policy, check]) {
          const td = document.createElement("td");
          td.textContent = value;
          tr.appendChild(td);
        }
        tr.lastChild.className = "sig-check";
        tr.lastChild.dataset.status = r.valid === null ? "ignored" : r.valid ? "verified" : "failed";
        return tr;
      }));
      box.dataset.status = result.verdict === "valid" ? "verified" : result.verdict === "INVALID" ? "failed" : "quorum-not-met";
      box.textContent = result.verdict + ": " + result.reason + " (checked in this browser, Web Crypto Ed25519)";
      quorumBox.dataset.status = result.quorumMet ? "met" : "not-met";
      quorumBox.textContent = "Quorum " + (result.quorumMet ? "met" : "NOT met") + ": " + result.cosigned.length +
        " of the " + witnesses.length + " trusted witnesses cosigned validly; the policy needs " + result.quorum + ".";
    } catch (error) {
      box.dataset.status = "error";
      box.textContent = "could not check: " + error.message;
    }
  }

  document.addEventListener("DOMContentLoaded", function () {
    const checkpointForm = document.getElementById("checkpoint-check-form");
    if (checkpointForm) checkpointForm.addEventListener("submit", (e) => { e.preventDefault(); checkShownCheckpoint(); });
    const inclusionForm = document.getElementById("inclusion-form");
    const consistencyForm = document.getElementById("consistency-form");
    if (inclusionForm) inclusionForm.addEventListener("submit", (e) => { e.preventDefault(); run(inclusion); });
    if (consistencyForm) consistencyForm.addEventListener("submit", (e) => { e.preventDefault(); run(consistency); });
    const sthForm = document.getElementById("sth-check-form");
    if (sthForm) sthForm.addEventListener("submit", (e) => { e.preventDefault(); checkShownHead(); });
  });
})(typeof window !== "undefined" ? window : globalThis);
