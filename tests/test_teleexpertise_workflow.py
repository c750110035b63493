"""The télédossier workflow over HTTP, with the tokens of its users (spec §8 tests 1, 4, 5, 6).

Create as draft in an author context, send to several addressees (one Task each), take in charge, ask for
and give complementary information (non-blocking for greffe rénale only), answer with a compte-rendu,
close per side, refuse, re-address; illegal transitions (409), wrong actors (403), state-machine fields
that plain updates cannot touch, each transition in the Task's history and in the audit trail.
"""

from __future__ import annotations

import asyncio
import base64

import httpx
import pytest

from tests.test_teleexpertise_world import (
    DOSSIER_STATUS,
    DOSSIER_TYPE,
    JSON,
    OPERATION,
    World,
    build_world,
    outcome,
    state,
)


@pytest.fixture(scope="module")
async def world(anon_client: httpx.AsyncClient, client: httpx.AsyncClient, settings) -> World:
    return await build_world(anon_client, dict(client.headers), settings)


def draft_body(world: World, pid: str, kind: str = "tle-programmee") -> dict:
    return {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "category": [{"coding": [{"system": DOSSIER_TYPE, "code": kind}]}],
        "subject": {"reference": f"Patient/{pid}"},
    }


async def test_create_in_author_context(world: World, client: httpx.AsyncClient) -> None:
    """§8 test 1: a user in two communautés must choose one; the dossier is then a draft in that context."""
    pid = await world.patient("req")
    body = draft_body(world, pid)
    r = await world.post("req", body)
    assert r.status_code == 422
    assert "several communautés" in outcome(r)["issue"][0]["diagnostics"]

    r = await world.post("req", body, communaute=world.orgs["C1"])
    assert r.status_code == 201, r.text
    sr = r.json()
    assert state(sr) == ("draft", "brouillon")
    assert sr["requester"]["reference"] == world.role_of("req", "C1")
    role = (await client.get(sr["requester"]["reference"])).json()
    assert role["organization"]["reference"] == world.orgs["C1"]
    c1 = (await client.get(world.orgs["C1"])).json()
    assert c1["partOf"]["reference"] == world.orgs["S1"]  # the dossier's structure
    assert sr["identifier"][0]["value"] == sr["id"]
    assert sr["priority"] == "routine"

    # The other way to choose: a requester PractitionerRole of one's own (the bare id works for communaute too).
    r = await world.post("req", {**body, "requester": {"reference": world.role_of("req", "C2")}})
    assert r.status_code == 201 and r.json()["requester"]["reference"] == world.role_of("req", "C2")
    r = await world.post("req", body, communaute=world.orgs["C2"].split("/")[1])
    assert r.status_code == 201 and r.json()["requester"]["reference"] == world.role_of("req", "C2")

    # Someone else's role, a communauté one is not in, a non-draft, a missing type: refused.
    r = await world.post("req", {**body, "requester": {"reference": world.role_of("a1")}})
    assert r.status_code == 422
    r = await world.post("req", body, communaute=world.orgs["A"])
    assert r.status_code == 422
    r = await world.post("req", {**body, "status": "active"}, communaute=world.orgs["C1"])
    assert r.status_code == 422
    r = await world.post("req", {**body, "category": [{"text": "avis"}]}, communaute=world.orgs["C1"])
    assert r.status_code == 422
    # One communauté: no choice to make. An urgent type gets priority stat.
    pid_a = await world.patient("a1")
    r = await world.post("a1", draft_body(world, pid_a, "tele-avc"))
    assert r.status_code == 201 and r.json()["requester"]["reference"] == world.role_of("a1")
    assert r.json()["priority"] == "stat"
    # A patient the author cannot see is "not known"; the bureau des entrées creates no dossier.
    hidden = (await client.post("Patient", json={"resourceType": "Patient"}, headers=JSON)).json()["id"]
    r = await world.post("req", draft_body(world, hidden), communaute=world.orgs["C1"])
    assert r.status_code == 422 and "not known" in outcome(r)["issue"][0]["diagnostics"]
    r = await world.post("be2", draft_body(world, pid))
    assert r.status_code == 403


async def test_send_one_task_per_addressee(world: World) -> None:
    """§8 test 4 (first part): sent to communautés A and B and professional P → three Tasks."""
    sr = await world.dossier()
    bundle = await world.send(sr["id"], world.orgs["A"], world.orgs["B"], world.role_of("p"))
    resources = [e["resource"] for e in bundle["entry"]]
    assert resources[0]["resourceType"] == "ServiceRequest"
    assert state(resources[0]) == ("active", "en-attente-reponse")
    assert {p["reference"] for p in resources[0]["performer"]} == {world.orgs["A"], world.orgs["B"], world.role_of("p")}
    tasks = [r for r in resources if r["resourceType"] == "Task"]
    assert len(tasks) == 3
    assert {t["owner"]["reference"] for t in tasks} == {world.orgs["A"], world.orgs["B"], world.role_of("p")}
    for task in tasks:
        assert state(task) == ("requested", "en-attente-reponse")
        assert task["focus"]["reference"] == f"ServiceRequest/{sr['id']}"
        assert task["for"] == sr["subject"]
        assert task["requester"] == sr["requester"]
        assert task["code"]["coding"][0] == {"system": DOSSIER_TYPE, "code": "tle-programmee"}
    # The same Tasks are what a search finds.
    found = await world.search_ids("req", "Task", focus=f"ServiceRequest/{sr['id']}")
    assert sorted(found) == sorted(t["id"] for t in tasks)
    # Sending twice is an illegal transition; an addressee must be a communauté or a professional's role.
    r = await world.op("req", f"ServiceRequest/{sr['id']}/$send", addressee=world.orgs["A"])
    assert r.status_code == 409 and outcome(r)
    other = await world.dossier()
    r = await world.op("req", f"ServiceRequest/{other['id']}/$send", addressee=world.orgs["S2"])
    assert r.status_code == 422
    r = await world.op("req", f"ServiceRequest/{other['id']}/$send")
    assert r.status_code == 422  # no addressee, no performer in the draft
    # The draft's performer list is used when no addressee is given.
    with_performer = await world.dossier(performer=[{"reference": world.orgs["B"]}])
    bundle = await world.send(with_performer["id"])
    assert [e["resource"]["owner"]["reference"] for e in bundle["entry"][1:]] == [world.orgs["B"]]


async def test_lifecycle_and_closing_per_side(world: World) -> None:
    """§8 test 5: taken in charge, answered with a CR, closed by the requérant then by the requis."""
    sr_id, tasks = await world.sent_dossier(world.orgs["A"])
    task_id = tasks[world.orgs["A"]]
    r = await world.op("a1", f"Task/{task_id}/$accept")
    assert r.status_code == 200, r.text
    task = r.json()
    assert state(task) == ("in-progress", "pris-en-charge")
    assert task["owner"]["reference"] == world.role_of("a1")
    assert task["restriction"]["recipient"][0]["reference"] == world.orgs["A"]
    assert task["executionPeriod"]["start"]
    seen = (await world.get("req", f"Task/{task_id}")).json()  # the requérant sees it
    assert state(seen) == ("in-progress", "pris-en-charge")

    form = {
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "item": [{"linkId": "avis", "text": "Avis", "answer": [{"valueString": "Pas de contre-indication."}]}],
    }
    r = await world.op("a1", f"Task/{task_id}/$respond", response=form, conclusion="Avis favorable.", billingCode="TIE")
    assert r.status_code == 200, r.text
    task = r.json()
    assert state(task) == ("completed", "repondu")
    assert task["executionPeriod"]["end"]
    outputs = {o["type"]["text"]: o["valueReference"]["reference"] for o in task["output"]}
    report = (await world.get("req", outputs["compte-rendu"])).json()
    assert report["resourceType"] == "DiagnosticReport" and report["status"] == "final"
    assert report["basedOn"][0]["reference"] == f"ServiceRequest/{sr_id}"
    assert report["conclusion"] == "Avis favorable."
    assert report["performer"][0]["reference"] == world.role_of("a1")
    response = (await world.get("req", outputs["formulaire de réponse"])).json()
    assert response["author"]["reference"] == world.role_of("a1")
    assert response["basedOn"][0]["reference"] == f"ServiceRequest/{sr_id}"
    # The compte-rendu PDF, as a DocumentReference of the dossier and the report's presentedForm.
    document = (await world.get("req", outputs["document"])).json()
    assert document["context"]["related"][0]["reference"] == f"ServiceRequest/{sr_id}"
    attachment = document["content"][0]["attachment"]
    assert attachment["contentType"] == "application/pdf"
    binary = (await world.get("req", attachment["url"], _format="json")).json()
    assert base64.b64decode(binary["data"]).startswith(b"%PDF")
    assert report["presentedForm"][0]["url"] == attachment["url"]

    # The requérant closes its side: the dossier is completed/clos-requerant, the requis side stays repondu.
    r = await world.op("req", f"ServiceRequest/{sr_id}/$close")
    assert r.status_code == 200, r.text
    sr = r.json()["entry"][0]["resource"]
    assert state(sr) == ("completed", "clos-requerant")
    assert any(e["url"].endswith("tlx-ext-closed-by-requester") for e in sr["extension"])
    task = (await world.get("a1", f"Task/{task_id}")).json()
    assert state(task) == ("completed", "repondu")
    assert any(e["url"].endswith("tlx-ext-closed-by-requester") for e in task["extension"])
    # Then the requis closes its side.
    r = await world.op("a1", f"Task/{task_id}/$close")
    assert r.status_code == 200, r.text
    assert state(r.json()) == ("completed", "clos-requis")
    assert any(e["url"].endswith("tlx-ext-closed-by-requested") for e in r.json()["extension"])
    # Closing again is illegal on either side.
    assert (await world.op("a1", f"Task/{task_id}/$close")).status_code == 409
    assert (await world.op("req", f"ServiceRequest/{sr_id}/$close")).status_code == 409


async def test_requerant_cannot_close_while_addressees_work(world: World) -> None:
    sr_id, _ = await world.sent_dossier(world.orgs["A"])
    r = await world.op("req", f"ServiceRequest/{sr_id}/$close")
    assert r.status_code == 409
    assert "still working" in outcome(r)["issue"][0]["diagnostics"]


@pytest.mark.parametrize("kind", ["greffe-renale", "tle-programmee"])
async def test_complementary_information(world: World, kind: str) -> None:
    """§8 test 6: the requis asks (Task on-hold), greffe rénale may still be answered, other types wait for
    the requérant's Communication."""
    sr_id, tasks = await world.sent_dossier(world.orgs["A"], kind=kind)
    task_id = tasks[world.orgs["A"]]
    assert (await world.op("a1", f"Task/{task_id}/$accept")).status_code == 200
    r = await world.op("a1", f"Task/{task_id}/$request-info", message="Merci de joindre le dernier bilan.")
    assert r.status_code == 200, r.text
    assert state(r.json()) == ("on-hold", "attente-info-complementaire")
    asks = (await world.get("req", "CommunicationRequest", **{"based-on": f"ServiceRequest/{sr_id}"})).json()
    (ask,) = [e["resource"] for e in asks["entry"]]
    assert ask["status"] == "active" and ask["about"][0]["reference"] == f"Task/{task_id}"
    assert ask["recipient"][0]["reference"] == world.role_of("req", "C1")
    assert ask["payload"][0]["contentString"] == "Merci de joindre le dernier bilan."

    r = await world.op("a1", f"Task/{task_id}/$respond", conclusion="Avis.")
    if kind == "greffe-renale":
        assert r.status_code == 200, r.text  # non-blocking
        assert state(r.json()) == ("completed", "repondu")
        return
    assert r.status_code == 409 and outcome(r)
    # The requérant answers with a message and a document of the dossier.
    doc = {
        "resourceType": "DocumentReference",
        "status": "current",
        "context": {"related": [{"reference": f"ServiceRequest/{sr_id}"}]},
        "content": [{"attachment": {"contentType": "text/plain", "data": base64.b64encode(b"bilan").decode()}}],
    }
    r = await world.post("req", doc)
    assert r.status_code == 201, r.text
    doc_id = r.json()["id"]
    r = await world.op(
        "req", f"Task/{task_id}/$provide-info", message="Bilan joint.", attachment=f"DocumentReference/{doc_id}"
    )
    assert r.status_code == 200, r.text
    assert state(r.json()) == ("in-progress", "pris-en-charge")
    comms = (await world.get("a1", "Communication", **{"part-of": f"Task/{task_id}"})).json()
    (comm,) = [e["resource"] for e in comms["entry"]]
    assert comm["sender"]["reference"] == world.role_of("req", "C1")
    assert {"reference": f"CommunicationRequest/{ask['id']}"} in comm["basedOn"]
    assert comm["payload"][1]["contentReference"]["reference"] == f"DocumentReference/{doc_id}"
    assert (await world.get("a1", f"DocumentReference/{doc_id}")).status_code == 200
    assert (await world.get("a1", f"CommunicationRequest/{ask['id']}")).json()["status"] == "completed"
    r = await world.op("a1", f"Task/{task_id}/$respond", conclusion="Avis.")
    assert r.status_code == 200, r.text


async def test_refusals_revoke_the_dossier(world: World) -> None:
    sr_id, tasks = await world.sent_dossier(world.orgs["A"], world.orgs["B"])
    r = await world.op("a1", f"Task/{tasks[world.orgs['A']]}/$refuse")
    assert r.status_code == 422  # a reason is required
    r = await world.op("a1", f"Task/{tasks[world.orgs['A']]}/$refuse", reason="Hors de notre spécialité")
    assert r.status_code == 200, r.text
    assert state(r.json()) == ("rejected", "refuse")
    assert r.json()["statusReason"]["text"] == "Hors de notre spécialité"
    assert state((await world.get("req", f"ServiceRequest/{sr_id}")).json()) == ("active", "en-attente-reponse")
    r = await world.op("b1", f"Task/{tasks[world.orgs['B']]}/$refuse", reason="Conflit d'intérêts", recusation=True)
    assert r.status_code == 200, r.text
    assert state(r.json()) == ("rejected", "recuse")
    assert state((await world.get("req", f"ServiceRequest/{sr_id}")).json()) == ("revoked", "refuse")
    # A refused Task moves no more.
    assert (await world.op("a1", f"Task/{tasks[world.orgs['A']]}/$accept")).status_code == 409


async def test_readdressing(world: World) -> None:
    """An addressing error (the old Task cancelled/readresse), then a second opinion from D (§8 test 4)."""
    sr_id, tasks = await world.sent_dossier(world.orgs["A"])
    old = tasks[world.orgs["A"]]
    assert (await world.get("b1", f"ServiceRequest/{sr_id}")).status_code == 404
    r = await world.op("req", f"Task/{old}/$readdress", addressee=world.orgs["B"], addressingError=True)
    assert r.status_code == 200, r.text
    written = {e["resource"]["id"]: e["resource"] for e in r.json()["entry"] if e["resource"]["resourceType"] == "Task"}
    assert state(written[old]) == ("cancelled", "readresse")
    (new_id,) = [i for i in written if i != old]
    assert written[new_id]["owner"]["reference"] == world.orgs["B"]
    assert (await world.get("b1", f"ServiceRequest/{sr_id}")).status_code == 200
    # A second opinion: D joins; the dossier now has three Tasks.
    assert (await world.get("d1", f"ServiceRequest/{sr_id}")).status_code == 404
    r = await world.op("req", f"ServiceRequest/{sr_id}/$readdress", addressee=world.orgs["D"])
    assert r.status_code == 200, r.text
    assert len(await world.search_ids("req", "Task", focus=f"ServiceRequest/{sr_id}")) == 3
    assert (await world.get("d1", f"ServiceRequest/{sr_id}")).status_code == 200
    # B already has an open Task.
    r = await world.op("req", f"ServiceRequest/{sr_id}/$readdress", addressee=world.orgs["B"])
    assert r.status_code == 422
    # A cancelled Task cannot be re-addressed again.
    r = await world.op("req", f"Task/{old}/$readdress", addressee=world.orgs["Z"], addressingError=True)
    assert r.status_code == 409


async def test_illegal_transitions_and_wrong_actors(world: World) -> None:
    sr_id, tasks = await world.sent_dossier(world.orgs["A"], world.orgs["B"])
    task_a, task_b = tasks[world.orgs["A"]], tasks[world.orgs["B"]]
    # Wrong side: 403 with an OperationOutcome.
    for user, path in (
        ("req", f"Task/{task_a}/$accept"),  # the requérant does not take its own dossier
        ("b1", f"Task/{task_a}/$accept"),  # B sees the dossier but A's Task is not B's
        ("a1", f"Task/{task_a}/$provide-info"),
        ("a1", f"ServiceRequest/{sr_id}/$readdress"),
        ("adm2", f"Task/{task_a}/$accept"),  # an administrator sees the dossier, acts on none
    ):
        r = await world.op(user, path, message="x", addressee=world.orgs["D"])
        assert r.status_code == 403, (user, path, r.text)
        assert outcome(r)["issue"][0]["code"] == "forbidden"
    # Someone who cannot see the dossier (Z; the bureau des entrées before any answer): 404, as for a read.
    assert (await world.op("z1", f"Task/{task_a}/$accept")).status_code == 404
    assert (await world.op("be2", f"Task/{task_a}/$accept")).status_code == 404
    # A system token is not a téléexpertise user.
    r = await world.client.post(f"Task/{task_a}/$accept", headers=world.admin)
    assert r.status_code == 403
    # Illegal transitions: 409 with an OperationOutcome.
    assert (await world.op("a1", f"Task/{task_a}/$close")).status_code == 409  # not answered
    assert (await world.op("a1", f"Task/{task_a}/$accept")).status_code == 200
    r = await world.op("a2", f"Task/{task_a}/$accept")  # already taken
    assert r.status_code == 409 and outcome(r)["issue"][0]["code"] == "business-rule"
    # A colleague of the same communauté may answer a Task taken by another member (shared worklist).
    assert (await world.op("a2", f"Task/{task_a}/$respond", conclusion="ok")).status_code == 200
    assert (await world.op("a1", f"Task/{task_a}/$respond", conclusion="encore")).status_code == 409
    assert (await world.op("b1", f"Task/{task_b}/$provide-info", message="x")).status_code == 403


async def test_plain_updates_cannot_bypass_the_state_machine(world: World) -> None:
    sr_id, tasks = await world.sent_dossier(world.orgs["A"])
    task_id = tasks[world.orgs["A"]]
    task = (await world.get("a1", f"Task/{task_id}")).json()
    moved = {
        **task,
        "status": "completed",
        "businessStatus": {"coding": [{"system": DOSSIER_STATUS, "code": "repondu"}]},
    }
    r = await world.client.put(f"Task/{task_id}", json=moved, headers={**JSON, **world.h("a1")})
    assert r.status_code == 409, r.text
    assert outcome(r)["issue"][0]["code"] == "business-rule"
    patch = [{"op": "replace", "path": "/status", "value": "completed"}]
    r = await world.client.patch(
        f"Task/{task_id}", json=patch, headers={"Content-Type": "application/json-patch+json", **world.h("a1")}
    )
    assert r.status_code == 409
    # Fields the machine does not own are editable, and the access list is the server's whatever is sent.
    edited = {**task, "note": [{"text": "à voir en RCP"}], "meta": {"security": []}}
    r = await world.client.put(f"Task/{task_id}", json=edited, headers={**JSON, **world.h("a1")})
    assert r.status_code == 200, r.text
    assert r.json()["meta"]["security"] == task["meta"]["security"]
    assert (await world.get("req", f"Task/{task_id}")).status_code == 200
    patch = [{"op": "remove", "path": "/meta/security/0"}]
    r = await world.client.patch(
        f"Task/{task_id}", json=patch, headers={"Content-Type": "application/json-patch+json", **world.h("a1")}
    )
    assert r.status_code == 403
    # Tasks come from $send, end through their operations; the dossier's status is not PUT.
    r = await world.post("req", {k: v for k, v in task.items() if k not in ("id", "meta")})
    assert r.status_code == 409
    r = await world.client.delete(f"Task/{task_id}", headers=world.h("a1"))
    assert r.status_code == 409
    sr = (await world.get("req", f"ServiceRequest/{sr_id}")).json()
    r = await world.put("req", {**sr, "status": "completed"})
    assert r.status_code == 409
    r = await world.put("req", {**sr, "note": [{"text": "précision"}]})
    assert r.status_code == 200, r.text
    r = await world.put("a1", {**sr, "note": [{"text": "pas à moi"}]})
    assert r.status_code == 403  # the requis side does not edit the request
    r = await world.client.delete(f"ServiceRequest/{sr_id}", headers=world.h("req"))
    assert r.status_code == 409  # sent: no longer a draft


async def test_history_and_audit_of_each_transition(world: World, client: httpx.AsyncClient) -> None:
    sr_id, tasks = await world.sent_dossier(world.orgs["A"])
    task_id = tasks[world.orgs["A"]]
    assert (await world.op("a1", f"Task/{task_id}/$accept")).status_code == 200
    assert (await world.op("a1", f"Task/{task_id}/$request-info", message="?")).status_code == 200
    assert (await world.op("req", f"Task/{task_id}/$provide-info", message="!")).status_code == 200
    assert (await world.op("a1", f"Task/{task_id}/$respond", conclusion="ok")).status_code == 200
    assert (await world.op("a1", f"Task/{task_id}/$close")).status_code == 200

    history = (await world.get("req", f"Task/{task_id}/_history")).json()
    versions = sorted((int(e["resource"]["meta"]["versionId"]), state(e["resource"])) for e in history["entry"])
    assert [s for _, s in versions] == [
        ("requested", "en-attente-reponse"),
        ("in-progress", "pris-en-charge"),
        ("on-hold", "attente-info-complementaire"),
        ("in-progress", "pris-en-charge"),
        ("completed", "repondu"),
        ("completed", "clos-requis"),
    ]

    events = (await client.get("AuditEvent", params={"entity": f"Task/{task_id}", "_count": 50})).json()
    by_operation = {}
    for e in events.get("entry", []):
        event = e["resource"]
        codes = [s["code"] for s in event["subtype"] if s["system"] == OPERATION]
        if codes:
            by_operation[codes[0]] = event
    assert set(by_operation) == {"send", "accept", "request-info", "provide-info", "respond", "close"}
    accept = by_operation["accept"]
    whats = {x["what"]["reference"] for x in accept["entity"]}
    assert {f"Task/{task_id}", f"ServiceRequest/{sr_id}"} <= whats
    assert any(w.startswith("Patient/") for w in whats)
    agents = [a["who"]["reference"] for a in accept["agent"]]
    assert agents == [world.people["a1"], world.role_of("a1"), world.orgs["A"]]
    assert accept["agent"][0]["requestor"] is True and accept["outcome"] == "0"
    assert "pris-en-charge" in accept["outcomeDesc"]
    provide = by_operation["provide-info"]
    assert provide["agent"][0]["who"]["reference"] == world.people["req"]
    assert provide["agent"][2]["who"]["reference"] == world.orgs["C1"]


async def test_concurrent_transitions_one_wins(world: World) -> None:
    """Two members of A take the same dossier at once: one takes it, the other gets 409; nothing is lost."""
    _, tasks = await world.sent_dossier(world.orgs["A"])
    task_id = tasks[world.orgs["A"]]
    results = await asyncio.gather(world.op("a1", f"Task/{task_id}/$accept"), world.op("a2", f"Task/{task_id}/$accept"))
    assert sorted(r.status_code for r in results) == [200, 409]
    winner = next(r for r in results if r.status_code == 200).json()["owner"]["reference"]
    task = (await world.get("req", f"Task/{task_id}")).json()
    assert task["owner"]["reference"] == winner and state(task) == ("in-progress", "pris-en-charge")
    history = (await world.get("req", f"Task/{task_id}/_history")).json()
    assert history["total"] == 2
