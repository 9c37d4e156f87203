"""ISO 20022 pain.001.001.09 payment files (`creditflow.financing.pain001`).

Files are checked against the official schema that the ``sepaxml`` package ships, and read back with
lxml to check what a bank would read: counts, control sums and amounts written exactly from fen.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from creditflow.financing import pain001
from creditflow.financing.pain001 import Account, CreditTransfer, PaymentFileInvalid

NS = {"p": pain001.NAMESPACE}
CORE = Account("徐州工程机械集团有限公司", "6222020200110001", "ICBKCNBJ")
FACTORY = Account("江苏精艺精密零部件有限公司", "6222020200112233", "PCBCCNBJXZH")
STEEL = Account("Xuzhou Steel Co., Ltd.", "6217000010000001", "ABOCCNBJ")
BANK = Account("中国银行徐州分行", "6013820000001", "BKCHCNBJ")
CREATED = dt.datetime(2026, 9, 1, 9, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
EXECUTION = dt.date(2026, 9, 1)


def transfer(amount_minor: int, creditor: Account = FACTORY, n: int = 1) -> CreditTransfer:
    return CreditTransfer(f"E2E{n:04d}", amount_minor, creditor, f"creditflow certificate C-1 piece {n}")


def build(transfers: list[CreditTransfer], **changes: object) -> bytes:
    args: dict[str, object] = {
        "message_id": "CF0123456789ABCDEF",
        "created": CREATED,
        "debtor": CORE,
        "execution_date": EXECUTION,
        "transfers": transfers,
    }
    args.update(changes)
    return pain001.build(**args)  # type: ignore[arg-type]


def parse(data: bytes) -> etree._Element:
    return etree.fromstring(data)


def texts(doc: etree._Element, path: str) -> list[str]:
    return [str(e.text) for e in doc.xpath(path, namespaces=NS)]


THREE = [transfer(123_456, FACTORY, 1), transfer(1, STEEL, 2), transfer(99_876_543, BANK, 3)]


# --- build -----------------------------------------------------------------------------------------


def test_built_file_validates_and_has_exact_counts_and_sums() -> None:
    data = build(THREE)
    pain001.validate(data)  # raises if not valid
    doc = parse(data)
    assert doc.tag == f"{{{pain001.NAMESPACE}}}Document"
    assert texts(doc, "//p:GrpHdr/p:NbOfTxs") == ["3"]
    assert texts(doc, "//p:PmtInf/p:NbOfTxs") == ["3"]
    # 1,234.56 + 0.01 + 998,765.43 = 1,000,000.00
    assert texts(doc, "//p:GrpHdr/p:CtrlSum") == ["1000000.00"]
    assert texts(doc, "//p:PmtInf/p:CtrlSum") == ["1000000.00"]
    assert texts(doc, "//p:CdtTrfTxInf/p:Amt/p:InstdAmt") == ["1234.56", "0.01", "998765.43"]
    assert [e.get("Ccy") for e in doc.xpath("//p:InstdAmt", namespaces=NS)] == ["CNY"] * 3
    assert texts(doc, "//p:GrpHdr/p:MsgId") == ["CF0123456789ABCDEF"]
    assert texts(doc, "//p:PmtInf/p:ReqdExctnDt/p:Dt") == ["2026-09-01"]
    assert texts(doc, "//p:DbtrAcct/p:Id/p:Othr/p:Id") == [CORE.account_number]
    assert texts(doc, "//p:DbtrAgt/p:FinInstnId/p:BICFI") == [CORE.bic]
    assert texts(doc, "//p:CdtTrfTxInf/p:CdtrAcct/p:Id/p:Othr/p:Id") == [
        FACTORY.account_number,
        STEEL.account_number,
        BANK.account_number,
    ]
    assert texts(doc, "//p:CdtTrfTxInf/p:CdtrAgt/p:FinInstnId/p:BICFI") == [FACTORY.bic, STEEL.bic, BANK.bic]
    assert texts(doc, "//p:CdtTrfTxInf/p:PmtId/p:EndToEndId") == ["E2E0001", "E2E0002", "E2E0003"]


def test_control_sum_is_exact_for_amounts_a_float_would_lose() -> None:
    # 0.1 + 0.2 style sums and amounts beyond a double's 15-16 significant digits
    amounts = [10, 20, 99_999_999_999_999_99, 1]
    data = build([transfer(a, FACTORY, i) for i, a in enumerate(amounts, 1)])
    doc = parse(data)
    assert texts(doc, "//p:GrpHdr/p:CtrlSum") == ["100000000000000.30"]
    total = sum(Decimal(t) for t in texts(doc, "//p:InstdAmt"))
    assert total == Decimal(sum(amounts)) / 100


@pytest.mark.parametrize(
    ("fen", "text"),
    [(123_456, "1234.56"), (1, "0.01"), (10, "0.10"), (100, "1.00"), (100_000_000, "1000000.00"), (7, "0.07")],
)
def test_amount_text_from_fen(fen: int, text: str) -> None:
    assert pain001.amount_text(fen) == text


@given(st.integers(min_value=1, max_value=10**17))
def test_amount_text_is_exact_two_decimals(fen: int) -> None:
    text = pain001.amount_text(fen)
    assert re.fullmatch(r"(0|[1-9]\d*)\.\d{2}", text)
    assert Decimal(text) * 100 == fen


@given(st.lists(st.integers(min_value=1, max_value=10**13), min_size=1, max_size=8))
def test_any_positive_amounts_build_a_valid_file_whose_sums_match(amounts: list[int]) -> None:
    doc = parse(build([transfer(a, STEEL, i) for i, a in enumerate(amounts, 1)]))
    assert texts(doc, "//p:GrpHdr/p:NbOfTxs") == [str(len(amounts))]
    assert Decimal(texts(doc, "//p:GrpHdr/p:CtrlSum")[0]) * 100 == sum(amounts)
    assert [Decimal(t) * 100 for t in texts(doc, "//p:InstdAmt")] == amounts


def test_chinese_names_survive_utf8() -> None:
    data = build(THREE)
    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    assert "徐州工程机械集团有限公司".encode() in data
    doc = parse(data)
    assert texts(doc, "//p:GrpHdr/p:InitgPty/p:Nm") == [CORE.name]
    assert texts(doc, "//p:PmtInf/p:Dbtr/p:Nm") == [CORE.name]
    assert texts(doc, "//p:CdtTrfTxInf/p:Cdtr/p:Nm") == [FACTORY.name, STEEL.name, BANK.name]


def test_a_remittance_longer_than_140_characters_is_cut_and_a_name_is_refused() -> None:
    data = build([CreditTransfer("E2E1", 100, Account("精" * 140, "62220001", "ICBKCNBJ"), "备注" * 100)])
    doc = parse(data)
    assert texts(doc, "//p:Cdtr/p:Nm") == ["精" * 140]
    assert texts(doc, "//p:RmtInf/p:Ustrd") == ["备注" * 70]
    # a name is who gets paid: cutting it could name someone else, so an overlong one is refused (issue 13)
    with pytest.raises(ValueError, match="account name"):
        build([CreditTransfer("E2E1", 100, Account("精" * 141, "62220001", "ICBKCNBJ"), "x")])


@pytest.mark.parametrize("bic", ["icbkcnbj", "ICBKCNB", "ICBKCNBJX", "ICBKCNBJXZHQ", "ICBK1NBJ", ""])
def test_an_invalid_creditor_bic_is_refused(bic: str) -> None:
    with pytest.raises(ValueError, match="not a valid BIC"):
        build([transfer(100, Account("Steel", "62220001", bic))])


def test_an_invalid_debtor_bic_is_refused() -> None:
    with pytest.raises(ValueError, match="debtor bank BIC"):
        build(THREE, debtor=Account(CORE.name, CORE.account_number, "XCMG"))


@pytest.mark.parametrize(("number", "name"), [("", "Steel"), ("6" * 35, "Steel"), ("62220001", "")])
def test_an_empty_or_oversized_account_is_refused(number: str, name: str) -> None:
    with pytest.raises(ValueError, match="account"):
        build([transfer(100, Account(name, number, "ICBKCNBJ"))])


@pytest.mark.parametrize("amount", [0, -1, -100_000])
def test_a_non_positive_amount_is_refused(amount: int) -> None:
    with pytest.raises(ValueError, match="transfer amounts must be positive"):
        build([transfer(100, FACTORY, 1), transfer(amount, STEEL, 2)])


def test_no_transfers_and_overlong_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one transfer"):
        build([])
    with pytest.raises(ValueError, match="message id"):
        build(THREE, message_id="M" * 36)
    with pytest.raises(ValueError, match="end-to-end"):
        build([CreditTransfer("E" * 36, 100, FACTORY, "x")])


def test_an_id_of_exactly_35_characters_is_accepted() -> None:
    pain001.validate(build([CreditTransfer("E" * 35, 100, FACTORY, "x")], message_id="M" * 35))


# --- validate -------------------------------------------------------------------------------------


def rewrite(data: bytes, edit: object) -> bytes:
    doc = parse(data)
    edit(doc)  # type: ignore[operator]
    return bytes(etree.tostring(doc, xml_declaration=True, encoding="UTF-8"))


def invalid(data: bytes) -> list[str]:
    with pytest.raises(PaymentFileInvalid) as caught:
        pain001.validate(data)
    assert caught.value.errors
    assert str(caught.value) == "; ".join(caught.value.errors)
    return caught.value.errors


def test_a_removed_mandatory_element_is_listed() -> None:
    def drop_message_id(doc: etree._Element) -> None:
        element = doc.find(".//p:GrpHdr/p:MsgId", NS)
        element.getparent().remove(element)

    errors = invalid(rewrite(build(THREE), drop_message_id))
    assert any("MsgId" in e and "Expected" in e for e in errors), errors


def test_a_removed_debtor_account_is_listed() -> None:
    def drop_account(doc: etree._Element) -> None:
        element = doc.find(".//p:PmtInf/p:DbtrAcct", NS)
        element.getparent().remove(element)

    errors = invalid(rewrite(build(THREE), drop_account))
    assert any("DbtrAcct" in e and "Expected" in e for e in errors), errors


@pytest.mark.parametrize("amount", ["-12.00", "12,34", "abc", "1.234567", ""])
def test_a_bad_amount_is_listed(amount: str) -> None:
    def set_amount(doc: etree._Element) -> None:
        doc.find(".//p:InstdAmt", NS).text = amount

    errors = invalid(rewrite(build(THREE), set_amount))
    assert any("InstdAmt" in e for e in errors), errors


def test_a_bad_control_sum_is_listed() -> None:
    def set_sum(doc: etree._Element) -> None:
        doc.find(".//p:GrpHdr/p:CtrlSum", NS).text = "ten"

    errors = invalid(rewrite(build(THREE), set_sum))
    assert any("CtrlSum" in e for e in errors), errors


def test_the_wrong_namespace_is_listed() -> None:
    old = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03"
    data = build(THREE).replace(pain001.NAMESPACE.encode(), old.encode())
    errors = invalid(data)
    assert any("No matching global declaration" in e for e in errors), errors


def test_every_error_is_listed_with_its_line() -> None:
    def break_two(doc: etree._Element) -> None:
        amounts = doc.findall(".//p:InstdAmt", NS)
        amounts[0].text = "-1.00"
        amounts[2].text = "x"

    errors = invalid(rewrite(build(THREE), break_two))
    assert len([e for e in errors if "InstdAmt" in e]) == 2
    assert all(re.match(r"line \d+: ", e) for e in errors), errors


def test_not_well_formed_xml_is_refused() -> None:
    errors = invalid(b"<Document><unclosed></Document>")
    assert errors[0].startswith("not well-formed XML")
