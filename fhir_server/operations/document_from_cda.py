"""DocumentReference/$from-cda: file an incoming CDA R2 document (N1 or N3) as Binary + DocumentReference.

    POST [base]/DocumentReference/$from-cda
    Content-Type: application/hl7-cda+xml (or text/xml, application/xml)
    <ClinicalDocument xmlns="urn:hl7-org:v3">…</ClinicalDocument>

    → 201 Created, Location: DocumentReference/[id]/_history/1, body: the DocumentReference
      (200 with the existing one when a DocumentReference with the same masterIdentifier exists)

The CDA is stored unchanged in a Binary (`text/xml`, the CI-SIS/XDS mime type of CDA R2); the
DocumentReference carries the XDS metadata read from the header (mappings/cda/parse.py) and points to it.

- Subject: the Patient whose identifier is the document's INS (or, without a match, one of its other
  patient ids, e.g. the IPP). No match, or ids naming different Patients: 422, nothing written. We do not
  keep a logical-only subject: a DocumentReference outside every Patient compartment would escape the
  patient-scoped access rules and the $everything of its patient.
- Authors, authenticator and custodian become literal references when exactly one Practitioner /
  Organization of this server has the document's national id (IDNPS / IDNST) and the token may search that
  type; otherwise they stay logical references (identifier + display).
- A replacement (relatedDocument RPLC) whose parent is a DocumentReference here points `relatesTo`
  (replaces) at it and marks it `superseded`, in the same atomic write.
- Binary and DocumentReference (and the superseded update) are written in one transaction
  (storage/transactions.py): a refused or failed request leaves nothing behind. Posting the same document
  twice (same uniqueId) returns the existing DocumentReference; concurrent posts are serialised by a lease.

Needs the create scope on DocumentReference (the route's) and on Binary, and the update scope on
DocumentReference to supersede a replaced document; audited like a create.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.auth.patient_context import check_visible, check_writable
from fhir_server.auth.policy import check_readable
from fhir_server.auth.scopes import allows
from fhir_server.context import ServerContext, server
from fhir_server.errors import FHIRError
from fhir_server.http import fhir_response, read_limited_body, version_headers, wants_pretty, write_response
from fhir_server.interactions import binary
from fhir_server.interactions.body import validate_or_raise
from fhir_server.interactions.conditional import criteria_lease, matching
from fhir_server.storage.clock import now_ms
from fhir_server.storage.store import as_version, new_id, stamp
from fhir_server.storage.transactions import StagedWrite
from mappings.cda.parse import (
    CDA_CONTENT_TYPE,
    CDA_MEDIA_TYPE,
    CdaError,
    CdaHeader,
    document_reference_from_header,
    identifier,
    parse_header,
)

DOCUMENT_REFERENCE = "DocumentReference"
ACCEPTED_TYPES = {CDA_MEDIA_TYPE, "text/xml", "application/xml"}


async def _read_body(request: Request, max_bytes: int) -> bytes:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ACCEPTED_TYPES:
        raise FHIRError(
            415, f"$from-cda takes a CDA R2 document ({', '.join(sorted(ACCEPTED_TYPES))})", code="not-supported"
        )
    raw = await read_limited_body(request, max_bytes)
    if not raw.strip():
        raise FHIRError(400, "the request has no body", code="invalid")
    return raw


def _require_scope(request: Request, resource_type: str, action: str, what: str) -> None:
    access = getattr(request.state, "access", None)
    if access is None:
        return
    if allows(access.scopes, resource_type, action) or (
        access.patient and allows(access.scopes, resource_type, action, context="patient")
    ):
        return
    raise FHIRError(403, f"$from-cda {what}: the token's scopes do not allow it on {resource_type}", code="forbidden")


def _may_search(request: Request, resource_type: str) -> bool:
    access = getattr(request.state, "access", None)
    return access is None or allows(access.scopes, resource_type, "s")


def _token(ident: dict[str, Any]) -> str:
    return f"{ident.get('system', '')}|{ident.get('value', '')}"


async def _find_patient(ctx: ServerContext, request: Request, header: CdaHeader) -> str:
    """The id of the one Patient the document's patient identifiers name (INS first); 422 otherwise."""
    ins = header.ins
    ordered = ([ins] if ins else []) + [i for i in header.patient.ids if i is not ins and i.extension]
    tried: list[str] = []
    found: dict[str, str] = {}
    for ii in ordered:
        ident = identifier(ii)
        if not ident or not ii.extension:
            continue
        tried.append(_token(ident))
        for doc in await matching(ctx, "Patient", [("identifier", _token(ident))]):
            found.setdefault(doc["_id"], _token(ident))
        if found and ii is ins:
            break  # the INS decides; the local ids need not be known here
    if not found:
        raise FHIRError(
            422,
            "no Patient of this server has the document's patient identifier "
            f"({', '.join(tried) or 'none given'}): create or identify the patient first",
            code="business-rule",
            expression=("ClinicalDocument.recordTarget.patientRole.id",),
        )
    if len(found) > 1:
        raise FHIRError(
            422,
            "the document's patient identifiers name different Patients: "
            + ", ".join(f"Patient/{pid} ({token})" for pid, token in found.items()),
            code="business-rule",
            expression=("ClinicalDocument.recordTarget.patientRole.id",),
        )
    pid = next(iter(found))
    version = await ctx.store.read("Patient", pid)
    check_visible(ctx, request, "Patient", version.resource)
    await check_readable(ctx, request, "Patient", version.resource or {})
    return pid


async def _literal(ctx: ServerContext, request: Request, ref: dict[str, Any] | None) -> None:
    """Turn a logical reference into a literal one when exactly one resource here has its identifier."""
    if not ref or "reference" in ref or "identifier" not in ref or not ref.get("type"):
        return
    rtype = ref["type"]
    if rtype not in ("Practitioner", "Organization", "Device") or not _may_search(request, rtype):
        return
    matches = await matching(ctx, rtype, [("identifier", _token(ref["identifier"]))])
    if len(matches) == 1:
        ref["reference"] = f"{rtype}/{matches[0]['_id']}"


async def _replaced(ctx: ServerContext, document: dict[str, Any]) -> list[dict[str, Any]]:
    """Current documents this one replaces (found by their masterIdentifier); their relatesTo made literal."""
    replaced = []
    for rel in document.get("relatesTo") or []:
        target = rel.get("target") or {}
        if rel.get("code") != "replaces" or "identifier" not in target:
            continue
        found = await matching(ctx, DOCUMENT_REFERENCE, [("identifier", _token(target["identifier"]))])
        if len(found) == 1:
            target["reference"] = f"{DOCUMENT_REFERENCE}/{found[0]['_id']}"
            replaced.append(found[0])
    return replaced


def _staged(
    ctx: ServerContext, rtype: str, rid: str, resource: dict[str, Any], current: dict[str, Any] | None
) -> StagedWrite:
    validate_or_raise(resource, rtype, where=rtype)
    now = now_ms()
    prev = current["v"] if current else 0
    # lastUpdated strictly increases per resource (history order is version order).
    lu = now if not current or current["lu"] < now else current["lu"] + timedelta(milliseconds=1)
    stored = stamp(resource, rid, prev + 1, lu)
    op = "update" if current and not current.get("gone") else "create"
    return StagedWrite(rtype, rid, prev, current is not None, prev + 1, lu, stored, ctx.store.index_fn(stored), op)


async def from_cda(request: Request) -> Response:
    ctx = server(request)
    if request.path_params.get("type") != DOCUMENT_REFERENCE:
        raise FHIRError(404, "$from-cda is defined on DocumentReference only", code="not-supported")
    _require_scope(request, "Binary", "c", "stores the CDA in a Binary")
    raw = await _read_body(request, ctx.settings.max_body_bytes)
    try:
        header = parse_header(raw)
    except CdaError as exc:
        raise FHIRError(400, f"the body is not a CDA R2 document: {exc}", code="structure") from None

    pid = await _find_patient(ctx, request, header)
    binary_id, doc_id = new_id(), new_id()
    document = document_reference_from_header(
        header, binary_url=f"Binary/{binary_id}", size=len(raw), sha1=hashlib.sha1(raw, usedforsecurity=False).digest()
    )
    subject = {"reference": f"Patient/{pid}", **{k: v for k, v in document["subject"].items() if k == "display"}}
    document["subject"] = subject
    document.setdefault("context", {})["sourcePatientInfo"] = dict(subject)
    for ref in [*(document.get("author") or []), document.get("authenticator"), document.get("custodian")]:
        await _literal(ctx, request, ref)
    check_writable(ctx, request, DOCUMENT_REFERENCE, document)

    master = document["masterIdentifier"]
    async with criteria_lease(ctx, DOCUMENT_REFERENCE, [("identifier", _token(master))]):
        existing = await matching(ctx, DOCUMENT_REFERENCE, [("identifier", _token(master))])
        if existing:
            found = as_version(DOCUMENT_REFERENCE, existing[0])
            check_visible(ctx, request, DOCUMENT_REFERENCE, found.resource)
            await check_readable(ctx, request, DOCUMENT_REFERENCE, found.resource or {})
            headers = version_headers(found, ctx.base_url, location=True)
            return fhir_response(found.resource, 200, headers, pretty=wants_pretty(request))
        replaced = await _replaced(ctx, document)
        if replaced:
            _require_scope(request, DOCUMENT_REFERENCE, "u", "supersedes the replaced document")

        shell: dict[str, Any] = {
            "resourceType": "Binary",
            "contentType": CDA_CONTENT_TYPE,
            "securityContext": {"reference": f"{DOCUMENT_REFERENCE}/{doc_id}"},
        }
        check_writable(ctx, request, "Binary", shell)
        blob_key = None
        if ctx.blobs is not None:
            # Outside the JSON (MongoDB documents stop at 16 MB), as a raw Binary upload would be stored.
            blob_key = f"binary/{binary_id}/{uuid.uuid4().hex}"
            info = await ctx.blobs.put_bytes(blob_key, raw)
            sha1 = base64.b64encode(hashlib.sha1(raw, usedforsecurity=False).digest()).decode()
            stored_binary = binary._with_storage(
                shell, binary._storage_extension(blob_key, info.size, info.sha256, sha1, None)
            )
        else:
            stored_binary = {**shell, "data": base64.b64encode(raw).decode("ascii")}
        written = False
        try:
            writes = [
                _staged(ctx, "Binary", binary_id, stored_binary, None),
                _staged(ctx, DOCUMENT_REFERENCE, doc_id, document, None),
            ]
            for old in replaced:
                old_resource = {**old["res"], "status": "superseded"}
                writes.append(_staged(ctx, DOCUMENT_REFERENCE, old["_id"], old_resource, old))
            await ctx.store.tx.run(writes, now_ms())
            written = True
        finally:
            if blob_key is not None and not written:
                await ctx.blobs.delete(blob_key)  # type: ignore[union-attr]
    version = await ctx.store.read(DOCUMENT_REFERENCE, doc_id)
    return write_response(request, version, ctx.base_url, 201)
