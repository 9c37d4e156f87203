"""The ledger benchmark's own parts, small: they must keep measuring the real path (every operation
acknowledged, verify green), or `make bench` would report numbers for something that no longer works."""

from __future__ import annotations

from pathlib import Path

from creditflow.tools.bench.api import run_api_bench
from creditflow.tools.bench.ledger import _publication_run, _store_run


def test_the_store_run_commits_every_operation_and_verifies(store_url: str) -> None:
    report = _store_run(store_url, 300, None, "test")
    assert report["ops"] == 300 and report["ops_per_s"] > 0
    assert report["verify_entries"] >= 300  # the workload's registrations and issues come on top
    assert report["provenance_10_tiers_ms_p50"] > 0  # measured; its size is for the benchmark to report


def test_the_http_run_gets_every_operation_acknowledged(tmp_path: Path) -> None:
    report = run_api_bench(200, tmp_path, concurrency=8)
    assert report["ops"] == 200 and report["failed"] == 0
    assert report["ops_per_s"] > 0 and report["healthz_per_s"] > 0


def test_the_publication_run_measures_with_both_witnesses_cosigning(tmp_path: Path) -> None:
    """Publication on beside off (issue 14 point 8): the "on" runs must really publish to two witness processes,
    or their ops/s would be the "off" number under another name."""
    report = _publication_run(tmp_path, 300, None, 0.05, pairs=1)
    assert report["order"] == ["off", "on"] and report["ratio"] > 0
    assert len(report["off_ops_per_s"]) == len(report["on_ops_per_s"]) == 1
    (on,) = report["on_runs"]
    assert on["rounds"] >= 1 and on["witness_failures"] == {"w0": 0, "w1": 0}
    assert on["published_cosignatures"] == 2 and on["published_size"] >= 300
    assert on["witness_lag_entries"] == {"w0": 0, "w1": 0}  # after the final round both hold the whole log
