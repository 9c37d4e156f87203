"""`creditflow erp import` and `creditflow erp match` through Typer's CliRunner, on SQLite and PostgreSQL.

The sub-app is invoked directly (``erp_cli``), exactly as `creditflow erp ...` runs it once registered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import creditflow.trade.tables  # noqa: F401  (registers the trade tables on the shared metadata)
from conftest import CLI_SECRETS_ENV
from creditflow.bootstrap import App
from creditflow.cli.trade import erp_cli

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "erp"
SAMPLES = ROOT / "samples" / "erp"
CLI_ENV = {"CREDITFLOW_KDF_OPSLIMIT": "1", "CREDITFLOW_KDF_MEMLIMIT_BYTES": "8388608", **CLI_SECRETS_ENV}


@pytest.fixture
def run(world: App, tmp_path: Path) -> Any:
    url = world.engine.url.render_as_string(hide_password=False)
    env = {**CLI_ENV, "CREDITFLOW_CONFIG": str(tmp_path / "absent.toml")}

    def invoke(*args: str) -> Any:
        return CliRunner().invoke(erp_cli, [*args, "--db", url], env=env)

    return invoke


def test_import_and_reimport(run: Any) -> None:
    result = run("import", str(DATA / "po.csv"), "--kind", "po", "--as", "xcmg")
    assert result.exit_code == 0, result.output
    assert "2 imported" in result.stdout and "0 rejected" in result.stdout
    again = run("import", str(DATA / "po.csv"), "--kind", "po", "--as", "xcmg")
    assert again.exit_code == 0
    assert "0 imported" in again.stdout and "2 already imported (unchanged)" in again.stdout


def test_rejected_documents_are_listed_row_by_row_with_exit_4(run: Any) -> None:
    assert run("import", str(DATA / "po.csv"), "--kind", "po", "--as", "xcmg").exit_code == 0
    result = run("import", str(DATA / "invoices_mixed.csv"), "--kind", "invoice", "--as", "xcmg")
    assert result.exit_code == 4, result.output
    out = result.stdout
    assert "2 imported" in out and "2 rejected" in out
    assert "INV-A2" in out and "tax_mismatch" not in out  # people get the reason in words, not the code...
    assert "is not 13% of" in out and "INV-A3" in out and "check character" in out
    as_json = run("import", str(DATA / "invoices_mixed.csv"), "--kind", "invoice", "--as", "xcmg", "--json")
    assert as_json.exit_code == 4
    report = json.loads(as_json.stdout)  # ...and programs get the codes
    assert report["outcome"] == "partial" and report["counts"] == {"imported": 0, "skipped": 2, "rejected": 2}
    assert [e["code"] for d in report["rejected"] for e in d["errors"]] == ["tax_mismatch", "invalid_uscc"]


def test_gbk_sample_with_wan_yuan(run: Any) -> None:
    for kind, name in [("po", "po.csv"), ("receipt", "receipts.csv"), ("invoice", "invoices_gbk.csv")]:
        result = run("import", str(SAMPLES / name), "--kind", kind, "--as", "factory", "--json")
        assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["encoding"] == "gb18030"
    match = run("match", "26322000000000000102", "--seller", "913203001347800020")
    assert match.exit_code == 0, match.output
    assert "eligible" in match.stdout and "174,924.00 CNY" in match.stdout


def test_file_level_errors_exit_3(run: Any, tmp_path: Path) -> None:
    garbage = tmp_path / "po.csv"
    garbage.write_bytes(b"\x80\x81\xff" * 20)
    result = run("import", str(garbage), "--kind", "po", "--as", "xcmg")
    assert result.exit_code == 3
    assert "unreadable_encoding" in result.stderr and "nothing was imported" in result.stderr
    missing = tmp_path / "no-columns.csv"
    missing.write_text("po_number,order_date\nPO-1,2026-03-02\n", encoding="utf-8")
    result = run("import", str(missing), "--kind", "po", "--as", "xcmg", "--json")
    assert result.exit_code == 3
    assert json.loads(result.stdout)["file_errors"][0]["code"] == "missing_columns"
    result = run("import", str(tmp_path / "absent.csv"), "--kind", "po", "--as", "xcmg")
    assert result.exit_code == 3 and "cannot read" in result.stderr


def test_unknown_organisation_exit_2(run: Any) -> None:
    result = run("import", str(DATA / "po.csv"), "--kind", "po", "--as", "nobody")
    assert result.exit_code == 2 and "party_not_found" in result.stderr


def test_everything_rejected_exit_4(run: Any) -> None:
    result = run("import", str(DATA / "po.csv"), "--kind", "po", "--as", "bank")
    assert result.exit_code == 4 and "0 imported" in result.stdout and "neither the buyer" in result.stdout


def test_match_explains_mismatches(run: Any) -> None:
    for kind, name in [("po", "po.csv"), ("receipt", "receipts.csv"), ("invoice", "invoices.csv")]:
        assert run("import", str(SAMPLES / name), "--kind", kind, "--as", "xcmg").exit_code == 0
    ok = run("match", "26322000000000000101", "--seller", "913203001347800020")
    assert ok.exit_code == 0 and "168,370.00 CNY may be confirmed" in ok.stdout
    bad = run("match", "26322000000000000103", "--seller", "913203001347800020", "--json")
    assert bad.exit_code == 4
    body = json.loads(bad.stdout)
    assert body["ok"] is False and body["eligible_minor"] == 0
    assert body["lines"][0]["status"] == "price_mismatch" and "+1.10%" in body["lines"][0]["explanation"]
    table = run("match", "26322000000000000103", "--seller", "913203001347800020")
    assert table.exit_code == 4 and "not eligible" in table.stdout and "price_mismatch" in table.stdout
    missing = run("match", "NO-SUCH", "--seller", "913203001347800020")
    assert missing.exit_code == 2 and "invoice_not_found" in missing.stderr
