"""ERP import and three-way match through `TradeService` and the HTTP router, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select

import creditflow.trade.tables  # noqa: F401  (registers the trade tables on the shared metadata)
from conftest import USCC
from creditflow.bootstrap import App
from creditflow.http.api import trade as routes_erp
from creditflow.http.app import create_app
from creditflow.kernel.errors import InvalidInput, NotFound
from creditflow.migrations.schema import metadata
from creditflow.trade.documents import DocKind
from creditflow.trade.match import MatchStatus
from creditflow.trade.service import ImportReport, TradeService
from creditflow.trade.tables import trade_documents, trade_lines

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its test client; the project pins httpx (which still works).
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "erp"
SAMPLES = ROOT / "samples" / "erp"
PROBLEM = "application/problem+json"


def data(name: str) -> bytes:
    return (DATA / name).read_bytes()


@pytest.fixture
def trade(world: App) -> TradeService:
    return TradeService(world.engine, world.settings, world.clock)


def snapshot(app: App) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with app.engine.connect() as conn:
        docs = [tuple(r) for r in conn.execute(select(trade_documents).order_by(trade_documents.c.id))]
        lines = [
            tuple(r)
            for r in conn.execute(select(trade_lines).order_by(trade_lines.c.document_id, trade_lines.c.line_no))
        ]
    return docs, lines


def count_documents(app: App) -> int:
    with app.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(trade_documents)).scalar_one())


def numbers(docs: Any) -> list[str]:
    return [d.number for d in docs]


def import_basics(trade: TradeService) -> None:
    assert trade.import_file("xcmg", "po", data("po.csv"), "po.csv").outcome == "ok"
    assert trade.import_file("xcmg", "receipt", data("receipts.csv"), "receipts.csv").outcome == "ok"


# --- import ------------------------------------------------------------------------------------------


def test_sample_set_imports_and_matches(world: App, trade: TradeService) -> None:
    for kind, name in [
        ("po", "po.csv"),
        ("receipt", "receipts.csv"),
        ("invoice", "invoices.csv"),
        ("invoice", "invoices_gbk.csv"),
    ]:
        report = trade.import_file("xcmg", kind, (SAMPLES / name).read_bytes(), name)
        assert report.outcome == "ok", (name, report.to_json())
    results = {s.document.number: trade.match_invoice(s.id) for s in trade.invoices_between("xcmg", "factory")}
    assert {n: (r.ok, r.eligible_minor) for n, r in results.items()} == {
        "26322000000000000101": (True, 16_837_000),
        "26322000000000000102": (True, 17_492_400),
        "26322000000000000103": (False, 0),
    }
    (mismatch,) = results["26322000000000000103"].lines
    assert mismatch.status is MatchStatus.PRICE_MISMATCH
    assert "3,235.20 yuan" in mismatch.explanation and "3,200.00 yuan" in mismatch.explanation
    assert "+1.10%" in mismatch.explanation


def test_reimporting_the_same_file_changes_nothing(world: App, trade: TradeService) -> None:
    first = trade.import_file("xcmg", "po", data("po.csv"), "po.csv")
    assert numbers(first.imported) == ["PO-T1", "PO-T2"] and not first.skipped
    before = snapshot(world)
    again = trade.import_file("xcmg", "po", data("po.csv"), "po.csv")
    assert again.outcome == "ok" and not again.imported and not again.rejected
    assert [(d.number, d.document_id, d.digest) for d in again.skipped] == [
        (d.number, d.document_id, d.digest) for d in first.imported
    ]
    # rows in another order, amounts written differently, same content: still the same documents
    text = data("po.csv").decode()
    header, *rows = text.strip().splitlines()
    reordered = "\n".join([header, *reversed(rows)]).replace('"1,000.00"', "1000").replace(",10.00,", ",10,")
    third = trade.import_file("xcmg", "po", reordered.encode("gbk"), "po-again.csv")
    assert third.outcome == "ok" and numbers(third.skipped) == ["PO-T2", "PO-T1"]
    assert not third.imported
    assert snapshot(world) == before


def test_conflicting_reimport_is_refused_not_overwritten(world: App, trade: TradeService) -> None:
    trade.import_file("xcmg", "po", data("po.csv"), "po.csv")
    before = snapshot(world)
    changed = (
        data("po.csv")
        .decode()
        .replace("bearing,10,100.00", "bearing,11,100.00")
        .replace(
            'PO-T2,2026-03-02,91320300134780001W,913203001347800020,CNY,1,bearing,11,100.00,"1,000.00"',
            'PO-T2,2026-03-02,91320300134780001W,913203001347800020,CNY,1,bearing,11,100.00,"1,100.00"',
        )
    )
    report = trade.import_file("xcmg", "po", changed.encode(), "po.csv")
    assert report.outcome == "partial"
    assert numbers(report.skipped) == ["PO-T1"] and not report.imported
    (rejected,) = report.rejected
    (error,) = rejected.errors
    assert (rejected.number, error.row, error.field, error.code) == ("PO-T2", 3, "po_number", "document_conflict")
    assert "not overwritten" in error.message
    assert snapshot(world) == before


def test_invoice_number_once_per_seller(world: App, trade: TradeService) -> None:
    import_basics(trade)
    first = trade.import_file("xcmg", "invoice", data("invoices_mixed.csv"), "invoices_mixed.csv")
    assert numbers(first.imported) == ["INV-A1", "INV-A4"]
    reused = data("invoices_mixed.csv").decode().replace("cylinder,100,10.00", "cylinder,99,10.00", 1)
    report = trade.import_file("xcmg", "invoice", reused.encode(), "again.csv")
    codes = {d.number: [e.code for e in d.errors] for d in report.rejected}
    assert codes["INV-A1"] == ["net_mismatch"]  # the edit broke its own arithmetic first...
    fixed = reused.replace(
        'cylinder,99,10.00,"1,000.00",13%,130.00,"1,130.00"', "cylinder,99,10.00,990.00,13%,128.70,1118.70"
    )
    report = trade.import_file("xcmg", "invoice", fixed.encode(), "again.csv")
    codes = {d.number: [e.code for e in d.errors] for d in report.rejected}
    assert codes["INV-A1"] == ["invoice_number_reused"]  # ...and a well-formed one reuses the number
    assert numbers(report.skipped) == ["INV-A4"]
    # the same number from another seller is another invoice
    other_seller = (
        "invoice_number,invoice_date,buyer_uscc,seller_uscc,line_no,quantity,unit_price,net,tax_rate,tax,gross\n"
        f"INV-A1,2026-03-06,{USCC['xcmg']},{USCC['steel']},1,1,10,10.00,13%,1.30,11.30\n"
    )
    report = trade.import_file("steel", "invoice", other_seller.encode(), "steel.csv")
    assert numbers(report.imported) == ["INV-A1"]
    assert trade.find_document("invoice", USCC["steel"], "INV-A1").document.gross_minor == 1_130


def test_importer_must_be_buyer_or_seller(world: App, trade: TradeService) -> None:
    report = trade.import_file("bank", "po", data("po.csv"), "po.csv")
    assert report.outcome == "rejected" and not report.imported
    assert [(d.number, d.errors[0].code) for d in report.rejected] == [
        ("PO-T1", "not_a_party"),
        ("PO-T2", "not_a_party"),
    ]
    assert "bank" in report.rejected[0].errors[0].message
    assert count_documents(world) == 0
    assert trade.import_file("factory", "po", data("po.csv"), "po.csv").outcome == "ok"  # the seller may
    with pytest.raises(NotFound) as caught:
        trade.import_file("nobody", "po", data("po.csv"), "po.csv")
    assert caught.value.code == "party_not_found"
    with pytest.raises(InvalidInput):
        trade.import_file("xcmg", "shipment", data("po.csv"), "po.csv")


def test_good_documents_import_and_bad_ones_are_reported(world: App, trade: TradeService) -> None:
    import_basics(trade)
    report = trade.import_file("xcmg", "invoice", data("invoices_mixed.csv"), "invoices_mixed.csv")
    assert report.outcome == "partial"
    assert numbers(report.imported) == ["INV-A1", "INV-A4"]
    assert [(d.number, [(e.row, e.field, e.code) for e in d.errors]) for d in report.rejected] == [
        ("INV-A2", [(3, "tax", "tax_mismatch")]),
        ("INV-A3", [(4, "buyer_uscc", "invalid_uscc")]),
    ]
    assert [e["document"] for e in report.errors()] == ["INV-A2", "INV-A3"]
    stored = {s.document.number for s in trade.invoices_between("xcmg", "factory")}
    assert stored == {"INV-A1", "INV-A4"}


def test_receipt_dated_before_its_order_is_refused(world: App, trade: TradeService) -> None:
    trade.import_file("xcmg", "po", data("po.csv"), "po.csv")
    early = data("receipts.csv").decode().replace("GR-T2,PO-T2,2026/3/5", "GR-T2,PO-T2,2026/3/1")
    report = trade.import_file("xcmg", "receipt", early.encode(), "receipts.csv")
    assert numbers(report.imported) == ["GR-T1"]
    (rejected,) = report.rejected
    assert [(e.field, e.code) for e in rejected.errors] == [("receipt_date", "date_out_of_order")]
    assert "2026-03-01" in rejected.errors[0].message


def test_file_level_errors_import_nothing(world: App, trade: TradeService) -> None:
    report = trade.import_file("xcmg", "po", b"\x80\x81\xff" * 10, "po.csv")
    assert report.outcome == "file_error" and report.file_errors[0].code == "unreadable_encoding"
    small = TradeService(world.engine, world.settings.model_copy(update={"erp_max_rows": 2}), world.clock)
    report = small.import_file("xcmg", "po", data("po.csv"), "po.csv")
    assert [e.code for e in report.file_errors] == ["too_many_rows"]
    assert count_documents(world) == 0


def test_concurrent_imports_of_the_same_file_store_each_document_once(world: App, trade: TradeService) -> None:
    barrier = threading.Barrier(4)

    def run(_: int) -> ImportReport:
        barrier.wait()
        return trade.import_file("xcmg", "po", data("po.csv"), "po.csv")

    with ThreadPoolExecutor(4) as pool:
        reports = list(pool.map(run, range(4)))
    assert all(r.outcome == "ok" for r in reports)
    assert sum(len(r.imported) for r in reports) == 2
    assert sum(len(r.skipped) for r in reports) == 6
    assert count_documents(world) == 2


# --- match and look-ups ------------------------------------------------------------------------------


def test_match_reports(world: App, trade: TradeService) -> None:
    import_basics(trade)
    trade.import_file("xcmg", "invoice", data("invoices_mixed.csv"), "invoices_mixed.csv")
    a1 = trade.find_document("invoice", USCC["factory"], "INV-A1")
    result = trade.match_invoice(a1.id)
    assert result.ok and result.eligible_minor == 226_000
    a4 = trade.find_document(DocKind.INVOICE, USCC["factory"], "INV-A4")
    result = trade.match_invoice(a4.id)  # 8 received, 8 invoiced at 100.50 against 100.00: 0.5% is within 1%
    assert result.ok and result.eligible_minor == 90_852
    # a later invoice on the same order finds the 8 received already invoiced
    assert trade.import_file("xcmg", "invoice", data("invoices.json"), "invoices.json").outcome == "ok"
    j1 = trade.find_document("invoice", USCC["factory"], "INV-J1")
    result = trade.match_invoice(j1.id)
    assert not result.ok and result.eligible_minor == 0
    assert [line.status for line in result.lines] == [MatchStatus.QUANTITY_MISMATCH]
    assert (
        "0 received and not yet invoiced (8 received, of which 8 already on earlier invoices)"
        in result.lines[0].explanation
    )


def test_match_without_receipts_or_order(world: App, trade: TradeService) -> None:
    assert trade.import_file("xcmg", "po", data("po.csv"), "po.csv").outcome == "ok"
    trade.import_file("xcmg", "invoice", data("invoices_mixed.csv"), "invoices_mixed.csv")
    a1 = trade.find_document("invoice", USCC["factory"], "INV-A1")
    result = trade.match_invoice(a1.id)
    assert [(line.line_no, line.status) for line in result.lines] == [
        (1, MatchStatus.NOT_RECEIVED),
        (2, MatchStatus.NOT_RECEIVED),
    ]
    orphan = (
        "invoice_number,invoice_date,buyer_uscc,seller_uscc,po_number,line_no,quantity,unit_price,net,tax_rate,tax,gross\n"
        f"INV-O1,2026-03-06,{USCC['xcmg']},{USCC['factory']},PO-NONE,1,1,10,10.00,13%,1.30,11.30\n"
    )
    trade.import_file("xcmg", "invoice", orphan.encode(), "orphan.csv")
    result = trade.match_invoice(trade.find_document("invoice", USCC["factory"], "INV-O1").id)
    assert [line.status for line in result.lines] == [MatchStatus.NO_PURCHASE_ORDER]
    assert "PO-NONE" in result.lines[0].explanation


def test_lookups_and_visibility(world: App, trade: TradeService) -> None:
    import_basics(trade)
    po = trade.find_document("po", USCC["factory"], "PO-T1")
    assert trade.get_document(po.id, viewer="xcmg").document == po.document
    assert trade.get_document(po.id, viewer="factory").digest == po.digest
    assert trade.get_document(po.id, viewer="auditor").id == po.id  # overseers see everything
    body = po.to_json()
    assert body["net_minor"] == 200_000 and body["lines"][0] == {
        "line_no": 1,
        "item": "cylinder",
        "quantity": "100",
        "unit_price": "10",
        "net_minor": 100_000,
    }
    with pytest.raises(NotFound):
        trade.get_document(po.id, viewer="steel")
    with pytest.raises(NotFound) as caught:
        trade.match_invoice(po.id)  # a purchase order is not an invoice
    assert caught.value.code == "invoice_not_found"
    with pytest.raises(NotFound):
        trade.find_document("po", USCC["factory"], "PO-404")
    trade.import_file("xcmg", "invoice", data("invoices_mixed.csv"), "invoices_mixed.csv")
    invoices = trade.invoices_between("xcmg", "factory")
    assert numbers([s.document for s in invoices]) == ["INV-A1", "INV-A4"]
    assert trade.invoices_between("factory", "xcmg") == []
    with pytest.raises(NotFound):
        trade.match_invoice(invoices[0].id, viewer="steel")


def test_schema_matches_the_migration(world: App) -> None:
    with world.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    mine = [d for d in diffs if "trade_" in repr(d)]
    assert mine == []


# --- HTTP --------------------------------------------------------------------------------------------


@pytest.fixture
def client(world: App) -> Iterator[TestClient]:
    api = create_app(world)
    api.include_router(routes_erp.router)
    with TestClient(api) as test_client:
        yield test_client


def auth(world: App, org_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {world.access.create_key(org_id)}"}


def test_http_import_and_match(world: App, client: TestClient) -> None:
    xcmg = auth(world, "xcmg")
    csv_headers = {**xcmg, "Content-Type": "text/csv"}
    response = client.post("/v1/erp/po/import?filename=po.csv", content=data("po.csv"), headers=csv_headers)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["outcome"] == "ok" and body["counts"] == {"imported": 2, "skipped": 0, "rejected": 0}
    assert body["filename"] == "po.csv"
    again = client.post("/v1/erp/po/import", content=data("po.csv"), headers=csv_headers)
    assert again.status_code == 200 and again.json()["counts"]["skipped"] == 2
    gbk = {**xcmg, "Content-Type": "text/csv; charset=gbk"}
    response = client.post("/v1/erp/receipt/import", content=data("receipts.csv"), headers=gbk)
    assert response.status_code == 201
    response = client.post("/v1/erp/invoice/import", content=data("invoices_mixed.csv"), headers=csv_headers)
    assert response.status_code == 201
    body = response.json()
    assert body["outcome"] == "partial" and [d["number"] for d in body["rejected"]] == ["INV-A2", "INV-A3"]
    assert body["rejected"][0]["errors"][0]["code"] == "tax_mismatch"
    a1 = body["imported"][0]["document_id"]
    match = client.get(f"/v1/erp/invoices/{a1}/match", headers=xcmg)
    assert match.status_code == 200
    assert match.json()["ok"] is True and match.json()["eligible_minor"] == 226_000
    assert match.json()["lines"][0]["status"] == "matched"
    document = client.get(f"/v1/erp/documents/{a1}", headers=auth(world, "factory"))
    assert document.status_code == 200 and document.json()["gross_minor"] == 226_000
    outsider = auth(world, "steel")
    assert client.get(f"/v1/erp/invoices/{a1}/match", headers=outsider).status_code == 404
    assert client.get(f"/v1/erp/documents/{a1}", headers=outsider).status_code == 404
    json_headers = {**xcmg, "Content-Type": "application/json"}
    response = client.post("/v1/erp/invoice/import", content=data("invoices.json"), headers=json_headers)
    assert response.status_code == 201 and response.json()["format"] == "json"


def test_http_refusals(world: App, client: TestClient) -> None:
    bank = {**auth(world, "bank"), "Content-Type": "text/csv"}
    response = client.post("/v1/erp/po/import", content=data("po.csv"), headers=bank)
    assert response.status_code == 422 and response.headers["content-type"].startswith(PROBLEM)
    problem = response.json()
    assert problem["code"] == "documents_rejected" and problem["field"] == "buyer_uscc"
    assert [e["code"] for e in problem["errors"]] == ["not_a_party", "not_a_party"]
    assert problem["report"]["counts"]["rejected"] == 2
    xcmg = auth(world, "xcmg")
    response = client.post("/v1/erp/po/import", content=b"\x80\xff" * 8, headers={**xcmg, "Content-Type": "text/csv"})
    assert response.status_code == 422 and response.json()["code"] == "invalid_file"
    assert response.json()["errors"][0]["code"] == "unreadable_encoding"
    response = client.post("/v1/erp/po/import", content=b"<xml/>", headers={**xcmg, "Content-Type": "application/xml"})
    assert response.status_code == 415 and response.json()["code"] == "unsupported_media_type"
    response = client.post("/v1/erp/po/import", content=data("po.csv"), headers={"Content-Type": "text/csv"})
    assert response.status_code == 401
    response = client.post(
        "/v1/erp/delivery/import", content=data("po.csv"), headers={**xcmg, "Content-Type": "text/csv"}
    )
    assert response.status_code == 422
    assert client.get("/v1/erp/invoices/abc/match", headers=xcmg).status_code == 422
    assert client.get("/v1/erp/invoices/999/match", headers=xcmg).status_code == 404
    assert count_documents(world) == 0
