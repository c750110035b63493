"""SMART v2 fine-grained scopes (`…rs?category=…`): only what the scope's search parameters match."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import token_for
from tests.helpers import patient, post
from tests.test_patient_context import patient_token

CAT = "http://terminology.hl7.org/CodeSystem/observation-category"


def obs(pid: str, category: str) -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": CAT, "code": category}]}],
        "code": {"text": category},
        "subject": {"reference": f"Patient/{pid}"},
    }


@pytest.fixture(scope="module")
async def data(client: httpx.AsyncClient) -> dict:
    me = (await post(client, patient(family="Fin"))).json()["id"]
    other = (await post(client, patient(family="Autre"))).json()["id"]
    ids = {}
    for pid, who in ((me, "me"), (other, "other")):
        for cat in ("laboratory", "vital-signs", "social-history"):
            ids[f"{who}-{cat}"] = (await post(client, obs(pid, cat))).json()["id"]
    return {"me": me, "other": other, **ids}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def categories(anon_client: httpx.AsyncClient, headers: dict, params: dict | None = None) -> list[str]:
    r = await anon_client.get("Observation", params={"_count": "100", **(params or {})}, headers=headers)
    assert r.status_code == 200, r.text
    return sorted(e["resource"]["code"]["text"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match")


async def test_search_is_narrowed_to_the_scope(anon_client: httpx.AsyncClient, settings, data: dict) -> None:
    h = bearer(token_for(settings, f"user/Observation.rs?category={CAT}|laboratory"))
    found = await categories(anon_client, h, {"subject": f"Patient/{data['me']}"})
    assert found == ["laboratory"]
    # The client's own parameters are ANDed with the scope's: asking for more reveals nothing more.
    assert await categories(anon_client, h, {"category": "vital-signs"}) == []


async def test_several_restricted_scopes_add_up(anon_client: httpx.AsyncClient, settings, data: dict) -> None:
    scope = f"user/Observation.rs?category={CAT}|laboratory user/Observation.rs?category=vital-signs"
    h = bearer(token_for(settings, scope))
    assert await categories(anon_client, h, {"subject": f"Patient/{data['me']}"}) == ["laboratory", "vital-signs"]
    # An unrestricted scope on the type wins.
    h = bearer(token_for(settings, scope + " user/Observation.rs"))
    assert len(await categories(anon_client, h, {"subject": f"Patient/{data['me']}"})) == 3


async def test_read_outside_the_scope_is_not_found(anon_client: httpx.AsyncClient, settings, data: dict) -> None:
    h = bearer(token_for(settings, f"user/Observation.rs?category={CAT}|laboratory"))
    assert (await anon_client.get(f"Observation/{data['me-laboratory']}", headers=h)).status_code == 200
    r = await anon_client.get(f"Observation/{data['me-social-history']}", headers=h)
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"


async def test_patient_context_and_restriction_combine(anon_client: httpx.AsyncClient, settings, data: dict) -> None:
    h = patient_token(settings, data["me"], scope="patient/Observation.rs?category=laboratory")
    assert await categories(anon_client, h) == ["laboratory"]  # the patient's own lab results only
    assert (await anon_client.get(f"Observation/{data['other-laboratory']}", headers=h)).status_code == 404
    assert (await anon_client.get(f"Observation/{data['me-vital-signs']}", headers=h)).status_code == 404


async def test_what_a_restricted_scope_does_not_grant(anon_client: httpx.AsyncClient, settings, data: dict) -> None:
    h = bearer(token_for(settings, f"user/Observation.cruds?category={CAT}|laboratory"))
    # Past versions, system search, writes: not granted rather than granted too widely.
    assert (await anon_client.get(f"Observation/{data['me-laboratory']}/_history/1", headers=h)).status_code == 403
    assert (await anon_client.get("", params={"_type": "Observation"}, headers=h)).status_code == 403
    r = await anon_client.post("Observation", json=obs(data["me"], "laboratory"), headers=h)
    assert r.status_code == 403
    # Nor an _include of the restricted type from a type the token can search.
    h = bearer(token_for(settings, f"user/Patient.rs user/Observation.rs?category={CAT}|laboratory"))
    r = await anon_client.get("Patient", params={"_id": data["me"], "_revinclude": "Observation:subject"}, headers=h)
    assert [e["search"]["mode"] for e in r.json()["entry"]] == ["match"]


async def test_a_scope_the_server_cannot_evaluate_grants_nothing(
    anon_client: httpx.AsyncClient, settings, data: dict
) -> None:
    h = bearer(token_for(settings, "user/Observation.rs?no-such-param=1"))
    r = await anon_client.get("Observation", headers=h)
    assert r.status_code == 403
    assert "scope restriction" in r.json()["issue"][0]["diagnostics"]
