"""batch and transaction: POST [base] with a Bundle of type batch or transaction.

A batch runs each entry as its own request (through the same routes, so every rule and scope check
applies) and answers each with its own status. A transaction is all or nothing: every entry is
resolved, validated and checked before anything is written, then all its writes go through the
transaction journal (storage/transactions.py); any failure answers one OperationOutcome naming the
entry, and nothing of the transaction is ever visible.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.auth.scopes import allows
from fhir_server.context import ID_RE, ServerContext, server
from fhir_server.errors import FHIRError
from fhir_server.http import fhir_response, parse_etag, prefer_return, read_resource_body, wants_pretty
from fhir_server.interactions.body import validate_or_raise
from fhir_server.interactions.conditional import criteria_lease, parse_criteria
from fhir_server.questionnaire_validation import prefetch as prefetch_questionnaires
from fhir_server.references import walk_references
from fhir_server.search.engine import find_current
from fhir_server.storage.clock import fhir_instant, now_ms
from fhir_server.storage.store import keep_labels, new_id, stamp
from fhir_server.storage.transactions import StagedWrite
from fhir_server.validation import is_known_type

ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
ACTIONS = {"DELETE": "d", "POST": "c", "PUT": "u", "PATCH": "u", "GET": "r", "HEAD": "r"}
STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content"}


@dataclass
class Entry:
    index: int
    method: str
    rtype: str
    rid: str | None
    criteria: list[tuple[str, str]] | None
    resource: dict[str, Any] | None
    full_url: str | None
    if_match: int | None
    if_none_exist: str | None
    url: str
    # Filled in while resolving:
    target_id: str | None = None
    existing: dict[str, Any] | None = None  # current committed document, if any
    noop_status: int | None = None  # conditional create that matched: nothing to write
    staged: StagedWrite | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}]"


def entry_error(entry_index: int, exc: FHIRError) -> FHIRError:
    exc.diagnostics = f"Bundle.entry[{entry_index}]: {exc.diagnostics}"
    if not exc.expression:
        exc.expression = (f"Bundle.entry[{entry_index}]",)
    return exc


def _parse_url(index: int, method: str, url: str) -> tuple[str, str | None, list[tuple[str, str]] | None]:
    parts = urlsplit(url)
    path = parts.path.strip("/")
    if path.startswith("fhir/"):
        path = path[5:]
    segs = path.split("/") if path else []
    if not segs or not is_known_type(segs[0]):
        raise entry_error(index, FHIRError(400, f"request.url {url!r} does not name a resource type", code="invalid"))
    rtype = segs[0]
    rid = segs[1] if len(segs) > 1 else None
    if rid is not None and (not ID_RE.match(rid) or len(segs) > 2):
        raise entry_error(index, FHIRError(400, f"request.url {url!r} is not Type or Type/id", code="invalid"))
    criteria = parse_qsl(parts.query, keep_blank_values=True) if parts.query else None
    return rtype, rid, criteria


def parse_entries(bundle: dict[str, Any], max_entries: int) -> list[Entry]:
    raw = bundle.get("entry", [])
    if not isinstance(raw, list):
        raise FHIRError(400, "Bundle.entry must be an array", code="structure", expression=("Bundle.entry",))
    if len(raw) > max_entries:
        raise FHIRError(413, f"the bundle has {len(raw)} entries; the limit is {max_entries}", code="too-costly")
    entries = []
    for index, item in enumerate(raw):
        request = item.get("request") if isinstance(item, dict) else None
        if not isinstance(request, dict) or not isinstance(request.get("method"), str) or not request.get("url"):
            raise FHIRError(
                400,
                f"Bundle.entry[{index}] needs request.method and request.url",
                code="required",
                expression=(f"Bundle.entry[{index}].request",),
            )
        method = request["method"].upper()
        if method not in ORDER:
            raise entry_error(index, FHIRError(400, f"unsupported method {method}", code="not-supported"))
        rtype, rid, criteria = _parse_url(index, method, str(request["url"]))
        try:
            if_match = parse_etag(request.get("ifMatch"))
        except FHIRError as exc:
            raise entry_error(index, exc) from None
        resource = item.get("resource")
        entries.append(
            Entry(
                index,
                method,
                rtype,
                rid,
                criteria,
                resource,
                item.get("fullUrl"),
                if_match,
                request.get("ifNoneExist"),
                str(request["url"]),
            )
        )
    return entries


# ---- batch ------------------------------------------------------------------------------------------


async def _dispatch(request: Request, method: str, url: str, body: Any, headers: dict[str, str]) -> dict[str, Any]:
    """Run one entry as an HTTP request through our own routes; its response as a bundle entry."""
    parts = urlsplit(url)
    path = parts.path.strip("/")
    path = path if path.startswith("fhir/") else "fhir/" + path
    content = orjson.dumps(body) if body is not None else b""
    hdrs = {"content-type": "application/fhir+json", **headers}
    auth = request.headers.get("authorization")
    if auth:
        hdrs["authorization"] = auth
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "root_path": "",
        "path": "/" + path,
        "raw_path": ("/" + path).encode(),
        "query_string": parts.query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in hdrs.items()],
        "client": request.scope.get("client"),
        "server": request.scope.get("server"),
        "app": request.app,
    }
    sent = False
    status, out_headers, chunks = 500, {}, []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": content, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, out_headers
        if message["type"] == "http.response.start":
            status = message["status"]
            out_headers = {k.decode().lower(): v.decode() for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await request.app.router(scope, receive, send)
    payload = b"".join(chunks)
    response: dict[str, Any] = {"status": STATUS_TEXT.get(status, str(status))}
    for header, key in (("location", "location"), ("etag", "etag")):
        if header in out_headers:
            response[key] = out_headers[header]
    out: dict[str, Any] = {"response": response}
    if payload:
        parsed = orjson.loads(payload)
        if status >= 400:
            response["outcome"] = parsed
        else:
            out["resource"] = parsed
    return out


async def run_batch(request: Request, bundle: dict[str, Any]) -> dict[str, Any]:
    raw = bundle.get("entry", [])
    out = []
    for index, item in enumerate(raw):
        req = item.get("request") if isinstance(item, dict) else None
        if not isinstance(req, dict) or not req.get("method") or not req.get("url"):
            error = FHIRError(400, f"Bundle.entry[{index}] needs request.method and request.url", code="required")
            out.append({"response": {"status": "400", "outcome": error.outcome()}})
            continue
        headers = {
            name: str(req[key])
            for key, name in (
                ("ifMatch", "if-match"),
                ("ifNoneExist", "if-none-exist"),
                ("ifNoneMatch", "if-none-match"),
                ("ifModifiedSince", "if-modified-since"),
            )
            if req.get(key)
        }
        if "prefer" in request.headers:
            headers["prefer"] = request.headers["prefer"]
        out.append(await _dispatch(request, str(req["method"]).upper(), str(req["url"]), item.get("resource"), headers))
    return {"resourceType": "Bundle", "type": "batch-response", "entry": out}


# ---- transaction ------------------------------------------------------------------------------------


def _check_scope(request: Request, entries: list[Entry]) -> None:
    for e in entries:
        if e.rtype == "AuditEvent" and e.method in ("PUT", "PATCH", "DELETE"):
            raise entry_error(e.index, FHIRError(405, "AuditEvents cannot be changed or deleted", code="not-supported"))
    access = getattr(request.state, "access", None)
    if access is None:
        return
    for e in entries:
        if not allows(access.scopes, e.rtype, ACTIONS[e.method]):
            raise entry_error(
                e.index, FHIRError(403, f"the token's scopes do not allow {e.method} {e.rtype}", code="forbidden")
            )


async def _resolve_targets(ctx: ServerContext, entries: list[Entry], mapping: dict[str, str]) -> None:
    """Decide which resource each write entry touches; map fullUrls to Type/id."""
    for e in entries:
        try:
            if e.method in ("POST", "PUT", "PATCH") and not isinstance(e.resource, dict):
                if e.method != "PATCH":
                    raise FHIRError(400, f"a {e.method} entry needs a resource", code="required")
            if e.method == "POST":
                if e.rid is not None:
                    raise FHIRError(400, "POST goes to Type, not Type/id", code="invalid")
                if e.if_none_exist:
                    found = await find_current(ctx, e.rtype, parse_criteria(e.if_none_exist), limit=2, strict=True)
                    if len(found) > 1:
                        raise FHIRError(412, f"several {e.rtype} match ifNoneExist {e.if_none_exist}", code="conflict")
                    if found:
                        e.target_id, e.existing, e.noop_status = found[0]["_id"], found[0], 200
                e.target_id = e.target_id or new_id()
            elif e.method in ("PUT", "PATCH", "DELETE"):
                if e.rid is None:
                    found = await find_current(ctx, e.rtype, parse_criteria(e.criteria or []), limit=2, strict=True)
                    if len(found) > 1:
                        raise FHIRError(412, f"several {e.rtype} match {e.url}", code="conflict")
                    if found:
                        e.target_id, e.existing = found[0]["_id"], found[0]
                    elif e.method == "DELETE":
                        e.noop_status = 204
                    elif e.method == "PATCH":
                        raise FHIRError(404, f"no {e.rtype} matches {e.url}", code="not-found")
                    else:
                        e.target_id = (e.resource or {}).get("id") or new_id()
                else:
                    e.target_id = e.rid
            else:
                continue
        except FHIRError as exc:
            raise entry_error(e.index, exc) from None
        if e.full_url and e.target_id:
            mapping[e.full_url] = f"{e.rtype}/{e.target_id}"
            if e.full_url.startswith(ctx.base_url + "/"):
                mapping[e.full_url[len(ctx.base_url) + 1 :]] = f"{e.rtype}/{e.target_id}"


async def _rewrite_references(ctx: ServerContext, entries: list[Entry], mapping: dict[str, str]) -> None:
    conditional: dict[str, str | None] = {}
    for e in entries:
        if isinstance(e.resource, dict):
            walk_references(e.resource, lambda ref: conditional.setdefault(ref, None) if _is_conditional(ref) else None)
    for ref in conditional:
        rtype, _, query = ref.partition("?")
        if not is_known_type(rtype):
            raise FHIRError(400, f"conditional reference {ref!r} does not name a resource type", code="invalid")
        found = await find_current(ctx, rtype, parse_criteria(query), limit=2, strict=True)
        if len(found) != 1:
            what = "no resource matches" if not found else "several resources match"
            raise FHIRError(
                400, f"conditional reference {ref!r}: {what}", code="not-found" if not found else "multiple-matches"
            )
        conditional[ref] = f"{rtype}/{found[0]['_id']}"

    for e in entries:
        if not isinstance(e.resource, dict):
            continue
        unresolved: list[str] = []

        def visit(ref: str, unresolved: list[str] = unresolved) -> str | None:
            if ref in mapping:
                return mapping[ref]
            if ref in conditional:
                return conditional[ref]
            if ref.startswith(("urn:uuid:", "urn:oid:")):
                unresolved.append(ref)
            return None

        walk_references(e.resource, visit)
        if unresolved:
            raise entry_error(
                e.index, FHIRError(400, f"reference {unresolved[0]!r} matches no entry of the bundle", code="not-found")
            )


def _is_conditional(ref: str) -> bool:
    head = ref.split("?", 1)[0]
    return "?" in ref and "/" not in head and ":" not in head


async def _load_existing(ctx: ServerContext, entries: list[Entry]) -> None:
    """The committed current document of every entry that updates or deletes by id."""
    by_type: dict[str, list[Entry]] = {}
    for e in entries:
        if e.method in ("PUT", "PATCH", "DELETE") and e.rid is not None:
            by_type.setdefault(e.rtype, []).append(e)
    for rtype, group in by_type.items():
        coll = ctx.database.resources(rtype)
        docs = {d["_id"]: d async for d in coll.find({"_id": {"$in": [e.rid for e in group]}})}
        for e in group:
            doc = await ctx.store.tx.visible(coll, docs.get(e.rid), e.rid)
            e.existing = doc


def _plan_writes(ctx: ServerContext, entries: list[Entry]) -> list[StagedWrite]:
    import jsonpatch

    now = now_ms()
    seen: set[str] = set()
    writes: list[StagedWrite] = []
    for e in entries:
        if e.method in ("GET", "HEAD") or e.noop_status is not None:
            continue
        key = f"{e.rtype}/{e.target_id}"
        try:
            if key in seen:
                raise FHIRError(400, f"{key} is written by more than one entry", code="invalid")
            seen.add(key)
            cur = e.existing
            exists = cur is not None and not cur.get("gone") and "v" in cur
            prev_v = cur.get("v", 0) if cur else 0
            if e.if_match is not None and (not exists or prev_v != e.if_match):
                raise FHIRError(412, f"ifMatch {e.if_match} does not match {key} (version {prev_v})", code="conflict")
            if e.method == "DELETE":
                if not exists:
                    e.noop_status = 204
                    continue
                resource = None
            elif e.method == "PATCH":
                if not exists:
                    raise FHIRError(404, f"{key} is not known", code="not-found")
                resource = _apply_patch(e, cur["res"], jsonpatch)
            else:
                resource = dict(e.resource or {})
                if resource.get("resourceType") != e.rtype:
                    raise FHIRError(400, f"resourceType does not match {e.rtype}", code="invalid")
                if e.method == "PUT" and e.rid is not None and resource.get("id") not in (None, e.rid):
                    raise FHIRError(
                        400, f"resource id {resource.get('id')!r} is not the URL id {e.rid!r}", code="invalid"
                    )
                resource["id"] = e.target_id
                validate_or_raise(resource, e.rtype, model_check=False, where=f"{e.where}.resource")
            lu = now if not cur or cur.get("lu") is None or cur["lu"] < now else cur["lu"] + timedelta(milliseconds=1)
            version = prev_v + 1
            if resource is not None and exists:
                resource = keep_labels(resource, cur.get("res"), ctx.store.sticky_labels)
            stored = stamp(resource, e.target_id, version, lu) if resource is not None else None
            op = "delete" if resource is None else ("create" if not exists else "update")
            e.staged = StagedWrite(
                e.rtype,
                e.target_id,
                prev_v,
                cur is not None,
                version,
                lu,
                stored,
                ctx.store.index_fn(stored) if stored else None,
                op,
            )
            writes.append(e.staged)
        except FHIRError as exc:
            raise exc if exc.diagnostics.startswith("Bundle.entry[") else entry_error(e.index, exc) from None
    return writes


def _apply_patch(e: Entry, current: dict[str, Any], jsonpatch: Any) -> dict[str, Any]:
    import base64

    body = e.resource or {}
    if body.get("resourceType") != "Binary" or body.get("contentType") != "application/json-patch+json":
        raise FHIRError(
            400, "a PATCH entry carries a Binary with contentType application/json-patch+json", code="not-supported"
        )
    try:
        ops = orjson.loads(base64.b64decode(body.get("data", "")))
        patched = jsonpatch.JsonPatch(ops).apply(current)
    except Exception as exc:
        raise FHIRError(422, f"the patch cannot be applied: {exc}", code="processing") from None
    return validate_or_raise(patched, e.rtype, model_check=False, where=f"{e.where}.resource")


def _response_entry(ctx: ServerContext, e: Entry, minimal: bool) -> dict[str, Any]:
    if e.noop_status is not None:
        out: dict[str, Any] = {"response": {"status": STATUS_TEXT[e.noop_status]}}
        if e.existing and e.noop_status == 200:
            out["response"]["location"] = f"{e.rtype}/{e.target_id}/_history/{e.existing['v']}"
            out["response"]["etag"] = f'W/"{e.existing["v"]}"'
            if not minimal:
                out["resource"] = e.existing["res"]
        return out
    w = e.staged
    assert w is not None
    status = 204 if w.resource is None else (201 if w.op == "create" else 200)
    response = {"status": STATUS_TEXT[status], "etag": f'W/"{w.version}"', "lastModified": fhir_instant(w.lu)}
    if w.resource is not None:
        response["location"] = f"{w.resource_type}/{w.id}/_history/{w.version}"
    out = {"fullUrl": f"{ctx.base_url}/{w.resource_type}/{w.id}", "response": response}
    if w.resource is not None and not minimal:
        out["resource"] = w.resource
    return out


def _conditional_criteria(entries: list[Entry]) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    found: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for e in entries:
        if e.method == "POST" and e.if_none_exist:
            found.add((e.rtype, tuple(parse_criteria(e.if_none_exist))))
        elif e.method in ("PUT", "PATCH", "DELETE") and e.rid is None and e.criteria:
            found.add((e.rtype, tuple(parse_criteria(e.criteria))))
    return found


async def run_transaction(request: Request, ctx: ServerContext, bundle: dict[str, Any]) -> dict[str, Any]:
    entries = parse_entries(bundle, ctx.settings.max_bundle_entries)
    _check_scope(request, entries)
    ordered = sorted(entries, key=lambda e: (ORDER[e.method], e.index))
    mapping: dict[str, str] = {}
    async with contextlib.AsyncExitStack() as leases:
        # Conditional entries hold the same leases as single conditional requests until the commit, so a
        # concurrent conditional create with the same criteria cannot create a duplicate meanwhile.
        # Taken in one global order, so two transactions never wait for each other in a cycle.
        for rtype, criteria in sorted(_conditional_criteria(ordered)):
            await leases.enter_async_context(criteria_lease(ctx, rtype, list(criteria)))
        await _resolve_targets(ctx, ordered, mapping)
        await _rewrite_references(ctx, ordered, mapping)
        await _load_existing(ctx, ordered)
        # QuestionnaireResponses are validated against their Questionnaire: fetch those first (bodies, patch targets).
        bodies = [e.resource for e in ordered] + [(e.existing or {}).get("res") for e in ordered if e.method == "PATCH"]
        await prefetch_questionnaires(ctx, bodies, companions=[e.resource for e in ordered])
        writes = _plan_writes(ctx, ordered)
        if writes:
            await ctx.store.tx.run(writes, now_ms())
    minimal = prefer_return(request) != "representation"
    results: dict[int, dict[str, Any]] = {}
    for e in ordered:
        if e.method in ("GET", "HEAD"):
            results[e.index] = await _dispatch(request, "GET", e.url, None, {})
        else:
            results[e.index] = _response_entry(ctx, e, minimal)
    return {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [results[i] for i in range(len(entries))],
    }


async def bundle(request: Request) -> Response:
    ctx = server(request)
    body = await read_resource_body(request, ctx.settings.max_body_bytes)
    if body.get("resourceType") != "Bundle":
        raise FHIRError(400, "POST to the base URL takes a Bundle of type batch or transaction", code="invalid")
    kind = body.get("type")
    if kind == "batch":
        result = await run_batch(request, body)
    elif kind == "transaction":
        result = await run_transaction(request, ctx, body)
    else:
        raise FHIRError(
            400, f"Bundle.type must be batch or transaction, not {kind!r}", code="invalid", expression=("Bundle.type",)
        )
    return fhir_response(result, 200, pretty=wants_pretty(request))
