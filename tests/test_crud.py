"""REST interactions of the FHIR R4 RESTful API: create, read, vread, update, delete, versioning headers."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx

from tests.helpers import FHIR_JSON, outcome_of, patient, post, put, sample


async def test_create_assigns_id_version_and_headers(client: httpx.AsyncClient) -> None:
    body = patient(id="client-chosen")
    r = await post(client, body)
    assert r.status_code == 201
    created = r.json()
    assert created["id"] != "client-chosen"  # the server assigns the id of a create
    assert created["meta"]["versionId"] == "1"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", created["meta"]["lastUpdated"])
    assert r.headers["ETag"] == 'W/"1"'
    assert r.headers["Location"] == f"http://testserver/fhir/Patient/{created['id']}/_history/1"
    assert "Last-Modified" in r.headers
    assert r.headers["content-type"].startswith(FHIR_JSON)
    assert created["name"] == body["name"]


async def test_read_returns_what_was_stored(client: httpx.AsyncClient) -> None:
    obs = sample("Observation")
    created = (await post(client, obs)).json()
    r = await client.get(f"Observation/{created['id']}")
    assert r.status_code == 200
    assert r.json() == created
    assert r.headers["ETag"] == 'W/"1"'
    assert r.json()["valueQuantity"] == obs["valueQuantity"] if "valueQuantity" in obs else True


async def test_read_unknown_and_invalid(client: httpx.AsyncClient) -> None:
    r = await client.get("Patient/does-not-exist")
    assert r.status_code == 404
    assert outcome_of(r)["issue"][0]["code"] == "not-found"
    r = await client.get("Patient/bad$id")
    assert r.status_code == 400
    outcome_of(r)
    r = await client.get("Patient/" + "x" * 65)
    assert r.status_code == 400
    r = await client.get("NotAType/1")
    assert r.status_code == 404
    assert "NotAType" in outcome_of(r)["issue"][0]["diagnostics"]


async def test_update_creates_versions_and_vread_returns_each(client: httpx.AsyncClient) -> None:
    created = (await post(client, patient())).json()
    pid = created["id"]
    updated = dict(created, gender="female")
    r = await put(client, updated)
    assert r.status_code == 200
    assert r.json()["meta"]["versionId"] == "2"
    assert r.headers["ETag"] == 'W/"2"'
    assert r.headers["Location"].endswith(f"/Patient/{pid}/_history/2")
    v1 = await client.get(f"Patient/{pid}/_history/1")
    v2 = await client.get(f"Patient/{pid}/_history/2")
    assert v1.status_code == v2.status_code == 200
    assert "gender" not in v1.json() and v2.json()["gender"] == "female"
    assert v1.headers["ETag"] == 'W/"1"'
    assert (await client.get(f"Patient/{pid}/_history/3")).status_code == 404
    assert (await client.get(f"Patient/{pid}/_history/x")).status_code == 404
    assert (await client.get(f"Patient/{pid}")).json()["meta"]["versionId"] == "2"


async def test_update_as_create_with_client_id(client: httpx.AsyncClient) -> None:
    r = await put(client, patient(id="ins-1234"))
    assert r.status_code == 201
    assert r.json()["id"] == "ins-1234"
    assert r.json()["meta"]["versionId"] == "1"
    assert (await client.get("Patient/ins-1234")).status_code == 200


async def test_update_id_rules(client: httpx.AsyncClient) -> None:
    r = await client.put("Patient/abc", json=patient(), headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 400
    assert outcome_of(r)["issue"][0]["expression"] == ["Patient.id"]
    r = await client.put("Patient/abc", json=patient(id="other"), headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 400
    r = await client.put("Observation/abc", json=patient(id="abc"), headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 400
    assert (await client.get("Patient/abc")).status_code == 404
    assert (await client.get("Observation/abc")).status_code == 404


async def test_if_match(client: httpx.AsyncClient) -> None:
    created = (await post(client, patient())).json()
    r = await put(client, dict(created, gender="male"), **{"If-Match": 'W/"1"'})
    assert r.status_code == 200
    r = await put(client, dict(created, gender="other"), **{"If-Match": 'W/"1"'})
    assert r.status_code == 412
    outcome_of(r)
    r = await put(client, dict(created, gender="other"), **{"If-Match": "garbage"})
    assert r.status_code == 400
    current = (await client.get(f"Patient/{created['id']}")).json()
    assert current["gender"] == "male" and current["meta"]["versionId"] == "2"


async def test_conditional_read_headers(client: httpx.AsyncClient) -> None:
    created = await post(client, patient())
    pid = created.json()["id"]
    r = await client.get(f"Patient/{pid}", headers={"If-None-Match": 'W/"1"'})
    assert r.status_code == 304 and r.content == b""
    assert r.headers["ETag"] == 'W/"1"'
    r = await client.get(f"Patient/{pid}", headers={"If-None-Match": 'W/"7"'})
    assert r.status_code == 200
    later = format_datetime(datetime.now(UTC) + timedelta(minutes=1), usegmt=True)
    earlier = format_datetime(datetime.now(UTC) - timedelta(days=1), usegmt=True)
    assert (await client.get(f"Patient/{pid}", headers={"If-Modified-Since": later})).status_code == 304
    assert (await client.get(f"Patient/{pid}", headers={"If-Modified-Since": earlier})).status_code == 200
    r = await client.get(f"Patient/{pid}/_history/1", headers={"If-None-Match": 'W/"1"'})
    assert r.status_code == 304


async def test_prefer_return(client: httpx.AsyncClient) -> None:
    r = await post(client, patient(), Prefer="return=minimal")
    assert r.status_code == 201 and r.content == b""
    assert r.headers["Location"] and r.headers["ETag"] == 'W/"1"'
    r = await post(client, patient(), Prefer="return=OperationOutcome")
    assert r.status_code == 201
    assert outcome_of(r)["issue"][0]["severity"] == "information"
    r = await post(client, patient(), Prefer="return=representation")
    assert r.json()["resourceType"] == "Patient"


async def test_delete_then_gone_and_history_kept(client: httpx.AsyncClient) -> None:
    created = (await post(client, patient())).json()
    pid = created["id"]
    await put(client, dict(created, active=True))
    r = await client.delete(f"Patient/{pid}")
    assert r.status_code == 204
    assert r.headers["ETag"] == 'W/"3"'
    r = await client.get(f"Patient/{pid}")
    assert r.status_code == 410
    assert outcome_of(r)["issue"][0]["code"] == "deleted"
    assert (await client.get(f"Patient/{pid}/_history/2")).json()["active"] is True
    assert (await client.get(f"Patient/{pid}/_history/3")).status_code == 410
    hist = (await client.get(f"Patient/{pid}/_history")).json()
    assert [e["request"]["method"] for e in hist["entry"]] == ["DELETE", "PUT", "POST"]
    assert "resource" not in hist["entry"][0]
    # Deleting again, or deleting what never existed, succeeds and writes nothing.
    assert (await client.delete(f"Patient/{pid}")).status_code == 204
    assert (await client.delete("Patient/never-existed")).status_code == 204
    assert (await client.get(f"Patient/{pid}/_history")).json()["total"] == 3
    # A resource can be brought back by an update: version 4.
    r = await put(client, dict(created, active=False))
    assert r.status_code == 201 and r.json()["meta"]["versionId"] == "4"


async def test_any_r4_type_can_be_stored(client: httpx.AsyncClient) -> None:
    for resource in (
        {"resourceType": "Basic", "code": {"text": "note"}},
        {"resourceType": "Library", "status": "draft", "type": {"text": "logic"}},
        {"resourceType": "MedicinalProduct", "name": [{"productName": "Doliprane"}]},
        {"resourceType": "Binary", "contentType": "text/plain", "data": "aGVsbG8="},
    ):
        r = await post(client, resource)
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        assert (await client.get(f"{resource['resourceType']}/{rid}")).status_code == 200
    # R4B-only types are not R4.
    r = await post(client, {"resourceType": "SubscriptionTopic", "url": "http://x", "status": "draft"})
    assert r.status_code == 404
