"""Auditor (and operator) pages: the newest checkpoint and its cosignatures, the latest signed tree head,
proofs checked in the browser, exports.

The checkpoint card shows the newest C2SP checkpoint (the published one, with the witnesses' cosignatures,
unless the log has grown past it) and each of its signatures: the log's, and each cosignature with its
witness, its time (UTC) and whether that witness is in this deployment's policy (``witnesses``,
``witness_quorum``). ``static/audit_proofs.js`` checks them in the browser: Ed25519 over the note text under
the log's vkey, and over ``cosignature/v1\ntime T\n`` + the text under each witness's vkey, then says
whether the quorum is met.

The proof checker is ``static/audit_proofs.js``: it fetches the signed tree head and a proof from the JSON
log endpoints (``/v1/log/tree-head``, ``/v1/log/proofs/inclusion``, ``/v1/log/proofs/consistency``) and
recomputes the RFC 6962 root itself, so the browser does not take the server's word for it.

Exports stream in pages of `EXPORT_CHUNK` rows (keyset by sequence number / tree size, one short read per
page, no connection held between pages) over a range of at most `EXPORT_RANGE_MAX` rows per download.
The rows come from the proofs service (`Proofs.entry_rows`, `Proofs.tree_head_rows`: read-only keyset
pages); the reports come from the services the JSON API calls.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from creditflow.bootstrap import App
from creditflow.http.pages.common import HOME, NAV, app_of, render, role_pages
from creditflow.identity.sessions import WebUser
from creditflow.kernel.errors import InvalidInput
from creditflow.ledger.model.parties import Role
from creditflow.ledger.note import NoteError, cosignature_time, parse_checkpoint, parse_note, parse_vkey

router = APIRouter(include_in_schema=False)
Auditor = Annotated[WebUser, role_pages(Role.AUDITOR, Role.OPERATOR)]

for _role in (Role.AUDITOR, Role.OPERATOR):
    HOME[_role] = "/ui/audit"
    NAV[_role].extend([("/ui/audit", "Log and proofs"), ("/ui/audit/exports", "Exports")])

EXPORT_RANGE_MAX = 100_000  # rows in one download; ask for the next range for more
EXPORT_CHUNK = 1_000  # rows read per database round trip while streaming

ENTRY_COLUMNS = ("seq", "op_id", "op_type", "actor", "ts_ms", "leaf_hash", "entry")
HEAD_COLUMNS = ("tree_size", "root_hash", "ts_ms", "key_id", "signature")


@router.get("/ui/audit")
def log_page(request: Request, user: Auditor) -> HTMLResponse:
    """The latest signed tree head, and the in-browser proof checker."""
    app = app_of(request)
    head = app.proofs.latest_head()
    keys = app.proofs.log_keys_json()
    return render(
        request,
        "auditor/log.html",
        head=head.to_json(),
        head_valid=head.verify(app.log_keys),
        log_key=keys.get(head.key_id),
        log_keys=keys,
        checkpoint=checkpoint_view(app),
    )


def checkpoint_view(app: App) -> dict[str, Any]:
    """The newest checkpoint as the page shows it: its lines, and who signed it, as far as this server
    can tell by names and key ids (the browser checks the signatures themselves)."""
    _, note_text = app.proofs.latest_checkpoint()
    log = app.checkpoints.verifier
    policy = [(w.name, parse_vkey(w.vkey)) for w in app.settings.witnesses]
    note = parse_note(note_text)
    checkpoint = parse_checkpoint(note.text)
    signatures = []
    for sig in note.signatures:
        row: dict[str, Any] = {"name": sig.name, "key_id": sig.key_id.hex(), "time": None, "witness": None}
        if (sig.name, sig.key_id) == (log.name, log.key_id):
            row["kind"] = "log"
        else:
            row["kind"] = "cosignature" if len(sig.signature) == 72 else "unknown"
            if row["kind"] == "cosignature":
                try:
                    row["time"] = dt.datetime.fromtimestamp(cosignature_time(sig), dt.UTC).isoformat()
                except (NoteError, ValueError, OverflowError):
                    row["time"] = None
            row["witness"] = next((n for n, k in policy if (k.name, k.key_id) == (sig.name, sig.key_id)), None)
        signatures.append(row)
    return {
        "note": note_text,
        "origin": checkpoint.origin,
        "size": checkpoint.size,
        "root_hash": checkpoint.root_hash.hex(),
        "root_b64": note.text.split("\n")[2],
        "log_vkey": log.encode(),
        "signatures": signatures,
        "witnesses": [{"name": n, "vkey": k.encode(), "key_name": k.name} for n, k in policy],
        "quorum": app.settings.witness_quorum,
    }


@router.get("/ui/audit/exports")
def exports_page(request: Request, user: Auditor) -> HTMLResponse:
    app = app_of(request)
    size = app.proofs.latest_head().tree_size
    cores = [p for p in app.queries.parties() if p.role == Role.CORE_ENTERPRISE]
    return render(request, "auditor/exports.html", tree_size=size, range_max=EXPORT_RANGE_MAX, cores=cores)


# --- streamed exports of the log ----------------------------------------------------------------------


def _range(start: int, end: int | None, upper: int) -> tuple[int, int]:
    """``[start, end)`` clipped to the rows that exist (below ``upper``). Without ``end``, as far as one
    download goes (EXPORT_RANGE_MAX rows); an explicit range longer than that is refused."""
    if end is not None and end < start:
        raise InvalidInput("end must not be below start", code="invalid_range", field="end")
    stop = min(upper, start + EXPORT_RANGE_MAX if end is None else end)
    if stop - start > EXPORT_RANGE_MAX:
        raise InvalidInput(
            f"at most {EXPORT_RANGE_MAX} rows per download: ask for [{start}, {start + EXPORT_RANGE_MAX}) first",
            code="export_range_too_large",
            field="end",
        )
    return start, max(start, stop)


def csv_lines(columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """CSV (RFC 4180, CRLF line ends), a header and one line per row, produced as it is read."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="raise")
    writer.writeheader()
    for n, row in enumerate(rows, start=1):
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
        if n % 200 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def json_document(header: dict[str, Any], key: str, rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """``{...header, key: [rows]}`` written row by row."""
    opening = json.dumps(header, separators=(",", ":"))[:-1]
    yield f'{opening},"{key}":['
    for n, row in enumerate(rows):
        yield ("," if n else "") + json.dumps(row, separators=(",", ":"))
    yield "]}\n"


def _download(body: Iterator[str], filename: str, media_type: str) -> StreamingResponse:
    return StreamingResponse(
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


def _export(
    fmt: str,
    name: str,
    header: dict[str, Any],
    key: str,
    columns: Sequence[str],
    rows: Callable[[], Iterator[dict[str, Any]]],
) -> StreamingResponse:
    if fmt == "csv":
        return _download(csv_lines(columns, rows()), f"{name}.csv", "text/csv; charset=utf-8")
    return _download(json_document(header, key, rows()), f"{name}.json", "application/json")


Format = Annotated[str, Path(pattern="^(json|csv)$")]
Start = Annotated[int, Query(ge=0, description="first row (sequence number or tree size), inclusive")]
End = Annotated[int | None, Query(ge=0, description="end of the range, exclusive; default: as far as allowed")]


@router.get("/ui/audit/export/entries.{fmt}")
def export_entries(
    request: Request, user: Auditor, fmt: Format, start: Start = 0, end: End = None
) -> StreamingResponse:
    """Log entries ``[start, end)`` by sequence number, with their leaf hashes and raw bytes (hex)."""
    app = app_of(request)
    size = app.proofs.latest_head().tree_size
    first, stop = _range(start, end, size)
    header = {"kind": "creditflow.log_entries", "v": 1, "start": first, "end": stop, "tree_size": size}
    return _export(
        fmt,
        f"log-entries-{first}-{stop}",
        header,
        "entries",
        ENTRY_COLUMNS,
        lambda: app.proofs.entry_rows(first, stop, EXPORT_CHUNK),
    )


@router.get("/ui/audit/export/tree-heads.{fmt}")
def export_tree_heads(
    request: Request, user: Auditor, fmt: Format, start: Start = 0, end: End = None
) -> StreamingResponse:
    """Signed tree heads with ``start <= tree_size < end``, as stored (one per group commit)."""
    app = app_of(request)
    size = app.proofs.latest_head().tree_size
    first, stop = _range(start, end, size + 1)
    header = {
        "kind": "creditflow.tree_heads",
        "v": 1,
        "start": first,
        "end": stop,
        "log_keys": app.proofs.log_keys_json(),
    }
    return _export(
        fmt,
        f"tree-heads-{first}-{stop}",
        header,
        "tree_heads",
        HEAD_COLUMNS,
        lambda: app.proofs.tree_head_rows(first, stop, EXPORT_CHUNK),
    )


# --- reports as CSV ------------------------------------------------------------------------------------


OWED_COLUMNS = (
    "certificate_id",
    "issuer",
    "maturity_date",
    "days_overdue",
    "piece_id",
    "holder",
    "owed_minor",
    "penalty_minor",
    "recourse_to",
)


def _core(app: App, core: str) -> str:
    party = app.queries.party(core)
    if party.role != Role.CORE_ENTERPRISE:
        raise InvalidInput(f"{core} is not a core enterprise", code="not_core_enterprise", field="core")
    return party.org_id


@router.get("/ui/audit/export/owed.csv")
def export_owed(request: Request, user: Auditor, issuer: str | None = None) -> StreamingResponse:
    """Who is owed what on overdue certificates (``GET /v1/reports/owed``), amounts in fen."""
    rows = app_of(request).clearing.owed_report(issuer or None)
    return _download(csv_lines(OWED_COLUMNS, rows), "owed.csv", "text/csv; charset=utf-8")


@router.get("/ui/audit/export/exposure.csv")
def export_exposure(request: Request, user: Auditor) -> StreamingResponse:
    """What each bank holds of each core enterprise (``GET /v1/network/exposure``), in fen."""
    rows = app_of(request).network.exposure()
    return _download(csv_lines(("bank", "core", "exposure_minor"), rows), "exposure.csv", "text/csv; charset=utf-8")


@router.get("/ui/audit/export/penetration.csv")
def export_penetration(request: Request, user: Auditor, core: str) -> StreamingResponse:
    """Tier by tier, how far the core enterprise's credit reaches (``GET /v1/network/{core}/penetration``)."""
    app = app_of(request)
    report = app.network.penetration(_core(app, core))
    columns = (
        "tier",
        "value_reached_minor",
        "suppliers_reached",
        "financed_minor",
        "financed_share",
        "median_days_to_cash",
    )
    return _download(csv_lines(columns, report["tiers"]), f"penetration-{core}.csv", "text/csv; charset=utf-8")


@router.get("/ui/audit/export/what-if-default.csv")
def export_what_if(request: Request, user: Auditor, core: str) -> StreamingResponse:
    """If the core enterprise defaulted: each holder's loss before and after recourse."""
    app = app_of(request)
    report = app.network.what_if_default(_core(app, core))
    columns = ("org_id", "role", "direct_loss_minor", "loss_after_recourse_minor")
    return _download(csv_lines(columns, report["holders"]), f"what-if-default-{core}.csv", "text/csv; charset=utf-8")
