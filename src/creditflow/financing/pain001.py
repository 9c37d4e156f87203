"""ISO 20022 customer credit transfer initiation, pain.001.001.09, for maturity clearing.

The file is built with lxml and validated against the official XSD that the `sepaxml` package ships
(we depend on the package rather than copying the schema; `pain001_xsd_path` is the one place that knows
where inside it the schema lies). Amounts are written from integer fen as
exact decimals; the control sum is the exact sum. Creditor accounts are Chinese account numbers
(``Othr/Id``) or IBANs (``IBAN``), banks are identified by BIC. What an account's fields may hold is
`creditflow.financing.accounts`' rule, checked when an account is saved and again here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from lxml import etree

from creditflow.financing import accounts as rules

NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09"
XSD_PACKAGE = "sepaxml"
XSD_RESOURCE = ("schemas", "pain.001.001.09.xsd")
_MAX35 = 35
_MAX140 = 140


class PaymentFileInvalid(ValueError):
    """The generated file does not validate against the schema: every error is listed."""

    def __init__(self, errors: Sequence[str]):
        super().__init__("; ".join(errors))
        self.errors = list(errors)


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    account_number: str
    bic: str

    def problems(self) -> list[tuple[str, str]]:
        """Every (field, message) of the account that breaks the rules (`accounts.problems`)."""
        return rules.problems(self.name, self.account_number, self.bic)

    def check(self, role: str) -> None:
        labels = {"account_name": "account name", "account_number": "account number", "bic": "bank BIC"}
        for field, message in self.problems():
            raise ValueError(f"{role} {labels[field]}: {message}")


@dataclass(frozen=True, slots=True)
class CreditTransfer:
    end_to_end_id: str
    amount_minor: int
    creditor: Account
    remittance: str


def amount_text(amount_minor: int) -> str:
    whole, fen = divmod(amount_minor, 100)
    return f"{whole}.{fen:02d}"


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    element = etree.SubElement(parent, f"{{{NAMESPACE}}}{tag}", **attrs)
    if text is not None:
        element.text = text
    return element


def _agent(parent: etree._Element, tag: str, bic: str) -> None:
    _sub(_sub(_sub(parent, tag), "FinInstnId"), "BICFI", bic)


def _account(parent: etree._Element, tag: str, account: Account) -> None:
    identification = _sub(_sub(parent, tag), "Id")
    if rules.is_iban(account.account_number):
        _sub(identification, "IBAN", account.account_number)
    else:
        _sub(_sub(identification, "Othr"), "Id", account.account_number)


def build(
    *,
    message_id: str,
    created: dt.datetime,
    debtor: Account,
    execution_date: dt.date,
    transfers: Sequence[CreditTransfer],
    currency: str = "CNY",
) -> bytes:
    """One payment information block: the issuer (debtor) pays every holder (creditor)."""
    if not transfers:
        raise ValueError("a payment file needs at least one transfer")
    if len(message_id) > _MAX35:
        raise ValueError("message id is at most 35 characters")
    debtor.check("debtor")
    for t in transfers:
        t.creditor.check(f"creditor {t.creditor.name!r}")
        if t.amount_minor <= 0:
            raise ValueError("transfer amounts must be positive")
        if len(t.end_to_end_id) > _MAX35:
            raise ValueError("end-to-end ids are at most 35 characters")
    total = sum(t.amount_minor for t in transfers)
    root = etree.Element(f"{{{NAMESPACE}}}Document", nsmap={None: NAMESPACE})
    initiation = _sub(root, "CstmrCdtTrfInitn")
    header = _sub(initiation, "GrpHdr")
    _sub(header, "MsgId", message_id)
    _sub(header, "CreDtTm", created.replace(microsecond=0).isoformat())
    _sub(header, "NbOfTxs", str(len(transfers)))
    _sub(header, "CtrlSum", amount_text(total))
    _sub(_sub(header, "InitgPty"), "Nm", debtor.name[:_MAX140])
    info = _sub(initiation, "PmtInf")
    _sub(info, "PmtInfId", message_id)
    _sub(info, "PmtMtd", "TRF")
    _sub(info, "NbOfTxs", str(len(transfers)))
    _sub(info, "CtrlSum", amount_text(total))
    _sub(_sub(info, "ReqdExctnDt"), "Dt", execution_date.isoformat())
    _sub(_sub(info, "Dbtr"), "Nm", debtor.name[:_MAX140])
    _account(info, "DbtrAcct", debtor)
    _agent(info, "DbtrAgt", debtor.bic)
    _sub(info, "ChrgBr", "SLEV")
    for t in transfers:
        tx = _sub(info, "CdtTrfTxInf")
        _sub(_sub(tx, "PmtId"), "EndToEndId", t.end_to_end_id)
        _sub(_sub(tx, "Amt"), "InstdAmt", amount_text(t.amount_minor), Ccy=currency)
        _agent(tx, "CdtrAgt", t.creditor.bic)
        _sub(_sub(tx, "Cdtr"), "Nm", t.creditor.name[:_MAX140])
        _account(tx, "CdtrAcct", t.creditor)
        _sub(_sub(tx, "RmtInf"), "Ustrd", t.remittance[:_MAX140])
    data = etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
    validate(data)
    return bytes(data)


class SchemaMissing(RuntimeError):
    """The installed `sepaxml` no longer has the pain.001.001.09 XSD where we expect it."""


def pain001_xsd_path(package: str = XSD_PACKAGE, resource: tuple[str, ...] = XSD_RESOURCE) -> Path:
    """The official pain.001.001.09 XSD, as a file inside the installed `sepaxml` package
    (``sepaxml/schemas/pain.001.001.09.xsd``). We depend on the package rather than copy the schema, so a
    release of it that moves or drops the file must fail here, loudly, naming the package and the path,
    not as an obscure error in the middle of a clearing run. (``package``/``resource`` exist for the test.)"""
    try:
        root = resources.files(package)
    except ModuleNotFoundError as exc:
        raise SchemaMissing(f"the {package!r} package, which ships the pain.001.001.09 XSD, is not installed") from exc
    where = root.joinpath(*resource)
    if not isinstance(where, Path) or not where.is_file():
        raise SchemaMissing(
            f"the pain.001.001.09 XSD is not at {'/'.join(resource)} inside the installed {package!r} package "
            f"({where}): pin a {package} release that ships it"
        )
    return where


@lru_cache(maxsize=1)
def _schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(pain001_xsd_path())))


def validate(data: bytes) -> None:
    """Validate against the official pain.001.001.09 schema; raise `PaymentFileInvalid` with all errors."""
    schema = _schema()
    try:
        document = etree.fromstring(data)
    except etree.XMLSyntaxError as exc:
        raise PaymentFileInvalid([f"not well-formed XML: {exc}"]) from exc
    if not schema.validate(document):
        raise PaymentFileInvalid([f"line {e.line}: {e.message}" for e in schema.error_log])
