"""Search over HTTP against FerretDB: parameter types, modifiers, chains, includes, sorting, paging."""

from __future__ import annotations

import httpx
import pytest

from tests.helpers import outcome_of, post

INS = "urn:oid:1.2.250.1.213.1.4.8"
LOINC = "http://loinc.org"


async def ids(client: httpx.AsyncClient, url: str, params: dict | list | None = None, **headers: str) -> list[str]:
    r = await client.get(url, params=params, headers=headers)
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert bundle["type"] == "searchset"
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


@pytest.fixture(scope="module")
async def data(client: httpx.AsyncClient) -> dict[str, str]:
    made: dict[str, str] = {}

    async def make(key: str, resource: dict) -> str:
        r = await post(client, resource)
        assert r.status_code == 201, r.text
        made[key] = r.json()["id"]
        return made[key]

    org = await make("org", {"resourceType": "Organization", "name": "CHU de Toulouse"})
    await make(
        "helene",
        {
            "resourceType": "Patient",
            "identifier": [{"system": INS, "value": "2700512345678"}],
            "name": [{"family": "Lefèvre", "given": ["Hélène", "Marie"]}],
            "gender": "female",
            "birthDate": "1970-05-12",
            "managingOrganization": {"reference": f"Organization/{org}"},
            "telecom": [{"system": "email", "value": "helene@example.fr"}],
        },
    )
    await make(
        "jean",
        {
            "resourceType": "Patient",
            "identifier": [{"system": INS, "value": "1650312345678"}],
            "name": [{"family": "Dupont", "given": ["Jean"]}],
            "gender": "male",
            "birthDate": "1965-03",
            "active": True,
        },
    )
    await make("anon", {"resourceType": "Patient", "gender": "unknown"})
    for key, patient, code, value, when in (
        ("glucose-h", "helene", "2339-0", 5.4, "2024-01-15T08:30:00+01:00"),
        ("glucose-j", "jean", "2339-0", 7.9, "2024-02-01T10:00:00Z"),
        ("weight-h", "helene", "29463-7", 62.0, "2023-12-31T23:30:00-02:00"),
    ):
        await make(
            key,
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": LOINC, "code": code}], "text": f"loinc {code}"},
                "subject": {"reference": f"Patient/{made[patient]}"},
                "effectiveDateTime": when,
                "valueQuantity": {
                    "value": value,
                    "unit": "mmol/L",
                    "system": "http://unitsofmeasure.org",
                    "code": "mmol/L",
                },
            },
        )
    return made


async def test_string_accent_and_case_insensitive(client: httpx.AsyncClient, data: dict) -> None:
    assert await ids(client, "Patient", {"name": "helene"}) == [data["helene"]]
    assert await ids(client, "Patient", {"family": "lefevre"}) == [data["helene"]]
    assert await ids(client, "Patient", {"family": "LEF"}) == [data["helene"]]
    assert await ids(client, "Patient", {"given": "mar"}) == [data["helene"]]
    assert await ids(client, "Patient", {"family:exact": "Lefèvre"}) == [data["helene"]]
    assert await ids(client, "Patient", {"family:exact": "lefevre"}) == []
    assert await ids(client, "Patient", {"family:contains": "fèv"}) == [data["helene"]]
    assert await ids(client, "Patient", {"family:contains": "xyz"}) == []


async def test_token_forms(client: httpx.AsyncClient, data: dict) -> None:
    assert await ids(client, "Patient", {"identifier": f"{INS}|2700512345678"}) == [data["helene"]]
    assert await ids(client, "Patient", {"identifier": "2700512345678"}) == [data["helene"]]
    assert await ids(client, "Patient", {"identifier": "http://other|2700512345678"}) == []
    assert sorted(await ids(client, "Patient", {"identifier": f"{INS}|"})) == sorted([data["helene"], data["jean"]])
    assert await ids(client, "Patient", {"gender": "male"}) == [data["jean"]]
    assert sorted(await ids(client, "Patient", {"gender:not": "male"})) == sorted([data["helene"], data["anon"]])
    assert await ids(client, "Patient", {"active": "true"}) == [data["jean"]]
    assert await ids(client, "Patient", {"email": "helene@example.fr"}) == [data["helene"]]
    got = await ids(client, "Observation", {"code": f"{LOINC}|2339-0"})
    assert sorted(got) == sorted([data["glucose-h"], data["glucose-j"]])
    assert await ids(client, "Observation", {"code:text": "loinc 2946"}) == [data["weight-h"]]
    assert await ids(client, "Patient", {"identifier:missing": "true"}) == [data["anon"]]


async def test_or_and_semantics(client: httpx.AsyncClient, data: dict) -> None:
    got = await ids(client, "Patient", {"gender": "male,female"})
    assert sorted(got) == sorted([data["helene"], data["jean"]])
    both = await ids(client, "Patient", [("name", "helene"), ("name", "marie")])
    assert both == [data["helene"]]
    assert await ids(client, "Patient", [("name", "helene"), ("name", "jean")]) == []


async def test_dates(client: httpx.AsyncClient, data: dict) -> None:
    assert await ids(client, "Patient", {"birthdate": "1970"}) == [data["helene"]]
    assert await ids(client, "Patient", {"birthdate": "1970-05-12"}) == [data["helene"]]
    assert await ids(client, "Patient", {"birthdate": "1965-03-10"}) == []  # month precision is wider
    assert await ids(client, "Patient", {"birthdate": "1965"}) == [data["jean"]]
    assert await ids(client, "Patient", {"birthdate": "gt1966"}) == [data["helene"]]
    assert await ids(client, "Patient", {"birthdate": "lt1966"}) == [data["jean"]]
    assert sorted(await ids(client, "Patient", {"birthdate": "ge1965-03"})) == sorted([data["helene"], data["jean"]])
    assert await ids(client, "Patient", {"birthdate": "ne1970"}) != []
    # 2023-12-31T23:30-02:00 is 2024-01-01T01:30Z: in 2024 (UTC), not in 2023.
    obs2024 = await ids(client, "Observation", {"date": "2024"})
    assert data["weight-h"] in obs2024
    assert await ids(client, "Observation", {"date": "2024-01-15T07:30:00Z"}) == [data["glucose-h"]]
    got = await ids(client, "Observation", [("date", "ge2024-01-01"), ("date", "lt2024-02")])
    assert sorted(got) == sorted([data["glucose-h"], data["weight-h"]])
    r = await client.get("Patient", params={"birthdate": "xx1970"})
    assert r.status_code == 400
    outcome_of(r)
    r = await client.get("Patient", params={"birthdate": "1970-13"})
    assert r.status_code == 400


async def test_quantity_and_number(client: httpx.AsyncClient, data: dict) -> None:
    assert await ids(client, "Observation", {"value-quantity": "5.4"}) == [data["glucose-h"]]
    assert await ids(client, "Observation", {"value-quantity": "5.4|http://unitsofmeasure.org|mmol/L"}) == [
        data["glucose-h"]
    ]
    assert await ids(client, "Observation", {"value-quantity": "5.4|http://unitsofmeasure.org|mg"}) == []
    got = await ids(client, "Observation", {"value-quantity": "gt6"})
    assert sorted(got) == sorted([data["glucose-j"], data["weight-h"]])
    got = await ids(client, "Observation", {"code-value-quantity": f"{LOINC}|2339-0$gt6"})
    assert got == [data["glucose-j"]]


async def test_references_and_chains(client: httpx.AsyncClient, data: dict) -> None:
    h = data["helene"]
    expected = sorted([data["glucose-h"], data["weight-h"]])
    assert sorted(await ids(client, "Observation", {"subject": f"Patient/{h}"})) == expected
    assert sorted(await ids(client, "Observation", {"subject": h})) == expected
    assert sorted(await ids(client, "Observation", {"subject:Patient": h})) == expected
    assert sorted(await ids(client, "Observation", {"subject": f"http://testserver/fhir/Patient/{h}"})) == expected
    assert sorted(await ids(client, "Observation", {"patient": h})) == expected
    assert sorted(await ids(client, "Observation", {"subject:Patient.name": "lefevre"})) == expected
    assert sorted(await ids(client, "Observation", {"subject.family": "lefèvre"})) == expected
    got = await ids(client, "Observation", {"subject:Patient.organization.name": "CHU"})
    assert sorted(got) == expected
    assert await ids(client, "Observation", {"subject.identifier": f"{INS}|1650312345678"}) == [data["glucose-j"]]
    got = await ids(client, "Patient", {"_has:Observation:subject:code": f"{LOINC}|29463-7"})
    assert got == [h]
    got = await ids(client, "Patient", {"_has:Observation:patient:code": "2339-0"})
    assert sorted(got) == sorted([h, data["jean"]])
    r = await client.get("Observation", params={"subject.nonsense": "x"})
    assert r.status_code == 400
    outcome_of(r)


async def test_includes(client: httpx.AsyncClient, data: dict) -> None:
    r = await client.get("Observation", params={"code": "2339-0", "_include": "Observation:subject"})
    bundle = r.json()
    modes = {(e["resource"]["resourceType"], e["search"]["mode"]) for e in bundle["entry"]}
    assert modes == {("Observation", "match"), ("Patient", "include")}
    assert len([e for e in bundle["entry"] if e["search"]["mode"] == "include"]) == 2
    assert bundle["total"] == 2  # includes are not counted
    r = await client.get(
        "Observation",
        params=[
            ("_id", data["weight-h"]),
            ("_include", "Observation:subject"),
            ("_include:iterate", "Patient:organization"),
        ],
    )
    types = [e["resource"]["resourceType"] for e in r.json()["entry"]]
    assert types == ["Observation", "Patient", "Organization"]
    r = await client.get("Patient", params={"_id": data["helene"], "_revinclude": "Observation:subject"})
    entries = r.json()["entry"]
    assert [e["search"]["mode"] for e in entries] == ["match", "include", "include"]
    r = await client.get("Observation", params={"_id": data["weight-h"], "_include": "*"})
    assert {e["resource"]["resourceType"] for e in r.json()["entry"]} == {"Observation", "Patient"}


async def test_sort_and_paging(client: httpx.AsyncClient, data: dict) -> None:
    by_birth = await ids(client, "Patient", {"_sort": "birthdate", "birthdate:missing": "false"})
    assert by_birth == [data["jean"], data["helene"]]
    assert await ids(client, "Patient", {"_sort": "-birthdate", "birthdate:missing": "false"}) == [
        data["helene"],
        data["jean"],
    ]
    fams = await ids(client, "Patient", {"_sort": "family,_id", "family:missing": "false"})
    assert fams == [data["jean"], data["helene"]]
    # Page through every Patient two at a time, while adding one: nothing is skipped or repeated.
    seen: list[str] = []
    r = await client.get("Patient", params={"_count": "2", "_sort": "_lastUpdated"})
    first = True
    while True:
        bundle = r.json()
        seen += [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]
        if first:
            first = False
            extra = (await post(client, {"resourceType": "Patient", "gender": "other"})).json()["id"]
        links = {link["relation"]: link["url"] for link in bundle["link"]}
        prev_url = links.get("previous")
        if "next" not in links:
            break
        r = await client.get(links["next"])
    assert len(seen) == len(set(seen))
    assert {data["helene"], data["jean"], data["anon"], extra} <= set(seen)
    assert prev_url is not None
    back = (await client.get(prev_url)).json()
    assert len([e for e in back["entry"] if e["search"]["mode"] == "match"]) == 2


async def test_result_parameters(client: httpx.AsyncClient, data: dict) -> None:
    r = await client.get("Patient", params={"_summary": "count"})
    assert "entry" not in r.json() and r.json()["total"] >= 3
    r = await client.get("Patient", params={"_id": data["helene"], "_summary": "true"})
    res = r.json()["entry"][0]["resource"]
    assert "name" in res and "telecom" in res
    assert any(t["code"] == "SUBSETTED" for t in res["meta"]["tag"])
    r = await client.get("Patient", params={"_id": data["helene"], "_elements": "gender"})
    res = r.json()["entry"][0]["resource"]
    assert set(res) == {"resourceType", "id", "meta", "gender"}
    r = await client.get("Patient", params={"_total": "none"})
    assert "total" not in r.json()
    r = await client.get("Patient", params={"_count": "1"})
    assert len([e for e in r.json()["entry"] if e["search"]["mode"] == "match"]) == 1


async def test_unknown_parameters_lenient_and_strict(client: httpx.AsyncClient, data: dict) -> None:
    r = await client.get("Patient", params={"nonsense": "1", "gender": "male"})
    assert r.status_code == 200
    entries = r.json()["entry"]
    assert [e["resource"]["id"] for e in entries if e["search"]["mode"] == "match"] == [data["jean"]]
    outcome = [e for e in entries if e["search"]["mode"] == "outcome"]
    assert outcome and "nonsense" in outcome[0]["resource"]["issue"][0]["diagnostics"]
    r = await client.get("Patient", params={"nonsense": "1"}, headers={"Prefer": "handling=strict"})
    assert r.status_code == 400
    outcome_of(r)


async def test_post_search_system_and_compartment(client: httpx.AsyncClient, data: dict) -> None:
    r = await client.post(
        "Patient/_search", content="family=dupont", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [data["jean"]]
    r = await client.get("http://testserver/fhir", params={"_type": "Patient,Organization", "_count": "100"})
    types = {e["resource"]["resourceType"] for e in r.json()["entry"]}
    assert types == {"Patient", "Organization"}
    got = await ids(client, f"Patient/{data['helene']}/Observation", {"code": "2339-0"})
    assert got == [data["glucose-h"]]
    assert sorted(await ids(client, f"Patient/{data['helene']}/Observation")) == sorted(
        [data["glucose-h"], data["weight-h"]]
    )
    assert (await client.get("Patient/unknown/Observation")).status_code == 404
    r = await client.post(
        "_search", content="_type=Organization&name=chu", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert [e["resource"]["id"] for e in r.json().get("entry", [])] == [data["org"]], r.text


async def test_deleted_resources_are_not_found(client: httpx.AsyncClient) -> None:
    pid = (await post(client, {"resourceType": "Patient", "name": [{"family": "Éphémère"}]})).json()["id"]
    assert await ids(client, "Patient", {"family": "ephemere"}) == [pid]
    await client.delete(f"Patient/{pid}")
    assert await ids(client, "Patient", {"family": "ephemere"}) == []
    assert await ids(client, "Patient", {"_id": pid}) == []


async def test_total_on_first_page_only_by_default(client: httpx.AsyncClient, data: dict) -> None:
    first = (await client.get("Patient", params={"_count": "1"})).json()
    assert first["total"] >= 3
    nxt = next(link["url"] for link in first["link"] if link["relation"] == "next")
    assert "total" not in (await client.get(nxt)).json()
    asked = (await client.get("Patient", params={"_count": "1", "_total": "accurate"})).json()
    nxt = next(link["url"] for link in asked["link"] if link["relation"] == "next")
    assert (await client.get(nxt)).json()["total"] == asked["total"]
