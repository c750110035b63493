"""A small téléexpertise region for the tests: structures, communautés, professionals and their tokens.

No tests here: the téléexpertise test modules build this world (through the HTTP API, with the admin
token) and then act as its users, each with their own token.

    S1 (FINESS géo) ── C1, C2          req (ps in C1 and C2), c1b (ps in C1)
    S2 (FINESS géo) ── A, B            a1, a2 (ps in A), b1 (ps in B), p (ps at S2 itself: "professional P"),
                                       be2 (bureau des entrées of S2), adm2 (local administrator of S2)
    S3 (SIRET)      ── D, Z            d1 (ps in D), z1 (ps in Z), adm3 (local administrator of S3)
    reg: regional administrator (no organisation)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from fhir_server.auth.tokens import mint_token
from tests.conftest import TEST_BASE

BASE = "https://fhir-server.example/fhir"
ORG_KIND = f"{BASE}/CodeSystem/organization-kind"
ROLE = f"{BASE}/CodeSystem/teleexpertise-role"
DOSSIER_TYPE = f"{BASE}/CodeSystem/teledossier-type"
DOSSIER_STATUS = f"{BASE}/CodeSystem/teledossier-status"
EXT_BUSINESS_STATUS = f"{BASE}/StructureDefinition/tlx-ext-business-status"
OPERATION = f"{BASE}/CodeSystem/teleexpertise-operation"
ACCESS = f"{BASE}/CodeSystem/tlx-access"
FR_TYPE = "https://hl7.fr/ig/fhir/core/CodeSystem/fr-core-cs-v2-0203"
RPPS = "urn:oid:1.2.250.1.71.4.2.1"
JSON = {"Content-Type": "application/fhir+json"}

STRUCTURES = {
    "S1": ("FINEG", "https://finess.esante.gouv.fr", "340000001", "CH Requérant"),
    "S2": ("FINEG", "https://finess.esante.gouv.fr", "340000002", "CHU Requis"),
    "S3": ("SIRET", "https://sirene.fr", "12345678900011", "Clinique Zéphyr"),
}
COMMUNAUTES = {"C1": "S1", "C2": "S1", "A": "S2", "B": "S2", "D": "S3", "Z": "S3"}
USERS: dict[str, list[tuple[str, str | None]]] = {
    "req": [("ps", "C1"), ("ps", "C2")],
    "c1b": [("ps", "C1")],
    "a1": [("ps", "A")],
    "a2": [("ps", "A")],
    "b1": [("ps", "B")],
    "p": [("ps", "S2")],
    "d1": [("ps", "D")],
    "z1": [("ps", "Z")],
    "be2": [("bureau-entrees", "S2")],
    "adm2": [("admin-local", "S2")],
    "adm3": [("admin-local", "S3")],
    "reg": [("admin-regional", None)],
}


def structure(name: str, id_type: str, system: str, value: str) -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "name": name,
        "type": [{"coding": [{"system": ORG_KIND, "code": "structure"}]}],
        "identifier": [{"type": {"coding": [{"system": FR_TYPE, "code": id_type}]}, "system": system, "value": value}],
    }


def communaute(name: str, parent: str | None) -> dict[str, Any]:
    org: dict[str, Any] = {
        "resourceType": "Organization",
        "name": name,
        "type": [{"coding": [{"system": ORG_KIND, "code": "communaute"}]}],
    }
    if parent:
        org["partOf"] = {"reference": parent}
    return org


def practitioner(family: str, rpps: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Practitioner", "name": [{"family": family, "given": ["Test"]}]}
    if rpps:
        out["identifier"] = [{"system": RPPS, "value": rpps}]
    return out


def role(practitioner_ref: str, profile: str, org: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "PractitionerRole",
        "active": True,
        "practitioner": {"reference": practitioner_ref},
        "code": [{"coding": [{"system": ROLE, "code": profile}]}],
    }
    if org:
        out["organization"] = {"reference": org}
    return out


def user_headers(settings: Any, practitioner_ref: str, scope: str = "user/*.cruds") -> dict[str, str]:
    token = mint_token(
        settings.data_dir,
        issuer=settings.resolved_token_issuer(),
        audience=TEST_BASE,
        scope=scope,
        lifetime=3600,
        subject=practitioner_ref,
        extra={"fhirUser": practitioner_ref},
    )
    return {"Authorization": f"Bearer {token}"}


async def created(client: httpx.AsyncClient, resource: dict[str, Any], headers: dict[str, str] | None = None) -> str:
    r = await client.post(resource["resourceType"], json=resource, headers={**JSON, **(headers or {})})
    assert r.status_code == 201, r.text
    return r.json()["id"]


@dataclass
class World:
    client: httpx.AsyncClient  # no default token: every call names its user
    admin: dict[str, str]
    orgs: dict[str, str] = field(default_factory=dict)  # name -> Organization/id
    people: dict[str, str] = field(default_factory=dict)  # user -> Practitioner/id
    roles: dict[tuple[str, str | None], str] = field(default_factory=dict)  # (user, org name) -> PractitionerRole/id
    tokens: dict[str, dict[str, str]] = field(default_factory=dict)
    settings: Any = None

    def h(self, user: str) -> dict[str, str]:
        return self.tokens[user]

    def role_of(self, user: str, org: str | None = None) -> str:
        if org is None:
            (key,) = [k for k in self.roles if k[0] == user]
            return self.roles[key]
        return self.roles[(user, org)]

    async def get(self, user: str, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(path, params=params or None, headers=self.h(user))

    async def post(self, user: str, resource: dict[str, Any], **params: Any) -> httpx.Response:
        return await self.client.post(
            resource["resourceType"], json=resource, params=params or None, headers={**JSON, **self.h(user)}
        )

    async def put(self, user: str, resource: dict[str, Any]) -> httpx.Response:
        url = f"{resource['resourceType']}/{resource['id']}"
        return await self.client.put(url, json=resource, headers={**JSON, **self.h(user)})

    async def op(self, user: str, path: str, **parameters: Any) -> httpx.Response:
        """POST an operation with a Parameters body (values: str, bool, `Type/id` refs, or resources)."""
        params: list[dict[str, Any]] = []
        for name, value in parameters.items():
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, bool):
                    params.append({"name": name, "valueBoolean": v})
                elif isinstance(v, dict):
                    params.append({"name": name, "resource": v})
                elif name in ("addressee", "attachment"):
                    params.append({"name": name, "valueReference": {"reference": v}})
                else:
                    params.append({"name": name, "valueString": v})
        body = {"resourceType": "Parameters", **({"parameter": params} if params else {})}
        return await self.client.post(path, json=body, headers={**JSON, **self.h(user)})

    async def search_ids(self, user: str, rtype: str, **params: Any) -> list[str]:
        r = await self.get(user, rtype, **params)
        assert r.status_code == 200, r.text
        return [e["resource"]["id"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match"]

    # ---- dossiers ----

    async def patient(self, user: str = "req", family: str = "Martin", **extra: Any) -> str:
        resource = {"resourceType": "Patient", "name": [{"family": family, "given": ["Jeanne"]}], **extra}
        r = await self.post(user, resource)
        assert r.status_code == 201, r.text
        return r.json()["id"]

    async def dossier(
        self,
        user: str = "req",
        kind: str = "tle-programmee",
        communaute: str | None = "C1",
        patient: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        pid = patient or await self.patient(user)
        resource = {
            "resourceType": "ServiceRequest",
            "status": "draft",
            "intent": "order",
            "category": [{"coding": [{"system": DOSSIER_TYPE, "code": kind}]}],
            "subject": {"reference": f"Patient/{pid}"},
            **extra,
        }
        params = {"communaute": self.orgs[communaute]} if communaute else {}
        r = await self.post(user, resource, **params)
        assert r.status_code == 201, r.text
        return r.json()

    async def request_form(self, sr_id: str, patient: str, question: str, user: str = "req") -> str:
        """The id of a completed request form (QuestionnaireResponse) of that dossier."""
        form = {
            "resourceType": "QuestionnaireResponse",
            "status": "completed",
            "basedOn": [{"reference": f"ServiceRequest/{sr_id}"}],
            "subject": {"reference": f"Patient/{patient}"},
            "item": [{"linkId": "question", "answer": [{"valueString": question}]}],
        }
        r = await self.post(user, form)
        assert r.status_code == 201, r.text
        return r.json()["id"]

    async def send(self, sr_id: str, *addressees: str, user: str = "req") -> dict[str, Any]:
        r = await self.op(user, f"ServiceRequest/{sr_id}/$send", addressee=list(addressees))
        assert r.status_code == 200, r.text
        return r.json()

    async def sent_dossier(
        self, *addressees: str, kind: str = "tle-programmee", **extra: Any
    ) -> tuple[str, dict[str, str]]:
        """(ServiceRequest id, {addressee ref: Task id}) of a dossier req sent from C1."""
        sr = await self.dossier(kind=kind, **extra)
        bundle = await self.send(sr["id"], *addressees)
        tasks = {
            e["resource"]["restriction"]["recipient"][0]["reference"]: e["resource"]["id"]
            for e in bundle["entry"]
            if e["resource"]["resourceType"] == "Task"
        }
        return sr["id"], tasks


async def build_world(client: httpx.AsyncClient, admin: dict[str, str], settings: Any) -> World:
    world = World(client, admin, settings=settings)
    for name, (id_type, system, value, label) in STRUCTURES.items():
        world.orgs[name] = "Organization/" + await created(client, structure(label, id_type, system, value), admin)
    for name, parent in COMMUNAUTES.items():
        world.orgs[name] = "Organization/" + await created(
            client, communaute(f"Communauté {name}", world.orgs[parent]), admin
        )
    for number, (user, memberships) in enumerate(USERS.items()):
        pid = await created(client, practitioner(user.upper(), f"1000000{number:04d}"), admin)
        world.people[user] = f"Practitioner/{pid}"
        for profile, org in memberships:
            rid = await created(client, role(world.people[user], profile, world.orgs[org] if org else None), admin)
            world.roles[(user, org)] = f"PractitionerRole/{rid}"
        world.tokens[user] = user_headers(settings, world.people[user])
    return world


def business(resource: dict[str, Any]) -> str | None:
    if resource["resourceType"] == "Task":
        concept = resource.get("businessStatus") or {}
    else:
        concept = next(
            (e.get("valueCodeableConcept") for e in resource.get("extension", []) if e["url"] == EXT_BUSINESS_STATUS),
            {},
        )
    return next((c["code"] for c in (concept or {}).get("coding", []) if c["system"] == DOSSIER_STATUS), None)


def state(resource: dict[str, Any]) -> tuple[str, str | None]:
    return resource["status"], business(resource)


def outcome(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    assert body["issue"] and body["issue"][0]["severity"] in ("error", "fatal"), body
    return body
