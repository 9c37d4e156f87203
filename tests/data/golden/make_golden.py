"""Writes `ledger-before-issue-12.db`: run ONCE, with the code before the move to one package per context.

    git worktree add /tmp/oldtree f4e1d1c
    CREDITFLOW_KDF_OPSLIMIT=1 CREDITFLOW_KDF_MEMLIMIT_BYTES=8388608 PYTHONPATH=/tmp/oldtree/src \
        python tests/data/golden/make_golden.py sqlite:////tmp/golden.db /tmp/oldtree/tests

It imports that commit's module paths (creditflow.services..., creditflow.domain...), so it does not run on the
current tree, on purpose: the database it wrote is the evidence that the move kept every byte contract
(tests/integration/test_golden_database.py). Every ledger operation type appears at least once.
"""

import datetime as dt
import sys

sys.path.insert(0, sys.argv[2])  # the old tree's tests/, for its conftest helpers

from conftest import START_MS, make_settings, onboard  # noqa: E402
from creditflow.bootstrap import build  # noqa: E402
from creditflow.domain.uscc import make_uscc  # noqa: E402
from creditflow.services.clock import ManualClock  # noqa: E402
from nacl.signing import SigningKey  # noqa: E402

DAY_MS = 86_400_000
ACCOUNTS = {
    "factory": ("Factory", "6222000011112222", "ICBKCNBJ"),
    "steel": ("Steel", "6222000011113333", "ICBKCNBJ"),
    "bank": ("Bank", "6222000011114444", "ICBKCNBJ"),
    "xcmg": ("XCMG", "6222000011115555", "ICBKCNBJ"),
}


def main(url: str) -> None:
    clock = ManualClock(START_MS)
    with build(make_settings(url, key_passphrase="golden-database-passphrase"), clock=clock) as app:
        onboard(app)  # register_party, platform custody
        self_key = SigningKey(bytes(range(32)))
        app.ledger.register_organisation(  # register_party, self custody
            "selfco", "Self Custody Co", "supplier", make_uscc("91320300134780010"), public_key=bytes(self_key.verify_key)
        )
        app.ledger.rotate_key("steel")
        app.financing.set_rating("xcmg", "AAA")
        app.financing.set_limit("bank", "xcmg", 10**12)
        app.financing.create_product("bank", "recourse", {"AAA": {365: 450}}, product_id="prd-rec")

        def issue(face: int, holder: str = "factory", accept: bool = True) -> tuple[str, str]:
            payable = app.ledger.create_payable("xcmg", holder, face, f"PO-{face}-{holder}")
            receipt = app.ledger.issue("xcmg", payable.id, face, dt.date(2026, 9, 1))
            piece = str(receipt.result["piece_id"])
            if accept:
                app.ledger.accept(holder, piece)
            return piece, str(receipt.result["certificate_id"])

        first, cert = issue(100_000_000)
        moved = str(app.ledger.transfer("factory", first, "steel", 30_000_000).result["piece_id"])
        app.ledger.accept("steel", moved)
        parts = [str(p) for p in app.ledger.split("steel", moved, [10_000_000, 20_000_000]).result["piece_ids"]]
        app.ledger.freeze("operator", parts[0], "court order 2026-01")
        app.ledger.unfreeze("operator", parts[0], "order lifted")
        assert app.financing.request("steel", parts[1], "bank", "prd-rec", 20_000_000).approved
        rejected, _ = issue(5_000_000, accept=False)
        app.ledger.reject("factory", rejected)
        _, revoked = issue(6_000_000, accept=False)
        app.ledger.revoke("xcmg", revoked)
        issue(7_000_000, accept=False)  # left pending: expires below
        issue(9_000_000, holder="ore")  # left unpaid: overdue below
        clock.advance(8 * DAY_MS)
        assert app.ledger.expire_due()
        for org, account in ACCOUNTS.items():
            app.clearing.set_account(org, *account)
        clock.set(int(dt.datetime(2026, 9, 1, 10, tzinfo=dt.timezone(dt.timedelta(hours=8))).timestamp() * 1000))
        app.clearing.record_payment("xcmg", cert, 100_000_000, "maturity")
        app.clearing.clear(cert)
        clock.advance(DAY_MS)
        assert app.clearing.mark_overdue_due()
        print(app.verify())


if __name__ == "__main__":
    main(sys.argv[1])
