"""ImagingStudy/$retrieve: query/retrieve studies from a configured PACS into the imaging store.

    POST [base]/ImagingStudy/$retrieve
    {"resourceType": "Parameters", "parameter": [
        {"name": "node", "valueString": "PACS"},
        {"name": "StudyInstanceUID", "valueString": "1.2.3..."}]}

Parameters (in a Parameters body, or as URL parameters):
- `node` (1..1): the AE title of a node of FHIR_DICOM_NODES;
- `StudyInstanceUID` (0..*): the studies to retrieve; without it, `AccessionNumber` and/or `PatientID`
  select them by a C-FIND at the node first (the DRIMbox case: the RIS gives an accession number);
- `method` (0..1): `move` (C-MOVE to our SCP; the default when FHIR_DICOM_PORT is set) or `get` (C-GET
  on our own association; the default otherwise).

The answer is a Parameters resource with one `study` part per study: its UID, the sub-operation counts
and the ImagingStudy it now has here. An unreachable or refusing node is a 502. Needs the create scope
on ImagingStudy; each study retrieved is audited as a DICOM Import (110107).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from dicomweb.nodes import DicomNode, UnknownNode, node
from dicomweb.scu import DicomClient, DimseError, RetrieveResult
from dicomweb.store import imaging_study_id
from dicomweb.transfer_audit import Party, record_transfer
from fhir_server.auth.patient_context import forbid_unconfined
from fhir_server.context import ServerContext, server
from fhir_server.errors import FHIRError
from fhir_server.http import fhir_response, wants_pretty

IMAGING_STUDY = "ImagingStudy"
VALUE_KEYS = ("valueString", "valueId", "valueOid", "valueCode", "valueUri", "valueIdentifier")
UID_URN = "urn:oid:"


async def operation_parameters(request: Request) -> dict[str, list[str]]:
    """The operation's primitive parameters: from a Parameters body (when there is one) and the URL."""
    params: dict[str, list[str]] = {}
    for name, value in request.query_params.multi_items():
        params.setdefault(name, []).append(value)
    raw = await request.body()
    if raw.strip():
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise FHIRError(400, f"the body is not valid JSON: {exc}", code="structure") from None
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            raise FHIRError(400, "the body must be a Parameters resource", code="structure")
        for p in body.get("parameter") or []:
            if not isinstance(p, dict) or not isinstance(p.get("name"), str):
                raise FHIRError(400, "each parameter needs a name", code="structure")
            value = next((p[k] for k in VALUE_KEYS if k in p), None)
            if isinstance(value, dict):  # valueIdentifier
                value = value.get("value")
            if not isinstance(value, str):
                raise FHIRError(400, f"parameter {p['name']!r} needs a string value", code="invalid")
            params.setdefault(p["name"], []).append(value)
    return params


def one(params: dict[str, list[str]], name: str, *, required: bool = False) -> str | None:
    values = [v.strip() for v in params.get(name, []) if v.strip()]
    if len(values) > 1:
        raise FHIRError(400, f"parameter {name!r} may be given once", code="invalid")
    if not values and required:
        raise FHIRError(400, f"parameter {name!r} is required", code="required")
    return values[0] if values else None


def target_node(ctx: ServerContext, params: dict[str, list[str]]) -> DicomNode:
    name = one(params, "node", required=True)
    assert name is not None
    try:
        return node(ctx.settings, name)
    except UnknownNode as exc:
        raise FHIRError(400, str(exc), code="not-found") from None


def check_imaging_type(request: Request) -> None:
    if request.path_params.get("type") != IMAGING_STUDY:
        raise FHIRError(404, f"this operation is defined on {IMAGING_STUDY} only", code="not-supported")


def strip_urn(uid: str) -> str:
    return uid[len(UID_URN) :] if uid.startswith(UID_URN) else uid


def requester(request: Request) -> Party:
    access = getattr(request.state, "access", None)
    return Party(
        user=access.subject if access else None,
        client_id=access.client_id if access else None,
        address=request.client.host if request.client else None,
        requestor=True,
    )


async def retrieve(request: Request) -> Response:
    check_imaging_type(request)
    forbid_unconfined(request, "$retrieve")
    ctx = server(request)
    if ctx.dicom is None:
        raise FHIRError(503, "the imaging store is not running", code="transient")
    params = await operation_parameters(request)
    pacs = target_node(ctx, params)
    scp = getattr(request.app.state, "dimse", None)
    method = one(params, "method") or ("move" if scp is not None else "get")
    if method not in ("move", "get"):
        raise FHIRError(400, "method must be 'move' or 'get'", code="invalid")
    if method == "move" and scp is None:
        raise FHIRError(400, "C-MOVE needs this server's DICOM SCP (FHIR_DICOM_PORT); use method=get", code="invalid")
    client = DicomClient(ctx)
    uids = [strip_urn(u.strip()) for u in params.get("StudyInstanceUID", []) if u.strip()]
    if not uids:
        uids = await _find_studies(client, pacs, params)
    results: list[tuple[str, RetrieveResult | None, str]] = []
    for uid in dict.fromkeys(uids):
        keys = {"StudyInstanceUID": uid}
        try:
            result = await (client.move(pacs, "STUDY", keys) if method == "move" else client.get(pacs, "STUDY", keys))
        except DimseError as exc:
            results.append((uid, None, str(exc)))
            continue
        if method == "move" and result.completed:
            # Our SCP marks a study complete when the PACS releases its association; the final C-MOVE
            # response can come first, so do it here too (idempotent).
            await ctx.dicom.mark_complete([uid])
        results.append((uid, result, ""))
    if all(r is None for _, r, _ in results):
        await _audit(ctx, request, pacs, results)
        raise FHIRError(502, "; ".join(err for _, _, err in results), code="transient")
    await _audit(ctx, request, pacs, results)
    parts = [await _study_part(ctx, uid, result, err) for uid, result, err in results]
    body = {"resourceType": "Parameters", "parameter": parts}
    return fhir_response(body, 200, pretty=wants_pretty(request))


async def _find_studies(client: DicomClient, pacs: DicomNode, params: dict[str, list[str]]) -> list[str]:
    keys = {k: v for k in ("AccessionNumber", "PatientID") if (v := one(params, k))}
    if not keys:
        raise FHIRError(400, "give StudyInstanceUID, or AccessionNumber and/or PatientID", code="required")
    try:
        found = await client.find(pacs, "STUDY", keys, return_keys=["StudyInstanceUID"])
    except DimseError as exc:
        raise FHIRError(502, str(exc), code="transient") from None
    uids = [u for f in found if (u := ((f.get("0020000D") or {}).get("Value") or [None])[0])]
    if not uids:
        raise FHIRError(404, f"no study at {pacs.aet} matches {keys}", code="not-found")
    return uids


async def stored_study_id(ctx: ServerContext, study_uid: str) -> str | None:
    """The id of the study's ImagingStudy, when the study is in the store."""
    doc = await ctx.dicom.study_doc(study_uid)
    return imaging_study_id(study_uid) if doc is not None else None


async def _study_part(ctx: ServerContext, uid: str, result: RetrieveResult | None, error: str) -> dict[str, Any]:
    part: list[dict[str, Any]] = [{"name": "StudyInstanceUID", "valueString": uid}]
    if result is None:
        part.append({"name": "error", "valueString": error})
    else:
        part += [
            {"name": "completed", "valueInteger": result.completed},
            {"name": "failed", "valueInteger": result.failed},
            {"name": "warning", "valueInteger": result.warning},
        ]
        rid = await stored_study_id(ctx, uid)
        if rid:
            part.append({"name": "imagingStudy", "valueReference": {"reference": f"{IMAGING_STUDY}/{rid}"}})
    return {"name": "study", "part": part}


async def _audit(
    ctx: ServerContext, request: Request, pacs: DicomNode, results: list[tuple[str, RetrieveResult | None, str]]
) -> None:
    ok = [uid for uid, r, _ in results if r is not None and not r.failed]
    desc = "; ".join(
        f"{uid}: {err}" if r is None else f"{uid}: {r.completed} completed, {r.failed} failed"
        for uid, r, err in results
    )
    await record_transfer(
        ctx,
        "import",
        source=Party(aet=pacs.aet, address=pacs.host),
        destination=replace(requester(request), aet=ctx.settings.dicom_aet),
        studies=[uid for uid, _, _ in results],
        success=len(ok) == len(results),
        description=f"$retrieve from {pacs.aet}: {desc}",
    )
