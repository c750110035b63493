"""The per-process objects every interaction uses, reachable from a request."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from fhir_server.errors import FHIRError

if TYPE_CHECKING:
    from fhir_server.config import Settings
    from fhir_server.search.registry import Registry
    from fhir_server.storage.blobs import FileBlobStore
    from fhir_server.storage.database import Database
    from fhir_server.storage.store import ResourceStore

ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


@dataclass
class ServerContext:
    settings: Settings
    database: Database
    store: ResourceStore
    registry: Registry
    base_url: str
    # Large payloads (Binary content, DICOM instances): storage/blobs.py.
    blobs: FileBlobStore | None = None
    # The imaging store (dicomweb/), when started.
    dicom: Any = None
    # The audit queue (audit.AuditTrail), when the server runs one.
    audit: Any = None
    # The durable delivery queue (jobs/outbox.Outbox: Subscription rest-hooks, e-mails, SMS), once installed.
    outbox: Any = None


def server(request: Request) -> ServerContext:
    return request.app.state.server


def resource_type_of(request: Request) -> str:
    from fhir_server.validation import is_known_type

    rtype = request.path_params["type"]
    if not is_known_type(rtype):
        raise FHIRError(
            404, f"Unknown resource type {rtype!r} (this server speaks FHIR R4 4.0.1)", code="not-supported"
        )
    return rtype


def resource_id_of(request: Request) -> str:
    rid = request.path_params["id"]
    if not ID_RE.match(rid):
        raise FHIRError(400, f"{rid!r} is not a valid FHIR id", code="invalid")
    return rid


def query_items(request: Request) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())
