"""Téléexpertise notices (teleexpertise/notify.py): e-mails to a real local SMTP server (aiosmtpd) and SMS to
a local HTTP sink standing for the SMS gateway, with no medical content, each recorded as a Communication."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from fhir_server.config import Settings
from fhir_server.jobs.senders import normalise_phone
from fhir_server.teleexpertise.notify import notify
from tests.conftest import make_settings
from tests.helpers import put
from tests.http_sink import Sink, drained, serve, until
from tests.smtp_sink import Mailbox, run_mailbox

APP_URL = "https://tlx.example.fr/dossiers/{id}"
SMS_TOKEN = "sms-gateway-secret"
DOSSIER = "TLD-2026-000042"
# What must never leave in a notice: the patient's names and every clinical word of the dossier.
PATIENT_FAMILY, PATIENT_GIVEN = "Dupontel", "Zébulon"
CLINICAL = ["Suspicion d'AVC ischémique sylvien gauche", "NIHSS", "hémiplégie", "AVC", "ischémique"]
FORBIDDEN = [PATIENT_FAMILY, PATIENT_GIVEN, *CLINICAL]


def body(msg: EmailMessage) -> str:
    # As sent: SMTP carries CRLF line ends, the text had LF ones.
    return msg.get_body(preferencelist=("plain",)).get_content().replace("\r\n", "\n")  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    yield from run_mailbox()


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    yield from serve(Sink())


@pytest.fixture(scope="module")
async def settings(
    ferretdb_uri: str, tmp_path_factory: pytest.TempPathFactory, mailbox: tuple[Mailbox, int], sink: Sink
) -> Settings:
    return make_settings(
        ferretdb_uri,
        tmp_path_factory.mktemp("data"),
        smtp_host="127.0.0.1",
        smtp_port=mailbox[1],
        smtp_from="teleexpertise@fhir-server.example",
        sms_gateway_url=sink.base + "/sms",
        sms_gateway_token=SMS_TOKEN,
        app_url=APP_URL,
        notify_max_attempts=2,
        notify_retry_seconds=0.1,
    )


def endpoint(address: str) -> dict[str, Any]:
    return {
        "resourceType": "Endpoint",
        "status": "active",
        "connectionType": {
            "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
            "code": "direct-project",
        },
        "payloadType": [{"text": "notification"}],
        "address": address,
    }


@pytest.fixture(scope="module")
async def dossier(client: httpx.AsyncClient, app: Any) -> dict[str, Any]:
    """A dossier sent to communauté A (contact points as Endpoints) and communauté B (as telecom)."""
    annuaire = [
        {**endpoint("mailto:secretariat@unv-a.example.fr"), "id": "ep-a-mail"},
        {**endpoint("tel:+33611223344"), "id": "ep-a-sms"},
        {
            "resourceType": "Organization",
            "id": "com-a",
            "name": "UNV A",
            "endpoint": [{"reference": "Endpoint/ep-a-mail"}, {"reference": "Endpoint/ep-a-sms"}],
        },
        {
            "resourceType": "Organization",
            "id": "com-b",
            "name": "Cardiologie B",
            "telecom": [
                {"system": "email", "value": "garde@cardio-b.example.fr"},
                {"system": "phone", "use": "mobile", "value": "06 22 33 44 55"},
                {"system": "phone", "use": "work", "value": "01 45 00 00 00"},  # a landline gets no SMS
                {"system": "email", "use": "old", "value": "ancien@cardio-b.example.fr"},
            ],
        },
        {"resourceType": "Organization", "id": "com-mute", "name": "Sans contact"},
        {
            "resourceType": "Practitioner",
            "id": "dr-req",
            "name": [{"family": "Requérant", "given": ["Anne"]}],
            "telecom": [
                {"system": "email", "value": "anne.requerant@chu-x.example.fr"},
                {"system": "sms", "value": "+33633445566"},
            ],
        },
        {"resourceType": "PractitionerRole", "id": "role-req", "practitioner": {"reference": "Practitioner/dr-req"}},
        {
            "resourceType": "Practitioner",
            "id": "dr-refused",
            "telecom": [{"system": "email", "value": "refuse-moi@chu-y.example.fr"}],
        },
        {
            "resourceType": "PractitionerRole",
            "id": "role-refused",
            "practitioner": {"reference": "Practitioner/dr-refused"},
        },
    ]
    for resource in annuaire:
        response = await put(client, resource)
        assert response.status_code == 201, response.text
    # The dossier itself is written straight through the store: these tests are about notify(), whatever
    # rules the workflow puts on creating ServiceRequests and Tasks over HTTP.
    store = app.state.server.store
    patient = {
        "resourceType": "Patient",
        "name": [{"use": "official", "family": PATIENT_FAMILY, "given": [PATIENT_GIVEN]}],
        "birthDate": "1950-02-03",
    }
    await store.write("Patient", "pat-1", patient)
    service_request = {
        "resourceType": "ServiceRequest",
        "identifier": [{"system": "https://fhir-server.example/fhir/teledossier", "value": DOSSIER}],
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/pat-1", "display": f"{PATIENT_GIVEN} {PATIENT_FAMILY}"},
        "requester": {"reference": "PractitionerRole/role-req"},
        "performer": [{"reference": "Organization/com-a"}, {"reference": "Organization/com-b"}],
        "reasonCode": [{"text": "hémiplégie droite brutale"}],
        "note": [{"text": "Suspicion d'AVC ischémique sylvien gauche, NIHSS 14"}],
    }
    sr = (await store.write("ServiceRequest", "sr-1", service_request)).resource
    tasks = {}
    for owner in ("com-a", "com-b", "com-mute"):
        task = {
            "resourceType": "Task",
            "status": "requested",
            "intent": "order",
            "focus": {"reference": "ServiceRequest/sr-1"},
            "basedOn": [{"reference": "ServiceRequest/sr-1"}],
            "for": {"reference": "Patient/pat-1"},
            "requester": {"reference": "PractitionerRole/role-req"},
            "owner": {"reference": f"Organization/{owner}"},
            "description": "Suspicion d'AVC ischémique sylvien gauche",
        }
        tasks[owner] = (await store.write("Task", f"task-{owner}", task)).resource
    return {"sr": sr, "tasks": tasks}


def assert_no_medical_content(text: str) -> None:
    for word in FORBIDDEN:
        assert word.lower() not in text.lower(), f"{word!r} leaked into a notice: {text!r}"


async def communications(client: httpx.AsyncClient, recipient: str) -> list[dict[str, Any]]:
    bundle = (await client.get("Communication", params={"recipient": recipient, "_count": 100})).json()
    return [e["resource"] for e in bundle.get("entry", [])]


async def test_sent_notifies_each_communaute_once_by_mail_and_sms(
    app: Any, client: httpx.AsyncClient, mailbox: tuple[Mailbox, int], sink: Sink, dossier: dict[str, Any]
) -> None:
    box, _ = mailbox
    ctx = app.state.server
    for owner in ("com-a", "com-b"):
        await notify(
            ctx, "sent", task=dossier["tasks"][owner], service_request=dossier["sr"], actor="PractitionerRole/role-req"
        )
    await until(
        lambda: len(sink.to("/sms")) >= 2 and box.to("secretariat@unv-a") and box.to("garde@cardio-b"), "notices"
    )
    await drained(app)

    link = APP_URL.replace("{id}", "sr-1")
    mails = {
        "secretariat@unv-a.example.fr": box.to("secretariat@unv-a"),
        "garde@cardio-b.example.fr": box.to("garde@cardio-b"),
    }
    for address, received in mails.items():
        assert len(received) == 1, address
        msg = received[0]
        assert msg["To"] == address
        assert DOSSIER in msg["Subject"] and DOSSIER in body(msg)
        assert link in body(msg)
        assert_no_medical_content(msg["Subject"] + "\n" + body(msg))
    assert box.to("ancien@cardio-b") == []

    sms = sink.to("/sms")
    assert sorted(r.json()["to"] for r in sms) == ["+33611223344", "+33622334455"]  # not the landline
    for received in sms:
        assert received.method == "POST"
        assert received.headers["authorization"] == f"Bearer {SMS_TOKEN}"
        assert DOSSIER in received.json()["text"] and link in received.json()["text"]
        assert_no_medical_content(received.json()["text"])

    # One Communication per notice, holding the exact text sent.
    for owner, address, number in (
        ("com-a", "secretariat@unv-a.example.fr", "+33611223344"),
        ("com-b", "garde@cardio-b.example.fr", "+33622334455"),
    ):
        records = await communications(client, f"Organization/{owner}")
        assert len(records) == 2, records
        by_medium = {c["medium"][0]["text"]: c for c in records}
        assert set(by_medium) == {"e-mail", "SMS"}
        for c in records:
            assert c["status"] == "completed"
            assert c["sent"]
            assert {a["reference"] for a in c["about"]} == {f"Task/task-{owner}", "ServiceRequest/sr-1"}
            assert c["category"][0]["coding"][0]["code"] == "sent"
        mail = by_medium["e-mail"]
        assert mail["extension"][0]["valueContactPoint"] == {"system": "email", "value": address}
        assert mail["payload"][0]["contentString"] == body(mails[address][0])
        assert mail["topic"]["text"] == mails[address][0]["Subject"]
        text = by_medium["SMS"]
        assert text["extension"][0]["valueContactPoint"] == {"system": "sms", "value": number}
        assert text["payload"][0]["contentString"] == next(r.json()["text"] for r in sms if r.json()["to"] == number)


async def test_info_requested_goes_to_the_requerant_through_the_practitioner(
    app: Any, client: httpx.AsyncClient, mailbox: tuple[Mailbox, int], sink: Sink, dossier: dict[str, Any]
) -> None:
    box, _ = mailbox
    task = dossier["tasks"]["com-a"]
    await notify(
        app.state.server, "info-requested", task=task, service_request=dossier["sr"], actor="Organization/com-a"
    )
    await until(
        lambda: box.to("anne.requerant@chu-x") and [r for r in sink.to("/sms") if r.json()["to"] == "+33633445566"],
        "notices",
    )
    await drained(app)
    msg = box.to("anne.requerant@chu-x")[0]
    assert "information complémentaire" in msg["Subject"]
    assert_no_medical_content(msg["Subject"] + body(msg))
    records = await communications(client, "PractitionerRole/role-req")
    assert sorted(c["medium"][0]["text"] for c in records) == ["SMS", "e-mail"]
    assert {c["status"] for c in records} == {"completed"}


async def test_failed_smtp_delivery_is_recorded_as_not_done(
    app: Any, client: httpx.AsyncClient, mailbox: tuple[Mailbox, int], dossier: dict[str, Any]
) -> None:
    task = {**dossier["tasks"]["com-b"], "requester": {"reference": "PractitionerRole/role-refused"}}
    await notify(app.state.server, "answered", task=task, service_request=dossier["sr"], actor="Organization/com-b")
    records = await until(lambda: communications(client, "PractitionerRole/role-refused"), "the failure record")
    await drained(app)
    assert mailbox[0].to("refuse-moi") == []
    [record] = records
    assert record["status"] == "not-done"
    assert "550" in record["statusReason"]["text"]
    assert record["medium"][0]["text"] == "e-mail"
    assert DOSSIER in record["payload"][0]["contentString"]  # the text that could not be sent
    assert "sent" not in record


async def test_addressee_without_contact_point_is_recorded(
    app: Any, client: httpx.AsyncClient, dossier: dict[str, Any]
) -> None:
    await notify(app.state.server, "sent", task=dossier["tasks"]["com-mute"], service_request=dossier["sr"], actor=None)
    [record] = await until(lambda: communications(client, "Organization/com-mute"), "the record")
    assert record["status"] == "not-done"
    assert "no e-mail address or mobile number" in record["statusReason"]["text"]


async def test_the_actor_is_not_notified_and_bad_calls_never_raise(
    app: Any, client: httpx.AsyncClient, mailbox: tuple[Mailbox, int], sink: Sink, dossier: dict[str, Any]
) -> None:
    ctx = app.state.server
    before = (len(mailbox[0].messages), len(sink.to("/sms")))
    task = dossier["tasks"]["com-a"]
    await notify(ctx, "sent", task=task, service_request=dossier["sr"], actor="Organization/com-a")
    await notify(ctx, "no-such-event", task=task, service_request=dossier["sr"], actor=None)
    await notify(ctx, "sent", task={}, service_request={}, actor=None)
    await drained(app)
    assert (len(mailbox[0].messages), len(sink.to("/sms"))) == before


# ---- end to end: the workflow's $send --------------------------------------------------------------------


@pytest.fixture(scope="module")
async def world(anon_client: httpx.AsyncClient, client: httpx.AsyncClient, settings: Settings) -> Any:
    from tests.test_teleexpertise_world import build_world

    return await build_world(anon_client, dict(client.headers), settings)


async def test_sending_a_dossier_notifies_the_communaute_by_mail_sms_and_subscription(
    app: Any, client: httpx.AsyncClient, mailbox: tuple[Mailbox, int], sink: Sink, world: Any
) -> None:
    box, _ = mailbox
    a = world.orgs["A"]
    # Communauté A's contact points are Endpoints: the secretariat's address and the mobile de garde.
    refs = []
    for address in ("mailto:secretariat@unv-requis.example.fr", "tel:+33699887766"):
        created = await client.post(
            "Endpoint", json=endpoint(address), headers={"Content-Type": "application/fhir+json"}
        )
        assert created.status_code == 201, created.text
        refs.append({"reference": f"Endpoint/{created.json()['id']}"})
    org = (await client.get(a)).json()
    assert (await put(client, {**org, "endpoint": refs})).status_code == 200

    # A member of A and a member of the unrelated communauté Z both subscribe to A's Tasks.
    for user in ("a1", "z1"):
        resource = {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "my worklist",
            "criteria": f"Task?owner={a}",
            "channel": {
                "type": "rest-hook",
                "endpoint": f"{sink.base}/hook/{user}",
                "payload": "application/fhir+json",
            },
        }
        response = await world.post(user, resource)
        assert response.status_code == 201, response.text
        sid = response.json()["id"]
        await until(lambda sid=sid: _status(client, sid, "active"), f"{user}'s Subscription to be active")

    patient = await world.patient("req", family=PATIENT_FAMILY)
    sr = await world.dossier(patient=patient, note=[{"text": "Suspicion d'AVC ischémique sylvien gauche, NIHSS 14"}])
    bundle = await world.send(sr["id"], a)
    [task] = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Task"]

    await until(
        lambda: box.to("secretariat@unv-requis") and [r for r in sink.to("/sms") if r.json()["to"] == "+33699887766"],
        "the e-mail and the SMS",
    )
    await until(lambda: sink.to("/hook/a1"), "a1's rest-hook")
    await drained(app)

    [mail] = box.to("secretariat@unv-requis")
    [sms] = [r for r in sink.to("/sms") if r.json()["to"] == "+33699887766"]
    dossier_id = sr.get("identifier", [{}])[0].get("value") or sr["id"]
    for text in (mail["Subject"] + "\n" + body(mail), sms.json()["text"]):
        assert dossier_id in text
        assert_no_medical_content(text)
    [hook] = sink.to("/hook/a1")
    assert hook.path == f"/hook/a1/Task/{task['id']}"
    assert sink.to("/hook/z1") == []  # z1 may not see the dossier: its Subscription gets nothing

    records = await communications(client, a)
    assert sorted(c["medium"][0]["text"] for c in records) == ["SMS", "e-mail"]
    assert {c["status"] for c in records} == {"completed"}
    assert all({"reference": f"Task/{task['id']}"} in c["about"] for c in records)


async def _status(client: httpx.AsyncClient, sid: str, wanted: str) -> bool:
    return (await client.get(f"Subscription/{sid}")).json().get("status") == wanted


@pytest.mark.parametrize(
    ("written", "sent"),
    [
        ("06 12 34 56 78", "+33612345678"),
        ("06.12.34.56.78", "+33612345678"),
        ("+33 6 12 34 56 78", "+33612345678"),
        ("0033612345678", "+33612345678"),
        ("tel:+262692123456", "+262692123456"),
        ("sms:0612345678", "+33612345678"),
        ("secrétariat", None),
        ("12", None),
    ],
)
def test_mobile_numbers_are_sent_in_e164(written: str, sent: str | None) -> None:
    assert normalise_phone(written) == sent
