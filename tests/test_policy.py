"""The policy layer: confidentiality labels, DUI information natures and the usager's opposition."""

from __future__ import annotations

import httpx
import pytest

from fhir_server.auth.tokens import mint_token
from tests.conftest import TEST_BASE
from tests.helpers import patient, post, put

CONF = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
NATURE = "https://fhir-server.esante.fr/CodeSystem/nature-information"


def user(settings, who: str, **claims: object) -> dict[str, str]:
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


def labelled(pid: str, system: str, code: str, text: str) -> dict:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": text},
        "subject": {"reference": f"Patient/{pid}"},
        "meta": {"security": [{"system": system, "code": code}]},
    }


async def visible(anon: httpx.AsyncClient, headers: dict, rtype: str, rid: str) -> tuple[bool, bool]:
    """(readable by id, found by search)"""
    read = (await anon.get(f"{rtype}/{rid}", headers=headers)).status_code
    assert read in (200, 404)
    bundle = (await anon.get(rtype, params={"_id": rid}, headers=headers)).json()
    return read == 200, bool(bundle.get("entry") and bundle["entry"][0]["search"]["mode"] == "match")


@pytest.fixture(scope="module")
async def data(client: httpx.AsyncClient) -> dict:
    pid = (await post(client, patient(family="Usager"))).json()["id"]
    return {
        "pid": pid,
        "restricted": (await post(client, labelled(pid, CONF, "R", "VIH"))).json()["id"],
        "psycho": (await post(client, labelled(pid, NATURE, "PSYCHO-SOCIAL", "contexte familial"))).json()["id"],
        "medical": (await post(client, labelled(pid, NATURE, "MEDICAL", "tension"))).json()["id"],
    }


async def test_confidentiality_labels(
    anon_client: httpx.AsyncClient, client: httpx.AsyncClient, settings, data: dict
) -> None:
    assert await visible(anon_client, user(settings, "Practitioner/a"), "Observation", data["restricted"]) == (
        False,
        False,
    )
    cleared = user(settings, "Practitioner/a", labels=["R"])
    assert await visible(anon_client, cleared, "Observation", data["restricted"]) == (True, True)
    very = user(settings, "Practitioner/a", labels=["V"])
    assert await visible(anon_client, very, "Observation", data["restricted"]) == (True, True)
    # The admin (system) token is not restricted by labels.
    assert (await client.get(f"Observation/{data['restricted']}")).status_code == 200


async def test_information_natures(anon_client: httpx.AsyncClient, settings, data: dict) -> None:
    doctor = user(settings, "Practitioner/doc", category="professionnel-sante")
    social = user(settings, "Practitioner/as", category="travailleur-social")
    assert await visible(anon_client, doctor, "Observation", data["psycho"]) == (False, False)
    assert await visible(anon_client, doctor, "Observation", data["medical"]) == (True, True)
    assert await visible(anon_client, social, "Observation", data["psycho"]) == (True, True)
    assert await visible(anon_client, social, "Observation", data["medical"]) == (False, False)
    # Includes obey the same rules.
    r = await anon_client.get(
        "Patient", params={"_id": data["pid"], "_revinclude": "Observation:subject"}, headers=doctor
    )
    ids = {e["resource"]["id"] for e in r.json()["entry"]}
    assert data["medical"] in ids and data["psycho"] not in ids


async def test_opposition_consent(
    anon_client: httpx.AsyncClient, client: httpx.AsyncClient, settings, data: dict
) -> None:
    consent = {
        "resourceType": "Consent",
        "status": "active",
        "scope": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]
        },
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{data['pid']}"},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
        "provision": {
            "type": "deny",
            "actor": [{"role": {"text": "destinataire"}, "reference": {"reference": "Practitioner/outside"}}],
        },
    }
    created = (await post(client, consent)).json()
    outsider = user(settings, "Practitioner/outside", category="professionnel-sante")
    team = user(settings, "Practitioner/team", category="professionnel-sante")
    assert await visible(anon_client, outsider, "Patient", data["pid"]) == (False, False)
    assert await visible(anon_client, outsider, "Observation", data["medical"]) == (False, False)
    assert await visible(anon_client, team, "Patient", data["pid"]) == (True, True)
    assert await visible(anon_client, team, "Observation", data["medical"]) == (True, True)
    # The opposition is withdrawn: access comes back.
    await put(client, dict(created, status="inactive"))
    assert await visible(anon_client, outsider, "Observation", data["medical"]) == (True, True)


@pytest.fixture
async def team_app(ferretdb_uri: str, tmp_path):
    from asgi_lifespan import LifespanManager

    from fhir_server.app import create_app
    from tests.conftest import make_settings, token_for

    settings = make_settings(ferretdb_uri, tmp_path, care_team_required=True)
    app = create_app(settings)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        admin = {"Authorization": f"Bearer {token_for(settings)}"}
        async with (
            httpx.AsyncClient(transport=transport, base_url=TEST_BASE + "/", headers=admin) as admin_client,
            httpx.AsyncClient(transport=transport, base_url=TEST_BASE + "/") as anon,
        ):
            yield admin_client, anon, settings


async def test_care_team_rule(team_app) -> None:
    admin, anon, settings = team_app
    mine = (await post(admin, patient(family="Suivi"))).json()["id"]
    other = (await post(admin, patient(family="Ailleurs"))).json()["id"]
    obs_mine = (await post(admin, labelled(mine, NATURE, "MEDICAL", "poids"))).json()["id"]
    obs_other = (await post(admin, labelled(other, NATURE, "MEDICAL", "poids"))).json()["id"]
    team = {
        "resourceType": "CareTeam",
        "status": "active",
        "subject": {"reference": f"Patient/{mine}"},
        "participant": [{"member": {"reference": "Practitioner/ide"}}],
    }
    await post(admin, team)
    nurse = user(settings, "Practitioner/ide")
    assert await visible(anon, nurse, "Patient", mine) == (True, True)
    assert await visible(anon, nurse, "Observation", obs_mine) == (True, True)
    assert await visible(anon, nurse, "Patient", other) == (False, False)
    assert await visible(anon, nurse, "Observation", obs_other) == (False, False)
    # Someone in no team sees no usager; the admin (system token) is not bound by teams.
    assert await visible(anon, user(settings, "Practitioner/nobody"), "Patient", mine) == (False, False)
    assert (await admin.get(f"Patient/{other}")).status_code == 200
