"""AuditEvents of DICOMweb requests, in the DICOM audit vocabulary (rendered by transfer_audit.py):

- STOW-RS: 110107 Import, the client as source, this server as destination;
- WADO-RS retrieval of instances (study, series, instance as application/dicom): 110106 Export;
- QIDO-RS queries, metadata, frames, rendered images, bulk data (what a viewer reads):
  110103 DICOM Instances Accessed.

Each event names the studies (`urn:dicom:uid`) and patients concerned. Refusals (401/403/404...) are
recorded as failures with the request's query, so an attempt leaves a trace too. Events are written
before the response leaves, as for FHIR interactions.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.requests import Request

from dicomweb.transfer_audit import Party, transfer_event
from fhir_server import audit

DCM = "http://dicom.nema.org/resources/ontology/DCM"
ACCESSED = ("110103", "DICOM Instances Accessed", "R")


def _client(request: Request) -> Party:
    access = getattr(request.state, "access", None)
    return Party(
        user=access.subject if access is not None else None,
        client_id=access.client_id if access is not None else None,
        address=request.client.host if request.client else None,
        requestor=True,
    )


def _server(request: Request) -> Party:
    return Party(address=request.url.netloc or None)


async def record(
    request: Request,
    kind: str,
    *,
    studies: Iterable[str] = (),
    patients: Iterable[str] = (),
    success: bool = True,
    description: str = "",
) -> None:
    """kind: "import" (STOW-RS), "export" (retrieve instances) or "accessed" (query, view)."""
    ctx = request.app.state.server
    if not ctx.settings.audit_enabled:
        return
    client, server = _client(request), _server(request)
    query = request.url.query or None
    if kind == "import":
        event = transfer_event(
            "import", source=client, destination=server, studies=studies, patients=patients,
            success=success, description=description, query=None,
        )  # fmt: skip
    else:
        event = transfer_event(
            "export", source=server, destination=client, studies=studies, patients=patients,
            success=success, description=description, query=query,
        )  # fmt: skip
        if kind == "accessed":
            code, display, action = ACCESSED
            event["type"] = {"system": DCM, "code": code, "display": display}
            event["action"] = action
    # The DICOMweb request itself, for whoever reads the trail.
    event["subtype"] = [
        {
            "system": "http://hl7.org/fhir/restful-interaction",
            "code": "operation",
            "display": f"DICOMweb {request.method} {request.url.path}",
        }
    ]
    await audit.write(ctx, event)
