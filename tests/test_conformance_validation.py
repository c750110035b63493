"""Resources that claim our profiles are validated against them on every write (create, update, patch,
transaction), and by $validate; claims of profiles we do not hold are accepted."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from fhir_server.conformance import CANONICAL_BASE, Conformance
from fhir_server.profile_validation import profile_issues
from tests.conftest import FIXTURES
from tests.helpers import FHIR_JSON, outcome_of, post, put

SD = f"{CANONICAL_BASE}/StructureDefinition"
CS = f"{CANONICAL_BASE}/CodeSystem"
FRC = "https://hl7.fr/ig/fhir/core"


def example(rtype: str) -> dict[str, Any]:
    resource = json.loads((FIXTURES / "teleexpertise" / f"{rtype}-tlx-example.json").read_text())
    resource.pop("id")
    return resource


def _set(**changes: Any) -> Callable[[dict[str, Any]], None]:
    def apply(r: dict[str, Any]) -> None:
        for key, value in changes.items():
            if value is None:
                r.pop(key, None)
            else:
                r[key] = value

    return apply


def _ext(url: str, **value: Any) -> dict[str, Any]:
    return {"url": url, **value}


INS_NIR = {"use": "official", "system": "urn:oid:1.2.250.1.213.1.4.8", "value": "279035121518989"}
INS_TYPE = {"coding": [{"system": f"{FRC}/CodeSystem/fr-core-cs-v2-0203", "code": "INS-NIR"}]}

# (type, change to the valid example, expected FHIRPath of the first problem)
INVALID: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("ServiceRequest", _set(identifier=None), "ServiceRequest.identifier"),
    ("ServiceRequest", _set(intent="plan"), "ServiceRequest.intent"),
    ("ServiceRequest", _set(priority=None), "ServiceRequest.priority"),
    ("ServiceRequest", _set(requester=None), "ServiceRequest.requester"),
    ("ServiceRequest", _set(requester={"reference": "Practitioner/p1"}), "ServiceRequest.requester.reference"),
    ("ServiceRequest", _set(subject={"reference": "Group/g1"}), "ServiceRequest.subject.reference"),
    ("ServiceRequest", _set(category=None), "ServiceRequest.category"),
    (
        "ServiceRequest",
        _set(category=[{"coding": [{"system": f"{CS}/teledossier-type", "code": "teleconsultation"}]}]),
        "ServiceRequest.category[0]",
    ),
    (
        "ServiceRequest",
        _set(extension=[_ext(f"{SD}/tlx-ext-delegating-practitioner", valueString="Dr Who")]),
        "ServiceRequest.extension[0].value",
    ),
    ("Task", _set(owner=None), "Task.owner"),
    ("Task", _set(focus=None), "Task.focus"),
    ("Task", _set(basedOn=None), "Task.basedOn"),
    ("Task", _set(focus={"reference": "Patient/p1"}), "Task.focus.reference"),
    ("Task", _set(businessStatus=None), "Task.businessStatus"),
    (
        "Task",
        _set(businessStatus={"coding": [{"system": f"{CS}/teledossier-status", "code": "fini"}]}),
        "Task.businessStatus",
    ),
    ("Task", _set(businessStatus={"text": "répondu"}), "Task.businessStatus"),
    ("Task", _set(owner={"reference": "Patient/p1"}), "Task.owner.reference"),
    (
        "Task",
        _set(extension=[_ext(f"{SD}/tlx-ext-closed-by-requested", valueBoolean=True)]),
        "Task.extension[0].value",
    ),
    (
        "Task",
        _set(
            extension=[
                _ext(f"{SD}/tlx-ext-closed-by-requested", valueDateTime="2025-06-02"),
                _ext(f"{SD}/tlx-ext-closed-by-requested", valueDateTime="2025-06-03"),
            ]
        ),
        "Task.extension[1]",
    ),
    ("DiagnosticReport", _set(basedOn=None), "DiagnosticReport.basedOn"),
    (
        "DiagnosticReport",
        _set(code={"coding": [{"system": "http://loinc.org", "code": "11488-4"}]}),
        "DiagnosticReport.code",
    ),
    (
        "DiagnosticReport",
        _set(presentedForm=[{"contentType": "text/plain", "data": base64.b64encode(b"CR").decode()}]),
        "DiagnosticReport.presentedForm",
    ),
    ("DiagnosticReport", _set(performer=None), "DiagnosticReport.performer"),
    ("DocumentReference", _set(context={"period": {"start": "2025-06-02"}}), "DocumentReference.context.related"),
    ("DocumentReference", _set(context=None), "DocumentReference.context"),
    (
        "DocumentReference",
        _set(content=[{"attachment": {"contentType": "application/xml", "url": "Binary/cda"}}]),
        "DocumentReference.content",
    ),
    ("DocumentReference", _set(type=None), "DocumentReference.type"),
    (
        "Patient",
        _set(identifier=[{"system": "urn:oid:1.2.250.1.213.1.4.8", "value": "1"}]),
        "Patient.identifier[0].use",
    ),
    ("Patient", _set(identifier=[INS_NIR]), "Patient.identifier[0].type"),
    (
        "Patient",
        _set(
            extension=[
                _ext(f"{SD}/tlx-ext-identity-unknown", valueBoolean=True),
                _ext(f"{SD}/tlx-ext-identity-unknown", valueBoolean=False),
            ]
        ),
        "Patient.extension[1]",
    ),
    (
        "Patient",
        _set(identifier=[dict(INS_NIR, type={"coding": [{"system": "http://x", "code": "INS-NIR"}]})]),
        "Patient.identifier[0].type",
    ),
    ("Patient", _set(multipleBirthInteger=None, multipleBirthBoolean=True), "Patient.multipleBirth"),
    (
        "Patient",
        _set(
            extension=[
                _ext(
                    "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
                    valueAddress={
                        "extension": [
                            _ext(f"{FRC}/StructureDefinition/fr-core-address-insee-code", valueString="31555")
                        ]
                    },
                )
            ]
        ),
        "Patient.extension[0].value.extension[0].value",
    ),
    (
        "Patient",
        _set(extension=[_ext(f"{SD}/tlx-ext-identity-unknown", valueString="oui")]),
        "Patient.extension[0].value",
    ),
    (
        "Patient",
        _set(
            extension=[
                _ext(
                    f"{FRC}/StructureDefinition/fr-core-identity-reliability",
                    extension=[{"url": "identityStatus", "valueCode": "VALI"}],
                )
            ]
        ),
        "Patient.extension[0].extension[0].value",
    ),
]


@pytest.mark.parametrize("rtype", ["Patient", "ServiceRequest", "Task", "DiagnosticReport", "DocumentReference"])
async def test_the_valid_examples_are_accepted(client: httpx.AsyncClient, rtype: str) -> None:
    r = await post(client, example(rtype))
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(("rtype", "change", "expression"), INVALID, ids=[f"{t}-{e}" for t, _, e in INVALID])
async def test_an_invalid_resource_is_refused_with_the_element(
    client: httpx.AsyncClient, rtype: str, change: Callable[[dict[str, Any]], None], expression: str
) -> None:
    resource = example(rtype)
    change(resource)
    before = (await client.get(f"{rtype}/_history", params={"_count": "1"})).json()["total"]
    r = await post(client, resource)
    assert r.status_code == 422, r.text
    issues = outcome_of(r)["issue"]
    assert any(expression in i.get("expression", []) for i in issues), issues
    assert all(i["severity"] == "error" for i in issues)
    assert any("profile" in i["diagnostics"] for i in issues)
    assert (await client.get(f"{rtype}/_history", params={"_count": "1"})).json()["total"] == before


async def test_several_ins_identifiers_follow_fr_core(client: httpx.AsyncClient) -> None:
    patient = example("Patient")
    patient["identifier"] = [
        dict(INS_NIR, type=INS_TYPE),
        dict(INS_NIR, type=INS_TYPE, use="old", value="279035121518990"),
        {"use": "official", "system": "urn:oid:1.2.250.1.213.1.4.9", "value": "179035121518989",
         "type": {"coding": [{"system": f"{FRC}/CodeSystem/fr-core-cs-v2-0203", "code": "INS-NIA"}]}},
    ]  # fmt: skip
    assert (await post(client, patient)).status_code == 201
    patient["identifier"][2]["type"]["coding"][0]["code"] = "INS-NIR"  # the NIA slice is found by its OID
    r = await post(client, patient)
    assert r.status_code == 422
    assert outcome_of(r)["issue"][0]["expression"] == ["Patient.identifier[2].type"]


async def test_an_unknown_identity_needs_no_trait(client: httpx.AsyncClient) -> None:
    patient = {
        "resourceType": "Patient",
        "meta": {"profile": [f"{SD}/tlx-patient"]},
        "extension": [_ext(f"{SD}/tlx-ext-identity-unknown", valueBoolean=True)],
    }
    assert (await post(client, patient)).status_code == 201


async def test_the_same_resource_without_the_claim_is_not_profiled(client: httpx.AsyncClient) -> None:
    task = example("Task")
    task.pop("meta")
    task.pop("owner")
    task["intent"] = "plan"
    assert (await post(client, task)).status_code == 201


async def test_unknown_profiles_are_accepted(client: httpx.AsyncClient) -> None:
    patient = {
        "resourceType": "Patient",
        "meta": {
            "profile": [f"{FRC}/StructureDefinition/fr-core-patient-ins", "http://example.org/StructureDefinition/x"]
        },
        "name": [{"family": "Martin"}],
    }
    assert (await post(client, patient)).status_code == 201


async def test_claiming_a_profile_of_another_type_is_refused(client: httpx.AsyncClient) -> None:
    patient = {"resourceType": "Patient", "meta": {"profile": [f"{SD}/tlx-task"]}}
    r = await post(client, patient)
    assert r.status_code == 422
    assert outcome_of(r)["issue"][0]["expression"] == ["Patient.meta.profile"]


async def test_our_extensions_are_checked_without_a_profile_claim(client: httpx.AsyncClient) -> None:
    task = {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "extension": [_ext(f"{SD}/tlx-ext-closed-by-requester", valueString="hier")],
    }
    r = await post(client, task)
    assert r.status_code == 422
    assert outcome_of(r)["issue"][0]["expression"] == ["Task.extension[0].value"]
    # An extension of ours used where its context does not allow it.
    patient = {
        "resourceType": "Patient",
        "extension": [_ext(f"{SD}/tlx-ext-billing-site", valueIdentifier={"value": "1"})],
    }
    r = await post(client, patient)
    assert r.status_code == 422
    assert outcome_of(r)["issue"][0]["expression"] == ["Patient.extension[0]"]


async def test_transfer_state_is_a_closed_complex_extension(client: httpx.AsyncClient) -> None:
    def study(*parts: dict[str, Any]) -> dict[str, Any]:
        return {
            "resourceType": "ImagingStudy",
            "status": "registered",
            "subject": {"reference": "Patient/p1"},
            "extension": [{"url": f"{SD}/tlx-ext-transfer-state", "extension": list(parts)}],
        }

    ok = study({"url": "state", "valueCode": "in-progress"}, {"url": "received", "valueUnsignedInt": 50})
    assert (await post(client, ok)).status_code == 201
    cases = [
        (study({"url": "received", "valueUnsignedInt": 50}), "ImagingStudy.extension[0].extension"),
        (study({"url": "state", "valueCode": "paused"}), "ImagingStudy.extension[0].extension[0].value"),
        (
            study({"url": "state", "valueCode": "complete"}, {"url": "speed", "valueDecimal": 1.5}),
            "ImagingStudy.extension[0].extension[1]",
        ),
    ]
    for resource, expression in cases:
        r = await post(client, resource)
        assert r.status_code == 422, r.text
        assert expression in outcome_of(r)["issue"][0]["expression"], r.text


async def test_update_and_patch_are_validated(client: httpx.AsyncClient) -> None:
    created = (await post(client, example("Task"))).json()
    bad = copy.deepcopy(created)
    bad["businessStatus"] = {"coding": [{"system": f"{CS}/teledossier-status", "code": "perdu"}]}
    r = await put(client, bad)
    assert r.status_code == 422
    assert outcome_of(r)["issue"][0]["expression"] == ["Task.businessStatus"]
    good = copy.deepcopy(created)
    good["description"] = "Avis neurovasculaire"  # (status changes are the workflow's business, not tested here)
    r = await put(client, good)
    assert r.status_code == 200, r.text
    patch = [{"op": "remove", "path": "/owner"}]
    r = await client.patch(
        f"Task/{created['id']}", content=json.dumps(patch), headers={"Content-Type": "application/json-patch+json"}
    )
    assert r.status_code == 422
    assert outcome_of(r)["issue"][0]["expression"] == ["Task.owner"]
    assert (await client.get(f"Task/{created['id']}/_history")).json()["total"] == 2


async def test_transaction_entries_are_validated(client: httpx.AsyncClient) -> None:
    request = example("ServiceRequest")
    task = example("Task")
    task["basedOn"] = [{"reference": "urn:uuid:2b1c8d2e-9f0a-4c51-8a55-0d6a3f0c9e11"}]
    task["focus"] = {"reference": "urn:uuid:2b1c8d2e-9f0a-4c51-8a55-0d6a3f0c9e11"}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:2b1c8d2e-9f0a-4c51-8a55-0d6a3f0c9e11",
                "resource": request,
                "request": {"method": "POST", "url": "ServiceRequest"},
            },
            {"resource": task, "request": {"method": "POST", "url": "Task"}},
        ],
    }
    r = await client.post("", json=bundle, headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 200, r.text
    task_id = r.json()["entry"][1]["response"]["location"].split("/")[1]
    stored = (await client.get(f"Task/{task_id}")).json()
    assert stored["focus"]["reference"].startswith("ServiceRequest/")
    task.pop("owner")
    before = (await client.get("ServiceRequest/_history", params={"_count": "1"})).json()["total"]
    r = await client.post("", json=bundle, headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 422, r.text
    issues = outcome_of(r)["issue"]
    assert any("Bundle.entry[1].resource.owner" in i.get("expression", []) for i in issues), issues
    assert (await client.get("ServiceRequest/_history", params={"_count": "1"})).json()["total"] == before


# ---- $validate ---------------------------------------------------------------------------------------------------


async def test_validate_reports_without_writing(client: httpx.AsyncClient) -> None:
    task = example("Task")
    task.pop("owner")
    task["code"] = {"coding": [{"system": "http://snomed.info/sct", "code": "394656005"}]}  # extensible: warning
    before = (await client.get("Task/_history", params={"_count": "1"})).json()["total"]
    r = await client.post("Task/$validate", json=task, headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 200, r.text
    issues = outcome_of(r)["issue"]
    by_severity = {(i["severity"], tuple(i.get("expression", []))) for i in issues}
    assert ("error", ("Task.owner",)) in by_severity
    assert ("warning", ("Task.code",)) in by_severity
    assert (await client.get("Task/_history", params={"_count": "1"})).json()["total"] == before


async def test_validate_a_valid_resource(client: httpx.AsyncClient) -> None:
    r = await client.post("Patient/$validate", json=example("Patient"), headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 200
    assert outcome_of(r)["issue"] == [
        {"severity": "information", "code": "informational", "diagnostics": "no issues found"}
    ]
    # A valid Task whose type code comes from elsewhere: accepted on write, with a warning from $validate.
    task = example("Task")
    task["code"] = {"text": "avis"}
    r = await client.post("Task/$validate", json=task, headers={"Content-Type": FHIR_JSON})
    assert [i["severity"] for i in outcome_of(r)["issue"]] == ["warning"]
    assert (await post(client, task)).status_code == 201


async def test_validate_against_a_profile_parameter(client: httpx.AsyncClient) -> None:
    plain = {"resourceType": "Task", "status": "requested", "intent": "order"}
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": plain},
            {"name": "profile", "valueUri": f"{SD}/tlx-task"},
        ],
    }
    r = await client.post("Task/$validate", json=params, headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 200
    expressions = {e for i in outcome_of(r)["issue"] for e in i.get("expression", [])}
    assert {"Task.owner", "Task.focus", "Task.basedOn", "Task.businessStatus"} <= expressions
    # The same through the URL parameter.
    r = await client.post(
        "Task/$validate", params={"profile": f"{SD}/tlx-task"}, json=plain, headers={"Content-Type": FHIR_JSON}
    )
    assert {"Task.owner"} <= {e for i in outcome_of(r)["issue"] for e in i.get("expression", [])}
    # A profile we do not hold, asked for explicitly, is an error; claimed in meta it is only information.
    r = await client.post(
        "Task/$validate", params={"profile": "http://example.org/x"}, json=plain, headers={"Content-Type": FHIR_JSON}
    )
    assert [i["severity"] for i in outcome_of(r)["issue"]] == ["error"]
    claimed = dict(plain, meta={"profile": ["http://example.org/x"]})
    r = await client.post("Task/$validate", json=claimed, headers={"Content-Type": FHIR_JSON})
    assert [i["severity"] for i in outcome_of(r)["issue"]] == ["information"]


async def test_validate_reports_structure_errors_too(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "Task/$validate", json={"resourceType": "Task", "foo": 1}, headers={"Content-Type": FHIR_JSON}
    )
    assert r.status_code == 200
    assert outcome_of(r)["issue"][0]["severity"] == "error"
    r = await client.post("Task/$validate", json={"resourceType": "Patient"}, headers={"Content-Type": FHIR_JSON})
    assert outcome_of(r)["issue"][0]["severity"] == "error"


async def test_validate_needs_a_token(anon_client: httpx.AsyncClient) -> None:
    r = await anon_client.post("Task/$validate", json={"resourceType": "Task"}, headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 401


# ---- the validator is general: a new profile with the same kinds of constraints needs no code ------------------


def test_a_new_profile_works_without_code() -> None:
    registry = Conformance()
    registry.add(
        {
            "resourceType": "ValueSet",
            "id": "vital",
            "url": "http://example.org/ValueSet/vital",
            "status": "active",
            "compose": {
                "include": [{"system": "http://loinc.org", "concept": [{"code": "8867-4"}, {"code": "8310-5"}]}]
            },
        }
    )
    base = {
        "resourceType": "StructureDefinition",
        "id": "obs-base",
        "url": "http://example.org/StructureDefinition/obs-base",
        "name": "ObsBase",
        "status": "active",
        "kind": "resource",
        "abstract": False,
        "type": "Observation",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Observation",
        "derivation": "constraint",
        "differential": {"element": [{"id": "Observation.subject", "path": "Observation.subject", "min": 1}]},
    }
    registry.add(base)
    registry.add(
        dict(
            base,
            id="obs-vital",
            url="http://example.org/StructureDefinition/obs-vital",
            baseDefinition=base["url"],
            differential={
                "element": [
                    {"id": "Observation.status", "path": "Observation.status", "fixedCode": "final"},
                    {
                        "id": "Observation.code",
                        "path": "Observation.code",
                        "binding": {"strength": "required", "valueSet": "http://example.org/ValueSet/vital"},
                    },
                    {
                        "id": "Observation.component",
                        "path": "Observation.component",
                        "slicing": {"discriminator": [{"type": "pattern", "path": "code"}], "rules": "closed"},
                    },
                    {"id": "Observation.component:rate", "path": "Observation.component", "min": 1, "max": "1"},
                    {
                        "id": "Observation.component:rate.code",
                        "path": "Observation.component.code",
                        "patternCodeableConcept": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                    },
                    {
                        "id": "Observation.component:rate.value[x]",
                        "path": "Observation.component.value[x]",
                        "min": 1,
                        "type": [{"code": "Quantity"}],
                    },
                    {
                        "id": "Observation.performer",
                        "path": "Observation.performer",
                        "type": [
                            {
                                "code": "Reference",
                                "targetProfile": ["http://hl7.org/fhir/StructureDefinition/Practitioner"],
                            }
                        ],
                    },
                ]
            },
        )
    )
    good = {
        "resourceType": "Observation",
        "meta": {"profile": ["http://example.org/StructureDefinition/obs-vital"]},
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
        "subject": {"reference": "Patient/1"},
        "performer": [{"reference": "https://elsewhere.example/fhir/Practitioner/9"}],
        "component": [
            {"code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}, "valueQuantity": {"value": 80}}
        ],
    }
    assert profile_issues(good, conformance=registry) == []
    bad = copy.deepcopy(good)
    bad.pop("subject")  # from the base profile
    bad["status"] = "preliminary"
    bad["code"]["coding"][0]["code"] = "1234-5"
    bad["performer"] = [{"reference": "Organization/1"}]
    bad["component"][0]["valueString"] = bad["component"][0].pop("valueQuantity")
    bad["component"].append({"code": {"text": "other"}, "valueQuantity": {"value": 1}})
    found = {(i.code, i.expression[0]) for i in profile_issues(bad, conformance=registry) if i.severity == "error"}
    assert found == {
        ("required", "Observation.subject"),
        ("value", "Observation.status"),
        ("code-invalid", "Observation.code"),
        ("invalid", "Observation.performer[0].reference"),
        ("invalid", "Observation.component[0].value"),
        ("invalid", "Observation.component[1]"),
    }
