"""More parameter types against FerretDB: uri, common meta parameters, number, composites, prefixes."""

from __future__ import annotations

import httpx
import pytest

from tests.helpers import post
from tests.test_search import ids

TAGS = "http://example.org/tags"


@pytest.fixture(scope="module")
async def data(client: httpx.AsyncClient) -> dict[str, str]:
    made: dict[str, str] = {}
    for key, resource in {
        "vs1": {"resourceType": "ValueSet", "status": "active", "url": "http://esante.fr/fhir/ValueSet/types/avc"},
        "vs2": {"resourceType": "ValueSet", "status": "active", "url": "http://esante.fr/fhir/ValueSet/statuts"},
        "tagged": {
            "resourceType": "Basic",
            "code": {"text": "t"},
            "meta": {
                "tag": [{"system": TAGS, "code": "urgent"}],
                "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}],
                "profile": ["http://esante.fr/fhir/StructureDefinition/dossier"],
                "source": "http://sih.example/lgc",
            },
        },
        "plain": {"resourceType": "Basic", "code": {"text": "p"}},
        "risk": {
            "resourceType": "RiskAssessment",
            "status": "final",
            "subject": {"reference": "Patient/x"},
            "prediction": [{"probabilityDecimal": 0.25}],
        },
        "bp": {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
            "effectiveDateTime": "2024-03-10",
            "component": [
                {
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                    "valueQuantity": {"value": 142, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
                },
                {
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                    "valueQuantity": {"value": 91, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
                },
            ],
        },
    }.items():
        r = await post(client, resource)
        assert r.status_code == 201, r.text
        made[key] = r.json()["id"]
    return made


async def test_uri_modifiers(client: httpx.AsyncClient, data: dict) -> None:
    assert await ids(client, "ValueSet", {"url": "http://esante.fr/fhir/ValueSet/statuts"}) == [data["vs2"]]
    got = await ids(client, "ValueSet", {"url:below": "http://esante.fr/fhir/ValueSet"})
    assert sorted(got) == sorted([data["vs1"], data["vs2"]])
    got = await ids(client, "ValueSet", {"url:above": "http://esante.fr/fhir/ValueSet/types/avc/v2"})
    assert got == [data["vs1"]]


async def test_meta_parameters(client: httpx.AsyncClient, data: dict) -> None:
    assert await ids(client, "Basic", {"_tag": f"{TAGS}|urgent"}) == [data["tagged"]]
    assert await ids(client, "Basic", {"_security": "R"}) == [data["tagged"]]
    assert await ids(client, "Basic", {"_profile": "http://esante.fr/fhir/StructureDefinition/dossier"}) == [
        data["tagged"]
    ]
    assert await ids(client, "Basic", {"_source": "http://sih.example/lgc"}) == [data["tagged"]]
    assert await ids(client, "Basic", {"_tag:not": f"{TAGS}|urgent", "_id": data["plain"]}) == [data["plain"]]
    assert data["tagged"] in await ids(client, "Basic", {"_lastUpdated": "gt2020-01-01"})
    assert await ids(client, "Basic", {"_lastUpdated": "lt2020-01-01"}) == []


async def test_number_prefixes(client: httpx.AsyncClient, data: dict) -> None:
    assert await ids(client, "RiskAssessment", {"probability": "0.25"}) == [data["risk"]]
    assert await ids(client, "RiskAssessment", {"probability": "gt0.2"}) == [data["risk"]]
    assert await ids(client, "RiskAssessment", {"probability": "lt0.2"}) == []
    assert await ids(client, "RiskAssessment", {"probability": "ap0.24"}) == [data["risk"]]
    r = await client.get("RiskAssessment", params={"probability": "abc"})
    assert r.status_code == 400


async def test_composite_pairs_values_with_their_code(client: httpx.AsyncClient, data: dict) -> None:
    systolic_high = await ids(client, "Observation", {"component-code-value-quantity": "http://loinc.org|8480-6$gt140"})
    assert systolic_high == [data["bp"]]
    # 91 belongs to the diastolic component: no systolic at 91.
    assert await ids(client, "Observation", {"component-code-value-quantity": "http://loinc.org|8480-6$91"}) == []
    assert await ids(client, "Observation", {"component-value-quantity": "91||mm[Hg]"}) == [data["bp"]]


async def test_date_prefixes_sa_eb_and_empty_values(client: httpx.AsyncClient, data: dict) -> None:
    assert await ids(client, "Observation", {"code": "85354-9", "date": "sa2024-03-09"}) == [data["bp"]]
    assert await ids(client, "Observation", {"code": "85354-9", "date": "eb2024-03-10"}) == []
    assert await ids(client, "Observation", {"code": "85354-9", "date": "eb2024-03-11"}) == [data["bp"]]
    # An empty value is ignored, as FHIR asks.
    assert await ids(client, "Observation", {"code": "85354-9", "date": ""}) == [data["bp"]]
