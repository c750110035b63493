"""Cotation of an answered téléexpertise (CCTP §3.1.2.8, R-45 mode 1, R-47): ChargeItem by the requis, read and
marked billed by the bureau des entrées of the requis structure, found by its billing worklist search.

World (tests/test_teleexpertise_world.py): req (C1, structure S1) asks; A and B are communautés of S2 (a1, a2 in
A; be2 its bureau des entrées); D is in S3 (d1), whose bureau des entrées `be3` is added here. Communauté A
bills under its own site (tlx-ext-billing-site), C1 under S1's FINESS.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.test_teleexpertise_world import (
    BASE,
    FR_TYPE,
    JSON,
    STRUCTURES,
    World,
    build_world,
    created,
    outcome,
    practitioner,
    role,
    user_headers,
)

ACT = f"{BASE}/CodeSystem/teleexpertise-act"
IMPUTATION = f"{BASE}/CodeSystem/billing-imputation"
EXT_IMPUTATION = f"{BASE}/StructureDefinition/tlx-ext-imputation"
EXT_BILLING_CODE = f"{BASE}/StructureDefinition/tlx-ext-billing-code"
EXT_BILLING_SITE = f"{BASE}/StructureDefinition/tlx-ext-billing-site"
PROFILE = f"{BASE}/StructureDefinition/tlx-chargeitem"
FINESS = "https://finess.esante.gouv.fr"
SITE_A = "340000020"  # the site of S2 that bills communauté A's acts


def cotation(task_id: str, code: str = "TE2", imputation: str = "AM", **extra: Any) -> dict[str, Any]:
    """What the requis (or the secretariat) sends: the act, its imputation, the answered Task."""
    return {
        "resourceType": "ChargeItem",
        "status": "billable",
        "code": {"coding": [{"system": ACT, "code": code}]},
        "extension": [{"url": EXT_IMPUTATION, "valueCoding": {"system": IMPUTATION, "code": imputation}}],
        "supportingInformation": [{"reference": f"Task/{task_id}"}],
        **extra,
    }


def billing_code(task: dict[str, Any]) -> str | None:
    return next((e["valueCode"] for e in task.get("extension", []) if e["url"] == EXT_BILLING_CODE), None)


async def cotations_of(client: httpx.AsyncClient, task_id: str) -> list[dict[str, Any]]:
    """What is stored for a Task, as a system client sees it (nothing hidden)."""
    r = await client.get("ChargeItem", params={"supporting-info": f"Task/{task_id}"})
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


@pytest.fixture(scope="module")
async def world(anon_client: httpx.AsyncClient, client: httpx.AsyncClient, settings: Any) -> World:
    world = await build_world(anon_client, dict(client.headers), settings)
    # The bureau des entrées of S3, to check it never sees S2's cotations.
    pid = await created(anon_client, practitioner("BE3", None), world.admin)
    world.people["be3"] = f"Practitioner/{pid}"
    rid = await created(anon_client, role(world.people["be3"], "bureau-entrees", world.orgs["S3"]), world.admin)
    world.roles[("be3", "S3")] = f"PractitionerRole/{rid}"
    world.tokens["be3"] = user_headers(settings, world.people["be3"])
    # Communauté A bills under one site of S2.
    a = (await client.get(world.orgs["A"])).json()
    site = {"type": {"coding": [{"system": FR_TYPE, "code": "FINEG"}]}, "system": FINESS, "value": SITE_A}
    r = await client.put(
        world.orgs["A"], json={**a, "extension": [{"url": EXT_BILLING_SITE, "valueIdentifier": site}]}, headers=JSON
    )
    assert r.status_code == 200, r.text
    return world


async def answered(world: World, *addressees: str, responders: dict[str, str] | None = None) -> dict[str, Any]:
    """A dossier of req sent to the addressees, each answered by its responder; returns ids and Tasks."""
    sr_id, tasks = await world.sent_dossier(*addressees)
    for addressee, user in (responders or {}).items():
        r = await world.op(user, f"Task/{tasks[addressee]}/$respond", conclusion="Avis rendu.", billingCode="TIE")
        assert r.status_code == 200, r.text
    return {"sr": sr_id, "tasks": tasks}


async def test_no_cotation_before_the_answer(world: World, client: httpx.AsyncClient) -> None:
    dossier = await answered(world, world.orgs["A"])
    task_id = dossier["tasks"][world.orgs["A"]]
    r = await world.post("a1", cotation(task_id))
    assert r.status_code == 409, r.text
    assert outcome(r)["issue"][0]["code"] == "business-rule"
    assert (await world.op("a1", f"Task/{task_id}/$accept")).status_code == 200
    assert (await world.post("a1", cotation(task_id))).status_code == 409  # taken in charge is not answered
    assert await cotations_of(client, task_id) == []


async def test_only_the_requis_records_it(world: World, client: httpx.AsyncClient) -> None:
    dossier = await answered(world, world.orgs["A"], responders={world.orgs["A"]: "a1"})
    task_id = dossier["tasks"][world.orgs["A"]]
    r = await world.post("z1", cotation(task_id))  # an outsider does not even see the Task
    assert r.status_code == 404 and outcome(r)["issue"][0]["code"] == "not-found"
    for user in ("req", "c1b", "adm2", "be2", "reg"):  # who sees the Task but is not its requis
        r = await world.post(user, cotation(task_id))
        assert r.status_code == 403, (user, r.text)
        assert outcome(r)["issue"][0]["code"] == "forbidden"
    assert await cotations_of(client, task_id) == []


async def test_the_requis_records_the_cotation(world: World, client: httpx.AsyncClient) -> None:
    dossier = await answered(world, world.orgs["A"], responders={world.orgs["A"]: "a1"})
    task_id = dossier["tasks"][world.orgs["A"]]
    task = (await world.get("a1", f"Task/{task_id}")).json()
    assert billing_code(task) == "TIE"  # what $respond recorded, before any cotation

    r = await world.post("a1", cotation(task_id, note=[{"text": "Avis sur dossier"}]))
    assert r.status_code == 201, r.text
    charge = r.json()
    assert f"ChargeItem/{charge['id']}/_history/1" in r.headers["location"]
    assert charge["status"] == "billable" and charge["code"]["coding"][0]["code"] == "TE2"
    assert PROFILE in charge["meta"]["profile"]
    sr = (await world.get("a1", f"ServiceRequest/{dossier['sr']}")).json()
    assert charge["subject"] == sr["subject"]
    assert charge["performer"] == [{"actor": {"reference": world.role_of("a1")}}]
    assert charge["enterer"] == {"reference": world.role_of("a1")}
    performing = charge["performingOrganization"]
    assert performing["reference"] == world.orgs["S2"] and performing["display"] == STRUCTURES["S2"][3]
    assert performing["identifier"]["value"] == SITE_A  # communauté A's billing site
    requesting = charge["requestingOrganization"]
    assert requesting["reference"] == world.orgs["S1"] and requesting["identifier"]["value"] == STRUCTURES["S1"][2]
    assert charge["occurrenceDateTime"] == task["executionPeriod"]["end"]
    report = next(o["valueReference"]["reference"] for o in task["output"] if o["type"]["text"] == "compte-rendu")
    assert charge["service"] == [{"reference": report}]
    assert charge["supportingInformation"] == [
        {"reference": f"Task/{task_id}"},
        {"reference": f"ServiceRequest/{dossier['sr']}"},
    ]
    assert "context" not in charge and charge["enteredDate"]
    # The Task the bureau des entrées reads now carries the cotation's code, not the one typed at $respond.
    assert billing_code((await world.get("be2", f"Task/{task_id}")).json()) == "TE2"
    # One cotation per answered Task.
    r = await world.post("a2", cotation(task_id, code="RQD"))
    assert r.status_code == 409 and charge["id"] in outcome(r)["issue"][0]["diagnostics"]
    # A colleague of the communauté (e.g. the secretariat) corrects it; the server's fields stay.
    fixed = {**charge, "code": {"coding": [{"system": ACT, "code": "RQD"}]}, "subject": {"reference": "Patient/x"}}
    fixed["extension"] = [{"url": EXT_IMPUTATION, "valueCoding": {"system": IMPUTATION, "code": "PIE"}}]
    r = await world.put("a2", fixed)
    assert r.status_code == 200, r.text
    assert r.json()["code"]["coding"][0]["code"] == "RQD" and r.json()["subject"] == charge["subject"]
    assert r.json()["extension"][0]["valueCoding"]["code"] == "PIE"
    assert billing_code((await world.get("be2", f"Task/{task_id}")).json()) == "RQD"
    # Who sees the dossier sees the cotation; an outsider does not.
    assert (await world.get("req", f"ChargeItem/{charge['id']}")).status_code == 200
    assert (await world.get("z1", f"ChargeItem/{charge['id']}")).status_code == 404
    assert await world.search_ids("z1", "ChargeItem") == []


async def test_invalid_cotations_write_nothing(world: World, client: httpx.AsyncClient) -> None:
    dossier = await answered(world, world.orgs["A"], responders={world.orgs["A"]: "a1"})
    task_id = dossier["tasks"][world.orgs["A"]]
    versions_before = (await client.get(f"Task/{task_id}/_history")).json()["total"]
    r = await world.post("a1", cotation(task_id, code="TIE"))  # not an act code of ours
    assert r.status_code == 422, r.text
    issue = outcome(r)["issue"][0]
    assert issue["code"] == "code-invalid" and issue["expression"] == ["ChargeItem.code"]
    r = await world.post("a1", {k: v for k, v in cotation(task_id).items() if k != "extension"})  # no imputation
    assert r.status_code == 422 and "imputation" in outcome(r)["issue"][0]["diagnostics"]
    r = await world.post("a1", cotation(task_id, imputation="XX"))
    assert r.status_code == 422 and outcome(r)["issue"][0]["code"] == "code-invalid"
    r = await world.post("a1", {**cotation(task_id), "status": "billed"})  # only the BE bills
    assert r.status_code == 422 and outcome(r)["issue"][0]["expression"] == ["ChargeItem.status"]
    r = await world.post("a1", cotation(task_id, context={"reference": "Encounter/x"}))
    assert r.status_code == 422
    r = await world.post("a1", {k: v for k, v in cotation(task_id).items() if k != "supportingInformation"})
    assert r.status_code == 422 and outcome(r)["issue"][0]["expression"] == ["ChargeItem.supportingInformation"]
    assert await cotations_of(client, task_id) == []
    assert (await client.get(f"Task/{task_id}/_history")).json()["total"] == versions_before
    assert billing_code((await world.get("a1", f"Task/{task_id}")).json()) == "TIE"


async def test_bureau_des_entrees_bills_it(world: World) -> None:
    dossier = await answered(world, world.orgs["A"], world.orgs["D"], responders={
        world.orgs["A"]: "a1", world.orgs["D"]: "d1",
    })  # fmt: skip
    task_a, task_d = dossier["tasks"][world.orgs["A"]], dossier["tasks"][world.orgs["D"]]
    charge = (await world.post("a1", cotation(task_a))).json()
    charge_d = (await world.post("d1", cotation(task_d, imputation="PIE"))).json()
    assert charge_d["performingOrganization"]["identifier"]["value"] == STRUCTURES["S3"][2]  # S3's SIRET

    # The bureau des entrées of S2 reads its own structure's cotation, not S3's; and the reverse.
    assert (await world.get("be2", f"ChargeItem/{charge['id']}")).status_code == 200
    assert (await world.get("be2", f"ChargeItem/{charge_d['id']}")).status_code == 404
    assert (await world.get("be3", f"ChargeItem/{charge['id']}")).status_code == 404
    assert (await world.get("be3", f"ChargeItem/{charge_d['id']}")).status_code == 200
    assert await world.search_ids("be3", "ChargeItem", **{"performing-organization": world.orgs["S2"]}) == []
    # With the Task, in one search.
    r = await world.get("be2", "Task", _id=task_a, _revinclude="ChargeItem:supporting-info")
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [task_a, charge["id"]]

    # It changes nothing but the status, and only to billed.
    r = await world.put("be2", {**charge, "code": {"coding": [{"system": ACT, "code": "RQD"}]}, "status": "billed"})
    assert r.status_code == 403 and outcome(r)["issue"][0]["code"] == "forbidden"
    r = await world.put("be2", {**charge, "status": "entered-in-error"})
    assert r.status_code == 403
    assert (await world.put("be3", {**charge, "status": "billed"})).status_code == 404
    r = await world.put("be2", {**charge, "status": "billed"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "billed" and r.json()["meta"]["versionId"] == "2"
    assert r.json()["meta"]["security"] == charge["meta"]["security"]
    # Once billed, the requis no longer changes it, and the BE cannot bill it twice.
    r = await world.put("a1", {**charge, "extension": [
        {"url": EXT_IMPUTATION, "valueCoding": {"system": IMPUTATION, "code": "PIE"}}]})  # fmt: skip
    assert r.status_code == 409 and outcome(r)["issue"][0]["code"] == "business-rule"
    assert (await world.put("be2", {**charge, "status": "billed"})).status_code == 409
    # By JSON Patch, the same rules (S3's bureau des entrées bills D's cotation).
    patch = [{"op": "replace", "path": "/status", "value": "billed"}]
    headers = {"Content-Type": "application/json-patch+json"}
    r = await world.client.patch(f"ChargeItem/{charge_d['id']}", json=patch, headers={**headers, **world.h("be2")})
    assert r.status_code == 404
    r = await world.client.patch(
        f"ChargeItem/{charge_d['id']}",
        json=[{"op": "replace", "path": "/code/coding/0/code", "value": "RQD"}],
        headers={**headers, **world.h("be3")},
    )
    assert r.status_code == 403
    r = await world.client.patch(f"ChargeItem/{charge_d['id']}", json=patch, headers={**headers, **world.h("be3")})
    assert r.status_code == 200 and r.json()["status"] == "billed"


async def test_the_requerant_side_cannot_change_it(world: World, client: httpx.AsyncClient) -> None:
    dossier = await answered(world, world.orgs["A"], responders={world.orgs["A"]: "a1"})
    task_id = dossier["tasks"][world.orgs["A"]]
    charge = (await world.post("a1", cotation(task_id))).json()
    for user in ("req", "c1b", "adm2", "reg"):
        r = await world.put(user, {**charge, "code": {"coding": [{"system": ACT, "code": "RQD"}]}})
        assert r.status_code == 403, (user, r.text)
    r = await world.client.delete(f"ChargeItem/{charge['id']}", headers=world.h("req"))
    assert r.status_code == 403
    r = await world.client.delete(f"ChargeItem/{charge['id']}", headers=world.h("z1"))
    assert r.status_code == 404
    r = await world.client.delete(f"ChargeItem/{charge['id']}", headers=world.h("a1"))
    assert r.status_code == 409 and "entered-in-error" in outcome(r)["issue"][0]["diagnostics"]
    # A PUT naming an unknown id does not create a cotation.
    r = await world.put("a1", {**charge, "id": "no-such-cotation"})
    assert r.status_code == 404
    # Stale If-Match.
    r = await world.client.put(
        f"ChargeItem/{charge['id']}", json=charge, headers={**JSON, **world.h("a1"), "If-Match": 'W/"9"'}
    )
    assert r.status_code == 412
    stored = await cotations_of(client, task_id)
    assert [(c["id"], c["meta"]["versionId"], c["code"]["coding"][0]["code"]) for c in stored] == [
        (charge["id"], "1", "TE2")
    ]


async def test_withdrawn_then_recorded_again(world: World) -> None:
    dossier = await answered(world, world.orgs["A"], responders={world.orgs["A"]: "a2"})
    task_id = dossier["tasks"][world.orgs["A"]]
    charge = (await world.post("a1", cotation(task_id))).json()  # a1 is in A: the same requis side
    assert charge["performer"] == [{"actor": {"reference": world.role_of("a2")}}]  # who answered
    assert charge["enterer"] == {"reference": world.role_of("a1")}  # who entered it
    r = await world.put("a1", {**charge, "status": "entered-in-error"})
    assert r.status_code == 200, r.text
    assert billing_code((await world.get("a1", f"Task/{task_id}")).json()) is None
    assert (await world.put("a1", {**charge, "status": "billable"})).status_code == 409  # withdrawn for good
    r = await world.post("a1", cotation(task_id, code="RQD"))
    assert r.status_code == 201, r.text
    assert billing_code((await world.get("be2", f"Task/{task_id}")).json()) == "RQD"
    assert await world.search_ids(
        "be2", "ChargeItem", **{"supporting-info": f"Task/{task_id}", "status": "billable"}
    ) == [r.json()["id"]]


async def test_readdressing_shares_the_cotation(world: World) -> None:
    """The cotation joins the dossier's access list: a later addressee sees it as it sees the Tasks."""
    dossier = await answered(world, world.orgs["A"], responders={world.orgs["A"]: "a1"})
    charge = (await world.post("a1", cotation(dossier["tasks"][world.orgs["A"]]))).json()
    assert (await world.get("d1", f"ChargeItem/{charge['id']}")).status_code == 404
    r = await world.op("req", f"ServiceRequest/{dossier['sr']}/$readdress", addressee=world.orgs["D"])
    assert r.status_code == 200, r.text
    assert (await world.get("d1", f"ChargeItem/{charge['id']}")).status_code == 200
    assert (await world.get("be3", f"ChargeItem/{charge['id']}")).status_code == 404  # D has not answered


async def test_bureau_des_entrees_worklist_pages(world: World) -> None:
    """The BE's worklist: its structure's billable cotations, newest answer first, page by page."""
    ids = []
    for addressee, user in ((world.orgs["B"], "b1"), (world.role_of("p"), "p"), (world.orgs["A"], "a2")):
        dossier = await answered(world, addressee, responders={addressee: user})
        r = await world.post(user, cotation(dossier["tasks"][addressee]))
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    p_charge = (await world.get("be2", f"ChargeItem/{ids[1]}")).json()
    assert p_charge["performingOrganization"]["identifier"]["value"] == STRUCTURES["S2"][2]  # P bills under S2
    billed = await world.search_ids("be2", "ChargeItem", status="billed")
    since = p_charge["occurrenceDateTime"][:10]
    params = {
        "performing-organization": world.orgs["S2"],
        "status": "billable",
        "occurrence": f"ge{since}",
        "_sort": "-occurrence",
        "_count": "2",
    }
    response = await world.get("be2", "ChargeItem", **params)
    found: list[dict[str, Any]] = []
    pages = 0
    while True:
        assert response.status_code == 200, response.text
        bundle = response.json()
        found += [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]
        pages += 1
        nxt = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
        if nxt is None:
            break
        assert "performing-organization=" in nxt and "status=billable" in nxt
        response = await world.client.get(nxt, headers=world.h("be2"))
    assert pages >= 2 and set(ids) <= {c["id"] for c in found}
    assert len({c["id"] for c in found}) == len(found)  # no repeat across pages
    assert all(c["status"] == "billable" and c["id"] not in billed for c in found)
    assert all(c["performingOrganization"]["reference"] == world.orgs["S2"] for c in found)
    times = [c["occurrenceDateTime"] for c in found]
    assert times == sorted(times, reverse=True)
    # By billing site (the FINESS the billing tool knows), and nothing for another structure's BE.
    by_site = await world.search_ids(
        "be2", "ChargeItem", **{"performing-organization:identifier": f"{FINESS}|{SITE_A}", "status": "billable"}
    )
    assert ids[2] in by_site and ids[1] not in by_site
    assert await world.search_ids("be3", "ChargeItem", **params) == []


async def test_capabilities_name_the_profile_and_the_worklist_parameters(
    anon_client: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    statement = (await anon_client.get("metadata")).json()
    charge_item = next(r for r in statement["rest"][0]["resource"] if r["type"] == "ChargeItem")
    assert charge_item["supportedProfile"] == [PROFILE]
    params = {p["name"] for p in charge_item["searchParam"]}
    assert {"status", "supporting-info", "performing-organization", "occurrence"} <= params
    for name in ("CodeSystem/teleexpertise-act", "ValueSet/billing-imputation", "StructureDefinition/tlx-ext-hl7-peer"):
        assert (await client.get(name)).status_code == 200, name  # published at start


async def test_hl7_peer_setting_is_validated(world: World, client: httpx.AsyncClient) -> None:
    """tlx-ext-hl7-peer (teleexpertise/delivery.py) now has a definition: a wrong setting is refused at once."""
    url = f"{BASE}/StructureDefinition/tlx-ext-hl7-peer"
    s3 = (await client.get(world.orgs["S3"])).json()

    async def put(*parts: dict[str, Any], on: dict[str, Any] = s3) -> httpx.Response:
        body = {**on, "extension": [{"url": url, "extension": list(parts)}]}
        return await client.put(f"{on['resourceType']}/{on['id']}", json=body, headers=JSON)

    peer = {"url": "peer", "valueString": "EAI-S3"}
    for bad in (
        [peer, {"url": "format", "valueCode": "docx"}],  # not a delivery format
        [{"url": "format", "valueCode": "pdf"}],  # no peer
        [peer, {"url": "route", "valueString": "x"}],  # closed: no other sub-extension
    ):
        r = await put(*bad)
        assert r.status_code == 422, (bad, r.text)
        assert outcome(r)["issue"][0]["expression"][0].startswith("Organization.extension[0]")
    patient = (await client.post("Patient", json={"resourceType": "Patient"}, headers=JSON)).json()
    assert (await put(peer, on=patient)).status_code == 422  # a structure's setting only
    r = await put(
        peer, {"url": "format", "valueCode": "tlm-cr"}, {"url": "practiceSetting", "valueCode": "ETABLISSEMENT"}
    )
    assert r.status_code == 200, r.text
