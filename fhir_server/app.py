"""The ASGI application: routes, the per-request wrapper (errors, auth) and the process life cycle.

docs/ARCHITECTURE.md follows a request from here to MongoDB and back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fhir_server import audit
from fhir_server.auth import scope_queries
from fhir_server.auth.bearer import verified_access
from fhir_server.auth.oauth import check_revoked
from fhir_server.auth.scopes import allows
from fhir_server.auth.tokens import TokenVerifier
from fhir_server.backend import Backend, open_backend
from fhir_server.config import Settings, get_settings
from fhir_server.conformance import publish as publish_conformance
from fhir_server.context import ServerContext
from fhir_server.errors import FHIRError
from fhir_server.hardening import EXPOSED_HEADERS, RateLimiter, SecurityHeadersMiddleware
from fhir_server.http import check_format, outcome_response, wants_pretty
from fhir_server.interactions import capabilities, read, search, vread
from fhir_server.jobs.export import purge_expired, run_export
from fhir_server.jobs.notifications import install as install_notifications
from fhir_server.jobs.queue import JobQueue
from fhir_server.logs import RequestLogMiddleware
from fhir_server.operations import everything, export, imaging_export, imaging_retrieve, validate
from fhir_server.search.indexing import index_function
from fhir_server.search.registry import load_registry
from fhir_server.storage.blobs import FileBlobStore
from fhir_server.storage.clock import now_ms
from fhir_server.storage.store import ResourceStore
from fhir_server.subscriptions.registry import writer_access
from fhir_server.teleexpertise import enrolment
from fhir_server.teleexpertise.codes import ACCESS as TLX_ACCESS

log = logging.getLogger(__name__)
FHIR_PREFIX = "/fhir"
Endpoint = Callable[[Request], Awaitable[Response]]


def _authorize(request: Request, action: str | None, interaction: str = "") -> None:
    if action is None:
        return
    access = verified_access(request)
    if access is None:
        return  # the server runs without authorisation
    if action == "*":
        return  # a bundle: each entry is checked on its own
    if action == "export":
        return  # $export checks the scopes of the types it exports
    if action == "everything":
        # $everything reads every type of the compartment: read and search on all of them, or a
        # patient-context token asking for its own patient.
        if allows(access.scopes, None, "r") and allows(access.scopes, None, "s"):
            return
        own = access.patient is not None and request.path_params.get("id") == access.patient
        if own and allows(access.scopes, None, "r", context="patient"):
            request.state.patient = access.patient
            return
        raise FHIRError(403, "$everything needs read and search scopes on every type", code="forbidden")
    rtype = request.path_params.get("type")
    if allows(access.scopes, rtype, action):
        return
    if access.patient and rtype and allows(access.scopes, rtype, action, context="patient"):
        request.state.patient = access.patient  # confined to that patient's compartment
        return
    if interaction in scope_queries.SERVED and rtype:
        # SMART v2 fine-grained scopes (`…?category=…`): only what their search parameters match.
        if queries := scope_queries.granting_queries(access.scopes, rtype, action, context="user"):
            scope_queries.set_queries(request, queries)
            return
        if access.patient and (
            queries := scope_queries.granting_queries(access.scopes, rtype, action, context="patient")
        ):
            request.state.patient = access.patient
            scope_queries.set_queries(request, queries)
            return
    raise FHIRError(
        403, f"the token's scopes do not allow this interaction on {rtype or 'the system'}", code="forbidden"
    )


def fhir_endpoint(fn: Endpoint, action: str | None) -> Endpoint:
    """Every FHIR route goes through here: format check, authorisation, errors as OperationOutcomes."""

    async def wrapped(request: Request) -> Response:
        try:
            check_format(request)
            _authorize(request, action, fn.__name__)
            writer_access.set(getattr(request.state, "access", None))  # who owns a Subscription written now
            await check_revoked(request)
            _rate_limit(request)
            _refuse_audit_changes(request, action)
            await audit.before_read(request.app.state.server, request, fn.__name__)
            response = await fn(request)
        except FHIRError as exc:
            response = outcome_response(exc, wants_pretty(request))
        except Exception:
            log.exception("unhandled error")
            response = outcome_response(FHIRError(500, "internal server error", code="exception"))
        if action is not None:
            # Before the response leaves: an interaction that cannot be audited does not happen.
            try:
                await audit.record(request.app.state.server, request, fn.__name__, response)
            except Exception:
                log.exception("audit write failed")
                return outcome_response(FHIRError(500, "the audit trail could not be written", code="exception"))
        return response

    return wrapped


def _rate_limit(request: Request) -> None:
    limiter: RateLimiter | None = getattr(request.app.state, "limiter", None)
    if limiter is None:
        return
    access = getattr(request.state, "access", None)
    client = access.client_id if access else (request.client.host if request.client else "unknown")
    limiter.check(client)


def _refuse_audit_changes(request: Request, action: str | None) -> None:
    if request.path_params.get("type") == "AuditEvent" and action in ("u", "d"):
        raise FHIRError(405, "AuditEvents cannot be changed or deleted", code="not-supported")


def _routes() -> list[Route]:
    def r(path: str, fn: Endpoint, methods: list[str], action: str | None) -> Route:
        return Route(FHIR_PREFIX + path.rstrip("/"), fhir_endpoint(fn, action), methods=methods)

    from dicomweb.routes import routes as dicomweb_routes
    from fhir_server.auth.oauth import routes as oauth_routes
    from fhir_server.operations import (  # CDA R2 edges (mappings/cda)
        document_cda,
        document_from_cda,
        send_hl7,  # HL7 v2 outbound (FHIR_HL7_PEERS)
    )
    from fhir_server.operations.activity_export import route as activity_export_route  # téléexpertise
    from fhir_server.teleexpertise import guarded_writes as guarded
    from fhir_server.teleexpertise.routes import routes as teleexpertise_routes

    return [
        *oauth_routes(FHIR_PREFIX),  # before /{type}/{id}: /fhir/.well-known/... are literal paths
        *enrolment.routes(),  # /oauth/invitation: enrolment of professionals invited by e-mail (téléexpertise)
        *dicomweb_routes(),  # /dicomweb (QIDO-RS, WADO-RS, STOW-RS) and /viewer: dicomweb/routes.py
        r("/metadata", capabilities.capabilities, ["GET"], None),
        # Operations first: their literal segments must win over /{type}/{id}.
        r("/Patient/{id}/$everything", everything.everything, ["GET"], "everything"),
        r("/{type}/$validate", validate.validate, ["POST"], "r"),
        r("/{type}/$retrieve", imaging_retrieve.retrieve, ["POST"], "c"),  # ImagingStudy only
        r("/{type}/{id}/$export-dicom", imaging_export.export_dicom, ["POST"], "r"),  # ImagingStudy only
        r("/{type}/{id}/$cda", document_cda.document_cda, ["GET"], "r"),  # DocumentReference only
        r("/{type}/$from-cda", document_from_cda.from_cda, ["POST"], "c"),  # DocumentReference only
        r("/{type}/{id}/$send-hl7", send_hl7.send_hl7, ["POST"], "r"),  # DocumentReference, DiagnosticReport
        r("/$export", export.export_system, ["GET"], "export"),
        r("/Patient/$export", export.export_patients, ["GET"], "export"),
        r("/Group/{id}/$export", export.export_group, ["GET"], "export"),
        r("/$export-status/{job}", export.export_status, ["GET"], "export"),
        r("/$export-status/{job}", export.export_delete, ["DELETE"], "export"),
        r("/$export-file/{job}/{name}", export.export_file, ["GET"], "export"),
        # Téléexpertise operations (before /{type}/{id}).
        *teleexpertise_routes(r),
        activity_export_route(FHIR_PREFIX, fhir_endpoint),  # GET /$activity-export (checks its own scopes)
        # Writes, bundles and history go through the téléexpertise rules first (teleexpertise/guarded_writes.py),
        # which hand each request on to the generic interaction once they hold.
        r("/", search.search_system, ["GET"], "s"),
        r("/", guarded.bundle, ["POST"], "*"),
        # Clients often write the base URL with a trailing slash.
        Route(FHIR_PREFIX + "/", fhir_endpoint(search.search_system, "s"), methods=["GET"]),
        Route(FHIR_PREFIX + "/", fhir_endpoint(guarded.bundle, "*"), methods=["POST"]),
        r("/_search", search.search_system, ["POST"], "s"),
        r("/_history", guarded.system_history, ["GET"], "r"),
        r("/{type}", search.search_type, ["GET"], "s"),
        r("/{type}", guarded.create, ["POST"], "c"),
        r("/{type}", guarded.conditional_update, ["PUT"], "u"),
        r("/{type}", guarded.conditional_patch, ["PATCH"], "u"),
        r("/{type}", guarded.conditional_delete, ["DELETE"], "d"),
        r("/{type}/_search", search.search_type_post, ["POST"], "s"),
        r("/{type}/_history", guarded.type_history, ["GET"], "r"),
        r("/{type}/{id}", read.read, ["GET"], "r"),
        r("/{type}/{id}", guarded.update, ["PUT"], "u"),
        r("/{type}/{id}", guarded.patch, ["PATCH"], "u"),
        r("/{type}/{id}", guarded.delete, ["DELETE"], "d"),
        r("/{type}/{id}/_history", guarded.instance_history, ["GET"], "r"),
        r("/{type}/{id}/_history/{vid}", vread.vread, ["GET"], "r"),
        r("/{compartment}/{id}/{type}", search.search_compartment, ["GET"], "s"),
    ]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not-found", 405: "not-supported"}.get(exc.status_code, "processing")
    detail = {
        404: f"no FHIR endpoint at {request.url.path}",
        405: f"{request.method} is not supported on {request.url.path}",
    }.get(exc.status_code, exc.detail)
    return outcome_response(FHIRError(exc.status_code, detail, code=code, headers=dict(exc.headers or {})))


async def _maintenance(ctx: ServerContext, interval: float = 10.0, audit_every: int = 360) -> None:
    """Finishes or rolls back transactions a crashed instance left behind; purges expired exports and,
    about hourly, AuditEvents past their retention and old téléexpertise enrolment links."""
    rounds = 0
    while True:
        steps = [lambda: ctx.store.tx.recover(now_ms()), lambda: purge_expired(ctx)]
        if rounds % audit_every == 0:
            steps.append(lambda: audit.purge_expired(ctx))
            steps.append(lambda: enrolment.purge_expired(ctx))
        for step in steps:
            try:
                await step()
            except Exception:
                log.exception("maintenance step failed")
        rounds += 1
        await asyncio.sleep(interval)


def create_app(settings: Settings | None = None, backend: Backend | None = None) -> Starlette:
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # `fhir-server serve` opens the backend before uvicorn starts (clean start-up errors);
        # tests and other embedders let the app open its own.
        own = backend is None
        opened = backend or await open_backend(settings)
        registry = load_registry()
        base_url = settings.resolved_base_url()
        store = ResourceStore(opened.database, index_function(registry, base_url))
        store.sticky_labels = frozenset({TLX_ACCESS})  # téléexpertise access lists survive whole-resource writes
        blobs = FileBlobStore(settings.data_dir / "blobs")
        app.state.server = ServerContext(settings, opened.database, store, registry, base_url, blobs)
        await publish_conformance(store)  # profiles/ -> StructureDefinition, ValueSet, Questionnaire... (idempotent)
        from dicomweb.store import DicomStore  # the imaging store (dicomweb/): ctx.dicom

        app.state.dicom = app.state.server.dicom = DicomStore(app.state.server)
        await app.state.dicom.ensure_indexes()
        app.state.verifier = (
            TokenVerifier(settings.data_dir, settings.resolved_token_issuer(), base_url)
            if settings.auth_enabled
            else None
        )
        log.info("fhir-server ready", extra={"base_url": base_url, "embedded_db": opened.embedded is not None})
        jobs = JobQueue(opened.database)
        jobs.runners["export"] = partial(run_export, app.state.server)
        app.state.jobs = jobs
        outbox = await install_notifications(app.state.server)  # Subscriptions, e-mails, SMS (jobs/outbox.py)
        background = [asyncio.create_task(_maintenance(app.state.server), name="maintenance")]
        background.append(asyncio.create_task(outbox.loop(deliver=settings.jobs_enabled), name="outbox"))
        if settings.audit_enabled:
            app.state.server.audit = audit.AuditTrail(app.state.server)
            background.append(asyncio.create_task(app.state.server.audit.loop(), name="audit"))
        if settings.jobs_enabled:
            background.append(asyncio.create_task(jobs.loop(), name="jobs"))
        from fhir_server.jobs import hl7_outbox  # HL7 v2 peers (FHIR_HL7_PEERS): the MLLP outbound queue

        background += hl7_outbox.start(app)
        mllp = None
        dimse = None
        try:
            if settings.mllp_port:
                from fhir_server.mllp import MLLPServer

                mllp = MLLPServer(app.state.server, settings.mllp_host or settings.host, settings.mllp_port)
                await mllp.start()
            app.state.mllp = mllp
            if settings.dicom_port:
                from dicomweb.dimse import DicomServer

                host = settings.dicom_host or settings.host
                dimse = DicomServer(app.state.server, host, settings.dicom_port, settings.dicom_aet)
                await dimse.start()
            app.state.dimse = dimse
            yield
        finally:
            if mllp is not None:
                await mllp.stop()
            if dimse is not None:
                await dimse.stop()
            await app.state.dicom.close()
            for task in background:
                task.cancel()
            # Bounded: a loop that failed to stop must not hold the shutdown (and the port) forever.
            _, stuck = await asyncio.wait(background, timeout=15) if background else (set(), set())
            for task in stuck:
                log.error("background task did not stop on shutdown", extra={"task": task.get_name()})
            if app.state.server.audit is not None:
                with contextlib.suppress(Exception):  # what stays queued is written by the next drain
                    await app.state.server.audit.drain()
            if own:
                await opened.close()

    app = Starlette(
        routes=_routes(),
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error},
    )
    app.state.verifier = None
    app.state.limiter = RateLimiter(settings.rate_limit_per_minute) if settings.rate_limit_per_minute else None
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "If-Match",
                "If-None-Exist",
                "If-None-Match",
                "If-Modified-Since",
                "Prefer",
                "X-Request-Id",
            ],
            expose_headers=EXPOSED_HEADERS,
        )
    app.add_middleware(SecurityHeadersMiddleware, hsts=settings.resolved_base_url().startswith("https://"))
    app.add_middleware(RequestLogMiddleware)
    return app
