"""`POST [base]/Task/[id]/$respond`: the requis answers with the compte-rendu (CCTP §3.1.2.7).

Parameters: `response` (resource: the response form's QuestionnaireResponse, optional), `conclusion`
(valueString, optional), `billingCode` (valueCode / valueCoding, optional: the TIE/PIE billing code for the
bureau des entrées). Done by the Task's addressee side, from requested or in-progress — and from on-hold
for greffe-renale dossiers only (non-blocking complementary information, workflow.NON_BLOCKING_INFO_TYPES).

Effect, in one transaction: the QuestionnaireResponse (completed; basedOn the ServiceRequest, author =
the acting PractitionerRole); the CR PDF (teleexpertise/report_pdf.py) as a Binary; a DiagnosticReport
(final, LOINC 85208-7, presentedForm = the PDF) and a DocumentReference of the PDF; the Task completed /
repondu with those as `output`, its owner the responder, `executionPeriod.end` now; the bureau des entrées
of the addressee's structure gains access to the administrative resources (ServiceRequest, Task,
Patient, Coverage, Encounter); an AuditEvent. Then the requérant is notified (`answered`), and the CR is
queued for the requérant structure's HL7 peer when it has one (teleexpertise/delivery.py). Answers the Task.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.context import ServerContext, server
from fhir_server.teleexpertise import access
from fhir_server.teleexpertise.changes import Changes, retrying
from fhir_server.teleexpertise.codes import EXT_BILLING_CODE, coding, reference_of, set_extension
from fhir_server.teleexpertise.delivery import deliver_after_commit
from fhir_server.teleexpertise.directory import Membership, structure_of
from fhir_server.teleexpertise.dossier import (
    acting_user,
    addressee_of,
    audit_transition,
    grant,
    load_task_for_requis,
    notify_after_commit,
    now_instant,
    set_task_state,
)
from fhir_server.teleexpertise.operation_input import operation_input
from fhir_server.teleexpertise.operation_output import resource_response
from fhir_server.teleexpertise.workflow import ANSWERED, TASK_TRANSITIONS

log = logging.getLogger(__name__)
TRANSITION = TASK_TRANSITIONS["respond"]
LOINC_CR = coding("http://loinc.org", "85208-7", "Telehealth Consult note")
ADMINISTRATIVE = ("Patient", "Coverage", "Encounter")


async def _pdf(
    ctx: ServerContext, sr: dict[str, Any], task: dict[str, Any], acting: Membership, answered: str,
    conclusion: str | None, response: dict[str, Any] | None,
) -> bytes | None:  # fmt: skip
    """The compte-rendu PDF, or None when the report module is missing or fails (the answer stands)."""
    try:
        from fhir_server.teleexpertise.report_pdf import build_report_context, form_part, render_compte_rendu
    except ImportError:
        return None
    try:
        context = await build_report_context(
            ctx, sr["id"], task["id"], responder=acting.role, answered=answered, conclusion=conclusion
        )
        if response is not None:
            context["response"] = await form_part(ctx, response)
        return render_compte_rendu(context)
    except Exception:
        log.exception("the compte-rendu PDF could not be produced")
        return None


async def respond(request: Request) -> Response:
    ctx = server(request)
    actor = await acting_user(ctx, request, "Task")
    params = await operation_input(request)
    response_form = params.resource("response", "QuestionnaireResponse")
    conclusion = params.string("conclusion")
    billing = params.string("billingCode")

    async def step():  # type: ignore[no-untyped-def]
        task, sr, acting, state = await load_task_for_requis(ctx, actor, request, TRANSITION)
        now = now_instant()
        task_ref, sr_ref = f"Task/{task['_id']}", f"ServiceRequest/{sr['_id']}"
        codes = access.dossier_codes(sr["res"])
        subject = sr["res"].get("subject")
        changes = Changes(ctx)
        outputs: list[dict[str, Any]] = []

        qr = None
        if response_form is not None:
            qr = {k: v for k, v in response_form.items() if k not in ("id", "meta")}
            if (response_form.get("meta") or {}).get("profile"):
                qr["meta"] = {"profile": response_form["meta"]["profile"]}  # what it claims is validated
            qr.update(basedOn=[{"reference": sr_ref}], author={"reference": acting.role}, authored=now)
            qr.setdefault("status", "completed")
            if subject:
                qr["subject"] = subject
            qr_ref = changes.create("QuestionnaireResponse", access.with_acl(qr, codes))
            outputs.append({"type": {"text": "formulaire de réponse"}, "valueReference": {"reference": qr_ref}})

        report: dict[str, Any] = {
            "resourceType": "DiagnosticReport",
            "status": "final",
            "code": {"coding": [LOINC_CR]},
            "basedOn": [{"reference": sr_ref}],
            "effectiveDateTime": now,
            "issued": now,
            "performer": [{"reference": acting.role}],
            "resultsInterpreter": [{"reference": acting.role}],
        }
        if subject:
            report["subject"] = subject
        if conclusion:
            report["conclusion"] = conclusion
        studies = [
            s for s in sr["res"].get("supportingInfo") or [] if (reference_of(s) or "").startswith("ImagingStudy/")
        ]
        if studies:
            report["imagingStudy"] = studies
        pdf = await _pdf(ctx, sr["res"], task["res"], acting, now, conclusion, qr)
        document_ref = None
        if pdf is not None:
            binary = {
                "resourceType": "Binary",
                "contentType": "application/pdf",
                "securityContext": {"reference": sr_ref},
                "data": base64.b64encode(pdf).decode(),
            }
            binary_ref = changes.create("Binary", access.with_acl(binary, codes))
            attachment = {
                "contentType": "application/pdf",
                "url": binary_ref,
                "size": len(pdf),
                "hash": base64.b64encode(hashlib.sha1(pdf).digest()).decode(),
                "title": f"compte-rendu-{sr['_id']}.pdf",
                "creation": now,
            }
            report["presentedForm"] = [attachment]
            document = {
                "resourceType": "DocumentReference",
                "status": "current",
                "docStatus": "final",
                "type": {"coding": [LOINC_CR]},
                "date": now,
                "author": [{"reference": acting.role}],
                "description": "Compte-rendu de téléexpertise",
                "content": [{"attachment": attachment}],
                "context": {"related": [{"reference": sr_ref}]},
            }
            if subject:
                document["subject"] = subject
            document_ref = changes.create("DocumentReference", access.with_acl(document, codes))
        report_ref = changes.create("DiagnosticReport", access.with_acl(report, codes))
        outputs.insert(0, {"type": {"text": "compte-rendu"}, "valueReference": {"reference": report_ref}})
        if document_ref:
            outputs.append({"type": {"text": "document"}, "valueReference": {"reference": document_ref}})

        new = set_task_state(task["res"], ANSWERED)
        new["restriction"] = {**(new.get("restriction") or {}), "recipient": [{"reference": addressee_of(task["res"])}]}
        new["owner"] = {"reference": acting.role}
        new["executionPeriod"] = {"start": now, **(new.get("executionPeriod") or {}), "end": now}
        new["output"] = [*(task["res"].get("output") or []), *outputs]
        if billing:
            set_extension(new, EXT_BILLING_CODE, "valueCode", billing)
        # The bureau des entrées of the addressee's structure: administrative data of answered dossiers.
        structure = await structure_of(ctx, acting.organization) or acting.structure
        if structure:
            be = {access.be_code(structure)}
            new = access.with_acl(new, access.acl(new) | be)
            await grant(changes, ctx, "ServiceRequest", sr, be)
            for rtype, doc in await access.linked_resources(ctx, sr["res"]):
                if rtype in ADMINISTRATIVE:
                    await grant(changes, ctx, rtype, doc, be)
        changes.update("Task", task, new)
        audit_transition(
            changes, actor, "respond", sr=sr["res"], task_refs=[task_ref], acting=acting,
            detail=f"{state[0]}/{state[1]} -> {ANSWERED[0]}/{ANSWERED[1]} ({report_ref})",
        )  # fmt: skip
        committed = await changes.commit()
        return committed[task_ref], sr["res"], acting

    version, sr, acting = await retrying(step)
    await notify_after_commit(
        ctx, TRANSITION.event, tasks=[version.resource or {}], service_request=sr, actor=acting.role
    )
    await deliver_after_commit(request, task=version.resource or {}, service_request=sr)
    return resource_response(request, ctx, version)
