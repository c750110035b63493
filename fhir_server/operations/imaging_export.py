"""ImagingStudy/[id]/$export-dicom: send a stored study to a configured DICOM node by C-STORE.

    POST [base]/ImagingStudy/[id]/$export-dicom
    {"resourceType": "Parameters", "parameter": [{"name": "node", "valueString": "WORKSTATION"}]}

The DRIMbox "envoi sur un nœud DICOM configuré" (DB-15): `node` is an AE title of FHIR_DICOM_NODES;
optional `SeriesInstanceUID` parameters restrict the export to those series. Instances are sent as they
were stored (scu.py). The answer is a Parameters resource: `sent`, `failed` and one
`failedSOPInstanceUID` per instance the node did not take; a node that cannot be reached is a 502.
Needs the read scope on ImagingStudy (and the study must be visible to the token, as for a read);
audited as a DICOM Export (110106).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from dicomweb.scu import DicomClient, DimseError
from dicomweb.transfer_audit import Party, record_transfer
from fhir_server.auth.patient_context import check_visible
from fhir_server.auth.policy import check_readable
from fhir_server.context import resource_id_of, server
from fhir_server.errors import FHIRError
from fhir_server.http import fhir_response, wants_pretty
from fhir_server.operations.imaging_retrieve import (
    IMAGING_STUDY,
    check_imaging_type,
    operation_parameters,
    requester,
    strip_urn,
    target_node,
)


def study_uid_of(study: dict[str, Any]) -> str | None:
    for ident in study.get("identifier") or []:
        if ident.get("system") == "urn:dicom:uid" and isinstance(ident.get("value"), str):
            return strip_urn(ident["value"])
    return None


async def export_dicom(request: Request) -> Response:
    check_imaging_type(request)
    ctx = server(request)
    rid = resource_id_of(request)
    version = await ctx.store.read(IMAGING_STUDY, rid)
    study = version.resource or {}
    check_visible(ctx, request, IMAGING_STUDY, study)
    await check_readable(ctx, request, IMAGING_STUDY, study)
    if ctx.dicom is None:
        raise FHIRError(503, "the imaging store is not running", code="transient")
    params = await operation_parameters(request)
    target = target_node(ctx, params)
    uid = study_uid_of(study)
    if uid is None:
        raise FHIRError(422, f"{IMAGING_STUDY}/{rid} has no urn:dicom:uid identifier", code="processing")
    refs = await ctx.dicom.instances(uid)
    series = {s.strip() for s in params.get("SeriesInstanceUID", []) if s.strip()}
    if series:
        refs = [r for r in refs if r.series_uid in series]
    if not refs:
        raise FHIRError(409, f"no instance of study {uid} is stored on this server", code="not-found")
    me = replace(requester(request), aet=ctx.settings.dicom_aet)
    to = Party(aet=target.aet, address=target.host)
    try:
        result = await DicomClient(ctx).export(target, refs)
    except DimseError as exc:
        await record_transfer(
            ctx,
            "export",
            source=me,
            destination=to,
            studies=[uid],
            success=False,
            references=[f"{IMAGING_STUDY}/{rid}"],
            description=f"$export-dicom to {target.aet}: {exc}",
        )
        raise FHIRError(502, str(exc), code="transient") from None
    await record_transfer(
        ctx,
        "export",
        source=me,
        destination=to,
        studies=[uid],
        success=not result.failed,
        references=[f"{IMAGING_STUDY}/{rid}"],
        description=f"$export-dicom to {target.aet}: {result.sent} sent, {len(result.failed)} failed",
    )
    parts: list[dict[str, Any]] = [
        {"name": "sent", "valueInteger": result.sent},
        {"name": "failed", "valueInteger": len(result.failed)},
    ]
    parts += [{"name": "failedSOPInstanceUID", "valueString": sop} for sop in result.failed]
    return fhir_response({"resourceType": "Parameters", "parameter": parts}, 200, pretty=wants_pretty(request))
