"""What every response shares: OperationOutcome errors, request ids, /metadata, authorisation."""

from __future__ import annotations

import httpx

from tests.helpers import outcome_of, patient, post


async def test_capability_statement(client: httpx.AsyncClient, anon_client: httpx.AsyncClient) -> None:
    r = await anon_client.get("metadata")  # /metadata needs no token
    assert r.status_code == 200
    cs = r.json()
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1"
    assert cs["software"]["name"] == "fhir-server" and cs["software"]["version"]
    resources = {res["type"]: res for res in cs["rest"][0]["resource"]}
    assert "Patient" in resources and "MedicinalProduct" in resources and "SubscriptionTopic" not in resources
    patient_cs = resources["Patient"]
    codes = {i["code"] for i in patient_cs["interaction"]}
    assert {
        "read",
        "vread",
        "create",
        "update",
        "patch",
        "delete",
        "history-instance",
        "search-type",
    } <= codes
    params = {p["name"] for p in patient_cs["searchParam"]}
    assert {"name", "family", "identifier", "birthdate", "_id", "_lastUpdated"} <= params
    assert patient_cs["conditionalCreate"] is True and patient_cs["conditionalDelete"] == "single"


async def test_errors_are_operation_outcomes(client: httpx.AsyncClient) -> None:
    r = await client.get("http://testserver/nothing-here")
    assert r.status_code == 404
    outcome_of(r)
    r = await client.post("Patient/123", json=patient())
    assert r.status_code == 405
    outcome_of(r)


async def test_request_id(client: httpx.AsyncClient) -> None:
    r = await client.get("metadata")
    assert len(r.headers["x-request-id"]) >= 16
    r = await client.get("metadata", headers={"X-Request-Id": "trace-abc-123"})
    assert r.headers["x-request-id"] == "trace-abc-123"


async def test_pretty(client: httpx.AsyncClient) -> None:
    pid = (await post(client, patient())).json()["id"]
    r = await client.get(f"Patient/{pid}", params={"_pretty": "true"})
    assert b"\n  " in r.content
    assert b"\n" not in (await client.get(f"Patient/{pid}")).content


async def test_tokens_required(anon_client: httpx.AsyncClient, settings) -> None:
    from tests.conftest import token_for

    r = await anon_client.get("Patient")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    outcome_of(r)
    r = await anon_client.get("Patient", headers={"Authorization": "Bearer not.a.jwt"})
    assert r.status_code == 401
    read_only = {"Authorization": f"Bearer {token_for(settings, 'system/*.read')}"}
    assert (await anon_client.get("Patient", headers=read_only)).status_code == 200
    r = await anon_client.post("Patient", json=patient(), headers=read_only)
    assert r.status_code == 403
    outcome_of(r)
    obs_only = {"Authorization": f"Bearer {token_for(settings, 'system/Observation.rs')}"}
    assert (await anon_client.get("Observation", headers=obs_only)).status_code == 200
    assert (await anon_client.get("Patient", headers=obs_only)).status_code == 403
