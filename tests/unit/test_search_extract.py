"""extract_index: the `i` document for each parameter type, on small inline and Synthea resources."""

from __future__ import annotations

import bz2
import json
from pathlib import Path
from typing import Any

import pytest

from fhir_server.search.common import hash16, normalize
from fhir_server.search.extract import extract_index
from fhir_server.search.registry import load_registry

BASE = "http://127.0.0.1:8080/fhir"
SYNTHEA = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "synthea"


def index(resource: dict[str, Any]) -> dict[str, Any]:
    return extract_index(resource, load_registry(), BASE)


PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "meta": {
        "lastUpdated": "2024-05-01T12:00:00.123+02:00",
        "tag": [{"system": "http://t", "code": "x", "display": "Étiquette"}],
        "profile": ["http://interop.esante.gouv.fr/ig/fhir/core/StructureDefinition/fr-core-patient|2.1.0"],
    },
    "identifier": [
        {
            "system": "urn:oid:1.2.250.1.213.1.4.8",
            "value": "1234567890123",
            "type": {
                "coding": [{"system": "http://interopsante.org/fhir/CodeSystem/fr-v2-0203", "code": "INS-NIR"}],
                "text": "NIR définitif",
            },
        }
    ],
    "active": True,
    "name": [{"family": "Lefèvre", "given": ["Hélène", "Marie"], "prefix": ["Mme"]}],
    "telecom": [
        {"system": "email", "value": "helene@example.fr"},
        {"system": "phone", "value": "0600000000"},
    ],
    "gender": "female",
    "birthDate": "1980-03",
    "address": [{"line": ["12  rue de l'Église"], "city": "Saint-Étienne", "postalCode": "42000", "country": "FR"}],
    "generalPractitioner": [
        {"reference": f"{BASE}/Practitioner/dr1/_history/3"},
        {"reference": "#contained"},
        {"identifier": {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "810000000001"}},
    ],
}


def test_string_index_normalizes_accents_and_case() -> None:
    i = index(PATIENT)
    assert i["family"] == {"n": ["lefevre"], "x": ["Lefèvre"]}
    assert i["given"] == {"n": ["helene", "marie"], "x": ["Hélène", "Marie"]}
    assert i["name"]["n"] == ["lefevre", "helene", "marie", "mme"]
    assert i["address"]["n"] == ["12 rue de l'eglise", "saint-etienne", "42000", "fr"]
    assert i["address-city"] == {"n": ["saint-etienne"], "x": ["Saint-Étienne"]}


def test_normalize() -> None:
    assert normalize("Hélène") == "helene"
    assert normalize("  LEFÈVRE \t Jean ") == "lefevre jean"
    assert normalize("Cœur Ægir Øster") == "coeur aegir oster"
    assert normalize("Straße") == "strasse"


def test_token_index() -> None:
    i = index(PATIENT)
    assert i["gender"] == {"c": ["female"], "sc": ["|female"]}
    assert i["active"] == {"c": ["true"], "sc": ["|true"]}
    assert i["identifier"] == {
        "c": ["1234567890123"],
        "sc": ["urn:oid:1.2.250.1.213.1.4.8|1234567890123"],
        "s": ["urn:oid:1.2.250.1.213.1.4.8"],
        "t": ["nir definitif"],
        "ot": ["http://interopsante.org/fhir/CodeSystem/fr-v2-0203|INS-NIR|1234567890123"],
    }
    assert i["email"] == {"c": ["helene@example.fr"], "sc": ["email|helene@example.fr"], "s": ["email"]}
    assert i["phone"]["c"] == ["0600000000"]
    assert i["telecom"]["c"] == ["helene@example.fr", "0600000000"]
    assert i["_tag"] == {"c": ["x"], "sc": ["http://t|x"], "s": ["http://t"], "t": ["etiquette"]}


def test_codeable_concept_token() -> None:
    condition = {
        "resourceType": "Condition",
        "code": {
            "coding": [
                {"system": "http://snomed.info/sct", "code": "44054006", "display": "Diabetes"},
                {"code": "E11"},
            ],
            "text": "Diabète de type 2",
        },
    }
    assert index(condition)["code"] == {
        "c": ["44054006", "E11"],
        "sc": ["http://snomed.info/sct|44054006", "|E11"],
        "s": ["http://snomed.info/sct"],
        "t": ["diabetes", "diabete de type 2"],
    }


def test_reference_index() -> None:
    i = index(PATIENT)
    assert i["general-practitioner"] == {
        "r": ["Practitioner/dr1"],
        "ic": ["810000000001"],
        "isc": ["urn:oid:1.2.250.1.71.4.2.1|810000000001"],
    }
    obs = {
        "resourceType": "Observation",
        "subject": {"reference": "Patient/p1"},
        "performer": [{"reference": "http://other.org/fhir/Practitioner/9/_history/1"}],
    }
    i = index(obs)
    assert i["subject"] == {"r": ["Patient/p1"]}
    assert i["patient"] == {"r": ["Patient/p1"]}
    assert i["performer"] == {"r": ["http://other.org/fhir/Practitioner/9"]}
    group = index({"resourceType": "Observation", "subject": {"reference": "Group/g"}})
    assert group["subject"] == {"r": ["Group/g"]} and "patient" not in group


def test_canonical_reference_index() -> None:
    qr = {"resourceType": "QuestionnaireResponse", "questionnaire": "http://q.org/Questionnaire/a|1.0"}
    assert index(qr)["questionnaire"] == {
        "r": ["http://q.org/Questionnaire/a"],
        "cv": ["http://q.org/Questionnaire/a|1.0"],
    }


def test_uri_index() -> None:
    i = index(PATIENT)
    profile = PATIENT["meta"]["profile"][0]
    # `_profile` is a uri parameter in the R4 definitions: stored under "u", with and without |version
    assert i["_profile"] == {"u": [profile, profile.split("|")[0]]}
    assert index({"resourceType": "ValueSet", "url": "http://a.org/vs"})["url"] == {"u": ["http://a.org/vs"]}


def test_date_index() -> None:
    i = index(PATIENT)
    assert i["birthdate"] == {
        "lo": ["1980-03-01T00:00:00.000000Z"],
        "hi": ["1980-03-31T23:59:59.999999Z"],
        "eq": ["Y1980", "M1980-03"],
    }
    assert i["_lastUpdated"] == {
        "lo": ["2024-05-01T10:00:00.123000Z"],
        "hi": ["2024-05-01T10:00:00.123999Z"],
        "eq": [
            "Y2024",
            "M2024-05",
            "D2024-05-01",
            "h2024-05-01T10",
            "m2024-05-01T10:00",
            "s2024-05-01T10:00:00",
        ],
    }


def test_date_index_time_zones_periods_and_timings() -> None:
    obs = {"resourceType": "Observation", "effectiveDateTime": "2020-01-01T10:00:00+02:00"}
    assert index(obs)["date"]["lo"] == ["2020-01-01T08:00:00.000000Z"]
    assert "s2020-01-01T08:00:00" in index(obs)["date"]["eq"]
    enc = {"resourceType": "Encounter", "period": {"start": "2020-01-01"}}
    assert index(enc)["date"] == {
        "lo": ["2020-01-01T00:00:00.000000Z"],
        "hi": ["9999-12-31T23:59:59.999999Z"],
    }
    enc = {"resourceType": "Encounter", "period": {"end": "2020-01-02"}}
    assert index(enc)["date"] == {
        "lo": ["0001-01-01T00:00:00.000000Z"],
        "hi": ["2020-01-02T23:59:59.999999Z"],
    }
    enc = {
        "resourceType": "Encounter",
        "period": {"start": "2020-01-01T10:00:00Z", "end": "2020-01-01T11:00:00Z"},
    }
    assert index(enc)["date"]["eq"] == ["Y2020", "M2020-01", "D2020-01-01"]
    med = {
        "resourceType": "MedicationRequest",
        "dosageInstruction": [
            {
                "timing": {
                    "event": ["2021-05-01", "2021-05-03"],
                    "repeat": {"boundsPeriod": {"start": "2021-05-01"}},
                }
            }
        ],
    }
    assert index(med)["date"]["lo"] == ["2021-05-01T00:00:00.000000Z", "2021-05-03T00:00:00.000000Z"]
    assert "D2021-05-03" in index(med)["date"]["eq"]
    # unparsable values are skipped, never fatal
    assert "date" not in index({"resourceType": "Observation", "effectiveDateTime": "yesterday"})


def test_number_index() -> None:
    ra = {
        "resourceType": "RiskAssessment",
        "prediction": [
            {"probabilityDecimal": 0.25},
            {"probabilityRange": {"low": {"value": 1}, "high": {"value": 2}}},
        ],
    }
    assert index(ra)["probability"] == {"v": [0.25, 1.0, 2.0]}


def test_quantity_index_units() -> None:
    obs = {
        "resourceType": "Observation",
        "valueQuantity": {
            "value": 5.4,
            "unit": "mg/dL",
            "system": "http://unitsofmeasure.org",
            "code": "mg/dL",
        },
    }
    assert index(obs)["value-quantity"] == {
        "v": [5.4],
        f"u_{hash16('http://unitsofmeasure.org|mg/dL')}": [5.4],
        f"u_{hash16('|mg/dL')}": [5.4],
    }
    unit_only = index({"resourceType": "Observation", "valueQuantity": {"value": 3, "unit": "tablets"}})
    assert unit_only["value-quantity"] == {"v": [3.0], f"u_{hash16('|tablets')}": [3.0]}
    vs = {
        "resourceType": "ValueSet",
        "useContext": [
            {
                "code": {"code": "age"},
                "valueRange": {
                    "low": {"value": 18, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"},
                    "high": {"value": 65},
                },
            }
        ],
    }
    assert index(vs)["context-quantity"]["v"] == [18.0, 65.0]
    sampled = {"resourceType": "Observation", "valueSampledData": {"origin": {"value": 0}, "data": "1 2"}}
    assert "value-quantity" not in index(sampled)


BP: dict[str, Any] = {
    "resourceType": "Observation",
    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
    "component": [
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
            "valueQuantity": {"value": 120, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
        },
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
            "valueQuantity": {"value": 80, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
        },
    ],
}


def test_composite_quantity_pairs_values_with_their_own_code() -> None:
    entry = index(BP)["component-code-value-quantity"]
    systolic = entry[f"q_{hash16('http://loinc.org|8480-6')}"]
    assert systolic["v"] == [120.0]
    assert systolic[f"u_{hash16('http://unitsofmeasure.org|mm[Hg]')}"] == [120.0]
    assert entry[f"q_{hash16('8462-4')}"]["v"] == [80.0]
    assert set(entry) == {
        f"q_{hash16(k)}" for k in ("8480-6", "http://loinc.org|8480-6", "8462-4", "http://loinc.org|8462-4")
    }
    assert "code-value-quantity" not in index(BP)  # the panel itself has no value


def test_composite_keys() -> None:
    obs = {
        "resourceType": "Observation",
        "code": {"coding": [{"system": "http://loinc.org", "code": "1"}]},
        "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "2"}]},
    }
    assert index(obs)["code-value-concept"] == {
        "k": [
            "1$2",
            "1$http://snomed.info/sct|2",
            "http://loinc.org|1$2",
            "http://loinc.org|1$http://snomed.info/sct|2",
        ]
    }
    obs = {"resourceType": "Observation", "code": {"coding": [{"code": "1"}]}, "valueString": "Positif Élevé"}
    assert index(obs)["code-value-string"] == {"k": ["1$positif eleve", "|1$positif eleve"]}
    obs = {"resourceType": "Observation", "code": {"coding": [{"code": "1"}]}, "valueDateTime": "2020-02"}
    assert index(obs)["code-value-date"][f"d_{hash16('1')}"]["eq"] == ["Y2020", "M2020-02"]


def test_multi_type_parameters_use_the_part_for_the_type() -> None:
    mr = {"resourceType": "MedicationRequest", "medicationCodeableConcept": {"coding": [{"code": "123"}]}}
    assert index(mr)["code"]["c"] == ["123"]
    mr = {"resourceType": "MedicationRequest", "medicationReference": {"reference": "Medication/m"}}
    assert index(mr)["medication"] == {"r": ["Medication/m"]} and "code" not in index(mr)


def test_id_is_not_indexed_and_empty_params_are_left_out() -> None:
    i = index({"resourceType": "Patient", "id": "x"})
    assert i == {"deceased": {"c": ["false"], "sc": ["|false"]}}


def _synthea_resources() -> dict[str, dict[str, Any]]:
    files = sorted(SYNTHEA.glob("*.json.bz2"))
    if not files:
        pytest.skip("../shared fixtures not available")
    found: dict[str, dict[str, Any]] = {}
    for entry in json.loads(bz2.open(files[2]).read())["entry"]:
        found.setdefault(entry["resource"]["resourceType"], entry["resource"])
    return found


def test_synthea_resources() -> None:
    res = _synthea_resources()
    patient = index(res["Patient"])
    assert patient["gender"]["c"] == [res["Patient"]["gender"]]
    assert patient["birthdate"]["eq"][-1] == "D" + res["Patient"]["birthDate"]
    assert normalize(res["Patient"]["name"][0]["family"]) in patient["family"]["n"]
    obs = index(res["Observation"])
    coding = res["Observation"]["code"]["coding"][0]
    assert f"{coding['system']}|{coding['code']}" in obs["code"]["sc"]
    assert obs["date"]["lo"] and obs["date"]["eq"][0].startswith("Y")
    enc = index(res["Encounter"])
    assert enc["class"]["c"] == [res["Encounter"]["class"]["code"]]
    # urn:uuid references are kept as they are (the transaction rewrites them before indexing)
    assert enc["subject"]["r"] == [res["Encounter"]["subject"]["reference"]]
    claim = index(res["Claim"])
    assert claim["patient"]["r"] == [res["Claim"]["patient"]["reference"]]
    assert claim["created"]["eq"][0].startswith("Y")
