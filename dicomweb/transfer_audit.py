"""AuditEvents for DICOM transfers: import (110107), export (110106) and query (110112).

The FHIR rendering of the DICOM audit messages (PS3.15 A.5.3; FHIR R4 AuditEvent "DICOM" mapping): the
event type is the DCM code, the transfer's two ends are agents with the Source (110153) and Destination
(110152) role ids, the studies are entities identified by `urn:dicom:uid`, the patients by their
PatientID. Used for DIMSE associations (dimse.py) and for the HTTP operations that start a transfer
(`ImagingStudy/$retrieve`, `$export-dicom`), which also get the usual REST AuditEvent from app.py.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fhir_server.storage.clock import fhir_instant, now_ms

if TYPE_CHECKING:
    from fhir_server.context import ServerContext

DCM = "http://dicom.nema.org/resources/ontology/DCM"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"

EVENTS = {
    "import": ("110107", "Import", "C"),
    "export": ("110106", "Export", "R"),
    "query": ("110112", "Query", "E"),
}


@dataclass(frozen=True)
class Party:
    """One end of a transfer: a DICOM AE (aet + address) and/or an authenticated user or client."""

    aet: str | None = None
    address: str | None = None
    user: str | None = None
    client_id: str | None = None
    requestor: bool = False


def _agent(party: Party, role_code: str, role_display: str) -> dict[str, Any]:
    agent: dict[str, Any] = {
        "type": {"coding": [{"system": DCM, "code": role_code, "display": role_display}]},
        "requestor": party.requestor,
    }
    if party.user:
        agent["who"] = {"identifier": {"value": party.user}}
    elif party.aet:
        agent["who"] = {"display": f"AE {party.aet}"}
    else:
        agent["who"] = {"display": "unknown"}
    if party.aet:
        agent["altId"] = party.aet
    elif party.client_id:
        agent["altId"] = party.client_id
    if party.address:
        agent["network"] = {"address": party.address, "type": "2"}
    return agent


def transfer_event(
    kind: str,
    *,
    source: Party,
    destination: Party,
    studies: Iterable[str] = (),
    patients: Iterable[str] = (),
    success: bool = True,
    description: str = "",
    references: Iterable[str] = (),
    query: str | None = None,
) -> dict[str, Any]:
    code, display, action = EVENTS[kind]
    entities: list[dict[str, Any]] = []
    for pid in sorted(set(patients)):
        entities.append(
            {
                "what": {"identifier": {"value": pid}},
                "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
                "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
            }
        )
    for uid in sorted(set(studies)):
        entities.append(
            {
                "what": {"identifier": {"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"}},
                "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                "role": {"system": OBJECT_ROLE, "code": "3", "display": "Report"},
            }
        )
    for ref in references:
        entities.append({"what": {"reference": ref}, "type": {"system": ENTITY_TYPE, "code": "2"}})
    if query is not None:
        entities.append(
            {
                "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                "role": {"system": OBJECT_ROLE, "code": "24", "display": "Query"},
                "query": base64.b64encode(query.encode()).decode(),
            }
        )
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": {"system": DCM, "code": code, "display": display},
        "action": action,
        "recorded": fhir_instant(now_ms()),
        "outcome": "0" if success else "4",
        "outcomeDesc": description or ("success" if success else "failed"),
        "agent": [_agent(source, "110153", "Source Role ID"), _agent(destination, "110152", "Destination Role ID")],
        "source": {
            "observer": {"display": "fhir-server"},
            "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4"}],
        },
    }
    if entities:
        event["entity"] = entities
    return event


async def record_transfer(ctx: ServerContext, kind: str, **details: Any) -> None:
    from fhir_server import audit

    if ctx.settings.audit_enabled:
        await audit.write(ctx, transfer_event(kind, **details))
