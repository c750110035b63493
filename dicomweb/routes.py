"""The DICOMweb routes under /dicomweb (beside /fhir) and the viewer under /viewer.

Every DICOMweb route goes through `dicomweb_endpoint`: token and scope check (security.py), revocation,
rate limit, errors as OperationOutcomes, and an AuditEvent for refusals (successful requests write
their DICOM audit event themselves, web_audit.py, before the response leaves).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from dicomweb import qido, security, stow, viewer, wado, web_audit
from fhir_server.auth.oauth import check_revoked
from fhir_server.errors import FHIRError
from fhir_server.hardening import RateLimiter
from fhir_server.http import outcome_response

log = logging.getLogger(__name__)
PREFIX = "/dicomweb"
Handler = Callable[[Request], Awaitable[Response]]
AUDIT_KIND = {"store_studies": "import", "retrieve": "export"}


def _rate_limit(request: Request) -> None:
    limiter: RateLimiter | None = getattr(request.app.state, "limiter", None)
    if limiter is None:
        return
    access = getattr(request.state, "access", None)
    limiter.check(access.client_id if access else (request.client.host if request.client else "unknown"))


def dicomweb_endpoint(fn: Handler, action: str) -> Handler:
    async def wrapped(request: Request) -> Response:
        try:
            security.authorize(request, action)
            await check_revoked(request)
            _rate_limit(request)
            response = await fn(request)
        except FHIRError as exc:
            response = outcome_response(exc)
        except Exception:
            log.exception("unhandled error")
            response = outcome_response(FHIRError(500, "internal server error", code="exception"))
        if response.status_code >= 400 and response.status_code not in (429,):
            try:
                study = request.path_params.get("study")
                await web_audit.record(
                    request,
                    AUDIT_KIND.get(fn.__name__, "accessed"),
                    studies=[study] if study else [],
                    success=False,
                    description=f"refused or failed ({response.status_code})",
                )
            except Exception:
                log.exception("audit write failed")
                return outcome_response(FHIRError(500, "the audit trail could not be written", code="exception"))
        return response

    wrapped.__name__ = fn.__name__
    return wrapped


def routes() -> list[BaseRoute]:
    def r(path: str, fn: Handler, action: str, methods: tuple[str, ...] = ("GET",)) -> Route:
        return Route(PREFIX + path, dicomweb_endpoint(fn, action), methods=list(methods))

    study = "/studies/{study}"
    series = study + "/series/{series}"
    instance = series + "/instances/{instance}"
    return [
        # QIDO-RS
        r("/studies", qido.search_studies, "s"),
        r(study + "/series", qido.search_series, "s"),
        r(study + "/instances", qido.search_instances, "s"),
        r(series + "/instances", qido.search_instances, "s"),
        r("/series", qido.search_series, "s"),
        r("/instances", qido.search_instances, "s"),
        # STOW-RS
        r("/studies", stow.store_studies, "c", ("POST",)),
        r(study, stow.store_studies, "c", ("POST",)),
        # WADO-RS
        r(study, wado.retrieve, "r"),
        r(study + "/metadata", wado.metadata, "r"),
        r(series, wado.retrieve, "r"),
        r(series + "/metadata", wado.metadata, "r"),
        r(instance, wado.retrieve, "r"),
        r(instance + "/metadata", wado.metadata, "r"),
        r(instance + "/rendered", wado.rendered, "r"),
        r(instance + "/thumbnail", wado.rendered, "r"),
        r(instance + "/frames/{frames}", wado.frames, "r"),
        r(instance + "/frames/{frames}/rendered", wado.rendered, "r"),
        r(instance + "/frames/{frames}/thumbnail", wado.rendered, "r"),
        r(instance + "/bulkdata/{path:path}", wado.bulkdata, "r"),
        # The viewer's page and assets hold no data (they read it through the routes above).
        *viewer.routes(),
    ]
