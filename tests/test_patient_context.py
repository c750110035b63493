"""Patient-context tokens (SMART patient/ scopes + launch patient) see only their patient's compartment."""

from __future__ import annotations

import httpx
import pytest

from fhir_server.auth.tokens import mint_token
from tests.conftest import TEST_BASE
from tests.helpers import FHIR_JSON, patient, post


def patient_token(settings, pid: str, scope: str = "patient/*.read patient/Observation.cruds") -> dict[str, str]:
    token = mint_token(
        settings.data_dir,
        issuer=settings.resolved_token_issuer(),
        audience=TEST_BASE,
        scope=scope,
        lifetime=600,
        subject=f"Patient/{pid}",
        extra={"patient": pid, "fhirUser": f"Patient/{pid}"},
    )
    return {"Authorization": f"Bearer {token}"}


def obs(pid: str, text: str = "glycémie") -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": text},
        "subject": {"reference": f"Patient/{pid}"},
    }


@pytest.fixture(scope="module")
async def two(client: httpx.AsyncClient) -> dict:
    org = (await post(client, {"resourceType": "Organization", "name": "CH Albi"})).json()["id"]
    me = (await post(client, patient(family="Moi", managingOrganization={"reference": f"Organization/{org}"}))).json()
    other = (await post(client, patient(family="Autre"))).json()
    mine = (await post(client, obs(me["id"]))).json()
    theirs = (await post(client, obs(other["id"]))).json()
    return {"me": me["id"], "other": other["id"], "mine": mine["id"], "theirs": theirs["id"], "org": org}


async def test_reads_are_confined(anon_client: httpx.AsyncClient, settings, two: dict) -> None:
    h = patient_token(settings, two["me"])
    assert (await anon_client.get(f"Patient/{two['me']}", headers=h)).status_code == 200
    assert (await anon_client.get(f"Observation/{two['mine']}", headers=h)).status_code == 200
    # Other patients' data does not even exist for this token.
    assert (await anon_client.get(f"Patient/{two['other']}", headers=h)).status_code == 404
    assert (await anon_client.get(f"Observation/{two['theirs']}", headers=h)).status_code == 404
    assert (await anon_client.get(f"Observation/{two['theirs']}/_history/1", headers=h)).status_code == 404
    assert (await anon_client.get(f"Observation/{two['theirs']}/_history", headers=h)).status_code == 404
    # Not patient-specific: readable with the patient scope.
    assert (await anon_client.get(f"Organization/{two['org']}", headers=h)).status_code == 200


async def test_searches_are_confined(anon_client: httpx.AsyncClient, settings, two: dict) -> None:
    h = patient_token(settings, two["me"])
    r = await anon_client.get("Observation", headers=h)
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [two["mine"]]
    r = await anon_client.get("Patient", params={"family": "autre"}, headers=h)
    assert r.json()["total"] == 0
    r = await anon_client.get("Observation", params={"_include": "Observation:subject"}, headers=h)
    assert {e["resource"]["id"] for e in r.json()["entry"]} == {two["mine"], two["me"]}
    r = await anon_client.get("Patient", params={"_id": two["me"], "_revinclude": "Observation:subject"}, headers=h)
    assert {e["resource"]["id"] for e in r.json()["entry"]} == {two["me"], two["mine"]}
    assert (await anon_client.get("_history", headers=h)).status_code == 403
    assert (await anon_client.get("Observation/_history", headers=h)).status_code == 403
    assert (await anon_client.get(f"Patient/{two['other']}/$everything", headers=h)).status_code == 403
    r = await anon_client.get(f"Patient/{two['me']}/$everything", headers=h)
    assert r.status_code == 200
    ids = {e["resource"]["id"] for e in r.json()["entry"]}
    assert two["mine"] in ids and two["theirs"] not in ids


async def test_writes_are_confined(anon_client: httpx.AsyncClient, settings, two: dict) -> None:
    h = {**patient_token(settings, two["me"]), "Content-Type": FHIR_JSON}
    assert (await anon_client.post("Observation", json=obs(two["me"]), headers=h)).status_code == 201
    assert (await anon_client.post("Observation", json=obs(two["other"]), headers=h)).status_code == 403
    moved = dict(obs(two["other"]), id=two["mine"])
    assert (await anon_client.put(f"Observation/{two['mine']}", json=moved, headers=h)).status_code == 403
    assert (await anon_client.delete(f"Observation/{two['theirs']}", headers=h)).status_code == 403
    # No write scope on Patient.
    assert (await anon_client.post("Patient", json=patient(), headers=h)).status_code == 403
    # A patient scope without a launch patient grants nothing.
    bare = mint_token(
        settings.data_dir,
        issuer=settings.resolved_token_issuer(),
        audience=TEST_BASE,
        scope="patient/*.read",
        lifetime=600,
    )
    r = await anon_client.get("Observation", headers={"Authorization": f"Bearer {bare}"})
    assert r.status_code == 403
