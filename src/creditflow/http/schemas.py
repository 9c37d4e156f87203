"""Request and response bodies.

Money is an integer number of fen in fields named ``*_minor`` (1 yuan = 100 fen): JSON floats and
strings are refused (`StrictInt`), never rounded. Request bodies refuse unknown fields. The domain
re-checks everything it is given; these models exist to document the API and to fail fast with a
clear field name.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from creditflow.kernel.money import MAX_AMOUNT_MINOR
from creditflow.ledger.model.certificates import CertificateState, PieceState
from creditflow.ledger.model.operations import MAX_SPLIT_PIECES
from creditflow.ledger.model.parties import Role

T = TypeVar("T")

ORG_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
HEX32_PATTERN = r"^[0-9a-f]{64}$"

AmountMinor = Annotated[
    StrictInt,
    Field(
        gt=0,
        le=MAX_AMOUNT_MINOR,
        description="amount in fen (1 yuan = 100 fen); an integer, never a float",
        examples=[30_000_000],
    ),
]
OrgId = Annotated[
    str,
    Field(
        pattern=ORG_ID_PATTERN,
        description="1-64 letters, digits and _ . : - (starting with a letter or digit)",
        examples=["factory"],
    ),
]
Text = Annotated[str, Field(min_length=1, max_length=200)]
PublicKeyHex = Annotated[
    str,
    Field(
        pattern=HEX32_PATTERN,
        description="Ed25519 public key, 64 lower-case hex characters (self custody)",
        examples=["3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"],
    ),
]

PIECE_ID_EXAMPLE = "7d3c6f1e-8a44-8c1b-9a0e-2f5d8b7c6a41"
CERT_ID_EXAMPLE = "0b5c2a7e-1f93-8d40-a6e2-51c9d7e3b210"


class RequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- requests --------------------------------------------------------------------------------------------


class FirstAdminIn(RequestBody):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"user_id": "zhao.lei", "name": "Zhao Lei"}]}
    )
    user_id: str = Field(min_length=1, max_length=64, description="sign-in name, e.g. zhao.lei")
    name: Text


class OrganisationIn(RequestBody):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"org_id": "factory", "name": "Precision Parts Co.", "role": "supplier", "uscc": "913203001347800020"}
            ]
        },
    )
    org_id: OrgId
    name: Text
    role: Role
    uscc: Annotated[str, Field(min_length=18, max_length=18, description="unified social credit code")]
    public_key: PublicKeyHex | None = Field(
        None, description="for self custody; omit and the platform creates and holds the key"
    )
    admin: FirstAdminIn | None = Field(
        None,
        description="the organisation's first admin (a person who then adds its users and grants roles); "
        "the answer carries the admin's personal token, shown once",
    )


class RotateKeyIn(RequestBody):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{}]})
    public_key: PublicKeyHex | None = Field(
        None, description="the new key of a self-custody organisation; omit to have the platform make one"
    )


class ApiKeyIn(RequestBody):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"label": "erp-connector"}, {"label": "my laptop", "personal": True, "expires_in_s": 86400}]
        },
    )
    label: Text = "default"
    personal: bool = Field(
        False,
        description="a personal token of the calling person (acts as that person); false: an organisation-wide "
        "key, which only the organisation-wide key or an admin may create",
    )
    expires_in_s: int | None = Field(
        None, ge=60, description="lifetime in seconds (default and maximum: the access settings)"
    )


class RotateApiKeyIn(RequestBody):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{}, {"expires_in_s": 2592000}]})
    expires_in_s: int | None = Field(None, ge=60, description="the new key's lifetime in seconds")


class PasswordChangeIn(RequestBody):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"current_password": "correct horse battery 9", "new_password": "another horse 10 staple"}]
        },
    )
    current_password: Annotated[str, Field(min_length=1, max_length=1024)]
    new_password: Annotated[str, Field(min_length=1, max_length=1024)]


class PayableIn(RequestBody):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"creditor": "factory", "amount_minor": 100_000_000, "reference": "PO-2026-0042"}]
        },
    )
    creditor: OrgId
    amount_minor: AmountMinor
    reference: Text
    payable_id: OrgId | None = Field(None, description="client-chosen id; generated if omitted")
    currency: Literal["CNY"] = "CNY"


class IssueIn(RequestBody):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"payable_id": "pay-4f1c2a9b0d3e5f67", "face_minor": 100_000_000, "maturity_date": "2026-09-01"}
            ]
        },
    )
    payable_id: OrgId
    face_minor: AmountMinor
    maturity_date: dt.date
    issue_date: dt.date | None = Field(None, description="defaults to today (China time)")


class TransferIn(RequestBody):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"to": "steel", "amount_minor": 30_000_000}]}
    )
    to: OrgId
    amount_minor: AmountMinor
    trade_ref: str | None = Field(
        None, pattern="^[0-9a-f]{64}$", description="digest of the trade invoice this payment settles"
    )


class SplitIn(RequestBody):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"amounts_minor": [60_000_000, 40_000_000]}]}
    )
    amounts_minor: list[AmountMinor] = Field(min_length=2, max_length=MAX_SPLIT_PIECES)


class ReasonIn(RequestBody):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"reason": "court order 2026-117"}]})
    reason: Text


class SignatureIn(RequestBody):
    signer: str
    key_id: str
    sig: str = Field(description="Ed25519 signature, 128 lower-case hex characters")


class SignedOperationIn(RequestBody):
    """An operation signed on the client's side (self custody): the signature covers
    ``b"creditflow/op/v1\\x00" + canonical_encoding(op)``; see `creditflow.ledger.signing`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "op": {
                        "v": 1,
                        "type": "accept",
                        "op_id": "5b0c8f9e-3a1d-4c2b-9e8f-7a6b5c4d3e2f",
                        "actor": "factory",
                        "piece_id": PIECE_ID_EXAMPLE,
                    },
                    "sigs": [{"signer": "factory", "key_id": "k1", "sig": "ab" * 64}],
                }
            ]
        },
    )
    op: dict[str, Any]
    sigs: list[SignatureIn] = Field(min_length=1, max_length=4)


# --- responses -------------------------------------------------------------------------------------------


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


RECEIPT_EXAMPLE: dict[str, Any] = {
    "seq": 42,
    "op_id": "5b0c8f9e-3a1d-4c2b-9e8f-7a6b5c4d3e2f",
    "op_type": "transfer",
    "ts_ms": 1772413200000,
    "leaf_hash": "c1" * 32,
    "tree_size": 43,
    "result": {"piece_id": PIECE_ID_EXAMPLE},
}


class ReceiptOut(BaseModel):
    """The acknowledgement of an operation appended to the log (durable when returned)."""

    model_config = ConfigDict(json_schema_extra={"examples": [RECEIPT_EXAMPLE]})
    seq: int
    op_id: str
    op_type: str
    ts_ms: int
    leaf_hash: str
    tree_size: int
    result: dict[str, Any]


class IssueReceiptOut(ReceiptOut):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **RECEIPT_EXAMPLE,
                    "op_type": "issue",
                    "result": {"certificate_id": CERT_ID_EXAMPLE, "piece_id": PIECE_ID_EXAMPLE},
                    "certificate_id": CERT_ID_EXAMPLE,
                    "piece_id": PIECE_ID_EXAMPLE,
                }
            ]
        }
    )
    certificate_id: str
    piece_id: str


ORG_EXAMPLE: dict[str, Any] = {
    "org_id": "factory",
    "name": "Precision Parts Co.",
    "role": "supplier",
    "uscc": "913203001347800020",
    "created_seq": 2,
}


class OrganisationOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [ORG_EXAMPLE]})
    org_id: str
    name: str
    role: Role
    uscc: str
    created_seq: int


class MeOut(OrganisationOut):
    model_config = ConfigDict(json_schema_extra={"examples": [{**ORG_EXAMPLE, "api_key_id": "1f2e3d4c5b6a7980"}]})
    api_key_id: str
    user_id: str | None = Field(None, description="the person calling (null: an organisation-wide key)")
    user_roles: list[str] = Field(default_factory=list, description="the person's roles in the organisation")
    auth: str = Field("api_key", description="api_key, personal_token or session")


class NotificationOut(BaseModel):
    notification_id: str
    org_id: str
    kind: str = Field(description="a stable name: account_changed, sign_in_locked, ...")
    message: str
    data: dict[str, Any]
    created_ts_ms: int


class OrganisationCreatedOut(OrganisationOut):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **ORG_EXAMPLE,
                    "custody": "platform",
                    "api_key": "cf_1f2e3d4c5b6a7980_" + "x" * 43,
                    "receipt": {**RECEIPT_EXAMPLE, "op_type": "register_party"},
                }
            ]
        }
    )
    custody: Literal["platform", "self"]
    api_key: str = Field(description="the organisation's first API key; shown only this once")
    receipt: ReceiptOut
    admin_user_id: str | None = Field(None, description="the first admin, if one was named")
    admin_token: str | None = Field(
        None, description="the first admin's personal token (acts as that person); shown only this once"
    )


class DirectoryEntryOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"org_id": "factory", "name": "Precision Parts Co.", "role": "supplier"}]}
    )
    org_id: str
    name: str
    role: Role


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"org_id": "factory", "key_id": "1f2e3d4c5b6a7980", "api_key": "cf_1f2e3d4c5b6a7980_" + "x" * 43}
            ]
        }
    )
    org_id: str
    key_id: str
    api_key: str = Field(description="shown only this once")
    label: str | None = None
    user_id: str | None = Field(None, description="a personal token's user (null: organisation-wide)")
    expires_ts_ms: int | None = Field(None, description="when it stops working")
    replaces_key_id: str | None = Field(None, description="after a rotation: the key it replaces (now revoked)")


class ApiKeyInfoOut(BaseModel):
    """A key as listed: never its secret."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "key_id": "1f2e3d4c5b6a7980",
                    "org_id": "factory",
                    "label": "erp-connector",
                    "owner": "organisation",
                    "user_id": None,
                    "created_ts_ms": 1772413200000,
                    "expires_ts_ms": 1803949200000,
                    "revoked": False,
                    "revoked_ts_ms": None,
                    "last_used_ts_ms": 1772413260000,
                    "state": "active",
                }
            ]
        }
    )
    key_id: str
    org_id: str
    label: str
    owner: Literal["organisation", "personal"]
    user_id: str | None
    created_ts_ms: int
    expires_ts_ms: int | None = Field(description="null: a key from before keys expired")
    revoked: bool
    revoked_ts_ms: int | None
    last_used_ts_ms: int | None = Field(description="to within a minute; null: never used")
    state: Literal["active", "expired", "revoked"]


class PasswordResetOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"user_id": "wang.fang", "reset_token": "cfr_" + "x" * 43, "expires_ts_ms": 1772499600000}]
        }
    )
    user_id: str
    reset_token: str = Field(
        description="shown only this once: hand it to the user, who sets a new password with it at /ui/reset-password"
    )
    expires_ts_ms: int


class PasswordChangedOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"user_id": "wang.fang", "sessions_ended": True}]})
    user_id: str
    sessions_ended: bool


class UnlockOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"user_id": "wang.fang", "counters_cleared": 2}]})
    user_id: str
    counters_cleared: int


class ApprovalOut(BaseModel):
    user_id: str = Field(description="the approver (a person of the debtor with the approver role)")
    approved_ts_ms: int
    auth: str = Field(description="how they were authenticated: session or personal_token")
    credential: str | None = Field(None, description="key:<api key id> or session:<reference>")


class PayableOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "pay-4f1c2a9b0d3e5f67",
                    "debtor": "xcmg",
                    "creditor": "factory",
                    "amount_minor": 100_000_000,
                    "currency": "CNY",
                    "reference": "PO-2026-0042",
                    "digest": "9f" * 32,
                    "issued_minor": 0,
                }
            ]
        }
    )
    id: str
    debtor: str
    creditor: str
    amount_minor: int
    currency: str
    reference: str
    digest: str
    issued_minor: int
    status: str = Field("draft", description="draft (entered by hand), matched (three-way match) or confirmed")
    created_by: str | None = Field(
        None, description="the debtor's person who entered it (its maker); null: an organisation key or a match"
    )
    approvals_required: int | None = Field(None, description="distinct approvers who confirm it")
    approvals: list[ApprovalOut] | None = Field(
        None, description="who approved, when and how they were authenticated (the debtor only; null otherwise)"
    )


class CertificateOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": CERT_ID_EXAMPLE,
                    "issuer": "xcmg",
                    "face_minor": 100_000_000,
                    "currency": "CNY",
                    "issue_date": "2026-03-02",
                    "maturity_date": "2026-09-01",
                    "payable_id": "pay-4f1c2a9b0d3e5f67",
                    "payable_digest": "9f" * 32,
                    "root_piece_id": PIECE_ID_EXAMPLE,
                    "state": "outstanding",
                    "created_seq": 12,
                }
            ]
        }
    )
    id: str
    issuer: str
    face_minor: int | None = Field(
        description="null for a holder that is not the first (need to know): the issuer, the first holder, "
        "the operator and the auditor see it"
    )
    currency: str
    issue_date: dt.date
    maturity_date: dt.date
    payable_id: str | None = Field(description="null where face_minor is")
    payable_digest: str | None = Field(description="null where face_minor is")
    root_piece_id: str
    state: CertificateState
    created_seq: int


PIECE_EXAMPLE: dict[str, Any] = {
    "id": PIECE_ID_EXAMPLE,
    "certificate_id": CERT_ID_EXAMPLE,
    "parent_id": None,
    "holder": "factory",
    "sender": "xcmg",
    "amount_minor": 100_000_000,
    "state": "active",
    "frozen": False,
    "tier": 1,
    "accept_by_ms": None,
    "created_seq": 12,
    "closed_seq": None,
}


class PieceOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [PIECE_EXAMPLE]})
    id: str
    certificate_id: str
    parent_id: str | None
    holder: str
    sender: str | None
    amount_minor: int
    state: PieceState
    frozen: bool
    tier: int
    accept_by_ms: int | None
    created_seq: int
    closed_seq: int | None


class TreeOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"certificate_id": CERT_ID_EXAMPLE, "pieces": [PIECE_EXAMPLE]}]}
    )
    certificate_id: str
    pieces: list[PieceOut] = Field(description="every piece, parents before children")


class ProvenancePieceOut(BaseModel):
    """A piece on a provenance walk. Who may not read it (an upstream piece of another holder) gets its
    tier, state and commitment, never its holder, sender or amount (``redacted``: true)."""

    id: str
    certificate_id: str
    parent_id: str | None
    holder: str | None
    sender: str | None
    amount_minor: int | None
    state: PieceState
    frozen: bool
    tier: int
    accept_by_ms: int | None
    created_seq: int
    closed_seq: int | None
    redacted: bool
    commitment: str = Field(
        description="SHA-256(b'creditflow/piece-commitment/v1\\x00' || CJ1({amount_minor, certificate_id, "
        "holder, piece_id, salt})), hex"
    )
    commitment_salt: str | None = Field(description="the opening's salt, for who reads the piece in clear")


class ProvenanceOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "piece_id": PIECE_ID_EXAMPLE,
                    "chain": [
                        {**PIECE_EXAMPLE, "redacted": False, "commitment": "ab" * 32, "commitment_salt": "cd" * 32}
                    ],
                }
            ]
        }
    )
    piece_id: str
    chain: list[ProvenancePieceOut] = Field(
        description="the piece, its parent, ... up to the certificate's first piece; another holder's pieces redacted"
    )


class EventOut(BaseModel):
    seq: int
    event: str
    actor: str
    ts_ms: int


class HistoryOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "piece_id": PIECE_ID_EXAMPLE,
                    "events": [{"seq": 12, "event": "issued", "actor": "xcmg", "ts_ms": 1772413200000}],
                }
            ]
        }
    )
    piece_id: str
    events: list[EventOut]


class LiabilityOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"issuer": "xcmg", "outstanding_minor": 100_000_000, "pending_minor": 0, "certificates": 1}]
        }
    )
    issuer: str
    outstanding_minor: int = Field(description="accepted certificates: owed at maturity")
    pending_minor: int = Field(description="issued, not yet accepted")
    certificates: int


class TierOut(BaseModel):
    tier: int
    amount_minor: int
    pieces: int
    holders: int


class CirculationOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "issuer": "xcmg",
                    "tiers": [
                        {"tier": 1, "amount_minor": 70_000_000, "pieces": 2, "holders": 1},
                        {"tier": 2, "amount_minor": 30_000_000, "pieces": 1, "holders": 1},
                    ],
                }
            ]
        }
    )
    issuer: str | None = Field(description="null: every issuer")
    tiers: list[TierOut]


class HealthOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok", "tree_size": 43}]})
    status: Literal["ok"]
    tree_size: int


class LogKeysOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"log_keys": {"log-1": "3d" * 32}}]})
    log_keys: dict[str, str] = Field(description="key id -> Ed25519 public key (hex) that signs tree heads")


TREE_HEAD_EXAMPLE: dict[str, Any] = {
    "v": 1,
    "tree_size": 43,
    "root_hash": "7a" * 32,
    "ts_ms": 1772413200000,
    "key_id": "log-1",
    "signature": "5e" * 64,
}


class TreeHeadOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [TREE_HEAD_EXAMPLE]})
    v: int
    tree_size: int
    root_hash: str
    ts_ms: int
    key_id: str
    signature: str


class InclusionProofOut(BaseModel):
    """Checked offline by `creditflow verify-proof` or `creditflow.ledger.verifier`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "kind": "creditflow.inclusion_proof",
                    "v": 1,
                    "log_keys": {"log-1": "3d" * 32},
                    "log_vkey": "creditflow.example/log+1a2b3c4d+AT3d...",
                    "tree_head": TREE_HEAD_EXAMPLE,
                    "checkpoint": "creditflow.example/log\n42\nqqqq...=\n\n\u2014 creditflow.example/log Gis...\n",
                    "leaf_index": 7,
                    "entry": "a5...",
                    "audit_path": ["11" * 32, "22" * 32],
                }
            ]
        }
    )
    kind: str
    v: int
    log_keys: dict[str, str]
    log_vkey: str = Field(description="the log's note verifier key (pin the one you got elsewhere, not this)")
    tree_head: TreeHeadOut
    checkpoint: str = Field(
        description="the C2SP checkpoint of the same size and root: a signed note, with the witnesses' "
        "cosignatures when it was published"
    )
    leaf_index: int
    entry: str = Field(description="the entry's canonical bytes, hex")
    audit_path: list[str]


class ConsistencyProofOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "kind": "creditflow.consistency_proof",
                    "v": 1,
                    "log_keys": {"log-1": "3d" * 32},
                    "old_tree_head": {**TREE_HEAD_EXAMPLE, "tree_size": 20},
                    "new_tree_head": TREE_HEAD_EXAMPLE,
                    "proof": ["33" * 32],
                }
            ]
        }
    )
    kind: str
    v: int
    log_keys: dict[str, str]
    old_tree_head: TreeHeadOut
    new_tree_head: TreeHeadOut
    proof: list[str]


class ProblemOut(BaseModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "https://creditflow.example/problems/piece_already_spent",
                    "title": "Piece already spent",
                    "status": 409,
                    "detail": "the piece has already been spent",
                    "code": "piece_already_spent",
                    "field": "piece_id",
                    "instance": f"/v1/pieces/{PIECE_ID_EXAMPLE}/split",
                }
            ]
        }
    )
    type: str
    title: str
    status: int
    detail: str
    code: str = Field(description="stable, documented error code")
    field: str | None = None
    instance: str | None = None
