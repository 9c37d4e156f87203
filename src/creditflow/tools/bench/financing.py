"""`creditflow bench financing`: request-to-recorded-disbursement latency of certificate financing.

Each measured request runs the whole production path with the trade rules on: the holder asks, the
facts are gathered (piece, certificate, confirmed payable, provenance, limits, rating, blacklist), the
bank's automatic policy decides, and the financing is appended to the ledger signed by holder and bank
(with the limit drawn and the agreement stored in the same durable commit). The clock stops when the
approval is recorded. Requests are sequential (latency, not throughput); the peer measured in the same
run is a bare durable ledger append (a `split` of the same size), the floor under any financing.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from creditflow.bootstrap import App, build, throwaway_secrets
from creditflow.config import Settings
from creditflow.kernel.uscc import make_uscc

YUAN = 100


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def setup_world(app: App, pieces: int) -> dict[str, Any]:
    """A core enterprise with a rating and a credit line, a supplier holding ``pieces`` accepted pieces
    of a confirmed-payable certificate, and a bank with a product and a limit."""
    s = uuid.uuid4().hex[:4].upper()
    cast = {"core": "core_enterprise", "supplier": "supplier", "bank": "bank"}
    for i, (org, role) in enumerate(cast.items()):
        app.ledger.register_organisation(org, org.title(), role, make_uscc(f"9132030077{i}{s}00"))
    face = pieces * 10_000 * YUAN
    app.confirmation.set_credit_line("core", face * 2)
    payable = app.payables.create_payable("core", "supplier", face, "bench PO")
    for user_id in ("approver.a", "approver.b"):
        app.people.add("core", user_id, user_id.title(), ["approver"])
        token = app.access.create_key("core", f"bench: {user_id}", user_id=user_id)
        app.confirmation.approve(payable.id, app.access.authenticate(token))
    today = dt.datetime.fromtimestamp(app.clock.now_ms() / 1000, dt.timezone(dt.timedelta(hours=8))).date()
    issued = app.ledger.issue("core", payable.id, face, today + dt.timedelta(days=120))
    root = str(issued.result["piece_id"])
    app.ledger.accept("supplier", root)
    unit = 10_000 * YUAN
    ids: list[str] = []
    parent, rest, left = root, face, pieces
    while left > 1:
        k = min(49, left - 1)  # pieces of one unit split off, the rest stays in one piece
        out = [str(x) for x in app.ledger.split("supplier", parent, [unit] * k + [rest - unit * k]).result["piece_ids"]]
        ids.extend(out[:k])
        parent, rest, left = out[k], rest - unit * k, left - k
    ids.append(parent)
    app.financing.set_rating("core", "AA")
    product = app.financing.create_product(
        "bank", "Certificate discounting", {"AA": {30: 320, 90: 350, 180: 380, 365: 420}}, fee_bps=5
    )
    app.financing.set_limit("bank", "core", face)
    return {"pieces": ids[:pieces], "product": product.id}


def run_financing_bench(requests: int = 300, db_url: str | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="creditflow-bench-fin-") as tmp:
        url = db_url or f"sqlite:///{Path(tmp) / 'financing.db'}"
        if db_url is None:  # a scratch database of this run
            settings = Settings(db_url=url, kdf_opslimit=1, kdf_memlimit_bytes=8 * 1024 * 1024, **throwaway_secrets())  # type: ignore[arg-type]
        else:  # the caller's database: its passphrases come from the environment, as for any command
            settings = Settings(db_url=url, kdf_opslimit=1, kdf_memlimit_bytes=8 * 1024 * 1024)
        with build(settings) as app:
            world = setup_world(app, requests + 1)
            latencies: list[float] = []
            declined = 0
            for piece_id in world["pieces"][:requests]:
                t = time.perf_counter()
                outcome = app.financing.request("supplier", piece_id, "bank", world["product"])
                latencies.append((time.perf_counter() - t) * 1000)
                declined += not outcome.approved
            # peer: a bare durable append of one operation through the same sequencer
            peer: list[float] = []
            spare = world["pieces"][requests]
            for _ in range(min(requests, 200)):
                t = time.perf_counter()
                spare = str(
                    app.ledger.split("supplier", spare, [1, app.queries.piece(spare).amount_minor - 1]).result[
                        "piece_ids"
                    ][1]
                )
                peer.append((time.perf_counter() - t) * 1000)
            store = app.engine.dialect.name
    return {
        "benchmark": "financing",
        "store": store,
        "requests": len(latencies),
        "approved": len(latencies) - declined,
        "declined": declined,
        "financing_ms_p50": round(statistics.median(latencies), 3),
        "financing_ms_p99": round(_percentile(latencies, 0.99), 3),
        "financing_ms_max": round(max(latencies), 3),
        "peer_append_ms_p50": round(statistics.median(peer), 3),
        "ratio_p50_to_append": round(statistics.median(latencies) / statistics.median(peer), 2),
        "target_p99_ms": 1000,
        "cpu_count": os.cpu_count(),
    }
