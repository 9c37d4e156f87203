"""Health, reports and the transparency log: /healthz, /v1/issuers/.../liability, /v1/circulation, /v1/log/..."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse, Response

from creditflow.bootstrap import App
from creditflow.http.common import error_responses
from creditflow.http.schemas import (
    CirculationOut,
    ConsistencyProofOut,
    HealthOut,
    InclusionProofOut,
    LiabilityOut,
    LogKeysOut,
    TierOut,
    TreeHeadOut,
)
from creditflow.http.security import AppDep, Caller, is_overseer
from creditflow.kernel.errors import Forbidden
from creditflow.ledger.model.parties import Role
from creditflow.ledger.tlog_proof import MEDIA_TYPE, SUFFIX

router = APIRouter()


@router.get("/metrics", tags=["health"], response_class=PlainTextResponse)
def metrics(app: AppDep) -> str:
    """Prometheus text format: the sequencer's counters and queue depth (no authentication)."""
    s = app.sequencer
    lines = [
        "# HELP creditflow_ledger_ops_total Operations committed to the log by this process.",
        "# TYPE creditflow_ledger_ops_total counter",
        f"creditflow_ledger_ops_total {s.ops_committed}",
        "# HELP creditflow_ledger_preverified_total Committed operations whose signatures were checked ahead "
        "of the writer.",
        "# TYPE creditflow_ledger_preverified_total counter",
        f"creditflow_ledger_preverified_total {s.ops_preverified}",
        "# HELP creditflow_ledger_batches_total Group commits by this process.",
        "# TYPE creditflow_ledger_batches_total counter",
        f"creditflow_ledger_batches_total {s.batches_committed}",
        "# HELP creditflow_ledger_queue_depth Operations waiting for the sequencer.",
        "# TYPE creditflow_ledger_queue_depth gauge",
        f"creditflow_ledger_queue_depth {s.queue_depth}",
        *_publisher_metrics(app),
    ]
    return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _publisher_metrics(app: App) -> list[str]:
    """The checkpoint publisher's: published size, and per witness its lag, time since it cosigned, failures."""
    m = app.publisher.metrics()
    lines = [
        "# HELP creditflow_checkpoint_published_size Tree size of the newest published checkpoint (-1: none yet).",
        "# TYPE creditflow_checkpoint_published_size gauge",
        f"creditflow_checkpoint_published_size {-1 if m.published_size is None else m.published_size}",
        "# HELP creditflow_checkpoint_published_cosignatures Cosignatures on the newest published checkpoint.",
        "# TYPE creditflow_checkpoint_published_cosignatures gauge",
        f"creditflow_checkpoint_published_cosignatures {m.published_cosignatures}",
        "# HELP creditflow_checkpoint_quorum Cosignatures a checkpoint needs (witness_quorum).",
        "# TYPE creditflow_checkpoint_quorum gauge",
        f"creditflow_checkpoint_quorum {m.quorum}",
        "# HELP creditflow_checkpoint_quorum_size Tree size of the newest published checkpoint that meets the quorum "
        "(-1: none yet).",
        "# TYPE creditflow_checkpoint_quorum_size gauge",
        f"creditflow_checkpoint_quorum_size {-1 if m.quorum_size is None else m.quorum_size}",
        "# HELP creditflow_checkpoint_rounds_total Publication rounds run by this process.",
        "# TYPE creditflow_checkpoint_rounds_total counter",
        f"creditflow_checkpoint_rounds_total {m.rounds}",
    ]
    if not m.witnesses:
        return lines
    lines += [
        "# HELP creditflow_witness_lag_entries Published checkpoint size minus the size the witness holds.",
        "# TYPE creditflow_witness_lag_entries gauge",
        *(f'creditflow_witness_lag_entries{{witness="{_label(w.name)}"}} {w.lag_entries}' for w in m.witnesses),
        "# HELP creditflow_witness_seconds_since_cosigned Seconds since the witness last cosigned (+Inf: never).",
        "# TYPE creditflow_witness_seconds_since_cosigned gauge",
        *(
            f'creditflow_witness_seconds_since_cosigned{{witness="{_label(w.name)}"}} '
            + ("+Inf" if w.seconds_since_cosigned is None else f"{w.seconds_since_cosigned:.3f}")
            for w in m.witnesses
        ),
        "# HELP creditflow_witness_failures_total Submissions to the witness that got no cosignature (this process).",
        "# TYPE creditflow_witness_failures_total counter",
        *(f'creditflow_witness_failures_total{{witness="{_label(w.name)}"}} {w.failures}' for w in m.witnesses),
    ]
    return lines


@router.get("/healthz", response_model=HealthOut, tags=["health"])
def healthz(app: AppDep) -> HealthOut:
    """Liveness and the size of the log (no authentication)."""
    return HealthOut(status="ok", tree_size=app.proofs.latest_head().tree_size)


@router.get(
    "/v1/issuers/{org_id}/liability",
    response_model=LiabilityOut,
    responses=error_responses(401, 403, 404),
    tags=["reports"],
)
def liability(org_id: str, app: AppDep, who: Caller) -> LiabilityOut:
    """What a core enterprise owes on its certificates (the issuer itself, operator, auditor)."""
    app.queries.party(org_id)
    if not (is_overseer(who) or who.org_id == org_id):
        raise Forbidden("only the issuer, the operator and the auditor see its liability", code="role_not_allowed")
    result = app.queries.liability(org_id)
    return LiabilityOut(
        issuer=result.issuer,
        outstanding_minor=result.outstanding_minor,
        pending_minor=result.pending_minor,
        certificates=result.certificates,
    )


@router.get(
    "/v1/circulation",
    response_model=CirculationOut,
    responses=error_responses(401, 403),
    tags=["reports"],
)
def circulation(
    app: AppDep,
    who: Caller,
    issuer: Annotated[str | None, Query(max_length=64, description="default: your own, or all")] = None,
) -> CirculationOut:
    """Live value by tier: how far down the supply chain credit has flowed. A core enterprise sees its
    own certificates; operator and auditor see any issuer, or all."""
    if is_overseer(who):
        target = issuer
    elif who.role == Role.CORE_ENTERPRISE:
        if issuer not in (None, who.org_id):
            raise Forbidden("a core enterprise sees only its own circulation", code="role_not_allowed", field="issuer")
        target = who.org_id
    else:
        raise Forbidden("only core enterprises, the operator and the auditor see circulation", code="role_not_allowed")
    tiers = app.queries.circulation_by_tier(target)
    return CirculationOut(
        issuer=target,
        tiers=[TierOut(tier=t.tier, amount_minor=t.amount_minor, pieces=t.pieces, holders=t.holders) for t in tiers],
    )


@router.get("/v1/log/keys", response_model=LogKeysOut, tags=["log"])
def log_keys(app: AppDep) -> LogKeysOut:
    """The public keys that sign tree heads (no authentication)."""
    return LogKeysOut(log_keys=app.proofs.log_keys_json())


@router.get("/v1/log/tree-head", response_model=TreeHeadOut, tags=["log"])
def tree_head(app: AppDep) -> TreeHeadOut:
    """The latest signed tree head (no authentication): keep it, and ask later for a consistency proof."""
    return TreeHeadOut.model_validate(app.proofs.latest_head().to_json())


@router.get(
    "/v1/log/proofs/consistency",
    response_model=ConsistencyProofOut,
    responses=error_responses(422),
    tags=["log"],
)
def consistency_proof(
    app: AppDep,
    old_size: Annotated[int, Query(description="the size of the tree head you hold")],
    new_size: Annotated[int | None, Query(description="default: the current size")] = None,
) -> ConsistencyProofOut:
    """Proof that the log of ``new_size`` extends the one of ``old_size`` (no authentication)."""
    return ConsistencyProofOut.model_validate(app.proofs.consistency(old_size, new_size))


TLOG_PROOF_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The proof as JSON, or with ``format=tlog-proof`` as a C2SP tlog-proof file",
        "content": {MEDIA_TYPE: {"schema": {"type": "string"}}},
    }
}


@router.get(
    "/v1/log/proofs/inclusion",
    response_model=InclusionProofOut,
    responses={**TLOG_PROOF_RESPONSE, **error_responses(401, 403, 404, 422)},
    tags=["log"],
)
def inclusion_proof(
    app: AppDep,
    who: Caller,
    leaf_index: Annotated[int | None, Query(ge=0, description="the entry's log index (or give op_id)")] = None,
    op_id: Annotated[str | None, Query(max_length=36, description="the operation's id (or give leaf_index)")] = None,
    tree_size: Annotated[
        int | None, Query(description="default: the newest published checkpoint that covers the entry, else now")
    ] = None,
    format: Annotated[Literal["json", "tlog-proof"], Query(description="json, or a c2sp.org/tlog-proof file")] = "json",
) -> InclusionProofOut | Response:
    """Proof that an entry is in the log, with the entry itself and the checkpoint (with its witnesses'
    cosignatures when published). Entries name parties and amounts, so only the parties the entry names
    (actor, recipient, co-signing bank, the organisation registered), the operator and the auditor get it;
    asked by ``op_id``, another party's entry answers 404 like an unknown id."""
    party = None if is_overseer(who) else who.org_id
    document = app.proofs.inclusion(leaf_index, tree_size, op_id=op_id, for_party=party)
    if format == "tlog-proof":
        name = f"creditflow-entry-{document['leaf_index']}{SUFFIX}"
        return Response(
            app.proofs.as_tlog_proof(document),
            media_type=MEDIA_TYPE,
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return InclusionProofOut.model_validate(document)
