"""Ledger use cases: one method per command, each ending in one sequencer transaction.

Two custody modes end in the same place: `LedgerService.submit_signed` takes an operation an
organisation signed on its own side; the convenience methods (`issue`, `transfer`, ...) build the
operation, sign it with the organisation's key held in `Custody`, and submit it the same way. Either
way the sequencer verifies the signature against the key registered on the ledger.

Policy limits that may change over time (tenor, fan-out, acceptance window) are checked here, before
signing, and not by the replayed rules (see `creditflow.ledger.model.certificates`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Protocol

from creditflow.config import Settings
from creditflow.kernel.clock import Clock
from creditflow.kernel.engine import Connection, Engine
from creditflow.kernel.errors import Conflict, Forbidden, InvalidInput, NotFound
from creditflow.kernel.uscc import validate_uscc
from creditflow.ledger import store
from creditflow.ledger.custody import Custody
from creditflow.ledger.entries import SignatureBlock, SignedOperation
from creditflow.ledger.model import operations as ops
from creditflow.ledger.model.certificates import CHINA_TZ
from creditflow.ledger.model.parties import PLATFORM, Role
from creditflow.ledger.model.state import MemoryState
from creditflow.ledger.sequencer import Precheck, Receipt, Sequencer
from creditflow.ledger.signing import Signer, op_message

DAY_MS = 86_400_000


class PayableTerms(Protocol):
    """What an issue takes from the payable it is issued on (trade keeps payables; the composition root
    gives `LedgerService` the lookup)."""

    @property
    def id(self) -> str: ...
    @property
    def creditor(self) -> str: ...
    @property
    def currency(self) -> str: ...
    @property
    def digest(self) -> str: ...


PrecheckProvider = Callable[[ops.Operation], Precheck | None]
PayableLookup = Callable[[str], PayableTerms]


def new_op_id() -> str:
    return str(uuid.uuid4())


def prepare(engine: Engine) -> None:
    """Make the database ready for the sequencer (the log head row exists); run once at start-up."""
    with engine.begin() as conn:
        store.ensure_head(conn)


class LedgerService:
    def __init__(
        self,
        engine: Engine,
        sequencer: Sequencer,
        custody: Custody,
        settings: Settings,
        clock: Clock,
        log_signer: Signer,
        *,
        prechecks: PrecheckProvider | None = None,
        payables: PayableLookup | None = None,
    ):
        """``prechecks`` gives the checks a client's operation needs on other contexts' data (run in the
        sequencer's transaction); ``payables`` looks up the payable `issue` builds the issue from."""
        self.engine = engine
        self.sequencer = sequencer
        self.custody = custody
        self.settings = settings
        self.clock = clock
        self.log_signer = log_signer
        self.prechecks = prechecks
        self.payables = payables

    # --- self custody: the one entry point for signed operations ---------------------------------

    def submit_signed(self, signed: SignedOperation) -> Receipt:
        """Check policy, attach the checks that need off-ledger data, and submit."""
        return self.submit_signed_async(signed).result(timeout=self.settings.sequencer_timeout_s)

    def submit_signed_async(self, signed: SignedOperation, *, block: bool = True) -> Future[Receipt]:
        """`submit_signed` without waiting: the future resolves when the operation is committed."""
        op = signed.op
        if op.actor == PLATFORM or isinstance(op, ops.RegisterParty | ops.Expire | ops.Clear | ops.MarkOverdue):
            raise Forbidden("platform operations are not accepted from clients", code="role_not_allowed")
        self._check_policy(op)
        return self.sequencer.submit_async(signed, self._precheck_for(op), block=block)

    def _check_policy(self, op: ops.Operation) -> None:
        now = self.clock.now_ms()
        deadline_max = now + self.settings.accept_deadline_days * DAY_MS
        if isinstance(op, ops.Issue | ops.Transfer) and op.accept_by_ms > deadline_max:
            raise InvalidInput(
                f"accept_by_ms may be at most {self.settings.accept_deadline_days} days ahead",
                code="invalid_deadline",
                field="accept_by_ms",
            )
        if isinstance(op, ops.Issue):
            tenor = (op.maturity_date - op.issue_date).days
            if tenor > self.settings.max_tenor_days:
                raise InvalidInput(
                    f"maturity may be at most {self.settings.max_tenor_days} days after issue (asked {tenor})",
                    code="tenor_exceeded",
                    field="maturity_date",
                )
            today = dt.datetime.fromtimestamp(now / 1000, CHINA_TZ).date()
            if op.issue_date > today:
                raise InvalidInput("issue_date cannot be in the future", code="invalid_issue_date", field="issue_date")
        if isinstance(op, ops.Split) and len(op.amounts_minor) > self.settings.split_fanout_max:
            raise InvalidInput(
                f"a split may create at most {self.settings.split_fanout_max} pieces",
                code="split_fanout_exceeded",
                field="amounts_minor",
            )

    def _precheck_for(self, op: ops.Operation) -> Precheck | None:
        return None if self.prechecks is None else self.prechecks(op)

    # --- platform custody: build, sign with the held key, submit ----------------------------------

    def sign(self, op: ops.Operation) -> SignedOperation:
        """Sign a typed operation with the held key of every signer it needs (`op.signers()`: the actor;
        for a financing the holder and the bank). It is first held to `parse`'s field rules
        (`ops.checked`), and what is signed is its payload normal form, `ops.payload`."""
        keys = [self.custody.signer(org) for org in op.signers()]
        op = ops.checked(op)
        canonical = ops.payload(op)
        message = op_message(canonical)
        blocks = tuple(
            SignatureBlock(org, key.key_id, key.sign(message)) for org, key in zip(op.signers(), keys, strict=True)
        )
        return SignedOperation(canonical, op, blocks)

    def _act(self, op: ops.Operation) -> Receipt:
        return self.submit_signed(self.sign(op))

    def platform_operation(self, op: ops.Operation, precheck: Precheck | None = None) -> Receipt:
        """An operation the platform itself signs with the log key (clearing, overdue, expiry), built typed
        (``actor=PLATFORM``, an op id from `new_op_id`)."""
        return self._platform_op(op, precheck)

    def _platform_op(self, op: ops.Operation, precheck: Precheck | None = None) -> Receipt:
        op = ops.checked(op)
        canonical = ops.payload(op)
        sig = self.log_signer.sign(op_message(canonical))
        signed = SignedOperation(canonical, op, (SignatureBlock(PLATFORM, self.log_signer.key_id, sig),))
        return self.sequencer.submit(signed, precheck)

    def register_organisation(
        self, org_id: str, name: str, role: Role | str, uscc: str, *, public_key: bytes | None = None
    ) -> Receipt:
        """Onboard an organisation. Without ``public_key`` the platform creates and holds its key
        (platform custody); with one, the organisation keeps its private key (self custody)."""
        uscc = validate_uscc(uscc)
        role = Role(role) if isinstance(role, str) and role in {r.value for r in Role} else role
        if not isinstance(role, Role):
            raise InvalidInput(f"role must be one of {[r.value for r in Role]}", field="role")
        signer = Signer.generate("k1") if public_key is None else None
        key = signer.public_key if signer is not None else public_key
        assert key is not None
        custody = self.custody
        now = self.clock.now_ms()

        def precheck(conn: Connection, state: MemoryState) -> None:
            if store.uscc_registered(conn, uscc) or any(p.uscc == uscc for p in state.parties.values()):
                raise Conflict(f"USCC {uscc} is already registered", code="uscc_exists", field="uscc")
            if signer is not None and state.party(org_id) is None:
                custody.store(conn, signer, org_id, now)

        op = ops.RegisterParty(
            op_id=new_op_id(),
            actor=PLATFORM,
            org_id=org_id,
            name=name,
            role=role,
            uscc=uscc,
            key_id="k1",
            public_key=key,
        )
        return self._platform_op(op, precheck)

    def rotate_key(self, org_id: str, *, new_public_key: bytes | None = None, key_id: str | None = None) -> Receipt:
        """Rotate an organisation's key: the old key signs the new one onto the ledger."""
        with self.engine.connect().execution_options(read_only=True) as conn:
            keys = store.load_keys(conn, [org_id])
        if not keys:
            raise NotFound(f"organisation {org_id!r} is not registered", code="party_not_found", field="org_id")
        new_key_id = key_id or f"k{len(keys) + 1}"
        signer = Signer.generate(new_key_id) if new_public_key is None else None
        public = signer.public_key if signer is not None else new_public_key
        assert public is not None
        signed = self.sign(
            ops.RotateKey(op_id=new_op_id(), actor=org_id, org_id=org_id, key_id=new_key_id, public_key=public)
        )
        custody, now = self.custody, self.clock.now_ms()

        def precheck(conn: Connection, state: MemoryState) -> None:
            if any(k.key_id == new_key_id for k in state.keys(org_id)):
                raise Conflict(f"key id {new_key_id!r} was used before", code="key_exists", field="key_id")
            if signer is not None:
                custody.store(conn, signer, org_id, now)
            # Moving to self custody (a public key given): the platform's copy of the old key is retired too.
            custody.retire_others(conn, org_id, new_key_id)

        return self.sequencer.submit(signed, precheck)

    def issue(
        self,
        issuer: str,
        payable_id: str,
        face_minor: int,
        maturity_date: dt.date,
        *,
        issue_date: dt.date | None = None,
    ) -> Receipt:
        if self.payables is None:
            raise NotFound(f"payable {payable_id!r} does not exist", code="payable_not_found", field="payable_id")
        payable = self.payables(payable_id)
        today = dt.datetime.fromtimestamp(self.clock.now_ms() / 1000, CHINA_TZ).date()
        return self._act(
            ops.Issue(
                op_id=new_op_id(),
                actor=issuer,
                to=payable.creditor,
                face_minor=face_minor,
                currency=payable.currency,
                issue_date=issue_date or today,
                maturity_date=maturity_date,
                accept_by_ms=self._accept_by(),
                payable_id=payable.id,
                payable_digest=payable.digest,
            )
        )

    def _accept_by(self) -> int:
        return self.clock.now_ms() + self.settings.accept_deadline_days * DAY_MS

    def accept(self, actor: str, piece_id: str) -> Receipt:
        return self._act(ops.Accept(op_id=new_op_id(), actor=actor, piece_id=piece_id))

    def reject(self, actor: str, piece_id: str) -> Receipt:
        return self._act(ops.Reject(op_id=new_op_id(), actor=actor, piece_id=piece_id))

    def transfer(
        self, actor: str, piece_id: str, to: str, amount_minor: int, *, trade_ref: str | None = None
    ) -> Receipt:
        """Pay ``to`` with (part of) a piece; ``trade_ref`` is the digest of the invoice it settles."""
        return self._act(
            ops.Transfer(
                op_id=new_op_id(),
                actor=actor,
                piece_id=piece_id,
                to=to,
                amount_minor=amount_minor,
                accept_by_ms=self._accept_by(),
                trade_ref=trade_ref,
            )
        )

    def split(self, actor: str, piece_id: str, amounts_minor: Sequence[int]) -> Receipt:
        return self._act(
            ops.Split(op_id=new_op_id(), actor=actor, piece_id=piece_id, amounts_minor=tuple(amounts_minor))
        )

    def freeze(self, actor: str, piece_id: str, reason: str) -> Receipt:
        return self._act(ops.Freeze(op_id=new_op_id(), actor=actor, piece_id=piece_id, reason=reason))

    def unfreeze(self, actor: str, piece_id: str, reason: str) -> Receipt:
        return self._act(ops.Unfreeze(op_id=new_op_id(), actor=actor, piece_id=piece_id, reason=reason))

    def revoke(self, actor: str, certificate_id: str) -> Receipt:
        return self._act(ops.Revoke(op_id=new_op_id(), actor=actor, certificate_id=certificate_id))

    def expire_due(self, limit: int = 1000) -> list[Receipt]:
        """Return every pending piece whose acceptance deadline has passed to its sender."""
        now = self.clock.now_ms()
        with self.engine.connect().execution_options(read_only=True) as conn:
            due = store.pending_due(conn, now, limit)
        receipts = []
        for piece_id in due:
            try:
                receipts.append(self._platform_op(ops.Expire(op_id=new_op_id(), actor=PLATFORM, piece_id=piece_id)))
            except Conflict:
                continue  # accepted or rejected meanwhile
        return receipts
