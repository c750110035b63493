"""A dossier addressed to a professional outside the annuaire, invited by e-mail (spec R-12, R-14, §7.1).

Over HTTP with the world's users, a real SMTP server (aiosmtpd) and the real local login: the requérant invites
by e-mail; the invitee gets one e-mail (no medical content) with a single-use enrolment link, recorded as a
Communication; enrols (login + password); logs in with password + e-mailed code; sees the invited dossier and
nothing else; takes it in charge and answers it. Bad invitees are refused with nothing written; used, expired
and unknown links are refused with no account; the identity rules (RPPS, e-mail, annuaire members) hold.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from fhir_server.config import Settings
from tests.conftest import TEST_BASE, make_settings
from tests.helpers import public_client_file
from tests.http_sink import drained, until
from tests.smtp_sink import Mailbox, run_mailbox
from tests.test_teleexpertise_world import (
    BASE,
    JSON,
    OPERATION,
    ROLE,
    RPPS,
    World,
    build_world,
    outcome,
    state,
    user_headers,
)

ORIGIN = "http://testserver"
REDIRECT = "https://app.example.fr/callback"
LOGIN_URL = ORIGIN + "/oauth/login/local"
INVITATION_URL = ORIGIN + "/oauth/invitation"
APP_URL = "https://tlx.example.fr/dossiers/{id}"
INVITATION = f"{BASE}/CodeSystem/tlx-invitation"
INVITED_FOR = f"{BASE}/CodeSystem/tlx-invited-for"
EVENT = f"{BASE}/CodeSystem/teledossier-event"
PASSWORD = "Avis-Externe-2026!"
# What must never leave in the invitation e-mail: the patient's names and the dossier's clinical words.
PATIENT_FAMILY, PATIENT_GIVEN = "Quincampoix", "Jeanne"  # the world's patients are all Jeanne
CLINICAL = ["sarcoïdose", "Suspicion", "adénopathies"]
LINK = re.compile(r"(https?://\S+/oauth/invitation\?token=([A-Za-z0-9_\-]+))")


@pytest.fixture(scope="module")
def mailbox() -> Iterator[Mailbox]:
    for box, port in run_mailbox():
        box.port = port  # type: ignore[attr-defined]
        yield box


@pytest.fixture(scope="module")
async def settings(ferretdb_uri: str, tmp_path_factory: pytest.TempPathFactory, mailbox: Mailbox) -> Settings:
    data = tmp_path_factory.mktemp("data")
    clients_file = public_client_file(data, "tlx-app", REDIRECT, "openid fhirUser user/*.cruds")
    return make_settings(
        ferretdb_uri,
        data,
        oauth_clients_file=clients_file,
        local_login=True,
        smtp_host="127.0.0.1",
        smtp_port=mailbox.port,  # type: ignore[attr-defined]
        smtp_from="teleexpertise@fhir-server.example",
        app_url=APP_URL,
        notify_max_attempts=2,
        notify_retry_seconds=0.1,
    )


@pytest.fixture(scope="module")
async def oauth(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The browser side: the enrolment pages and the local login (cookies), outside /fhir."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as c:
        yield c


@pytest.fixture(scope="module")
async def world(anon_client: httpx.AsyncClient, client: httpx.AsyncClient, settings: Settings) -> World:
    return await build_world(anon_client, dict(client.headers), settings)


# ---- helpers ----------------------------------------------------------------------------------------------


def invitee(email: str | None, **parts: str) -> dict[str, Any]:
    values = ({"email": email} if email is not None else {}) | parts
    return {"name": "invitee", "part": [{"name": k, "valueString": v} for k, v in values.items()]}


async def operation(world: World, user: str, path: str, *parameters: dict[str, Any]) -> httpx.Response:
    body = {"resourceType": "Parameters", "parameter": list(parameters)}
    return await world.client.post(path, json=body, headers={**JSON, **world.h(user)})


def addressee(ref: str) -> dict[str, Any]:
    return {"name": "addressee", "valueReference": {"reference": ref}}


def text_of(msg: EmailMessage) -> str:
    return msg.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]


def db(app: Any) -> Any:
    return app.state.server.database.db


async def clinical_dossier(world: World) -> dict[str, str]:
    """A draft of req (C1) with a patient, a request form and an attachment (DocumentReference + Binary)."""
    pid = await world.patient("req", family=PATIENT_FAMILY)
    sr = await world.dossier(patient=pid)
    qr = await world.request_form(sr["id"], pid, "Suspicion de sarcoïdose, adénopathies")
    binary = {
        "resourceType": "Binary",
        "contentType": "text/plain",
        "securityContext": {"reference": f"ServiceRequest/{sr['id']}"},
        "data": base64.b64encode(b"compte rendu de scanner").decode(),
    }
    r = await world.post("req", binary)
    assert r.status_code == 201, r.text
    bin_id = r.json()["id"]
    document = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": f"Patient/{pid}"},
        "context": {"related": [{"reference": f"ServiceRequest/{sr['id']}"}]},
        "content": [{"attachment": {"contentType": "text/plain", "url": f"Binary/{bin_id}", "title": "scanner.txt"}}],
    }
    r = await world.post("req", document)
    assert r.status_code == 201, r.text
    return {"sr": sr["id"], "patient": pid, "qr": qr, "document": r.json()["id"], "binary": bin_id}


async def invitation_mail(mailbox: Mailbox, email: str, count: int = 1) -> EmailMessage:
    await until(lambda: len(mailbox.to(email)) >= count, f"the e-mail to {email}")
    return mailbox.to(email)[count - 1]


def link_of(msg: EmailMessage) -> tuple[str, str]:
    match = LINK.search(text_of(msg))
    assert match, text_of(msg)
    return match.group(1), match.group(2)


async def enrol(
    oauth: httpx.AsyncClient, token: str, login: str, password: str = PASSWORD, **extra: str
) -> httpx.Response:
    form = {"token": token, "login": login, "password": password, "confirm": password, **extra}
    return await oauth.post(INVITATION_URL, data=form)


async def count(client: httpx.AsyncClient, rtype: str, **params: str) -> int:
    r = await client.get(rtype, params={**params, "_summary": "count"})
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


async def local_login(oauth: httpx.AsyncClient, mailbox: Mailbox, login: str, email: str) -> str:
    """The real login: authorize, password form, the code e-mailed by the real SMTP server, token exchange."""
    verifier, challenge = pkce()
    oauth.cookies.clear()
    query = {
        "response_type": "code",
        "client_id": "tlx-app",
        "redirect_uri": REDIRECT,
        "scope": "openid fhirUser user/*.cruds",
        "state": "s",
        "aud": TEST_BASE,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "idp": "local",
    }
    r = await oauth.get(ORIGIN + "/oauth/authorize", params=query)
    assert r.status_code == 302 and r.headers["location"].startswith(LOGIN_URL), r.text
    r = await oauth.get(r.headers["location"])
    assert r.status_code == 200 and 'name="password"' in r.text, r.text
    before = len(mailbox.to(email))
    r = await oauth.post(LOGIN_URL, data={"login": login, "password": PASSWORD})
    assert r.status_code == 200 and 'name="code"' in r.text, r.text
    msg = await invitation_mail(mailbox, email, before + 1)
    assert "code de connexion" in msg["Subject"]
    code = re.search(r"\b(\d{6})\b", text_of(msg)).group(1)  # type: ignore[union-attr]
    r = await oauth.post(LOGIN_URL, data={"code": code})
    assert r.status_code == 302, r.text
    query_back = parse_qs(urlsplit(r.headers["location"]).query)
    form = {
        "grant_type": "authorization_code",
        "code": query_back["code"][0],
        "redirect_uri": REDIRECT,
        "client_id": "tlx-app",
        "code_verifier": verifier,
    }
    r = await oauth.post(ORIGIN + "/oauth/token", data=form)
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def tasks_of(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{addressee: Task} of a $send / $readdress answer."""
    return {
        e["resource"]["restriction"]["recipient"][0]["reference"]: e["resource"]
        for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Task"
    }


# ---- the whole journey -------------------------------------------------------------------------------------


async def test_invite_enrol_log_in_and_answer(
    world: World, client: httpx.AsyncClient, oauth: httpx.AsyncClient, mailbox: Mailbox, app: Any
) -> None:
    email = "alice.durand@cabinet-externe.example.fr"
    dossier = await clinical_dossier(world)
    sr_id = dossier["sr"]
    r = await operation(
        world, "req", f"ServiceRequest/{sr_id}/$send",
        addressee(world.orgs["A"]), invitee(email.upper(), family="Durand", given="Alice", rpps="19900000001"),
    )  # fmt: skip
    assert r.status_code == 200, r.text
    tasks = tasks_of(r.json())
    assert len(tasks) == 2 and world.orgs["A"] in tasks
    [role_ref] = [a for a in tasks if a.startswith("PractitionerRole/")]
    task = tasks[role_ref]
    assert state(task) == ("requested", "en-attente-reponse") and task["owner"]["reference"] == role_ref
    # The invitation role: profile ps, no organisation, tagged, limited to this dossier; its Practitioner pending.
    role = (await client.get(role_ref)).json()
    assert role["code"][0]["coding"][0] == {"system": ROLE, "code": "ps"} and "organization" not in role
    assert {(t["system"], t["code"]) for t in role["meta"]["tag"]} >= {
        (INVITATION, "invited"),
        (INVITED_FOR, f"ServiceRequest/{sr_id}"),
    }
    practitioner_ref = role["practitioner"]["reference"]
    person = (await client.get(practitioner_ref)).json()
    assert person["active"] is False
    assert person["identifier"] == [{"system": RPPS, "value": "19900000001"}]
    assert person["name"] == [{"family": "Durand", "given": ["Alice"]}]
    assert person["telecom"] == [{"system": "email", "value": email}]
    sr = (await client.get(f"ServiceRequest/{sr_id}")).json()
    assert role_ref in {p["reference"] for p in sr["performer"]}

    # One e-mail to the invitee: the enrolment link, no medical content; recorded as a Communication.
    msg = await invitation_mail(mailbox, email)
    await drained(app)
    assert len(mailbox.to(email)) == 1
    link, token = link_of(msg)
    assert link.startswith(INVITATION_URL + "?token=")
    content = msg["Subject"] + "\n" + text_of(msg)
    assert sr_id in content and "invitation" in msg["Subject"]
    for word in (PATIENT_FAMILY, PATIENT_GIVEN, *CLINICAL):
        assert word.lower() not in content.lower(), word
    r = await client.get("Communication", params={"recipient": role_ref, "category": f"{EVENT}|invited"})
    [record] = [e["resource"] for e in r.json()["entry"]]
    assert record["status"] == "completed" and record["sent"]
    assert {a["reference"] for a in record["about"]} == {f"Task/{task['id']}", f"ServiceRequest/{sr_id}"}
    assert record["extension"][0]["valueContactPoint"] == {"system": "email", "value": email}
    assert record["topic"]["text"] == msg["Subject"]
    recorded = record["payload"][0]["contentString"]
    assert token not in recorded and "lien personnel" in recorded
    assert recorded == text_of(msg).replace(link, "[lien personnel d'inscription, non conservé]")
    # The token itself is nowhere in the database: only its hash.
    stored = await db(app)["tlx_invitations"].find_one({"_id": hashlib.sha256(token.encode()).hexdigest()})
    assert stored and stored["practitioner"] == practitioner_ref and stored["used"] is None
    for collection in ("tlx_invitations", "outbox", "Communication"):
        docs = await db(app)[collection].find({}).to_list(None)
        assert token not in json.dumps(docs, default=str), collection

    # Enrolment: the form, refusals that keep the token, then the account.
    r = await oauth.get(link)
    assert r.status_code == 200 and 'name="password"' in r.text and email in r.text
    assert r.headers["cache-control"] == "no-store"
    r = await enrol(oauth, token, "alice.durand", confirm="Something-Else-1")
    assert r.status_code == 400 and "diffèrent" in r.text
    r = await enrol(oauth, token, "alice.durand", password="short")
    assert r.status_code == 400 and "Mot de passe refusé" in r.text
    taken = {"login": "deja.pris", "user": world.people["a1"], "email": "a1@example.fr", "password": PASSWORD}
    assert (await client.post(ORIGIN + "/oauth/users", json=taken)).status_code == 201
    r = await enrol(oauth, token, "Deja.Pris")
    assert r.status_code == 409 and "déjà pris" in r.text
    r = await enrol(oauth, token, "Alice.Durand")
    assert r.status_code == 201 and "alice.durand" in r.text, r.text
    assert (await client.get(practitioner_ref)).json()["active"] is True
    account = (await client.get(ORIGIN + "/oauth/users/alice.durand")).json()
    assert account["user"] == practitioner_ref and account["email"] == email
    # Single use: the same link again is refused, and no second account appears.
    r = await enrol(oauth, token, "alice.bis")
    assert r.status_code == 410 and "déjà été utilisé" in r.text
    assert (await oauth.get(link)).status_code == 410
    assert (await client.get(ORIGIN + "/oauth/users/alice.bis")).status_code == 404
    r = await client.get("AuditEvent", params={"subtype": f"{OPERATION}|enrol", "_sort": "-_lastUpdated"})
    events = [e["resource"] for e in r.json()["entry"]]
    assert events[0]["outcome"] == "4" and "already used" in events[0]["outcomeDesc"]
    done = next(e for e in events if e["outcome"] == "0")
    assert done["agent"][0]["who"]["reference"] == practitioner_ref and "alice.durand" in done["outcomeDesc"]

    # The real local login: password, then the code received by e-mail.
    access = await local_login(oauth, mailbox, "alice.durand", email)
    assert claims_of(access)["fhirUser"] == practitioner_ref
    world.tokens["alice"] = {"Authorization": f"Bearer {access}"}

    # The invited dossier, all of it; nothing else (another dossier of the same requérant, one sent to P).
    for path in (
        f"ServiceRequest/{sr_id}",
        f"Task/{task['id']}",
        f"QuestionnaireResponse/{dossier['qr']}",
        f"DocumentReference/{dossier['document']}",
        f"Binary/{dossier['binary']}",
        f"Patient/{dossier['patient']}",
    ):
        assert (await world.get("alice", path)).status_code == 200, path
    other_sr, other_tasks = await world.sent_dossier(world.orgs["A"], world.role_of("p"))
    for path in (f"ServiceRequest/{other_sr}", *(f"Task/{t}" for t in other_tasks.values())):
        r = await world.get("alice", path)
        assert r.status_code == 404 and outcome(r), path
    assert await world.search_ids("alice", "ServiceRequest") == [sr_id]
    # The dossier's Tasks share its access list (as for every participant): its two Tasks, no other.
    assert sorted(await world.search_ids("alice", "Task")) == sorted(t["id"] for t in tasks.values())
    assert await world.search_ids("alice", "Patient") == [dossier["patient"]]
    assert await world.search_ids("alice", "QuestionnaireResponse") == [dossier["qr"]]
    r = await world.get("alice", "Task/$worklist", list="to-answer")
    assert [e["resource"]["id"] for e in r.json().get("entry", [])] == [task["id"]]
    # The invitation role authors nothing.
    draft = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "category": sr["category"],
        "subject": {"reference": f"Patient/{dossier['patient']}"},
    }
    r = await world.post("alice", draft)
    assert r.status_code == 403 and outcome(r)

    # The normal Task operations.
    r = await world.op("alice", f"Task/{task['id']}/$accept")
    assert r.status_code == 200, r.text
    assert state(r.json()) == ("in-progress", "pris-en-charge") and r.json()["owner"]["reference"] == role_ref
    answer = {
        "resourceType": "QuestionnaireResponse",
        "status": "completed",
        "item": [{"linkId": "avis", "text": "Avis", "answer": [{"valueString": "Biopsie recommandée."}]}],
    }
    r = await world.op("alice", f"Task/{task['id']}/$respond", response=answer, conclusion="Biopsie recommandée.")
    assert r.status_code == 200, r.text
    assert state(r.json()) == ("completed", "repondu")
    report = next(o for o in r.json()["output"] if o["type"]["text"] == "compte-rendu")["valueReference"]["reference"]
    assert (await world.get("req", report)).json()["performer"][0]["reference"] == role_ref
    # Another dossier's Task stays out of reach for the operations too.
    a_task = other_tasks[world.orgs["A"]]
    assert (await world.op("alice", f"Task/{a_task}/$accept")).status_code == 404


# ---- bad input ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parameter", "why"),
    [
        (invitee(None, family="Sansmail"), "valid e-mail"),
        (invitee("pas-une-adresse", family="Sansmail"), "valid e-mail"),
        (invitee("ok@example.fr", rpps="123"), "11 digits"),
        (invitee("ok@example.fr", fax="0102030405"), "unknown part"),
        ({"name": "invitee", "valueString": "ok@example.fr"}, "takes parts"),
    ],
)
async def test_an_invalid_invitee_writes_nothing(
    world: World, client: httpx.AsyncClient, parameter: dict[str, Any], why: str
) -> None:
    sr = await world.dossier()
    practitioners = await count(client, "Practitioner")
    roles = await count(client, "PractitionerRole")
    r = await operation(world, "req", f"ServiceRequest/{sr['id']}/$send", addressee(world.orgs["A"]), parameter)
    assert r.status_code == 422, r.text
    assert why in outcome(r)["issue"][0]["diagnostics"]
    assert state((await client.get(f"ServiceRequest/{sr['id']}")).json()) == ("draft", "brouillon")
    assert await count(client, "Task", focus=f"ServiceRequest/{sr['id']}") == 0
    assert await count(client, "Practitioner") == practitioners
    assert await count(client, "PractitionerRole") == roles
    # $readdress alike.
    sent, _ = await world.sent_dossier(world.orgs["A"])
    r = await operation(world, "req", f"ServiceRequest/{sent}/$readdress", parameter)
    assert r.status_code == 422, r.text
    assert await count(client, "Task", focus=f"ServiceRequest/{sent}") == 1
    assert await count(client, "Practitioner") == practitioners


async def test_unknown_and_expired_links_create_no_account(
    world: World, client: httpx.AsyncClient, oauth: httpx.AsyncClient, mailbox: Mailbox, app: Any
) -> None:
    r = await oauth.get(INVITATION_URL, params={"token": "not-a-real-token"})
    assert r.status_code == 400 and "inconnu" in r.text
    r = await enrol(oauth, "not-a-real-token", "nobody.here")
    assert r.status_code == 400 and "inconnu" in r.text
    assert (await client.get(ORIGIN + "/oauth/users/nobody.here")).status_code == 404

    email = "bruno.tardif@example.fr"
    sr_id, _ = await world.sent_dossier(world.orgs["A"])
    r = await operation(world, "req", f"ServiceRequest/{sr_id}/$readdress", invitee(email, family="Tardif"))
    assert r.status_code == 200, r.text
    [role_ref] = [a for a in tasks_of(r.json()) if a.startswith("PractitionerRole/")]
    practitioner_ref = (await client.get(role_ref)).json()["practitioner"]["reference"]
    _, token = link_of(await invitation_mail(mailbox, email))
    await db(app)["tlx_invitations"].update_one(
        {"_id": hashlib.sha256(token.encode()).hexdigest()}, {"$set": {"exp": 1}}
    )
    r = await oauth.get(INVITATION_URL, params={"token": token})
    assert r.status_code == 410 and "expiré" in r.text
    r = await enrol(oauth, token, "bruno.tardif")
    assert r.status_code == 410 and "expiré" in r.text
    assert (await client.get(ORIGIN + "/oauth/users/bruno.tardif")).status_code == 404
    assert await db(app)["local_users"].count_documents({"user": practitioner_ref}) == 0
    assert (await client.get(practitioner_ref)).json()["active"] is False
    # Renewal: the requérant re-addresses the invitation's Task (addressing error) to the same invitee: the same
    # Practitioner and role, a new Task, a new link that enrols.
    [task_id] = await world.search_ids("req", "Task", owner=role_ref)
    r = await operation(
        world, "req", f"Task/{task_id}/$readdress",
        {"name": "addressingError", "valueBoolean": True}, invitee(email),
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert [a for a in tasks_of(r.json()) if a.startswith("PractitionerRole/")] == [role_ref]
    assert state((await client.get(f"Task/{task_id}")).json()) == ("cancelled", "readresse")
    _, renewed = link_of(await invitation_mail(mailbox, email, 2))
    assert renewed != token
    assert (await enrol(oauth, renewed, "bruno.tardif")).status_code == 201
    assert (await client.get(practitioner_ref)).json()["active"] is True


# ---- who the invitee is -------------------------------------------------------------------------------------


async def test_identity_rules(
    world: World, client: httpx.AsyncClient, oauth: httpx.AsyncClient, mailbox: Mailbox, app: Any
) -> None:
    # An annuaire member with an active ps role (a1, RPPS from the world) is addressed, not invited.
    a1 = (await client.get(world.people["a1"])).json()
    rpps_a1 = a1["identifier"][0]["value"]
    sr = await world.dossier()
    practitioners = await count(client, "Practitioner")
    r = await operation(
        world, "req", f"ServiceRequest/{sr['id']}/$send", invitee("a1@ailleurs.example.fr", rpps=rpps_a1)
    )
    assert r.status_code == 422 and world.role_of("a1") in outcome(r)["issue"][0]["diagnostics"]
    assert await count(client, "Practitioner") == practitioners

    # The same e-mail invited to a second dossier before enrolling: one Practitioner, one role per dossier,
    # an invitation e-mail each time.
    email = "claire.vidal@example.fr"
    first, _ = await world.sent_dossier(world.orgs["A"])
    r = await operation(world, "req", f"ServiceRequest/{first}/$readdress", invitee(email, rpps="19900000002"))
    assert r.status_code == 200, r.text
    [role1] = [a for a in tasks_of(r.json()) if a.startswith("PractitionerRole/")]
    second = await world.dossier()
    r = await operation(
        world, "req", f"ServiceRequest/{second['id']}/$send", invitee(email.upper(), rpps="19900000002")
    )
    assert r.status_code == 200, r.text
    [role2] = [a for a in tasks_of(r.json()) if a.startswith("PractitionerRole/")]
    assert role1 != role2
    practitioner_ref = (await client.get(role1)).json()["practitioner"]["reference"]
    assert (await client.get(role2)).json()["practitioner"]["reference"] == practitioner_ref
    assert await count(client, "Practitioner", identifier=f"{RPPS}|19900000002") == 1
    await invitation_mail(mailbox, email, 2)
    # The same RPPS with someone else's address is refused (the identity is not handed over).
    third = await world.dossier()
    r = await operation(
        world, "req", f"ServiceRequest/{third['id']}/$send", invitee("intrus@example.fr", rpps="19900000002")
    )
    assert r.status_code == 422 and "another e-mail" in outcome(r)["issue"][0]["diagnostics"]
    # An invitation role is an addressee of its own dossier only.
    r = await operation(world, "req", f"ServiceRequest/{third['id']}/$send", addressee(role1))
    assert r.status_code == 422 and "invitation for another dossier" in outcome(r)["issue"][0]["diagnostics"]

    # Once enrolled (through the second link), the next invitation is the usual notice, no new link.
    _, token = link_of(mailbox.to(email)[1])
    assert (await enrol(oauth, token, "claire.vidal")).status_code == 201
    _, first_link = link_of(mailbox.to(email)[0])  # the other dossier's link is spent too: one account per person
    r = await enrol(oauth, first_link, "claire.bis")
    assert r.status_code == 410 and "déjà inscrit" in r.text
    await drained(app)
    before = len(mailbox.to(email))
    r = await operation(world, "req", f"ServiceRequest/{third['id']}/$send", invitee(email))
    assert r.status_code == 200, r.text
    [role3] = [a for a in tasks_of(r.json()) if a.startswith("PractitionerRole/")]
    assert (await client.get(role3)).json()["practitioner"]["reference"] == practitioner_ref
    msg = await invitation_mail(mailbox, email, before + 1)
    await drained(app)
    assert len(mailbox.to(email)) == before + 1
    assert "nouvelle demande d'avis" in msg["Subject"] and not LINK.search(text_of(msg))
    # The person sees the three dossiers (one role each), and only those.
    world.tokens["claire"] = user_headers(world.settings, practitioner_ref)
    assert sorted(await world.search_ids("claire", "ServiceRequest")) == sorted([first, second["id"], third["id"]])

    # An annuaire Practitioner without a ps role (be2, bureau des entrées only) is reused, not duplicated: the
    # role's address gets the usual notice (they log in as they always do).
    be2 = (await client.get(world.people["be2"])).json()
    fourth = await world.dossier()
    r = await operation(
        world, "req", f"ServiceRequest/{fourth['id']}/$send",
        invitee("be2.perso@example.fr", rpps=be2["identifier"][0]["value"]),
    )  # fmt: skip
    assert r.status_code == 200, r.text
    [role4] = [a for a in tasks_of(r.json()) if a.startswith("PractitionerRole/")]
    assert (await client.get(role4)).json()["practitioner"]["reference"] == world.people["be2"]
    msg = await invitation_mail(mailbox, "be2.perso@example.fr")
    assert "nouvelle demande d'avis" in msg["Subject"]
    assert fourth["id"] in await world.search_ids("be2", "ServiceRequest")


async def test_old_enrolment_links_are_purged(app: Any) -> None:
    """The maintenance loop forgets links expired for more than 30 days and keeps the recent ones."""
    from fhir_server.teleexpertise import enrolment

    now = time.time()
    old, recent = {"_id": "purge-old", "exp": now - 40 * 86400}, {"_id": "purge-recent", "exp": now - 86400}
    tokens = db(app)[enrolment.TOKENS]
    await tokens.insert_many([old, recent])
    assert await enrolment.purge_expired(app.state.server) >= 1
    left = {d["_id"] async for d in tokens.find({"_id": {"$in": ["purge-old", "purge-recent"]}})}
    assert left == {"purge-recent"}


async def test_enrolment_is_suspended_with_the_local_login(client: httpx.AsyncClient, oauth: httpx.AsyncClient) -> None:
    """While an administrator has switched the local login off, the enrolment page and form answer 403."""
    r = await client.put(ORIGIN + "/oauth/login-modes", json={"disabled": ["local"]})
    assert r.status_code == 200, r.text
    try:
        page = await oauth.get("/oauth/invitation", params={"token": "whatever"})
        posted = await oauth.post("/oauth/invitation", data={"token": "whatever", "login": "x", "password": "y"})
        assert page.status_code == posted.status_code == 403
        assert "suspendue" in page.text
    finally:
        r = await client.put(ORIGIN + "/oauth/login-modes", json={"disabled": []})
        assert r.status_code == 200, r.text
    assert (await oauth.get("/oauth/invitation", params={"token": "whatever"})).status_code == 400  # unknown token
