"""The annuaire: structure → communauté → professional, enforced on write, and who may change it."""

from __future__ import annotations

import httpx
import pytest

from tests.test_teleexpertise_world import (
    FR_TYPE,
    JSON,
    ORG_KIND,
    World,
    build_world,
    communaute,
    practitioner,
    role,
    structure,
    user_headers,
)

BILLING = "https://fhir-server.example/fhir/StructureDefinition/tlx-ext-billing-site"


@pytest.fixture(scope="module")
async def world(anon_client: httpx.AsyncClient, client: httpx.AsyncClient, settings) -> World:
    return await build_world(anon_client, dict(client.headers), settings)


async def status(world: World, headers: dict, resource: dict, method: str = "POST") -> httpx.Response:
    if method == "PUT":
        return await world.client.put(
            f"{resource['resourceType']}/{resource['id']}", json=resource, headers={**JSON, **headers}
        )
    return await world.client.post(resource["resourceType"], json=resource, headers={**JSON, **headers})


def billing_site(value: str, id_type: str = "FINEG") -> dict:
    return {
        "url": BILLING,
        "valueIdentifier": {
            "type": {"coding": [{"system": FR_TYPE, "code": id_type}]},
            "system": "https://finess.esante.gouv.fr",
            "value": value,
        },
    }


async def test_structures_are_identified_by_finess_or_siret(world: World) -> None:
    admin = world.admin
    ok = structure("CH Sud", "FINEG", "https://finess.esante.gouv.fr", "340000099")
    assert (await status(world, admin, ok)).status_code == 201
    siret = structure("Cabinet", "SIRET", "https://sirene.fr", "12345678900099")
    assert (await status(world, admin, siret)).status_code == 201
    for bad in (
        {**ok, "identifier": [{"system": "https://finess.esante.gouv.fr", "value": "340000098"}]},  # untyped
        {**ok, "identifier": [{**ok["identifier"][0], "type": {"coding": [{"system": FR_TYPE, "code": "FINEJ"}]}}]},
        {k: v for k, v in ok.items() if k != "identifier"},
    ):
        r = await status(world, admin, bad)
        assert r.status_code == 422, r.text
        assert r.json()["issue"][0]["expression"] == ["Organization.identifier"]
    both = {
        **ok,
        "type": [{"coding": [{"system": ORG_KIND, "code": "structure"}, {"system": ORG_KIND, "code": "communaute"}]}],
    }
    assert (await status(world, admin, both)).status_code == 422


async def test_a_communaute_has_exactly_one_parent_structure(world: World) -> None:
    admin = world.admin
    assert (await status(world, admin, communaute("Neurologie", world.orgs["S1"]))).status_code == 201
    for parent in (None, world.orgs["C1"], "Organization/unknown", "Patient/x"):
        r = await status(world, admin, communaute("Orpheline", parent))
        assert r.status_code == 422, (parent, r.text)
        assert r.json()["issue"][0]["code"] == "business-rule"
        assert r.json()["issue"][0]["expression"] == ["Organization.partOf"]
    # Also on update: a communauté cannot lose its structure.
    c1 = (await world.client.get(world.orgs["C1"], headers=admin)).json()
    r = await status(world, admin, {k: v for k, v in c1.items() if k != "partOf"}, "PUT")
    assert r.status_code == 422
    r = await world.client.patch(
        world.orgs["C1"],
        json=[{"op": "remove", "path": "/partOf"}],
        headers={"Content-Type": "application/json-patch+json", **admin},
    )
    assert r.status_code == 422
    # Its billing site is a FINESS géographique or a SIRET; structures have none.
    billed = {**communaute("Radiologie", world.orgs["S1"]), "extension": [billing_site("340000011")]}
    assert (await status(world, admin, billed)).status_code == 201
    wrong = {**billed, "extension": [billing_site("340000011", "FINEJ")]}
    assert (await status(world, admin, wrong)).status_code == 422
    on_structure = {
        **structure("CH", "FINEG", "https://finess.esante.gouv.fr", "340000077"),
        "extension": [billing_site("1")],
    }
    assert (await status(world, admin, on_structure)).status_code == 422


async def test_roles_and_professionals(world: World) -> None:
    admin = world.admin
    pid = "Practitioner/" + (await status(world, admin, practitioner("Sansrpps", None))).json()["id"]
    assert (await status(world, admin, role(pid, "ps", world.orgs["C1"]))).status_code == 201
    assert (await status(world, admin, role(pid, "ps", world.orgs["C2"]))).status_code == 201  # same structure
    r = await status(world, admin, role(pid, "ps", world.orgs["A"]))  # another structure, without RPPS
    assert r.status_code == 422 and "one structure" in r.json()["issue"][0]["diagnostics"]
    with_rpps = world.people["req"]
    assert (await status(world, admin, role(with_rpps, "ps", world.orgs["A"]))).status_code == 201
    unknown = role(with_rpps, "chef", world.orgs["A"])
    assert (await status(world, admin, unknown)).status_code == 422
    assert (await status(world, admin, role(with_rpps, "bureau-entrees", None))).status_code == 422
    assert (await status(world, admin, role(with_rpps, "ps", world.people["a1"]))).status_code == 422


async def test_who_changes_the_annuaire(world: World) -> None:
    """Administrators only: local ones within their structure, the regional one everywhere."""
    new_in_s2 = communaute("Cardiologie", world.orgs["S2"])
    assert (await status(world, world.h("a1"), new_in_s2)).status_code == 403
    assert (await status(world, world.h("be2"), new_in_s2)).status_code == 403
    r = await status(world, world.h("adm2"), new_in_s2)
    assert r.status_code == 201, r.text
    assert (await status(world, world.h("adm2"), communaute("Ailleurs", world.orgs["S1"]))).status_code == 403
    s = structure("Nouveau CH", "FINEG", "https://finess.esante.gouv.fr", "340000055")
    assert (await status(world, world.h("adm2"), s)).status_code == 403
    assert (await status(world, world.h("reg"), s)).status_code == 201
    # Accounts and habilitations.
    pid = (await status(world, world.h("adm2"), practitioner("Nouvelle", "10000009999"))).json()["id"]
    assert (await status(world, world.h("adm2"), role(f"Practitioner/{pid}", "ps", world.orgs["A"]))).status_code == 201
    assert (
        await status(world, world.h("adm2"), role(f"Practitioner/{pid}", "ps", world.orgs["C1"]))
    ).status_code == 403
    a = (await world.client.get(world.orgs["A"], headers=world.admin)).json()
    assert (await status(world, world.h("adm2"), {**a, "name": "Communauté A (renommée)"}, "PUT")).status_code == 200
    assert (await status(world, world.h("adm3"), {**a, "name": "Pris"}, "PUT")).status_code == 403
    r = await world.client.delete(world.orgs["A"], headers=world.h("adm3"))
    assert r.status_code == 403


async def test_token_maps_to_roles(world: World, settings) -> None:
    """The token's fhirUser → the practitioner's active roles: deactivating a role takes its rights away."""
    newcomer = (
        "Practitioner/" + (await status(world, world.admin, practitioner("Stagiaire", "10000008888"))).json()["id"]
    )
    headers = user_headers(settings, newcomer)
    rid = (await status(world, world.admin, role(newcomer, "ps", world.orgs["A"]))).json()["id"]
    sr_id, tasks = await world.sent_dossier(world.orgs["A"])
    assert (await world.client.get(f"ServiceRequest/{sr_id}", headers=headers)).status_code == 200
    current = (await world.client.get(f"PractitionerRole/{rid}", headers=world.admin)).json()
    assert (await status(world, world.admin, {**current, "active": False}, "PUT")).status_code == 200
    # Without any téléexpertise role, the practitioner no longer sees the dossiers, nor acts on them.
    assert (await world.client.get(f"ServiceRequest/{sr_id}", headers=headers)).status_code == 404
    assert (await world.client.get("Task", params={"_id": tasks[world.orgs["A"]]}, headers=headers)).json().get(
        "entry"
    ) is None
    r = await world.client.post(f"Task/{tasks[world.orgs['A']]}/$accept", headers=headers)
    assert r.status_code == 403
