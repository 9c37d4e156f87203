"""The witness's invariant under any sequence of submissions (honest growth, stale sizes, forks signed with the
log's own key, bad proofs): what it holds never shrinks, is always the honest log's checkpoint, and it cosigns
nothing else."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from witness_harness import MemoryLog, new_witness

MAX = 40
step = st.tuples(
    st.sampled_from(["honest", "stale", "fork", "fork_same_size", "bad_proof"]),
    st.integers(min_value=0, max_value=MAX),
    st.integers(min_value=0, max_value=MAX),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(step, min_size=1, max_size=25))
def test_the_witness_only_ever_holds_and_cosigns_the_honest_growing_log(steps: list[tuple[str, int, int]]) -> None:
    honest = MemoryLog()
    fork = MemoryLog(seed=b"fork")
    fork.signer = honest.signer  # the platform signs its forks with its real key
    honest.grow(MAX)
    fork.grow(MAX)
    with tempfile.TemporaryDirectory() as folder:
        witness = new_witness(Path(folder), "witness.test/p", honest)
        held = 0
        for kind, a, b in steps:
            if kind == "honest":
                size = max(held, a)
                answer = witness.add_checkpoint(honest.body(held, size))
                assert answer.status == 200
                held = size
            elif kind == "stale":
                old = a if a != held else held + 1
                answer = witness.add_checkpoint(honest.body(old, max(old, b)))
                assert answer.status == 409 and answer.body == f"{held}\n"
            elif kind == "fork" and held > 0:  # (from nothing any tree is consistent: first use is trusted)
                size = max(held, a)
                # the fork's own proof from `held`: consistent with the fork's past, not the honest one
                proof = fork.tree.consistency_proof(held, size) if 0 < held < size else []
                answer = witness.add_checkpoint(fork.body(held, size, proof=proof))
                assert answer.status == (409 if size == held else 422)
            elif kind == "fork_same_size" and held > 0:
                answer = witness.add_checkpoint(fork.body(held, held, proof=[]))
                assert answer.status == 409 and answer.body == f"{held}\n"
            elif kind == "bad_proof" and held > 0 and a > held:
                proof = honest.tree.consistency_proof(held, a)
                broken = [bytes(32), *proof[1:]]
                answer = witness.add_checkpoint(honest.body(held, a, proof=broken))
                assert answer.status == 422
            else:
                continue
            cosigned = witness.state.cosigned(honest.origin)
            assert cosigned.size == held
            if held:
                assert cosigned.checkpoint == honest.checkpoint(held)
