"""ADT^A40 (merge patient, IHE PAM): the MRG patient is merged into the PID patient.

1. Every resource of the merged Patient's compartment (Encounters, DocumentReferences,
   DiagnosticReports, ServiceRequests, Observations...) gets a new version whose references to the
   merged Patient point to the surviving one, through the normal versioned store, so each resource's
   history shows the move. AuditEvents and Provenance are records of the past and are left alone.
2. Then, in one all-or-nothing write: the merged Patient becomes `active: false` with
   `link: replaced-by` the survivor, and the survivor gets `link: replaces` and the merged Patient's
   identifiers with `use: old` (a later message with the old IPP finds the survivor).

A merge interrupted half-way (the message is not acknowledged) is finished when the sender re-sends
it: each step is idempotent.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from fhir_server.references import walk_references
from mappings.hl7v2.ack import ERR_REQUIRED_FIELD_MISSING, ERR_SEGMENT_SEQUENCE, HL7Reject, Processed
from mappings.hl7v2.identifiers import Identifiers, token
from mappings.hl7v2.patients import ERR_UNKNOWN_KEY, PatientMapping, resolve
from mappings.hl7v2.segments import Message
from mappings.hl7v2.writes import Batch, Conflict, body_of

if TYPE_CHECKING:
    from fhir_server.context import ServerContext

NOT_REPOINTED = {"Patient", "AuditEvent", "Provenance"}


async def process(ctx: ServerContext, msg: Message, ids: Identifiers) -> Processed:
    from fhir_server.search.engine import find_current

    mrg = msg.first("MRG")
    if mrg is None:
        raise HL7Reject("AR", ERR_SEGMENT_SEQUENCE, "MRG segment missing in ADT^A40")
    prior = [i for i in (ids.cx(cx) for cx in mrg.reps(1)) if i]
    if not prior:
        raise HL7Reject("AR", ERR_REQUIRED_FIELD_MISSING, "MRG-1 (prior patient identifier list) missing")
    async with AsyncExitStack() as stack:
        batch = Batch(ctx)
        survivor_id = await resolve(ctx, batch, stack, PatientMapping(msg, ids), update=True)
        merged = None
        for key in prior:
            found = await find_current(ctx, "Patient", [("identifier", token(key))], limit=3, strict=True)
            found = [f for f in found if f["_id"] != survivor_id]
            if found:
                merged = found[0]
                break
        if merged is None:
            raise HL7Reject("AE", ERR_UNKNOWN_KEY, f"unknown patient to merge: {prior[0]['value']}")
        moved = await repoint(ctx, merged["_id"], survivor_id)
        old = body_of(merged)
        old["active"] = False
        old["link"] = [{"other": {"reference": f"Patient/{survivor_id}"}, "type": "replaced-by"}]
        if old != merged["res"]:
            batch.update(merged, old)
        planned = batch.planned("Patient", survivor_id)
        if planned is not None:
            _absorb(planned, merged["res"], merged["_id"])  # the planned body itself, created or updated
        else:
            survivor = await ctx.store.current("Patient", survivor_id)
            if survivor is None or survivor.get("gone"):
                raise HL7Reject("AE", ERR_UNKNOWN_KEY, f"surviving Patient/{survivor_id} is gone")
            body = body_of(survivor)
            _absorb(body, merged["res"], merged["_id"])
            batch.update(survivor, body)
        written = await batch.commit()
    text = f"Patient/{merged['_id']} merged into Patient/{survivor_id} ({len(moved)} resources re-pointed)"
    return Processed(text, [*moved, *written], f"Patient/{survivor_id}")


def _absorb(survivor: dict[str, Any], merged: dict[str, Any], merged_id: str) -> None:
    links = [link for link in survivor.get("link", []) if link["other"].get("reference") != f"Patient/{merged_id}"]
    survivor["link"] = [*links, {"other": {"reference": f"Patient/{merged_id}"}, "type": "replaces"}]
    known = {(i.get("system"), i.get("value")) for i in survivor.get("identifier", [])}
    for ident in merged.get("identifier", []):
        if (ident.get("system"), ident.get("value")) not in known:
            survivor.setdefault("identifier", []).append({**ident, "use": "old"})


async def repoint(ctx: ServerContext, old_id: str, new_id: str) -> list[str]:
    """Write a new version of every compartment resource of Patient/old_id pointing to Patient/new_id."""
    from fhir_server.search.compartments import compartment_filter, compartment_params

    existing = set(await ctx.database.db.list_collection_names())
    moved: list[str] = []
    old_ref, new_ref = f"Patient/{old_id}", f"Patient/{new_id}"

    def swap(ref: str) -> str | None:
        if ref == old_ref or ref.endswith("/" + old_ref):
            return ref[: -len(old_ref)] + new_ref
        return None

    for rtype in sorted(compartment_params("Patient")):
        if rtype in NOT_REPOINTED or rtype not in existing:
            continue
        flt = {**compartment_filter("Patient", old_id, rtype), "gone": {"$exists": False}}
        async for doc in ctx.database.resources(rtype).find(flt, {"v": 1, "res": 1}):
            body = body_of(doc)
            walk_references(body, swap)
            if body == doc["res"]:
                continue
            try:
                await ctx.store.write(rtype, doc["_id"], body, if_match=doc["v"])
            except Exception as exc:
                if getattr(exc, "status", None) == 412:
                    raise Conflict(str(exc)) from None
                raise
            moved.append(f"{rtype}/{doc['_id']}")
    return moved
