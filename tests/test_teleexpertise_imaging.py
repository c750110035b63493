"""Imaging in a télédossier (spec §8 tests 8, 9 and 10): studies of the imaging store linked to a dossier.

Studies arrive through DICOMweb STOW-RS (the admin's system token, as a modality or a CD import would), or
instance by instance through the store's ingest API without the end of transfer (what the C-STORE SCP does
while an association is open), then the requérant links them with `ServiceRequest/[id]/$link-imaging`:
- a study whose PatientID is the dossier Patient's IPP is found by `ImagingStudy?patient.identifier=` and
  offered by `$candidate-imaging` (test 8);
- a study still being received (`registered`) links, and stays linked as it completes (test 9);
- a study whose DICOM identity differs links with an OperationOutcome warning (test 10);
- the addressed communauté's member sees the linked study by FHIR and by QIDO-RS, an outsider does not.
"""

from __future__ import annotations

import itertools
import warnings
from typing import Any

import httpx
import pytest

from dicomweb.multipart import new_boundary
from dicomweb.store import imaging_study_id
from tests.conftest import TEST_BASE
from tests.dicomweb_samples import variant
from tests.test_teleexpertise_world import JSON, World, build_world

warnings.filterwarnings("ignore", module="pydicom")

DW = TEST_BASE.removesuffix("/fhir") + "/dicomweb"
IPP_SYSTEM = "urn:oid:1.2.250.1.999.1.1"  # the requérant structure's IPP domain
IPP_ISSUER = "1.2.250.1.999.1.1"
TRANSFER_STATE = "https://fhir-server.example/fhir/StructureDefinition/tlx-ext-transfer-state"
PI = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PI"}]}
_uids = itertools.count(1)


def new_study_uid() -> str:
    return f"2.25.7700{next(_uids)}{id(_uids) % 1000}"


def instance(study_uid: str, n: int, **identity: Any) -> bytes:
    return variant(
        "CT_small.dcm",
        StudyInstanceUID=study_uid,
        SeriesInstanceUID=f"{study_uid}.1",
        SOPInstanceUID=f"{study_uid}.1.{n}",
        InstanceNumber=n,
        **identity,
    )


DOE = {
    "PatientID": "123",
    "IssuerOfPatientID": IPP_ISSUER,
    "PatientName": "DOE^JOHN",
    "PatientBirthDate": "19700102",
    "PatientSex": "M",
}


def multipart(payloads: list[bytes]) -> tuple[bytes, dict[str, str]]:
    boundary = new_boundary()
    body = b""
    for p in payloads:
        body += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'}


@pytest.fixture(scope="module")
async def world(anon_client: httpx.AsyncClient, client: httpx.AsyncClient, settings) -> World:
    return await build_world(anon_client, dict(client.headers), settings)


async def stow(world: World, payloads: list[bytes]) -> None:
    body, headers = multipart(payloads)
    r = await world.client.post(f"{DW}/studies", content=body, headers={**headers, **world.admin})
    assert r.status_code == 200, r.text


async def doe_patient(world: World, **extra: Any) -> str:
    resource = {
        "identifier": [{"type": PI, "system": IPP_SYSTEM, "value": "123"}],
        "birthDate": "1970-01-02",
        "gender": "male",
        **extra,
    }
    r = await world.post("req", {"resourceType": "Patient", "name": [{"family": "Doe", "given": ["John"]}], **resource})
    assert r.status_code == 201, r.text
    return r.json()["id"]


async def link(world: World, sr_id: str, *studies: str, user: str = "req") -> httpx.Response:
    body = {"resourceType": "Parameters", "parameter": [{"name": "study", "valueString": s} for s in studies]}
    return await world.client.post(
        f"ServiceRequest/{sr_id}/$link-imaging", json=body, headers={**JSON, **world.h(user)}
    )


def entries(bundle: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def transfer_state(study: dict[str, Any]) -> dict[str, Any]:
    (ext,) = [e for e in study.get("extension", []) if e["url"] == TRANSFER_STATE]
    return {part["url"]: next(v for k, v in part.items() if k.startswith("value")) for part in ext["extension"]}


def qido_uids(response: httpx.Response) -> set[str]:
    assert response.status_code in (200, 204), response.text
    return {s["0020000D"]["Value"][0] for s in (response.json() if response.status_code == 200 else [])}


async def test_ipp_study_is_found_offered_and_linked(world: World) -> None:
    """Test 8: pre-pushed study with IPP 123 → patient.identifier search, candidate, link without warning."""
    pid = await doe_patient(world)
    sr = await world.dossier(patient=pid)
    uid = new_study_uid()
    await stow(world, [instance(uid, 1, **DOE), instance(uid, 2, **DOE)])
    study_id = imaging_study_id(uid)

    r = await world.client.get("ImagingStudy", params={"patient.identifier": f"{IPP_SYSTEM}|123"}, headers=world.admin)
    assert r.status_code == 200, r.text
    found = {e["resource"]["id"]: e["resource"] for e in r.json().get("entry", [])}
    assert study_id in found
    assert found[study_id]["subject"]["reference"] == f"Patient/{pid}"
    assert found[study_id]["status"] == "available"
    # Not shared with anyone yet: the requérant does not find it by search…
    assert study_id not in await world.search_ids("req", "ImagingStudy", _id=study_id)
    # …but the dossier offers it.
    r = await world.get("req", f"ServiceRequest/{sr['id']}/$candidate-imaging")
    assert r.status_code == 200, r.text
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [study_id]
    assert (await world.get("z1", f"ServiceRequest/{sr['id']}/$candidate-imaging")).status_code == 404

    r = await link(world, sr["id"], uid)
    assert r.status_code == 200, r.text
    bundle = r.json()
    (outcome,) = entries(bundle, "OperationOutcome")
    assert [i["severity"] for i in outcome["issue"]] == ["information"]
    (linked_sr,) = entries(bundle, "ServiceRequest")
    assert {"reference": f"ImagingStudy/{study_id}", "display": f"DICOM study {uid}"} in linked_sr["supportingInfo"]
    (study,) = entries(bundle, "ImagingStudy")
    assert study["basedOn"] == [{"reference": f"ServiceRequest/{sr['id']}"}]

    assert await world.search_ids("req", "ImagingStudy", basedon=f"ServiceRequest/{sr['id']}") == [study_id]
    r = await world.get("req", "ImagingStudy", **{"patient.identifier": f"{IPP_SYSTEM}|123"})
    assert study_id in [e["resource"]["id"] for e in r.json().get("entry", [])]
    r = await world.get("req", f"ServiceRequest/{sr['id']}/$candidate-imaging")
    assert r.json().get("entry", []) == []
    # Linking again changes nothing.
    again = await link(world, sr["id"], f"ImagingStudy/{study_id}")
    assert again.status_code == 200, again.text
    assert entries(again.json(), "ServiceRequest")[0]["supportingInfo"] == linked_sr["supportingInfo"]


async def test_study_being_received_links_and_is_shared(world: World, app: Any) -> None:
    """Test 9: linking is not blocked by a transfer in progress; addressees see the study (FHIR and QIDO)."""
    pid = await doe_patient(world)
    sr = await world.dossier(patient=pid)
    dicom = app.state.dicom  # type: ignore[attr-defined]
    early, late = new_study_uid(), new_study_uid()
    for n in (1, 2):
        await dicom.store_instance(instance(early, n, **DOE), source="test-transfer")
    r = await world.client.get(f"ImagingStudy/{imaging_study_id(early)}", headers=world.admin)
    assert r.json()["status"] == "registered"
    assert transfer_state(r.json())["state"] == "in-progress"
    assert transfer_state(r.json())["received"] >= 1  # rewritten in batches: a lower bound while receiving

    r = await link(world, sr["id"], early)  # a draft dossier, a study still arriving
    assert r.status_code == 200, r.text
    assert entries(r.json(), "ImagingStudy")[0]["status"] == "registered"

    await world.send(sr["id"], world.orgs["A"])
    # A study linked after sending gets the addressees' access too.
    await stow(world, [instance(late, 1, **DOE)])
    r = await link(world, sr["id"], late)
    assert r.status_code == 200, r.text

    # The transfer goes on and completes: the link stays.
    await dicom.store_instance(instance(early, 3, **DOE), source="test-transfer")
    await dicom.mark_complete([early])
    for uid in (early, late):
        r = await world.get("a1", f"ImagingStudy/{imaging_study_id(uid)}")
        assert r.status_code == 200, r.text
        assert r.json()["basedOn"] == [{"reference": f"ServiceRequest/{sr['id']}"}]
        assert r.json()["status"] == "available"
        assert (await world.get("z1", f"ImagingStudy/{imaging_study_id(uid)}")).status_code == 404
    completed = (await world.get("a1", f"ImagingStudy/{imaging_study_id(early)}")).json()
    assert completed["numberOfInstances"] == 3
    assert transfer_state(completed) == {"state": "complete", "received": 3}
    assert set(await world.search_ids("a1", "ImagingStudy", basedon=f"ServiceRequest/{sr['id']}")) == {
        imaging_study_id(early),
        imaging_study_id(late),
    }

    seen = qido_uids(await world.client.get(f"{DW}/studies", params={"PatientID": "123"}, headers=world.h("a1")))
    assert {early, late} <= seen
    outsider = qido_uids(await world.client.get(f"{DW}/studies", params={"PatientID": "123"}, headers=world.h("z1")))
    assert not outsider & {early, late}
    r = await world.client.get(f"{DW}/studies/{early}/metadata", headers=world.h("z1"))
    assert r.status_code == 404
    r = await world.client.get(f"{DW}/studies/{early}/metadata", headers=world.h("a1"))
    assert r.status_code == 200 and len(r.json()) == 3

    # Re-addressing to D shares the linked studies with D too.
    assert (await world.get("d1", f"ImagingStudy/{imaging_study_id(early)}")).status_code == 404
    r = await world.op("req", f"ServiceRequest/{sr['id']}/$readdress", addressee=world.orgs["D"])
    assert r.status_code == 200, r.text
    for uid in (early, late):
        assert (await world.get("d1", f"ImagingStudy/{imaging_study_id(uid)}")).status_code == 200
    seen = qido_uids(await world.client.get(f"{DW}/studies", params={"PatientID": "123"}, headers=world.h("d1")))
    assert {early, late} <= seen


async def test_identity_mismatch_links_with_warning(world: World) -> None:
    """Test 10: a study whose PatientBirthDate (and sex, name) differ is linked, with a warning."""
    pid = await doe_patient(world)
    sr = await world.dossier(patient=pid)
    uid = new_study_uid()
    other = {**DOE, "PatientID": "CD-77", "PatientBirthDate": "19800315", "PatientSex": "F", "PatientName": "ROE^JANE"}
    await stow(world, [instance(uid, 1, **other)])
    r = await link(world, sr["id"], uid)
    assert r.status_code == 200, r.text
    (outcome,) = entries(r.json(), "OperationOutcome")
    (issue,) = outcome["issue"]
    assert (issue["severity"], issue["code"]) == ("warning", "business-rule")
    for trait in ("PatientBirthDate", "PatientSex", "PatientName"):
        assert trait in issue["diagnostics"]
    assert uid in issue["diagnostics"]
    # The link is made.
    r = await world.get("req", f"ImagingStudy/{imaging_study_id(uid)}")
    assert r.status_code == 200 and r.json()["basedOn"] == [{"reference": f"ServiceRequest/{sr['id']}"}]

    # Only the birth date differs: one trait named.
    uid2 = new_study_uid()
    await stow(world, [instance(uid2, 1, **{**DOE, "PatientBirthDate": "19700103"})])
    (outcome,) = entries((await link(world, sr["id"], uid2)).json(), "OperationOutcome")
    assert "PatientBirthDate (1970-01-03 ≠ 1970-01-02)" in outcome["issue"][0]["diagnostics"]
    assert "PatientSex" not in outcome["issue"][0]["diagnostics"]


async def test_who_may_link_what(world: World) -> None:
    pid = await doe_patient(world)
    sr = await world.dossier(patient=pid)
    uid = new_study_uid()
    await stow(world, [instance(uid, 1, **DOE)])
    await link(world, sr["id"], uid)
    sent = await world.send(sr["id"], world.orgs["A"])
    (task_id,) = [e["resource"]["id"] for e in sent["entry"] if e["resource"]["resourceType"] == "Task"]
    # The requis side does not link; an outsider does not see the dossier.
    r = await link(world, sr["id"], uid, user="a1")
    assert r.status_code == 403 and r.json()["resourceType"] == "OperationOutcome"
    assert (await world.get("a1", f"ServiceRequest/{sr['id']}/$candidate-imaging")).status_code == 403
    assert (await link(world, sr["id"], uid, user="z1")).status_code == 404
    # A study shared in a dossier z1 cannot see is unknown to z1's dossier.
    other_sr = await world.dossier(user="z1", communaute="Z", patient=await world.patient("z1"))
    r = await link(world, other_sr["id"], uid, user="z1")
    assert r.status_code == 422, r.text
    # Unknown study, malformed input.
    assert (await link(world, sr["id"], "2.25.999999999")).status_code == 422
    assert (await link(world, sr["id"], "not a uid")).status_code == 400
    r = await world.client.post(
        f"ServiceRequest/{sr['id']}/$link-imaging",
        json={"resourceType": "Parameters"},
        headers={**JSON, **world.h("req")},
    )
    assert r.status_code == 400
    # A dossier every addressee refused (revoked): 409.
    r = await world.op("a1", f"Task/{task_id}/$refuse", reason="hors de notre champ")
    assert r.status_code == 200, r.text
    assert (await world.get("req", f"ServiceRequest/{sr['id']}")).json()["status"] == "revoked"
    assert (await link(world, sr["id"], uid)).status_code == 409


async def test_study_before_patient_is_auto_linked_by_ipp(world: World) -> None:
    """Test 8, the other order: the study arrives before the Patient exists (its subject is then a logical
    reference by IPP); the dossier opened for that IPP finds it and `candidates=true` links it."""
    uid = new_study_uid()
    await stow(world, [instance(uid, 1, **{**DOE, "PatientID": "456"})])
    r = await world.client.get(f"ImagingStudy/{imaging_study_id(uid)}", headers=world.admin)
    assert r.json()["subject"]["identifier"] == {"system": IPP_SYSTEM, "value": "456"}
    pid = await doe_patient(world, identifier=[{"type": PI, "system": IPP_SYSTEM, "value": "456"}])
    sr = await world.dossier(patient=pid)
    body = {"resourceType": "Parameters", "parameter": [{"name": "candidates", "valueBoolean": True}]}
    headers = {**JSON, **world.h("req")}
    r = await world.client.post(f"ServiceRequest/{sr['id']}/$link-imaging", json=body, headers=headers)
    assert r.status_code == 200, r.text
    assert [s["id"] for s in entries(r.json(), "ImagingStudy")] == [imaging_study_id(uid)]
    assert [i["severity"] for i in entries(r.json(), "OperationOutcome")[0]["issue"]] == ["information"]
    # Nothing left to offer: a second call links nothing and says so.
    r = await world.client.post(f"ServiceRequest/{sr['id']}/$link-imaging", json=body, headers=headers)
    assert r.status_code == 200, r.text
    assert entries(r.json(), "ImagingStudy") == []
    assert entries(r.json(), "OperationOutcome")[0]["issue"][0]["diagnostics"] == "no study to link"
