"""A database written by the code before the move to one package per context (issue 12) verifies after it.

`tests/data/golden/ledger-before-issue-12.db` was written once by `make_golden.py` (beside it) at commit f4e1d1c,
the last commit of the layer-first layout: every operation type (register_party in both custodies, rotate_key,
issue, accept, reject, expire, transfer, split, freeze, unfreeze, revoke, finance, clear, mark_overdue). If a byte
contract moved with the code (CJ1, signing contexts, the payload's normal form, id derivation, Merkle node keys),
replaying it fails here.

It predates the log key sealed apart (issue 13): its log key is among the organisations' keys, under the one
passphrase. It opens so in development mode (with a warning); otherwise `seal_log_key` (`creditflow keys
seal-log-key`) moves it under its own secret once, and from then on it opens only with both.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select

from conftest import FAST_KDF, make_settings
from creditflow.bootstrap import build, seal_log_key
from creditflow.ledger.custody import LogKeyNotSeparated, StartupRefused, WrongLogSecret
from creditflow.ledger.model.parties import PLATFORM
from creditflow.ledger.tables import custody_keys, ledger_entries, log_key_custody

GOLDEN = Path(__file__).resolve().parent.parent / "data" / "golden" / "ledger-before-issue-12.db"
PASSPHRASE = "golden-database-passphrase"  # a test fixture's, never a real one
ROOT_HASH = "83be4159250b10fd956d53da8544850035cd52f66f7564aaeda15b96352dde5f"
OP_TYPES = {
    "accept": 3, "clear": 1, "expire": 1, "finance": 1, "freeze": 1, "issue": 5, "mark_overdue": 1,
    "register_party": 10, "reject": 1, "revoke": 1, "rotate_key": 1, "split": 1, "transfer": 1, "unfreeze": 1,
}  # fmt: skip


LOG_PASSPHRASE = "golden-log-passphrase"


def _copy(tmp_path: Path) -> str:
    copy = tmp_path / "golden.db"
    shutil.copyfile(GOLDEN, copy)  # the golden file itself is never opened for writing
    return f"sqlite:///{copy}"


def _verifies(app) -> None:  # type: ignore[no-untyped-def]
    report = app.verify()
    assert (report.entries, report.tree_size, report.root_hash) == (29, 29, ROOT_HASH)


def test_the_database_written_before_the_move_verifies_after_it(tmp_path: Path) -> None:
    assert FAST_KDF["kdf_opslimit"] == 1  # the custody key was sealed with these parameters
    settings = make_settings(_copy(tmp_path), key_passphrase=PASSPHRASE, log_key_passphrase=None, dev=True)
    with build(settings) as app:
        assert any("still sealed with the organisations' keys" in w for w in app.warnings)
        with app.engine.connect() as conn:
            counted = dict(
                conn.execute(select(ledger_entries.c.op_type, func.count()).group_by(ledger_entries.c.op_type)).all()
            )
        assert counted == OP_TYPES
        report = app.verify()
        assert (report.entries, report.tree_size, report.root_hash) == (29, 29, ROOT_HASH)
        assert report.certificates == 5 and report.pieces == 10


def test_its_log_key_is_sealed_apart_once_and_then_opens_only_with_its_own_secret(tmp_path: Path) -> None:
    url = _copy(tmp_path)
    both = make_settings(url, key_passphrase=PASSPHRASE, log_key_passphrase=LOG_PASSPHRASE)
    with pytest.raises(LogKeyNotSeparated):  # outside development mode it does not open as it was
        build(both)
    with pytest.raises(StartupRefused) as reused:  # the organisations' passphrase cannot be the log key's
        seal_log_key(make_settings(url, key_passphrase=PASSPHRASE, log_key_passphrase=PASSPHRASE))
    assert reused.value.code == "log_key_secret_reused"
    with build(make_settings(url, key_passphrase=PASSPHRASE, log_key_passphrase=None, dev=True)) as before:
        log_key = before.log_signer.public_key

    signer, moved = seal_log_key(both)
    assert moved and signer.public_key == log_key
    with build(both) as app:
        assert app.log_signer.public_key == log_key and app.warnings == ()
        with app.engine.connect() as conn:
            assert conn.execute(select(custody_keys).where(custody_keys.c.org_id == PLATFORM)).first() is None
            assert conn.execute(select(func.count()).select_from(log_key_custody)).scalar_one() == 1
        _verifies(app)
    assert seal_log_key(both)[1] is False  # once is enough
    with pytest.raises(WrongLogSecret):  # nor does development mode open it any more without its secret
        build(make_settings(url, key_passphrase=PASSPHRASE, log_key_passphrase=None, dev=True))
