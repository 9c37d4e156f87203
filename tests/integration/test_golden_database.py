"""A database written by the code before the move to one package per context (issue 12) verifies after it.

`tests/data/golden/ledger-before-issue-12.db` was written once by `make_golden.py` (beside it) at commit f4e1d1c,
the last commit of the layer-first layout: every operation type (register_party in both custodies, rotate_key,
issue, accept, reject, expire, transfer, split, freeze, unfreeze, revoke, finance, clear, mark_overdue). If a byte
contract moved with the code (CJ1, signing contexts, the payload's normal form, id derivation, Merkle node keys),
replaying it fails here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import func, select

from conftest import FAST_KDF, make_settings
from creditflow.bootstrap import build
from creditflow.ledger.tables import ledger_entries

GOLDEN = Path(__file__).resolve().parent.parent / "data" / "golden" / "ledger-before-issue-12.db"
PASSPHRASE = "golden-database-passphrase"  # a test fixture's, never a real one
ROOT_HASH = "83be4159250b10fd956d53da8544850035cd52f66f7564aaeda15b96352dde5f"
OP_TYPES = {
    "accept": 3, "clear": 1, "expire": 1, "finance": 1, "freeze": 1, "issue": 5, "mark_overdue": 1,
    "register_party": 10, "reject": 1, "revoke": 1, "rotate_key": 1, "split": 1, "transfer": 1, "unfreeze": 1,
}  # fmt: skip


def test_the_database_written_before_the_move_verifies_after_it(tmp_path: Path) -> None:
    copy = tmp_path / "golden.db"
    shutil.copyfile(GOLDEN, copy)  # the golden file itself is never opened for writing
    assert FAST_KDF["kdf_opslimit"] == 1  # the custody key was sealed with these parameters
    with build(make_settings(f"sqlite:///{copy}", key_passphrase=PASSPHRASE)) as app:
        with app.engine.connect() as conn:
            counted = dict(
                conn.execute(select(ledger_entries.c.op_type, func.count()).group_by(ledger_entries.c.op_type)).all()
            )
        assert counted == OP_TYPES
        report = app.verify()
        assert (report.entries, report.tree_size, report.root_hash) == (29, 29, ROOT_HASH)
        assert report.certificates == 5 and report.pieces == 10
