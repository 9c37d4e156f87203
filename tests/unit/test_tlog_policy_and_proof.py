"""The two text formats an outsider's verifier reads: c2sp.org/tlog-policy (trusted logs, witnesses, groups
and the quorum) and c2sp.org/tlog-proof (index, audit path, extra, the checkpoint verbatim)."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from creditflow.ledger.note import COSIGNATURE_V1, ED25519, VerifierKey
from creditflow.ledger.policy import NONE, Policy, PolicyError, parse_policy
from creditflow.ledger.tlog_proof import HEADER, TlogProof, TlogProofError, parse_tlog_proof


def key(name: str, sig_type: int = COSIGNATURE_V1) -> VerifierKey:
    return VerifierKey(name, sig_type, hashlib.sha256(name.encode()).digest())


LOG = key("example.com/log", ED25519)
X = [key(f"x{i}.example") for i in (1, 2, 3)]
Y = [key(f"y{i}.example") for i in (1, 2, 3)]

# The example of c2sp.org/tlog-policy, keys filled in: two of the X witnesses and one of the Y witnesses.
EXAMPLE = f"""
# a comment, then the log
log {LOG.encode()} https://example.com/log

witness X1 {X[0].encode()}
witness X2 {X[1].encode()}
\twitness X3 {X[2].encode()}   https://x3.example/
group X-witnesses 2 X1 X2 X3

witness Y1 {Y[0].encode()}
witness Y2 {Y[1].encode()}
witness Y3 {Y[2].encode()}
group Y-witnesses any Y1 Y2 Y3

group X-and-Y all X-witnesses Y-witnesses
quorum X-and-Y
"""


def test_the_specifications_example_policy() -> None:
    policy = parse_policy(EXAMPLE)
    assert policy.logs == (LOG,)
    assert list(policy.witnesses) == ["X1", "X2", "X3", "Y1", "Y2", "Y3"]
    assert policy.needs() == "2 of (2 of (X1, X2, X3), 1 of (Y1, Y2, Y3))"
    assert policy.met_by([X[0], X[2], Y[1]])
    assert not policy.met_by([X[0], X[1], X[2]])  # no Y
    assert not policy.met_by([X[0], Y[0], Y[1], Y[2]])  # one X only
    assert not policy.met_by([])


def test_quorum_none_and_a_single_witness() -> None:
    assert parse_policy(f"log {LOG.encode()}\nquorum none\n").met_by([])
    one = parse_policy(f"witness w {X[0].encode()}\nquorum w\n")
    assert one.logs == () and one.met_by([X[0]]) and not one.met_by([X[1]])


def test_the_command_lines_policy_is_any_n_of_the_witnesses() -> None:
    policy = Policy.simple([LOG], X, 2)
    assert policy.met_by(X[:2]) and policy.met_by(X[1:]) and not policy.met_by(X[:1])
    assert Policy.simple([LOG], X, 0).quorum == NONE
    with pytest.raises(PolicyError, match="quorum 4 needs 0 to 3"):
        Policy.simple([LOG], X, 4)
    with pytest.raises(PolicyError, match="witness key is a cosignature"):
        Policy.simple([LOG], [LOG], 1)
    with pytest.raises(PolicyError, match="log key is an Ed25519"):
        Policy.simple([X[0]], [], 0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the policy has no quorum line"),
        ("quorum none\nquorum none\n", "line 2: a policy has exactly one quorum line"),
        ("quorum w\n", "line 1: 'w' is not a witness or group defined above"),
        (f"quorum g\ngroup g any w\nwitness w {X[0].encode()}\n", "line 1"),
        (
            f"witness w {X[0].encode()}\nwitness v {X[0].encode()}\nquorum w\n",
            "line 2: this witness's key is listed twice",
        ),
        (f"witness w {X[0].encode()}\nwitness w {X[1].encode()}\nquorum w\n", "line 2: the name 'w' is taken"),
        (f"witness none {X[0].encode()}\nquorum none\n", "line 1: the name 'none' is taken"),
        (f"log {LOG.encode()}\nlog {LOG.encode()}\nquorum none\n", "line 2: this log's key is listed twice"),
        (f"log {X[0].encode()}\nquorum none\n", "line 1: the key must be an Ed25519"),
        (f"witness w {LOG.encode()}\nquorum none\n", "line 1: the key must be a cosignature/v1"),
        (f"witness w {X[0].encode()}\ngroup g 2 w\nquorum g\n", "line 2: the threshold must be all, any or 1 to 1"),
        (f"witness w {X[0].encode()}\ngroup g 0 w\nquorum g\n", "line 2: the threshold"),
        (f"witness w {X[0].encode()}\ngroup g any w w\nquorum g\n", "line 2: a member is listed twice"),
        (f"witness w {X[0].encode()}\ngroup g any none\nquorum g\n", "line 2: 'none' is not a witness or group"),
        ("log nonsense\nquorum none\n", "line 1: a verifier key is name+hexid+base64key"),
        ("logs x\nquorum none\n", "line 1: expected log, witness, group or quorum"),
        ("quorum none\x0b\n", "line 1: control characters"),
    ],
)
def test_a_bad_policy_names_its_line(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as error:
        parse_policy(text)
    assert str(error.value).startswith(message), str(error.value)


# --- tlog-proof ------------------------------------------------------------------------------------------

NOTE = "example.com/log\n3\n" + base64.b64encode(bytes(32)).decode() + "\n\n\u2014 example.com/log AAAAAAAA\n"


def test_the_layout_of_a_tlog_proof() -> None:
    proof = TlogProof(5, (b"\x01" * 32, b"\x02" * 32), NOTE, b"entry bytes")
    text = proof.encode()
    assert text.split("\n")[:5] == [
        HEADER,
        "extra " + base64.b64encode(b"entry bytes").decode(),
        "index 5",
        base64.b64encode(b"\x01" * 32).decode(),
        base64.b64encode(b"\x02" * 32).decode(),
    ]
    assert text.endswith("\n\n" + NOTE)
    assert parse_tlog_proof(text) == proof
    assert parse_tlog_proof(text.encode()) == proof
    no_extra = TlogProof(0, (), NOTE)
    assert no_extra.encode() == f"{HEADER}\nindex 0\n\n{NOTE}" and parse_tlog_proof(no_extra.encode()) == no_extra


@given(
    index=st.integers(0, 2**63 - 1),
    path=st.lists(st.binary(min_size=32, max_size=32), max_size=64),
    extra=st.none() | st.binary(max_size=300),
)
def test_a_tlog_proof_reads_back_as_written(index: int, path: list[bytes], extra: bytes | None) -> None:
    proof = TlogProof(index, tuple(path), NOTE, extra)
    assert parse_tlog_proof(proof.encode()) == proof


GOOD = TlogProof(5, (b"\x01" * 32,), NOTE, b"e").encode()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD.replace(HEADER, "c2sp.org/tlog-proof@v2"), "line 1"),
        (GOOD.replace("index 5", "index 05"), "line 3: the index must be a decimal"),
        (GOOD.replace("index 5", "index -1"), "line 3: the index"),
        (GOOD.replace("index 5", "idx 5"), "line 3: expected 'index N'"),
        (GOOD.replace("extra ZQ==", "extra Z!=="), "line 2 (extra): not base64"),
        (GOOD.replace(base64.b64encode(b"\x01" * 32).decode(), base64.b64encode(b"\x01" * 31).decode()), "line 4"),
        (GOOD.split("\n\n")[0] + "\n", "no checkpoint"),
        (f"{HEADER}\nindex 1\n" + "\n".join([base64.b64encode(bytes(32)).decode()] * 65) + "\n\n" + NOTE, "line 67"),
        (b"\xff" + GOOD.encode(), "the file is not UTF-8"),
    ],
)
def test_a_malformed_tlog_proof_is_refused(text: str | bytes, message: str) -> None:
    with pytest.raises(TlogProofError) as error:
        parse_tlog_proof(text)
    assert message in str(error.value), str(error.value)
