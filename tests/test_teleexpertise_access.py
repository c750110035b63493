"""Who sees a télédossier (spec §8 tests 3, 4 and 12): reads, searches, includes, history, writes.

The author and the author's communauté, the addressed communautés and professionals, the local
administrators of the structures involved and the regional administrator see the dossier, its Tasks,
forms, documents and its Patient; nobody else finds them, by id (404) or by search. The bureau des
entrées sees the administrative resources of answered dossiers addressed to its structure only, and never
the medical ones (403). System tokens are not concerned.
"""

from __future__ import annotations

import httpx
import pytest

from fhir_server.auth.tokens import mint_token
from tests.conftest import TEST_BASE
from tests.test_teleexpertise_world import JSON, World, build_world


def _token(who: str, world: World, **claims: object) -> dict[str, str]:
    settings = world.settings
    token = mint_token(
        settings.data_dir,
        issuer=settings.resolved_token_issuer(),
        audience=TEST_BASE,
        scope="user/*.rs",
        lifetime=600,
        subject=who,
        extra={"fhirUser": who, **claims},
    )
    return {"Authorization": f"Bearer {token}"}


def user_headers(world: World, user: str, **claims: object) -> dict[str, str]:
    return _token(world.people[user], world, **claims)


@pytest.fixture(scope="module")
async def world(anon_client: httpx.AsyncClient, client: httpx.AsyncClient, settings) -> World:
    return await build_world(anon_client, dict(client.headers), settings)


@pytest.fixture(scope="module")
async def dossier(world: World) -> dict:
    """A dossier from req (C1) with a request form and an attachment, sent to A, B and professional P."""
    pid = await world.patient("req", family="Dossier")
    sr = await world.dossier(patient=pid)
    qr_id = await world.request_form(sr["id"], pid, "Avis sur une lésion ?")
    bundle = await world.send(sr["id"], world.orgs["A"], world.orgs["B"], world.role_of("p"))
    tasks = {e["resource"]["owner"]["reference"]: e["resource"]["id"] for e in bundle["entry"][1:]}
    return {"sr": sr["id"], "patient": pid, "qr": qr_id, "tasks": tasks}


async def readable(world: World, user: str, path: str) -> int:
    return (await world.get(user, path)).status_code


async def test_participants_see_the_dossier(world: World, dossier: dict) -> None:
    """§8 test 4: members of A (and B, and P) read the ServiceRequest, the request form and the Patient."""
    for user in ("req", "c1b", "a1", "a2", "b1", "p"):
        for path in (
            f"ServiceRequest/{dossier['sr']}",
            f"QuestionnaireResponse/{dossier['qr']}",
            f"Patient/{dossier['patient']}",
        ):
            assert await readable(world, user, path) == 200, (user, path)
    assert dossier["sr"] in await world.search_ids("a1", "ServiceRequest", subject=f"Patient/{dossier['patient']}")
    assert len(await world.search_ids("b1", "Task", focus=f"ServiceRequest/{dossier['sr']}")) == 3


async def test_outsiders_find_nothing(world: World, dossier: dict) -> None:
    """§8 test 4: a member of the unrelated communauté Z gets 404, and searches find nothing."""
    for path in (
        f"ServiceRequest/{dossier['sr']}",
        f"QuestionnaireResponse/{dossier['qr']}",
        f"Patient/{dossier['patient']}",
        f"Task/{dossier['tasks'][world.orgs['A']]}",
        f"Task/{dossier['tasks'][world.orgs['A']]}/_history",
        f"ServiceRequest/{dossier['sr']}/_history/1",
    ):
        r = await world.get("z1", path)
        assert r.status_code == 404, (path, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
    assert await world.search_ids("z1", "ServiceRequest") == []
    assert await world.search_ids("z1", "Task") == []
    assert await world.search_ids("z1", "Patient", family="Dossier") == []
    assert (
        await world.search_ids("z1", "QuestionnaireResponse", **{"based-on": f"ServiceRequest/{dossier['sr']}"}) == []
    )
    # Nor through includes, nor through the Patient compartment.
    r = await world.get("z1", f"Patient/{dossier['patient']}/ServiceRequest")
    assert r.status_code in (200, 404) and not r.json().get("entry")
    r = await world.get("z1", "Task", _include="Task:patient", _id=dossier["tasks"][world.orgs["A"]])
    assert not r.json().get("entry")
    # Pointing to a dossier one cannot see (B's own draft, for A) is refused as if it did not exist.
    sr_b = await world.dossier(user="b1", communaute=None)
    note = {
        "resourceType": "Communication",
        "status": "completed",
        "about": [{"reference": f"ServiceRequest/{sr_b['id']}"}],
    }
    r = await world.post("a1", note)
    assert r.status_code == 422 and "not known" in r.json()["issue"][0]["diagnostics"]


async def test_confidential_patient_not_found_by_outsiders(world: World) -> None:
    """§8 test 3 (confidentiality): a VIP patient (meta.security R) of a dossier is not found by name."""
    vip = await world.patient(
        "req",
        family="Célèbre",
        meta={"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]},
    )
    sr = await world.dossier(patient=vip)
    await world.send(sr["id"], world.orgs["A"])
    assert await world.search_ids("z1", "Patient", family="Célèbre") == []
    assert await world.search_ids("d1", "Patient", family="Célèbre") == []
    assert (await world.get("z1", f"Patient/{vip}")).status_code == 404
    # Inside the dossier, the R label still asks for clearance (a `labels` claim), as everywhere.
    assert await world.search_ids("a1", "Patient", family="Célèbre") == []
    cleared = user_headers(world, "a1", labels=["R"])
    r = await world.client.get("Patient", params={"family": "Célèbre"}, headers=cleared)
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [vip]
    outsider = user_headers(world, "z1", labels=["R"])
    r = await world.client.get("Patient", params={"family": "Célèbre"}, headers=outsider)
    assert not r.json().get("entry")
    # A practitioner outside téléexpertise (no role), even cleared for R: a dossier's patient is not theirs.
    stranger = _token("Practitioner/stranger", world, labels=["R"])
    r = await world.client.get("Patient", params={"family": "Célèbre"}, headers=stranger)
    assert r.status_code == 200 and not r.json().get("entry")
    assert (await world.client.get(f"Patient/{vip}", headers=stranger)).status_code == 404
    # What carries no access list is not téléexpertise data: the other rules apply to them.
    plain = await world.client.post(
        "Patient", json={"resourceType": "Patient", "name": [{"family": "Célèbre"}]}, headers={**JSON, **world.admin}
    )
    r = await world.client.get("Patient", params={"family": "Célèbre"}, headers=stranger)
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [plain.json()["id"]]


async def test_administrators(world: World, dossier: dict, client: httpx.AsyncClient) -> None:
    """Local administrators of the structures involved see the dossier; others do not; the regional one
    sees all; system tokens are not concerned."""
    sr_path = f"ServiceRequest/{dossier['sr']}"
    assert await readable(world, "adm2", sr_path) == 200  # A and B are in S2
    assert await readable(world, "adm2", f"Patient/{dossier['patient']}") == 200
    assert await readable(world, "adm3", sr_path) == 404  # nothing in S3 yet
    assert await readable(world, "reg", sr_path) == 200
    assert dossier["sr"] in await world.search_ids("reg", "ServiceRequest")
    assert (await client.get(sr_path)).status_code == 200
    r = await world.op("req", f"ServiceRequest/{dossier['sr']}/$readdress", addressee=world.orgs["D"])
    assert r.status_code == 200, r.text
    assert await readable(world, "adm3", sr_path) == 200  # D is in S3
    assert await readable(world, "d1", f"QuestionnaireResponse/{dossier['qr']}") == 200
    assert await readable(world, "d1", f"Patient/{dossier['patient']}") == 200
    assert await readable(world, "z1", sr_path) == 404  # Z is in S3 too, but not addressed


async def test_drafts_stay_with_the_author_communaute(world: World) -> None:
    sr = await world.dossier(communaute="C1")
    assert await readable(world, "c1b", f"ServiceRequest/{sr['id']}") == 200
    assert await readable(world, "a1", f"ServiceRequest/{sr['id']}") == 404
    sr2 = await world.dossier(communaute="C2")
    assert await readable(world, "c1b", f"ServiceRequest/{sr2['id']}") == 404
    # An older version is readable once the dossier is shared (the current access list decides).
    await world.send(sr["id"], world.orgs["A"])
    assert await readable(world, "a1", f"ServiceRequest/{sr['id']}/_history/1") == 200
    history = (await world.get("a1", f"ServiceRequest/{sr['id']}/_history")).json()
    assert len(history["entry"]) == 2


async def test_writes_of_outsiders_and_bulk_paths(world: World, dossier: dict) -> None:
    qr = (await world.get("req", f"QuestionnaireResponse/{dossier['qr']}")).json()
    r = await world.put("z1", qr)
    assert r.status_code == 404  # an update does not reveal it either
    r = await world.client.delete(f"QuestionnaireResponse/{dossier['qr']}", headers=world.h("z1"))
    assert r.status_code == 404
    # Type and system history, conditional writes, transactions: not for téléexpertise users.
    assert (await world.get("a1", "Task/_history")).status_code == 403
    assert (await world.get("a1", "_history")).status_code == 403
    r = await world.client.put(
        "Patient", params={"family": "Dossier"}, json={"resourceType": "Patient"}, headers={**JSON, **world.h("a1")}
    )
    assert r.status_code == 403
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}],
    }
    r = await world.client.post("", json=transaction, headers={**JSON, **world.h("req")})
    assert r.status_code == 403
    # A batch runs each entry through the same rules.
    batch = {
        **transaction,
        "type": "batch",
        "entry": [{"request": {"method": "GET", "url": f"ServiceRequest/{dossier['sr']}"}}],
    }
    r = await world.client.post("", json=batch, headers={**JSON, **world.h("z1")})
    assert r.status_code == 200 and r.json()["entry"][0]["response"]["status"].startswith("404")
    r = await world.client.post("", json=batch, headers={**JSON, **world.h("a1")})
    assert r.json()["entry"][0]["response"]["status"].startswith("200")


async def test_bureau_des_entrees(world: World, dossier: dict) -> None:
    """§8 test 12: only answered dossiers addressed to its structure, administrative resources only."""
    sr_path = f"ServiceRequest/{dossier['sr']}"
    assert await readable(world, "be2", sr_path) == 404  # no CR yet
    assert dossier["sr"] not in await world.search_ids("be2", "ServiceRequest")
    task_a = dossier["tasks"][world.orgs["A"]]
    r = await world.op("a1", f"Task/{task_a}/$respond", conclusion="Avis rendu.", billingCode="TIE")
    assert r.status_code == 200, r.text
    outputs = {o["type"]["text"]: o["valueReference"]["reference"] for o in r.json()["output"]}

    assert dossier["sr"] in await world.search_ids("be2", "ServiceRequest")
    sr = (await world.get("be2", sr_path)).json()
    assert sr["authoredOn"] and sr["requester"]["reference"] == world.role_of("req", "C1")
    assert await readable(world, "be2", f"Patient/{dossier['patient']}") == 200
    task = (await world.get("be2", f"Task/{task_a}")).json()
    assert task["executionPeriod"]["end"]
    assert any(e["url"].endswith("tlx-ext-billing-code") and e["valueCode"] == "TIE" for e in task["extension"])
    # Not the Tasks of addressees that did not answer.
    assert await readable(world, "be2", f"Task/{dossier['tasks'][world.orgs['B']]}") == 404
    # Medical data: 403, by id and by search.
    for path in (outputs["compte-rendu"], f"QuestionnaireResponse/{dossier['qr']}", outputs["document"]):
        r = await world.get("be2", path)
        assert r.status_code == 403, (path, r.text)
        assert r.json()["issue"][0]["code"] == "forbidden"
    for rtype in ("DiagnosticReport", "QuestionnaireResponse", "DocumentReference", "ImagingStudy"):
        assert (await world.get("be2", rtype)).status_code == 403
    # A dossier without a CR is not listed, nor one answered in another structure.
    other, _ = await world.sent_dossier(world.orgs["A"])
    answered_elsewhere, tasks_d = await world.sent_dossier(world.orgs["D"])
    assert (await world.op("d1", f"Task/{tasks_d[world.orgs['D']]}/$respond", conclusion="ok")).status_code == 200
    listed = await world.search_ids("be2", "ServiceRequest")
    assert dossier["sr"] in listed and other not in listed and answered_elsewhere not in listed


async def test_bureau_des_entrees_billing_data(world: World) -> None:
    """The NIR of the ouvrant droit (Coverage) of an answered dossier, and both professionals' directory data."""
    pid = await world.patient(
        "req", family="Assuré", address=[{"city": "Sète"}], telecom=[{"system": "phone", "value": "0400000000"}]
    )
    coverage = {
        "resourceType": "Coverage",
        "status": "active",
        "subscriberId": "1700234172123",
        "beneficiary": {"reference": f"Patient/{pid}"},
        "payor": [{"reference": world.orgs["S1"]}],
    }
    r = await world.post("req", coverage)
    assert r.status_code == 201, r.text
    cov_id = r.json()["id"]
    sr = await world.dossier(patient=pid, insurance=[{"reference": f"Coverage/{cov_id}"}])
    bundle = await world.send(sr["id"], world.orgs["A"])
    assert await readable(world, "be2", f"Coverage/{cov_id}") == 404
    task_id = bundle["entry"][1]["resource"]["id"]
    assert (await world.op("a2", f"Task/{task_id}/$respond", conclusion="ok")).status_code == 200
    assert (await world.get("be2", f"Coverage/{cov_id}")).json()["subscriberId"] == "1700234172123"
    patient = (await world.get("be2", f"Patient/{pid}")).json()
    assert patient["address"][0]["city"] == "Sète" and patient["telecom"][0]["value"] == "0400000000"
    for ref in (world.role_of("req", "C1"), world.role_of("a2"), world.people["a2"], world.orgs["A"], world.orgs["S2"]):
        assert await readable(world, "be2", ref) == 200


async def test_a_draft_cannot_be_pointed_at_hidden_resources(world: World, client: httpx.AsyncClient) -> None:
    """Sending shares what a dossier points to: a requérant cannot make it point to what they cannot see."""
    sr = await world.dossier()
    hidden = (await client.post("Patient", json={"resourceType": "Patient"}, headers=JSON)).json()["id"]
    r = await world.put("req", {**sr, "subject": {"reference": f"Patient/{hidden}"}})
    assert r.status_code == 422 and "not known" in r.json()["issue"][0]["diagnostics"]
    patch = [{"op": "add", "path": "/supportingInfo", "value": [{"reference": f"Patient/{hidden}"}]}]
    r = await world.client.patch(
        f"ServiceRequest/{sr['id']}",
        json=patch,
        headers={"Content-Type": "application/json-patch+json", **world.h("req")},
    )
    assert r.status_code == 422
    await world.send(sr["id"], world.orgs["A"])
    assert (await world.get("a1", f"Patient/{hidden}")).status_code == 404


async def test_whole_resource_writes_keep_the_access_list(
    world: World, dossier: dict, client: httpx.AsyncClient
) -> None:
    """An interface (system token) that PUTs the Patient back without its meta.security, as an HL7 upsert
    or a GAM would, must not make the dossier's Patient vanish for the users it is shared with."""
    pid = dossier["patient"]
    current = (await client.get(f"Patient/{pid}")).json()
    assert current["meta"].get("security"), "the Patient carries the dossier's access list"
    replacement = {k: v for k, v in current.items() if k != "meta"} | {"gender": "female"}
    r = await client.put(f"Patient/{pid}", json=replacement)
    assert r.status_code == 200, r.text
    assert await readable(world, "a1", f"Patient/{pid}") == 200
    assert pid in await world.search_ids("a1", "Patient", _id=pid)
    assert await readable(world, "z1", f"Patient/{pid}") == 404
    # The same through a transaction bundle.
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": replacement | {"gender": "male"}, "request": {"method": "PUT", "url": f"Patient/{pid}"}}
        ],
    }
    assert (await client.post("", json=bundle)).status_code == 200
    assert await readable(world, "b1", f"Patient/{pid}") == 200
