"""DocumentReference/[id]/$cda: the document as a CDA R2 (ANS CI-SIS), for the DMP and MSSanté.

    GET [base]/DocumentReference/[id]/$cda    →  200 application/hl7-cda+xml

When the DocumentReference already holds a CDA (`text/xml` or `application/hl7-cda+xml` content, e.g.
one received through `$from-cda` or HL7 v2), those bytes are served as they are. Otherwise a CDA R2 "N1"
is generated (mappings/cda/generate.py) from the DocumentReference, the resources it references
(subject, authors — PractitionerRole with its practitioner and organisation —, custodian,
authenticator, the replaced document) and its PDF (a `Binary/[id]` attachment or inline `data`).
What the CI-SIS needs and the resources lack is a 422 OperationOutcome naming every missing element.

Access: the read scope on DocumentReference (the route's), the patient-context confinement and the
access policy (confidentiality labels, opposition) on the DocumentReference, its Patient and its
Binary, as a read of each would. Audited like any read of the DocumentReference.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.auth.patient_context import check_visible
from fhir_server.auth.policy import check_readable
from fhir_server.context import ServerContext, resource_id_of, server
from fhir_server.errors import FHIRError, OutcomeIssue
from fhir_server.http import http_date
from fhir_server.interactions import binary
from fhir_server.validation import is_known_type
from mappings.cda.generate import CdaGenerationError, generate_n1
from mappings.cda.parse import CDA_MEDIA_TYPE

DOCUMENT_REFERENCE = "DocumentReference"
CDA_CONTENT_TYPES = {"text/xml", "application/xml", CDA_MEDIA_TYPE}
BODY_MEDIA_TYPES = {"application/pdf", "text/plain"}  # IHE XDS-SD: PDF or plain text in nonXMLBody


def _local(ctx: ServerContext, reference: str | None) -> tuple[str, str] | None:
    """(type, id) of a reference to this server (relative or under the base URL), else None."""
    if not reference or reference.startswith("#"):
        return None
    ref = reference.split("/_history/")[0]
    if ref.startswith(ctx.base_url + "/"):
        ref = ref[len(ctx.base_url) + 1 :]
    parts = ref.split("/")
    if len(parts) != 2 or not is_known_type(parts[0]) or not parts[1]:
        return None
    return parts[0], parts[1]


async def _load(
    ctx: ServerContext, request: Request, reference: dict[str, Any] | None, into: dict[str, dict[str, Any]]
) -> dict[str, Any] | None:
    """Load a referenced resource into `into` (keyed "Type/id"); unknown or deleted ones are left out,
    and the generator names them. Patient-specific resources go through the same checks as a read."""
    target = _local(ctx, (reference or {}).get("reference"))
    if target is None:
        return None
    key = "/".join(target)
    if key in into:
        return into[key]
    resource = await _readable(ctx, request, target)
    if resource is not None:
        into[key] = resource
    return resource


async def _readable(ctx: ServerContext, request: Request, target: tuple[str, str]) -> dict[str, Any] | None:
    """The current resource at `target` if the caller may read it; None when absent or deleted."""
    try:
        version = await ctx.store.read(*target)
    except FHIRError as exc:
        if exc.status in (404, 410):
            return None
        raise
    resource = version.resource or {}
    check_visible(ctx, request, target[0], resource)
    await check_readable(ctx, request, target[0], resource)
    return resource


async def attachment_bytes(
    ctx: ServerContext, request: Request, attachment: dict[str, Any]
) -> tuple[bytes, str] | None:
    """(content, contentType) of an attachment: inline `data`, or the Binary its url names."""
    ctype = (attachment.get("contentType") or "").split(";")[0].strip().lower()
    if attachment.get("data"):
        try:
            return base64.b64decode(attachment["data"], validate=True), ctype
        except (binascii.Error, ValueError):
            raise FHIRError(422, "the attachment's data is not valid base64", code="invalid") from None
    target = _local(ctx, attachment.get("url"))
    if target is None or target[0] != "Binary":
        return None
    resource = await _readable(ctx, request, target)
    if resource is None:
        return None
    ctype = ctype or (resource.get("contentType") or "").split(";")[0].strip().lower()
    info = binary.storage_info(resource)
    key = (info or {}).get("key")
    if isinstance(key, str) and key.startswith(f"binary/{target[1]}/") and ctx.blobs is not None:
        data = await ctx.blobs.read_bytes(key)
        return data, ctype
    try:
        return base64.b64decode(resource.get("data") or "", validate=False), ctype
    except (binascii.Error, ValueError):
        return None


async def document_cda(request: Request) -> Response:
    ctx = server(request)
    if request.path_params.get("type") != DOCUMENT_REFERENCE:
        raise FHIRError(404, "$cda is defined on DocumentReference only", code="not-supported")
    rid = resource_id_of(request)
    version = await ctx.store.read(DOCUMENT_REFERENCE, rid)
    document = version.resource or {}
    check_visible(ctx, request, DOCUMENT_REFERENCE, document)
    await check_readable(ctx, request, DOCUMENT_REFERENCE, document)
    headers = {"ETag": f'W/"{version.version}"', "Last-Modified": http_date(version.last_updated)}

    contents = [c.get("attachment") or {} for c in document.get("content") or []]
    for attachment in contents:
        ctype = (attachment.get("contentType") or "").split(";")[0].strip().lower()
        if ctype in CDA_CONTENT_TYPES:
            found = await attachment_bytes(ctx, request, attachment)
            if found is not None:
                return Response(found[0], 200, headers, media_type=CDA_MEDIA_TYPE)

    body: tuple[bytes, str] | None = None
    for attachment in contents:
        found = await attachment_bytes(ctx, request, attachment)
        if found is not None and found[1] in BODY_MEDIA_TYPES:
            body = found
            break
    if body is None:
        raise FHIRError(
            422,
            "DocumentReference.content needs a PDF (application/pdf) or text/plain attachment, as inline data or "
            "a Binary of this server",
            code="business-rule",
            expression=("DocumentReference.content",),
        )

    resources: dict[str, dict[str, Any]] = {}
    await _load(ctx, request, document.get("subject"), resources)
    for ref in [*(document.get("author") or []), document.get("authenticator"), document.get("custodian")]:
        resource = await _load(ctx, request, ref, resources)
        if resource and resource.get("resourceType") == "PractitionerRole":
            await _load(ctx, request, resource.get("practitioner"), resources)
            await _load(ctx, request, resource.get("organization"), resources)
        elif resource and resource.get("resourceType") == "Device":
            await _load(ctx, request, resource.get("owner"), resources)
    for rel in document.get("relatesTo") or []:
        await _load(ctx, request, rel.get("target"), resources)

    try:
        xml = generate_n1(document, resources, body[0], media_type=body[1], document_version=str(version.version))
    except CdaGenerationError as exc:
        issues = [OutcomeIssue("error", "required", message, (path,)) for path, message in exc.issues]
        raise FHIRError(
            422,
            f"DocumentReference/{rid} cannot be expressed as a CI-SIS CDA R2: {len(issues)} problem(s)",
            code="business-rule",
            extra_issues=issues,
        ) from None
    return Response(xml, 200, headers, media_type=CDA_MEDIA_TYPE)
