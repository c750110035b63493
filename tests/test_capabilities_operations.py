"""/metadata declares every operation the server routes, and each operation of ours has an OperationDefinition
that the server serves and that states the parameters its handler reads.

The routes are read from the app's routing table, so an operation added to app.py (or teleexpertise/routes.py)
without a line in capabilities.OPERATIONS fails here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.routing import Route

from fhir_server import conformance
from fhir_server.app import FHIR_PREFIX
from fhir_server.config import REPO_ROOT
from fhir_server.interactions import capabilities
from fhir_server.teleexpertise import invitation, worklists
from fhir_server.validation import validate_resource

BASE = conformance.CANONICAL_BASE
OUR_FOLDERS = (REPO_ROOT / "profiles" / "operations", REPO_ROOT / "profiles" / "teleexpertise")
# Paths with a `$` that are not operations: the Bulk Data status and file URLs a kick-off answers with.
NOT_OPERATIONS = {f"{FHIR_PREFIX}/$export-status/{{job}}", f"{FHIR_PREFIX}/$export-file/{{job}}/{{name}}"}


@dataclass(frozen=True)
class OperationRoute:
    path: str
    code: str  # without `$`
    level: str  # system | type | instance
    rtype: str | None  # the literal resource type, "{type}" for a generic route, None at system level
    methods: frozenset[str]


def _routes(routes: list[Any]) -> list[Route]:
    out: list[Route] = []
    for route in routes:
        if isinstance(route, Route):
            out.append(route)
        out += _routes(getattr(route, "routes", None) or [])  # Mounts
    return out


def _operation_routes(app: Any) -> list[OperationRoute]:
    found = []
    for route in _routes(app.routes):
        if "$" not in route.path or route.path in NOT_OPERATIONS:
            continue
        assert route.path.startswith(FHIR_PREFIX + "/"), route.path
        *before, last = route.path[len(FHIR_PREFIX) + 1 :].split("/")
        assert last.startswith("$"), f"{route.path}: an operation is the last segment"
        level = {0: "system", 1: "type", 2: "instance"}[len(before)]
        methods = frozenset(route.methods or ()) - {"HEAD"}
        found.append(OperationRoute(route.path, last[1:], level, before[0] if before else None, methods))
    return found


def _declared(statement: dict[str, Any]) -> dict[str | None, dict[str, str]]:
    """None (system level) or resource type -> {operation name: definition}."""
    rest = statement["rest"][0]
    out: dict[str | None, dict[str, str]] = {None: {o["name"]: o["definition"] for o in rest.get("operation", [])}}
    for resource in rest["resource"]:
        ops = resource.get("operation", [])
        names = [o["name"] for o in ops]
        assert len(names) == len(set(names)), f"{resource['type']}: an operation declared twice"
        out[resource["type"]] = {o["name"]: o["definition"] for o in ops}
    return out


def _definition_files() -> dict[str, dict[str, Any]]:
    """Our OperationDefinitions, by canonical URL, as the files hold them."""
    out = {}
    for folder in OUR_FOLDERS:
        for path in sorted(folder.glob("OperationDefinition-*.json")):
            resource = json.loads(path.read_text())
            assert path.name == f"OperationDefinition-{resource['id']}.json"
            out[resource["url"]] = resource
    return out


def _params(definition: dict[str, Any], use: str = "in") -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in definition["parameter"] if p["use"] == use}


async def _metadata(anon_client: httpx.AsyncClient) -> dict[str, Any]:
    r = await anon_client.get("metadata")
    assert r.status_code == 200, r.text
    return r.json()


async def test_every_operation_route_is_declared_at_its_level(app: Any, anon_client: httpx.AsyncClient) -> None:
    declared = _declared(await _metadata(anon_client))
    ours = _definition_files()
    routes = _operation_routes(app)
    assert {r.code for r in routes} >= {"everything", "export", "validate", "send", "worklist", "activity-export"}
    for route in routes:
        if route.level == "system":
            assert route.code in declared[None], f"{route.path} is not in rest.operation"
            definitions = [declared[None][route.code]]
        elif route.rtype == "{type}":
            # A generic route: the handler restricts the types; at least one must declare it.
            definitions = [ops[route.code] for t, ops in declared.items() if t and route.code in ops]
            assert definitions, f"{route.path} is declared on no resource type"
        else:
            assert route.code in declared[route.rtype], f"{route.path} is not in {route.rtype}'s operations"
            definitions = [declared[route.rtype][route.code]]
        for url in definitions:
            if url in ours:  # our definitions say at which level they are invoked
                assert ours[url][route.level] is True, f"{route.path}: {url} is not a {route.level}-level operation"


async def test_every_declared_operation_is_routed(app: Any, anon_client: httpx.AsyncClient) -> None:
    routes = _operation_routes(app)
    ours = _definition_files()
    for rtype, ops in _declared(await _metadata(anon_client)).items():
        for name, url in ops.items():
            served = {
                r.level for r in routes if r.code == name and (r.rtype == rtype or (rtype and r.rtype == "{type}"))
            }
            assert served, f"{rtype or 'system'} ${name} is declared but not routed"
            if url in ours:
                levels = {lv for lv in ("system", "type", "instance") if ours[url][lv]}
                assert levels <= served, f"{rtype} ${name}: {url} says {levels}, the routes serve {served}"
                if rtype is not None:
                    assert rtype in ours[url]["resource"], f"{url} is not defined on {rtype}"
                assert ours[url]["code"] == name


async def test_standard_operations_point_to_their_official_definitions(anon_client: httpx.AsyncClient) -> None:
    declared = _declared(await _metadata(anon_client))
    bulk = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/"
    assert declared[None]["export"] == bulk + "export"
    assert declared["Patient"]["export"] == bulk + "patient-export"
    assert declared["Group"]["export"] == bulk + "group-export"
    assert declared["Patient"]["everything"] == "http://hl7.org/fhir/OperationDefinition/Patient-everything"
    for rtype in ("Patient", "Observation", "Binary", "Parameters"):
        assert declared[rtype]["validate"] == "http://hl7.org/fhir/OperationDefinition/Resource-validate"
    assert set(declared["Observation"]) == {"validate"}
    assert declared[None]["activity-export"] == f"{BASE}/OperationDefinition/tlx-activity-export"
    assert declared["Task"]["close"] != declared["ServiceRequest"]["close"]  # one definition per resource


async def test_our_definitions_are_served_and_all_declared(
    client: httpx.AsyncClient, anon_client: httpx.AsyncClient
) -> None:
    declared = {url for ops in _declared(await _metadata(anon_client)).values() for url in ops.values()}
    ours = {url for url in declared if url.startswith(BASE + "/")}
    files = _definition_files()
    assert ours == set(files), "every OperationDefinition file is declared in /metadata, and only those"
    for url, definition in files.items():
        r = await client.get(f"OperationDefinition/{definition['id']}")
        assert r.status_code == 200, (url, r.text)
        served = r.json()
        assert served["url"] == url
        assert conformance.content_hash(served) == conformance.content_hash(definition)
    found = await client.get("OperationDefinition", params={"url": f"{BASE}/OperationDefinition/tlx-task-accept"})
    assert [e["resource"]["id"] for e in found.json()["entry"]] == ["tlx-task-accept"]


def test_operation_definition_files_are_valid_and_loaded() -> None:
    loaded = conformance.load()
    assert loaded.problems == []
    for url, definition in _definition_files().items():
        assert validate_resource(definition, "OperationDefinition") == [], url
        assert url == f"{BASE}/OperationDefinition/{definition['id']}"
        assert definition["status"] == "active" and definition["version"] and definition["kind"] == "operation"
        assert loaded.get("OperationDefinition", url) == definition
        assert sum(definition[level] for level in ("system", "type", "instance")) == 1, url
        assert bool(definition.get("resource")) != definition["system"], url
        for p in definition["parameter"]:
            assert p.get("type") or p.get("part"), (url, p["name"])  # opd-1


async def test_affects_state_matches_the_http_methods(app: Any, anon_client: httpx.AsyncClient) -> None:
    """An operation that does not affect state may be invoked with GET (FHIR R4 §3.1.0.1.1): ours are GET
    exactly when they change nothing."""
    ours = _definition_files()
    declared = _declared(await _metadata(anon_client))
    for route in _operation_routes(app):
        types = [None] if route.level == "system" else [t for t in declared if t and route.code in declared[t]]
        if route.rtype not in ("{type}", None):
            types = [route.rtype]
        for rtype in types:
            definition = ours.get(declared[rtype][route.code])
            if definition is not None:
                assert definition["affectsState"] is ("GET" not in route.methods), (route.path, definition["id"])


def test_send_and_readdress_state_addressee_and_invitee() -> None:
    files = _definition_files()
    for oid in ("tlx-servicerequest-send", "tlx-servicerequest-readdress", "tlx-task-readdress"):
        params = _params(files[f"{BASE}/OperationDefinition/{oid}"])
        addressee = params["addressee"]
        assert (addressee["type"], addressee["min"], addressee["max"]) == ("Reference", 0, "*")
        assert {t.rsplit("/", 1)[1] for t in addressee["targetProfile"]} == {"Organization", "PractitionerRole"}
        invitee = params["invitee"]
        assert (invitee["min"], invitee["max"]) == (0, "*") and "type" not in invitee
        parts = {p["name"]: p for p in invitee["part"]}
        assert tuple(parts) == invitation.PARTS  # what teleexpertise/invitation.py reads
        assert (parts["email"]["min"], parts["email"]["max"]) == (1, "1")
        assert parts["given"]["max"] == "*" and parts["rpps"]["max"] == "1"
        assert _params(files[f"{BASE}/OperationDefinition/{oid}"], "out")["return"]["type"] == "Bundle"
    task_readdress = _params(files[f"{BASE}/OperationDefinition/tlx-task-readdress"])
    assert task_readdress["addressingError"]["type"] == "boolean"
    assert "addressingError" not in _params(files[f"{BASE}/OperationDefinition/tlx-servicerequest-readdress"])


def test_worklist_states_what_worklists_reads() -> None:
    definition = _definition_files()[f"{BASE}/OperationDefinition/tlx-task-worklist"]
    params = _params(definition)
    # teleexpertise/worklists.worklist_params: `list`, the filters, `_sort`, and what passes through to the search.
    assert set(params) == {"list", "type", "priority", "authored", "_sort", *worklists.PASS_THROUGH}
    assert params["list"]["max"] == "1" and all(name in params["list"]["documentation"] for name in worklists.LISTS)
    assert params["authored"]["searchType"] == "date" and params["authored"]["max"] == "*"
    assert (definition["type"], definition["instance"], definition["resource"]) == (True, False, ["Task"])


def test_task_transitions_state_their_parameters() -> None:
    files = _definition_files()

    def params(oid: str) -> dict[str, dict[str, Any]]:
        return _params(files[f"{BASE}/OperationDefinition/{oid}"])

    assert params("tlx-task-accept") == {}
    refuse = params("tlx-task-refuse")
    assert (refuse["reason"]["min"], refuse["reason"]["type"], refuse["recusation"]["type"]) == (1, "string", "boolean")
    assert params("tlx-task-respond")["response"]["type"] == "QuestionnaireResponse"
    assert set(params("tlx-task-respond")) == {"response", "conclusion", "billingCode"}
    assert set(params("tlx-task-provide-info")) == {"message", "attachment"}
    assert set(params("tlx-task-request-info")) == {"message"}
    assert set(params("tlx-task-close")) == {"side"} and params("tlx-servicerequest-close") == {}
    assert set(params("tlx-servicerequest-link-imaging")) == {"study", "candidates"}


async def test_activity_export_accepts_exactly_its_declared_parameters(client: httpx.AsyncClient) -> None:
    definition = _definition_files()[f"{BASE}/OperationDefinition/tlx-activity-export"]
    assert set(_params(definition)) == {"report", "start", "end", "month", "_format"}
    every_declared = {"report": "addressees", "start": "2020-01-01", "end": "2020-01-31", "month": "2020-01"}
    r = await client.get("$activity-export", params={**every_declared, "_format": "json"})
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == []
    r = await client.get("$activity-export", params={"start": "2020-01-01", "undeclared": "1"})
    assert r.status_code == 400 and "undeclared" in r.text


async def test_metadata_is_built_once(app: Any, anon_client: httpx.AsyncClient) -> None:
    first = await _metadata(anon_client)
    assert app.state.capability_statement is not None
    assert (await _metadata(anon_client))["date"] == first["date"]
    assert len(first["rest"][0]["operation"]) == sum(1 for op in capabilities.OPERATIONS if not op.types)


async def test_metadata_declares_smart_and_the_same_endpoints_as_smart_configuration(
    anon_client: httpx.AsyncClient,
) -> None:
    """A SMART client reading /metadata (the older discovery) finds the endpoints .well-known announces."""
    statement = (await anon_client.get("metadata")).json()
    assert "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data" in statement["instantiates"]
    security = statement["rest"][0]["security"]
    [service] = security["service"]
    assert service["coding"][0]["code"] == "SMART-on-FHIR"
    [uris] = [e for e in security["extension"] if e["url"].endswith("/oauth-uris")]
    declared = {e["url"]: e["valueUri"] for e in uris["extension"]}
    smart = (await anon_client.get(".well-known/smart-configuration")).json()
    assert declared["token"] == smart["token_endpoint"]
    assert declared["authorize"] == smart["authorization_endpoint"]
    assert (
        declared["revoke"] == smart["revocation_endpoint"] and declared["introspect"] == smart["introspection_endpoint"]
    )
