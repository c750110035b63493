"""FHIR R4 Subscriptions (rest-hook) end to end: real HTTP to the server, real HTTP from the server to a local
sink (tests/http_sink.py), deliveries through the durable outbox in the real database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fhir_server.auth.tokens import mint_token
from fhir_server.config import Settings
from tests.conftest import TEST_BASE, make_settings
from tests.helpers import FHIR_JSON, post, put
from tests.http_sink import Sink, drained, serve, until

CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
MAX_ATTEMPTS = 4


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    yield from serve(Sink())


@pytest.fixture(scope="module")
async def settings(ferretdb_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(
        ferretdb_uri,
        tmp_path_factory.mktemp("data"),
        notify_max_attempts=MAX_ATTEMPTS,
        notify_retry_seconds=0.1,
    )


def subscription(endpoint: str, criteria: str, **channel: Any) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "tests",
        "criteria": criteria,
        "channel": {"type": "rest-hook", "endpoint": endpoint, **channel},
    }


def task(owner: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Task", "status": "requested", "intent": "order", "owner": {"reference": owner}, **extra}


async def status_of(client: httpx.AsyncClient, sid: str, wanted: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        body = (await client.get(f"Subscription/{sid}")).json()
        return body if body.get("status") == wanted else None

    return await until(check, f"Subscription/{sid} to be {wanted}")


async def subscribe(client: httpx.AsyncClient, resource: dict[str, Any]) -> str:
    response = await post(client, resource)
    assert response.status_code == 201, response.text
    sid = response.json()["id"]
    await status_of(client, sid, "active")
    return sid


async def test_requested_subscription_becomes_active(client: httpx.AsyncClient, sink: Sink) -> None:
    response = await post(client, subscription(sink.base + "/hook/life", "Task?owner=Organization/life"))
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "requested"
    active = await status_of(client, response.json()["id"], "active")
    assert "error" not in active
    assert active["meta"]["versionId"] == "2"  # the server's own change, visible in history
    history = (await client.get(f"Subscription/{active['id']}/_history")).json()
    assert [e["resource"]["status"] for e in history["entry"]] == ["active", "requested"]


@pytest.mark.parametrize(
    ("criteria", "channel", "reason"),
    [
        ("Task?no-such-parameter=1", {}, "no-such-parameter"),
        ("Nothing?owner=x", {}, "not a FHIR R4 resource type"),
        ("Task?owner=Organization/x", {"type": "email"}, "rest-hook only"),
        ("Task?owner=Organization/x", {"payload": "application/fhir+xml"}, "application/fhir+json"),
        ("Task?owner=Organization/x", {"header": ["no colon here"]}, "Name: value"),
    ],
)
async def test_invalid_subscription_goes_to_error(
    client: httpx.AsyncClient, sink: Sink, criteria: str, channel: dict[str, Any], reason: str
) -> None:
    resource = subscription(sink.base + "/hook/invalid", criteria)
    resource["channel"].update(channel)
    response = await post(client, resource)
    assert response.status_code == 201, response.text
    errored = await status_of(client, response.json()["id"], "error")
    assert reason in errored["error"]


async def test_empty_payload_is_a_post_with_the_channel_headers(
    client: httpx.AsyncClient, app: Any, sink: Sink
) -> None:
    headers = ["Authorization: Bearer hook-secret", "X-Dossier-Feed: tlx"]
    await subscribe(client, subscription(sink.base + "/hook/empty", "Task?owner=Organization/org-a", header=headers))
    other = await post(client, task("Organization/org-b"))
    assert other.status_code == 201
    mine = await post(client, task("Organization/org-a"))
    assert mine.status_code == 201
    await until(lambda: sink.to("/hook/empty"), "the notification")
    await drained(app)
    got = sink.to("/hook/empty")
    assert len(got) == 1  # the Task of org-b matched nothing
    assert got[0].method == "POST"
    assert got[0].path == "/hook/empty"
    assert got[0].body == b""
    assert got[0].headers["authorization"] == "Bearer hook-secret"
    assert got[0].headers["x-dossier-feed"] == "tlx"


async def test_payload_is_a_put_of_the_version_that_matched(client: httpx.AsyncClient, app: Any, sink: Sink) -> None:
    await subscribe(
        client,
        subscription(sink.base + "/hook/full", "Task?owner=Organization/org-c&status=requested", payload=FHIR_JSON),
    )
    created = (await post(client, task("Organization/org-c"))).json()
    await until(lambda: sink.to("/hook/full"), "the first notification")
    first = sink.to("/hook/full")[0]
    assert first.method == "PUT"
    assert first.path == f"/hook/full/Task/{created['id']}"
    assert first.headers["content-type"] == FHIR_JSON
    assert first.json() == created

    # An update that still matches notifies again, with that version; one that no longer matches does not.
    updated = (await put(client, {**created, "description": "second version"})).json()
    await until(lambda: len(sink.to("/hook/full")) == 2, "the second notification")
    assert sink.to("/hook/full")[1].json() == updated
    assert (await put(client, {**updated, "status": "cancelled"})).status_code == 200
    await drained(app)
    assert len(sink.to("/hook/full")) == 2


async def test_transaction_writes_are_notified(client: httpx.AsyncClient, sink: Sink) -> None:
    await subscribe(client, subscription(sink.base + "/hook/tx", "Task?owner=Organization/org-tx"))
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": task("Organization/org-tx"), "request": {"method": "POST", "url": "Task"}}],
    }
    response = await client.post("", json=bundle, headers={"Content-Type": FHIR_JSON})
    assert response.status_code == 200, response.text
    await until(lambda: sink.to("/hook/tx"), "the notification of the transaction's Task")


async def test_retried_while_the_endpoint_is_down_then_delivered(
    client: httpx.AsyncClient, app: Any, sink: Sink
) -> None:
    sink.failures["/hook/flaky"] = MAX_ATTEMPTS - 2  # down for the first attempts, then up
    sid = await subscribe(client, subscription(sink.base + "/hook/flaky", "Task?owner=Organization/org-flaky"))
    await post(client, task("Organization/org-flaky"))
    await until(lambda: sink.to("/hook/flaky"), "the delivery once the endpoint is up")
    await drained(app)
    assert len(sink.refused_to("/hook/flaky")) == MAX_ATTEMPTS - 2
    assert len(sink.to("/hook/flaky")) == 1
    assert (await client.get(f"Subscription/{sid}")).json()["status"] == "active"


async def test_error_status_after_repeated_failures_then_revived(
    client: httpx.AsyncClient, app: Any, sink: Sink
) -> None:
    sink.failures["/hook/dead"] = -1
    sid = await subscribe(client, subscription(sink.base + "/hook/dead", "Task?owner=Organization/org-dead"))
    await post(client, task("Organization/org-dead"))
    errored = await status_of(client, sid, "error")
    assert f"failed {MAX_ATTEMPTS} times" in errored["error"]
    assert "503" in errored["error"]
    await drained(app)
    assert len(sink.refused_to("/hook/dead")) == MAX_ATTEMPTS

    # In error: no more notifications.
    await post(client, task("Organization/org-dead"))
    await drained(app)
    assert len(sink.refused_to("/hook/dead")) == MAX_ATTEMPTS

    # The client fixes its endpoint and asks again: active, and delivered.
    sink.failures["/hook/dead"] = 0
    assert (await put(client, {**errored, "status": "requested"})).status_code == 200
    await status_of(client, sid, "active")
    await post(client, task("Organization/org-dead"))
    await until(lambda: sink.to("/hook/dead"), "the delivery after revival")


async def test_deleted_subscription_gets_nothing(client: httpx.AsyncClient, app: Any, sink: Sink) -> None:
    sid = await subscribe(client, subscription(sink.base + "/hook/gone", "Task?owner=Organization/org-gone"))
    assert (await client.delete(f"Subscription/{sid}")).status_code in (200, 204)
    await post(client, task("Organization/org-gone"))
    await drained(app)
    assert sink.to("/hook/gone") == []


async def test_only_what_the_owner_may_see_is_notified(
    app: Any, settings: Settings, client: httpx.AsyncClient, sink: Sink
) -> None:
    # Created with the system token (which sees everything), then rewritten by a practitioner's token
    # without clearance for restricted (R) resources: the practitioner owns it now.
    token = mint_token(
        settings.data_dir,
        issuer=settings.resolved_token_issuer(),
        audience=TEST_BASE,
        scope="user/*.cruds",
        lifetime=3600,
        subject="dr-owner",
        extra={"fhirUser": "Practitioner/dr-owner"},
    )
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {token}"}
    criteria = "Observation?code=http://loinc.org|8867-4"
    sid = await subscribe(client, subscription(sink.base + "/hook/owner", criteria, payload=FHIR_JSON))
    async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE + "/", headers=headers) as user:
        current = (await user.get(f"Subscription/{sid}")).json()
        assert (await put(user, {**current, "reason": "taken over"})).status_code == 200
    await drained(app)  # its check is done: active again, owned by the practitioner
    assert await _reason_and_status(client, sid)
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "valueQuantity": {"value": 72, "unit": "/min"},
    }
    restricted = {**observation, "meta": {"security": [{"system": CONFIDENTIALITY, "code": "R"}]}}
    hidden = (await post(client, restricted)).json()
    seen = (await post(client, observation)).json()
    await until(lambda: sink.to("/hook/owner"), "the visible Observation's notification")
    await drained(app)
    assert [r.path for r in sink.to("/hook/owner")] == [f"/hook/owner/Observation/{seen['id']}"]
    assert hidden["id"] not in str([r.path for r in sink.to("/hook/owner")])


async def test_writes_of_unsubscribed_types_queue_nothing(client: httpx.AsyncClient, app: Any) -> None:
    # The hook's cost on a type nobody subscribed to is a dict lookup: nothing is queued for it.
    response = await post(client, {"resourceType": "Patient", "name": [{"family": "Sansabonnement"}]})
    assert response.status_code == 201
    outbox = app.state.server.database.db["outbox"]
    assert await outbox.count_documents({"kind": "subscription-match", "data.type": "Patient"}) == 0
    assert await outbox.count_documents({"kind": "subscription-match", "data.type": "Task"}) > 0


async def _reason_and_status(client: httpx.AsyncClient, sid: str) -> bool:
    body = (await client.get(f"Subscription/{sid}")).json()
    return body["reason"] == "taken over" and body["status"] == "active"
