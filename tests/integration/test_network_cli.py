"""`creditflow network ...`: the penetration report, exposure and what-if default on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import CLI_SECRETS_ENV, START_MS, issue_accepted, make_settings, onboard
from creditflow.bootstrap import build
from creditflow.cli.main import cli
from creditflow.kernel.clock import ManualClock


@pytest.fixture(autouse=True)
def _fast_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITFLOW_KDF_OPSLIMIT", "1")
    monkeypatch.setenv("CREDITFLOW_KDF_MEMLIMIT_BYTES", str(8 * 1024 * 1024))
    monkeypatch.setenv("CREDITFLOW_ENFORCE_TRADE_RULES", "false")
    for name, value in CLI_SECRETS_ENV.items():  # the passphrases make_settings sealed the keys with
        monkeypatch.setenv(name, value)


def test_network_commands(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'net.db'}"
    with build(make_settings(url), clock=ManualClock(START_MS)) as app:
        onboard(app, "xcmg", "factory", "steel")
        root = issue_accepted(app, 1_000_000)
        sent = app.ledger.transfer("factory", root, "steel", 300_000)
        app.ledger.accept("steel", str(sent.result["piece_id"]))
    runner = CliRunner()
    pen = runner.invoke(cli, ["network", "penetration", "xcmg", "--db", url, "--json"])
    assert pen.exit_code == 0, pen.output
    tiers = {t["tier"]: t["value_reached_minor"] for t in json.loads(pen.output)["tiers"]}
    assert tiers == {1: 1_000_000, 2: 300_000}
    what_if = json.loads(runner.invoke(cli, ["network", "what-if-default", "xcmg", "--db", url, "--json"]).output)
    losses = {h["org_id"]: h["direct_loss_minor"] for h in what_if["holders"]}
    assert losses == {"factory": 700_000, "steel": 300_000} and what_if["total_at_risk_minor"] == 1_000_000
    table = runner.invoke(cli, ["network", "penetration", "xcmg", "--db", url])
    assert table.exit_code == 0 and "value reached" in table.output
