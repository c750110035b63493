"""The REST interactions on dossier and annuaire resources, with the téléexpertise rules in front.

These handlers take the routes of the generic ones (`POST/PUT/PATCH/DELETE [type]`, bundles, history) and
hand every request over to them (interactions/*.py) once the rules below hold, so every generic rule
(validation, profiles, If-Match, patient context, audit) still applies. Requests on other types go
straight through.

- Annuaire (Organization, Practitioner, PractitionerRole), every token: a structure has a FINESS
  géographique or SIRET, a communauté exactly one parent structure, roles a known profile (422);
  téléexpertise users: only administrators write, local ones within their structure (403).
- Dossier resources (access.GOVERNED), every token: the access list in `meta.security` is the server's: an
  update keeps the current one whatever the body says (and JSON Patch cannot touch it).
- Dossier resources, every user token: the fields the state machine owns (workflow.GUARDED_*) cannot be
  changed by PUT/PATCH (409: use the operations). System clients (SMART backend services: data migration
  from TéléO, interfaces) are trusted with them, as with the rest of the data.
- Cotations (ChargeItem) written by téléexpertise users: teleexpertise/billing.py (requis side, answered Task,
  the bureau des entrées marks them billed).
- Dossier resources, téléexpertise users: what they cannot see answers 404 on update/patch/delete/history;
  a create gets the access list of the dossier it points to (plus its author), and pointing to a dossier or
  patient they cannot see is refused (422, "not known"); a dossier ServiceRequest is created as a draft in
  an author context (dossier_create.py); Tasks come from `$send` (409); the bureau des entrées writes
  nothing (403); conditional writes and transaction bundles touching these types are refused (403: their
  matching would run over resources the user cannot see), type and system history too.
System tokens keep their full power (data migration, integrations): they may set an access list on a
resource that has none.
"""

from __future__ import annotations

import contextlib
from typing import Any

import jsonpatch
import orjson
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.auth.policy import dossier_principal, request_policy
from fhir_server.context import ServerContext, query_items, resource_id_of, resource_type_of, server
from fhir_server.errors import FHIRError
from fhir_server.http import read_limited_body
from fhir_server.interactions import binary
from fhir_server.interactions import bundle as bundle_
from fhir_server.interactions import create as create_
from fhir_server.interactions import delete as delete_
from fhir_server.interactions import history as history_
from fhir_server.interactions import patch as patch_
from fhir_server.interactions import update as update_
from fhir_server.interactions.conditional import parse_criteria
from fhir_server.references import relative_references
from fhir_server.search.engine import find_current
from fhir_server.teleexpertise import access, billing
from fhir_server.teleexpertise.changes import Changes, retrying
from fhir_server.teleexpertise.codes import (
    EXT_BUSINESS_STATUS,
    EXT_CLOSED_BY_REQUESTED,
    EXT_CLOSED_BY_REQUESTER,
    extension_value,
    is_dossier,
    is_dossier_task,
    reference_of,
)
from fhir_server.teleexpertise.directory import (
    Principal,
    check_directory_write,
    check_organization,
    check_practitioner_role,
)
from fhir_server.teleexpertise.workflow import GUARDED_REQUEST_FIELDS, GUARDED_TASK_FIELDS

WATCHED = access.GOVERNED | access.DIRECTORY
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


# ---- helpers ----------------------------------------------------------------------------------------


async def _principal(ctx: ServerContext, request: Request) -> Principal | None:
    return await dossier_principal(ctx, request_policy(request))


def _user_token(request: Request) -> bool:
    """A user's token (not a system client's): the state machine binds it."""
    return request_policy(request).user is not None


async def _json_body(request: Request, ctx: ServerContext) -> Any:
    """The parsed body, kept on the request so the interaction that runs next reads the same bytes
    (None when it is not JSON: that interaction answers the error)."""
    # Kept in Starlette's own cache: request.stream() replays it for the interaction that runs next.
    request._body = await read_limited_body(request, ctx.settings.max_body_bytes)
    try:
        return orjson.loads(request._body)
    except orjson.JSONDecodeError:
        return None


def _replace_body(request: Request, resource: dict[str, Any]) -> None:
    request._body = orjson.dumps(resource)


def visible_to(principal: Principal, resource: dict[str, Any]) -> bool:
    return principal.regional_admin or bool(access.acl(resource) & set(access.user_codes(principal)))


def _created_id(response: Response) -> str | None:
    location = response.headers.get("location") or ""
    parts = location.split("/_history/")[0].rstrip("/").split("/")
    return parts[-1] if len(parts) >= 2 else None


async def _live(ctx: ServerContext, rtype: str, rid: str) -> dict[str, Any] | None:
    doc = await ctx.store.current(rtype, rid)
    return doc if doc and doc.get("res") else None


def _refuse_be(principal: Principal | None) -> None:
    if principal is not None and principal.be_only:
        raise FHIRError(403, "a bureau des entrées does not write dossier resources", code="forbidden")


async def extend_acl(ctx: ServerContext, rtype: str, rid: str, codes: set[str]) -> None:
    """Add access codes to a resource's list (a new version; nothing when it holds them already)."""

    async def step() -> None:
        doc = await _live(ctx, rtype, rid)
        if doc is None or codes <= access.acl(doc["res"]):
            return
        changes = Changes(ctx)
        changes.update(rtype, doc, access.with_acl(doc["res"], access.acl(doc["res"]) | codes))
        await changes.commit()

    await retrying(step)


async def derived_codes(
    ctx: ServerContext, principal: Principal, resource: dict[str, Any]
) -> tuple[set[str], list[str]]:
    """(access codes of a resource a téléexpertise user creates, the dossiers it belongs to).

    Its author, plus the access list of every dossier it points to (directly, or through a Task). Pointing
    to a dossier resource the user cannot see is refused as if it did not exist."""
    codes = {principal.practitioner}
    dossiers: list[str] = []
    for ref in sorted(relative_references(resource)):
        rtype, _, rid = ref.partition("/")
        if rtype not in access.GOVERNED or rtype == "Binary":
            continue
        doc = await _live(ctx, rtype, rid)
        if doc is None:
            continue  # a dangling reference links to nothing
        if not visible_to(principal, doc["res"]):
            raise FHIRError(422, f"the reference {ref} is not known", code="not-found")
        sr = doc["res"] if rtype == "ServiceRequest" else None
        if rtype == "Task" and is_dossier_task(doc["res"]):
            focus = reference_of(doc["res"].get("focus"))
            if focus and focus.startswith("ServiceRequest/"):
                found = await _live(ctx, "ServiceRequest", focus.split("/", 1)[1])
                sr = found["res"] if found else None
        if sr is not None and is_dossier(sr):
            codes |= access.dossier_codes(sr)
            dossiers.append(f"ServiceRequest/{sr['id']}")
    return codes, dossiers


async def after_create(
    ctx: ServerContext, principal: Principal, rtype: str, rid: str, resource: dict[str, Any], dossiers: list[str]
) -> None:
    """Once a dossier resource exists: catch up with a $send that ran meanwhile (its grants missed the new
    resource), and share the Binaries its attachments point to (those the user can see) with it."""
    codes = access.acl(resource)
    for ref in dossiers:
        sr = await _live(ctx, "ServiceRequest", ref.split("/", 1)[1])
        if sr is not None:
            codes |= access.dossier_codes(sr["res"])
    if codes - access.acl(resource):
        await extend_acl(ctx, rtype, rid, codes)
    for bid in access.attachment_binaries(resource):
        doc = await _live(ctx, "Binary", bid)
        if doc is not None and visible_to(principal, doc["res"]):
            await extend_acl(ctx, "Binary", bid, codes)


def check_guarded_fields(rtype: str, current: dict[str, Any], new: dict[str, Any]) -> None:
    """PUT cannot move the state machine: the fields it owns must be left as they are (409)."""
    if rtype == "Task" and (is_dossier_task(current) or is_dossier_task(new)):
        for name in GUARDED_TASK_FIELDS:
            if current.get(name) != new.get(name):
                raise FHIRError(
                    409,
                    f"Task.{name} of a téléexpertise Task is changed by its operations ($accept, $request-info, "
                    "$provide-info, $respond, $close, $refuse, $readdress), not by an update",
                    code="business-rule",
                    expression=(f"Task.{name}",),
                )
        for url in (EXT_CLOSED_BY_REQUESTED, EXT_CLOSED_BY_REQUESTER):
            if extension_value(current, url) != extension_value(new, url):
                raise FHIRError(409, "closing a Task is done with $close", code="business-rule")
    if rtype == "ServiceRequest" and (is_dossier(current) or is_dossier(new)):
        draft = current.get("status") == "draft"
        names = ("status", "requester", "intent") if draft else (*GUARDED_REQUEST_FIELDS, "subject")
        for name in names:
            if current.get(name) != new.get(name):
                raise FHIRError(
                    409,
                    f"ServiceRequest.{name} of a télédossier is changed by its operations ($send, $readdress, "
                    "$close), not by an update",
                    code="business-rule",
                    expression=(f"ServiceRequest.{name}",),
                )
        for url in (EXT_BUSINESS_STATUS, EXT_CLOSED_BY_REQUESTER):
            if extension_value(current, url) != extension_value(new, url):
                raise FHIRError(409, "the dossier's status is changed by its operations", code="business-rule")


def _patch_paths(ops: list[Any]) -> list[str]:
    paths: list[str] = []
    for op in ops:
        if isinstance(op, dict):
            paths += [p for p in (op.get("path"), op.get("from")) if isinstance(p, str)]
    return paths


def check_guarded_patch(rtype: str, current: dict[str, Any], ops: list[Any], *, managed_acl: bool, state: bool) -> None:
    """A patch touches neither the server's access list nor (for users: `state`) the state machine's fields."""
    paths = _patch_paths(ops)
    if managed_acl and any(p in ("", "/", "/meta") or p.startswith("/meta/security") for p in paths):
        raise FHIRError(
            403, "the access list (meta.security) of a dossier resource is managed by the server", code="forbidden"
        )
    if not state:
        return
    guarded: tuple[str, ...] = ()
    if rtype == "Task" and is_dossier_task(current):
        guarded = (*GUARDED_TASK_FIELDS, "extension")
    elif rtype == "ServiceRequest" and is_dossier(current):
        draft = current.get("status") == "draft"
        guarded = (
            ("status", "requester", "intent", "extension")
            if draft
            else (*GUARDED_REQUEST_FIELDS, "subject", "extension")
        )
    for path in paths:
        head = path.strip("/").split("/")[0]
        if path in ("", "/") or head in guarded:
            raise FHIRError(
                409,
                f"{rtype}.{head or '(root)'} is changed by the workflow operations, not by a patch",
                code="business-rule",
            )


async def check_directory(
    ctx: ServerContext, principal: Principal | None, rtype: str, new: dict[str, Any] | None, old: dict[str, Any] | None
) -> None:
    if new is not None and rtype == "Organization":
        await check_organization(ctx, new)
    if new is not None and rtype == "PractitionerRole":
        await check_practitioner_role(ctx, new)
    await check_directory_write(ctx, principal, rtype, new, old)


async def _requerant_or_403(ctx: ServerContext, principal: Principal, sr: dict[str, Any]) -> None:
    from fhir_server.teleexpertise.dossier import Actor, is_requerant

    if not await is_requerant(ctx, Actor(principal, "", ""), sr):
        raise FHIRError(403, "only the requérant side changes a télédossier", code="forbidden")


# ---- create -----------------------------------------------------------------------------------------


async def create(request: Request) -> Response:
    ctx, rtype = server(request), resource_type_of(request)
    if (answered := await billing.intercept(request, "create")) is not None:
        return answered  # a cotation (ChargeItem) by a téléexpertise user: billing.py
    if rtype not in WATCHED:
        return await create_.create(request)
    principal = await _principal(ctx, request)
    if rtype == "Binary" and binary.is_raw_body(request):
        return await _raw_binary(request, ctx, principal, None)
    body = await _json_body(request, ctx)
    if not isinstance(body, dict) or body.get("resourceType") != rtype:
        return await create_.create(request)
    if rtype in access.DIRECTORY:
        await check_directory(ctx, principal, rtype, body, None)
        return await create_.create(request)
    if principal is None:
        return await create_.create(request)
    _refuse_be(principal)
    if rtype == "ServiceRequest":
        from fhir_server.teleexpertise.dossier_create import create_dossier

        return await create_dossier(request, ctx, principal, body)
    if rtype == "Task" and is_dossier_task(body):
        raise FHIRError(409, "téléexpertise Tasks are created by ServiceRequest/[id]/$send", code="business-rule")
    codes, dossiers = await derived_codes(ctx, principal, body)
    body = access.with_acl(body, codes)
    if request.headers.get("if-none-exist") is not None:
        # The generic conditional create would match (and return) resources this user cannot see.
        raise FHIRError(
            400, "If-None-Exist is not available on dossier resources for téléexpertise users", code="not-supported"
        )
    _replace_body(request, body)
    response = await create_.create(request)
    rid = _created_id(response)
    if response.status_code == 201 and rid:
        await after_create(ctx, principal, rtype, rid, body, dossiers)
    return response


async def _raw_binary(request: Request, ctx: ServerContext, principal: Principal | None, rid: str | None) -> Response:
    """A streamed Binary upload: the content never passes here; its access list is set once it is stored
    (until then it is invisible to téléexpertise users, which is the safe side)."""
    current = await _live(ctx, "Binary", rid) if rid else None
    if principal is not None:
        _refuse_be(principal)
        if current is not None and not visible_to(principal, current["res"]):
            raise FHIRError(404, f"Binary/{rid} is not known", code="not-found")
    response = await (update_.update(request) if rid else create_.create(request))
    stored = rid or _created_id(response)
    if response.status_code >= 300 or not stored:
        return response
    codes = access.acl(current["res"]) if current else set()
    if principal is not None:
        codes.add(principal.practitioner)
        context = request.headers.get("x-security-context")
        if context:
            found, _ = await derived_codes(ctx, principal, {"securityContext": {"reference": context.strip()}})
            codes |= found
    if codes:
        await extend_acl(ctx, "Binary", stored, codes)
    return response


# ---- update, patch, delete --------------------------------------------------------------------------


async def update(request: Request) -> Response:
    ctx, rtype = server(request), resource_type_of(request)
    if (answered := await billing.intercept(request, "update")) is not None:
        return answered  # a cotation (ChargeItem) by a téléexpertise user: billing.py
    if rtype not in WATCHED:
        return await update_.update(request)
    rid = resource_id_of(request)
    principal = await _principal(ctx, request)
    if rtype == "Binary" and binary.is_raw_body(request):
        return await _raw_binary(request, ctx, principal, rid)
    body = await _json_body(request, ctx)
    if not isinstance(body, dict) or body.get("resourceType") != rtype:
        return await update_.update(request)
    current = await _live(ctx, rtype, rid)
    cur = current["res"] if current else None
    if rtype in access.DIRECTORY:
        await check_directory(ctx, principal, rtype, {**body, "id": rid}, cur)
        return await update_.update(request)
    dossiers: list[str] = []
    if principal is not None:
        _refuse_be(principal)
        if cur is not None and not visible_to(principal, cur):
            raise FHIRError(404, f"{rtype}/{rid} is not known", code="not-found")
        if cur is None:
            if rtype == "ServiceRequest" or (rtype == "Task" and is_dossier_task(body)):
                raise FHIRError(409, f"a téléexpertise {rtype} is not created by an update", code="business-rule")
            codes, dossiers = await derived_codes(ctx, principal, body)
            body = access.with_acl(body, codes)
        else:
            if rtype == "ServiceRequest" and is_dossier(cur):
                await _requerant_or_403(ctx, principal, cur)
            # What it points to must be visible: a reference is how a dossier shares a resource.
            await derived_codes(ctx, principal, body)
    if cur is not None:
        if _user_token(request):
            check_guarded_fields(rtype, cur, body)
        if access.acl(cur) or principal is not None:
            body = access.with_acl(body, access.acl(cur))  # the server's list, whatever the body says
    _replace_body(request, body)
    response = await update_.update(request)
    if principal is not None and cur is None and response.status_code == 201:
        await after_create(ctx, principal, rtype, rid, body, dossiers)
    return response


async def patch(request: Request) -> Response:
    ctx, rtype = server(request), resource_type_of(request)
    if (answered := await billing.intercept(request, "patch")) is not None:
        return answered  # a cotation (ChargeItem) by a téléexpertise user: billing.py
    if rtype not in WATCHED:
        return await patch_.patch(request)
    rid = resource_id_of(request)
    principal = await _principal(ctx, request)
    ops = await _json_body(request, ctx)
    current = await _live(ctx, rtype, rid)
    if not isinstance(ops, list) or current is None:
        return await patch_.patch(request)
    cur = current["res"]
    if rtype in access.DIRECTORY:
        try:
            patched = jsonpatch.JsonPatch(ops).apply(cur)
        except Exception:
            return await patch_.patch(request)  # answers the patch's own error
        await check_directory(ctx, principal, rtype, patched, cur)
        return await patch_.patch(request)
    if principal is not None:
        _refuse_be(principal)
        if not visible_to(principal, cur):
            raise FHIRError(404, f"{rtype}/{rid} is not known", code="not-found")
        if rtype == "ServiceRequest" and is_dossier(cur):
            await _requerant_or_403(ctx, principal, cur)
        try:
            patched = jsonpatch.JsonPatch(ops).apply(cur)
        except Exception:
            patched = None  # the generic patch answers its own error
        if isinstance(patched, dict):
            await derived_codes(ctx, principal, patched)
    check_guarded_patch(
        rtype, cur, ops, managed_acl=bool(access.acl(cur)) or principal is not None, state=_user_token(request)
    )
    return await patch_.patch(request)


async def delete(request: Request) -> Response:
    ctx, rtype = server(request), resource_type_of(request)
    if (answered := await billing.intercept(request, "delete")) is not None:
        return answered  # a cotation (ChargeItem) by a téléexpertise user: billing.py
    if rtype not in WATCHED:
        return await delete_.delete(request)
    rid = resource_id_of(request)
    principal = await _principal(ctx, request)
    current = await _live(ctx, rtype, rid)
    cur = current["res"] if current else None
    if rtype in access.DIRECTORY:
        if cur is not None:
            await check_directory_write(ctx, principal, rtype, None, cur)
        return await delete_.delete(request)
    if principal is not None and cur is not None:
        _refuse_be(principal)
        if not visible_to(principal, cur):
            raise FHIRError(404, f"{rtype}/{rid} is not known", code="not-found")
        if rtype == "Task" and is_dossier_task(cur):
            raise FHIRError(
                409, "a téléexpertise Task ends through its operations, it is not deleted", code="business-rule"
            )
        if rtype == "ServiceRequest" and is_dossier(cur):
            if cur.get("status") != "draft":
                raise FHIRError(409, "only a draft télédossier can be deleted", code="business-rule")
            await _requerant_or_403(ctx, principal, cur)
    return await delete_.delete(request)


# ---- conditional writes, bundles, history -----------------------------------------------------------


async def _conditional_guard(request: Request) -> tuple[ServerContext, str, Principal | None]:
    ctx, rtype = server(request), resource_type_of(request)
    principal = await _principal(ctx, request) if rtype in WATCHED else None
    if principal is not None:
        raise FHIRError(
            403,
            f"conditional writes on {rtype} are not available to téléexpertise users: write by id",
            code="forbidden",
        )
    return ctx, rtype, principal


async def conditional_update(request: Request) -> Response:
    ctx, rtype, _ = await _conditional_guard(request)
    if rtype in WATCHED:
        body = await _json_body(request, ctx)
        if isinstance(body, dict) and body.get("resourceType") == rtype:
            if rtype == "Organization":
                await check_organization(ctx, body)
            elif rtype == "PractitionerRole":
                await check_practitioner_role(ctx, body)
            elif rtype in access.GOVERNED:
                found = await find_current(ctx, rtype, parse_criteria(query_items(request)), limit=2, strict=False)
                if len(found) == 1 and found[0].get("res"):
                    if _user_token(request):
                        check_guarded_fields(rtype, found[0]["res"], body)
                    if access.acl(found[0]["res"]):
                        _replace_body(request, access.with_acl(body, access.acl(found[0]["res"])))
    return await update_.conditional_update(request)


async def conditional_patch(request: Request) -> Response:
    await _conditional_guard(request)
    return await patch_.conditional_patch(request)


async def conditional_delete(request: Request) -> Response:
    await _conditional_guard(request)
    return await delete_.conditional_delete(request)


async def bundle(request: Request) -> Response:
    ctx = server(request)
    principal = await _principal(ctx, request)
    if principal is not None:
        body = await _json_body(request, ctx)
        if isinstance(body, dict) and body.get("resourceType") == "Bundle" and body.get("type") == "transaction":
            for index, item in enumerate(body.get("entry") or []):
                req = item.get("request") if isinstance(item, dict) else None
                if not isinstance(req, dict) or str(req.get("method", "")).upper() not in WRITE_METHODS:
                    continue
                path = str(req.get("url", "")).split("?")[0].strip("/")
                rtype = path.removeprefix("fhir/").split("/")[0]
                if rtype in WATCHED:
                    raise FHIRError(
                        403,
                        f"Bundle.entry[{index}]: téléexpertise users write {rtype} one request at a time "
                        "(or in a batch), not in a transaction",
                        code="forbidden",
                    )
    return await bundle_.bundle(request)


async def instance_history(request: Request) -> Response:
    ctx, rtype = server(request), resource_type_of(request)
    if rtype in access.GOVERNED:
        principal = await _principal(ctx, request)
        if principal is not None:
            if principal.be_only and rtype in access.CLINICAL:
                raise FHIRError(403, f"a bureau des entrées does not see {rtype} (medical data)", code="forbidden")
            rid = resource_id_of(request)
            current = await ctx.store.current(rtype, rid)
            last = current.get("res") if current else None
            if current is not None and current.get("gone") and current["v"] > 1:
                # A deleted resource: its last version says who saw it.
                with contextlib.suppress(FHIRError):
                    last = (await ctx.store.vread(rtype, rid, current["v"] - 1)).resource
            if last is not None and not visible_to(principal, last):
                raise FHIRError(404, f"{rtype}/{rid} is not known", code="not-found")
    return await history_.instance_history(request)


async def type_history(request: Request) -> Response:
    ctx, rtype = server(request), resource_type_of(request)
    if rtype in access.GOVERNED:
        principal = await _principal(ctx, request)
        if principal is not None and not principal.regional_admin:
            raise FHIRError(
                403, f"the history of every {rtype} is not available to téléexpertise users", code="forbidden"
            )
    return await history_.type_history(request)


async def system_history(request: Request) -> Response:
    principal = await _principal(server(request), request)
    if principal is not None and not principal.regional_admin:
        raise FHIRError(403, "the system history is not available to téléexpertise users", code="forbidden")
    return await history_.system_history(request)
