"""Our conformance resources (profiles/) are loaded at start, served as FHIR resources, listed in /metadata,
and a restart does not make new versions of them."""

from __future__ import annotations

import copy
import json

import httpx
import pytest
from asgi_lifespan import LifespanManager

from fhir_server import conformance
from fhir_server.app import create_app
from fhir_server.config import REPO_ROOT, Settings
from fhir_server.validation import validate_resource

BASE = conformance.CANONICAL_BASE
PROFILE_DIR = REPO_ROOT / "profiles" / "teleexpertise"
PROFILED = {
    "ServiceRequest": "tlx-servicerequest",
    "Task": "tlx-task",
    "DiagnosticReport": "tlx-diagnosticreport",
    "DocumentReference": "tlx-documentreference",
    "Patient": "tlx-patient",
}
QUESTIONNAIRES = [
    f"tlx-{uc}-{direction}"
    for uc, directions in {
        "tele-avc": ("request", "response"),
        "tle-urgence": ("request", "response"),
        "tle-programmee": ("request", "response"),
        "greffe-renale": ("request", "response"),
        "transfert-imagerie": ("request",),
    }.items()
    for direction in directions
]


def _files() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(PROFILE_DIR.glob("*.json"))}


def test_every_file_is_a_valid_r4_conformance_resource_and_loads() -> None:
    files = _files()
    loaded = conformance.load()
    assert loaded.problems == []
    by_key = {(r["resourceType"], r["id"]) for r in loaded.resources}
    for name, resource in files.items():
        assert name == f"{resource['resourceType']}-{resource['id']}.json"
        assert validate_resource(resource, resource["resourceType"]) == [], name
        assert resource["url"] == f"{BASE}/{resource['resourceType']}/{resource['id']}"
        assert resource["status"] == "active" and resource["version"]
        assert (resource["resourceType"], resource["id"]) in by_key
    # The implementation guide lists every other file of the package.
    ig = files["ImplementationGuide-teleexpertise.json"]
    listed = {r["reference"]["reference"] for r in ig["definition"]["resource"]}
    assert listed == {f"{r['resourceType']}/{r['id']}" for r in files.values() if r is not ig}


def test_structure_definitions_are_differential_constraints_on_their_base() -> None:
    for name, sd in _files().items():
        if sd["resourceType"] != "StructureDefinition":
            continue
        assert sd["derivation"] == "constraint", name
        assert sd["baseDefinition"] == f"http://hl7.org/fhir/StructureDefinition/{sd['type']}", name
        assert sd["differential"]["element"][0]["path"] == sd["type"], name
        assert "snapshot" not in sd, name
        for element in sd["differential"]["element"]:
            assert element["path"].split(".")[0] == sd["type"], (name, element["id"])


def test_code_systems_have_french_displays_and_definitions() -> None:
    status = _files()["CodeSystem-teledossier-status.json"]
    codes = {c["code"]: c for c in status["concept"]}
    assert list(codes) == [
        "brouillon",
        "en-attente-reponse",
        "pris-en-charge",
        "attente-info-complementaire",
        "repondu",
        "clos-requis",
        "clos-requerant",
        "refuse",
        "recuse",
        "readresse",
        "transfere",
    ]
    assert codes["attente-info-complementaire"]["display"] == "En attente d'information complémentaire"
    assert all(c["definition"] for c in codes.values())
    types = {c["code"] for c in _files()["CodeSystem-teledossier-type.json"]["concept"]}
    assert types == {"tele-avc", "tle-urgence", "tle-programmee", "greffe-renale", "transfert-imagerie", "pacs-a-pacs"}


async def test_profiles_are_readable_resources(client: httpx.AsyncClient) -> None:
    files = _files()
    r = await client.get("StructureDefinition/tlx-task")
    assert r.status_code == 200, r.text
    served = r.json()
    assert served["url"] == f"{BASE}/StructureDefinition/tlx-task"
    assert served["meta"]["versionId"] == "1"
    assert conformance.content_hash(served) == conformance.content_hash(files["StructureDefinition-tlx-task.json"])
    for name in ("CodeSystem/teledossier-status", "ValueSet/teledossier-type", "ImplementationGuide/teleexpertise"):
        assert (await client.get(name)).status_code == 200, name


async def test_questionnaires_are_found_by_url(client: httpx.AsyncClient) -> None:
    for qid in QUESTIONNAIRES:
        r = await client.get("Questionnaire", params={"url": f"{BASE}/Questionnaire/{qid}"})
        assert r.status_code == 200, r.text
        bundle = r.json()
        assert [e["resource"]["id"] for e in bundle["entry"]] == [qid]
        assert bundle["entry"][0]["resource"]["status"] == "active"
    urgence = (await client.get("Questionnaire/tlx-tle-urgence-request")).json()
    assert not any(i.get("required") for i in _all_items(urgence["item"]))
    urgence_cr = (await client.get("Questionnaire/tlx-tle-urgence-response")).json()
    assert not any(i.get("required") for i in _all_items(urgence_cr["item"]))
    greffe = (await client.get("Questionnaire/tlx-greffe-renale-request")).json()
    link_ids = {i["linkId"] for i in _all_items(greffe["item"])}
    assert {"adresse-patient", "telephone-patient", "jours-dialyse", "dates-dialyse"} <= link_ids
    transfer = (await client.get("Questionnaire/tlx-transfert-imagerie-request")).json()
    assert "commentaire" in {i["linkId"] for i in _all_items(transfer["item"])}


def _all_items(items: list[dict]) -> list[dict]:
    out = []
    for item in items:
        out.append(item)
        out.extend(_all_items(item.get("item", [])))
    return out


async def test_metadata_lists_the_profiles_and_the_guide(anon_client: httpx.AsyncClient) -> None:
    statement = (await anon_client.get("metadata")).json()
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    for rtype, sid in PROFILED.items():
        assert resources[rtype]["supportedProfile"] == [f"{BASE}/StructureDefinition/{sid}"], rtype
    assert "supportedProfile" not in resources["Observation"]
    assert statement["implementationGuide"] == [f"{BASE}/ImplementationGuide/teleexpertise"]


async def _history_total(client: httpx.AsyncClient) -> int:
    types = sorted({r["resourceType"] for r in conformance.registry().resources})
    totals = [(await client.get(f"{t}/_history", params={"_count": "1"})).json()["total"] for t in types]
    return sum(totals)


async def test_a_restart_creates_no_new_version(client: httpx.AsyncClient, settings: Settings) -> None:
    before = await _history_total(client)
    assert before == len(conformance.registry().resources)
    second = create_app(settings)  # another instance on the same database, as after a restart
    async with LifespanManager(second):
        pass
    assert await _history_total(client) == before
    r = await client.get("StructureDefinition/tlx-patient/_history")
    assert r.json()["total"] == 1


async def test_a_changed_file_makes_one_new_version_then_none(client: httpx.AsyncClient, app: object) -> None:
    store = app.state.server.store  # type: ignore[attr-defined]
    original = conformance.registry()
    changed = conformance.Conformance()
    for resource in original.resources:
        resource = copy.deepcopy(resource)
        if resource["id"] == "teledossier-type" and resource["resourceType"] == "CodeSystem":
            resource["version"] = "1.0.1"
        changed.add(resource)
    report = await conformance.publish(store, changed)
    assert report.updated == ["CodeSystem/teledossier-type"] and not report.created
    again = await conformance.publish(store, changed)
    assert not again.updated and not again.created
    assert (await client.get("CodeSystem/teledossier-type")).json()["version"] == "1.0.1"
    # Back as the files say (what the next start would do).
    restored = await conformance.publish(store, original)
    assert restored.updated == ["CodeSystem/teledossier-type"]
    assert (await client.get("CodeSystem/teledossier-type/_history")).json()["total"] == 3


async def test_a_deleted_resource_comes_back_at_start(client: httpx.AsyncClient, app: object) -> None:
    assert (await client.delete("ValueSet/organization-kind")).status_code == 204
    assert (await client.get("ValueSet/organization-kind")).status_code == 410
    report = await conformance.publish(app.state.server.store)  # type: ignore[attr-defined]
    assert report.created + report.updated == ["ValueSet/organization-kind"]
    assert (await client.get("ValueSet/organization-kind")).status_code == 200


@pytest.mark.parametrize("bad", ["not json", '{"resourceType": "ValueSet", "id": "x"}'])
def test_a_broken_file_is_skipped_and_reported(tmp_path, bad: str) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "broken.json").write_text(bad)
    good = _files()["ValueSet-teledossier-type.json"]
    (tmp_path / "good.json").write_text(json.dumps(good))
    (tmp_path / "registry.json").write_text('{"params": []}')  # not a FHIR resource: ignored silently
    loaded = conformance.load(tmp_path)
    assert [r["id"] for r in loaded.resources] == ["teledossier-type"]
    assert [name for name, _ in loaded.problems] == ["broken.json"]
