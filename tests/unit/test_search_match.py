"""Search semantics end to end without a database: the filters built by query.py are evaluated against the
index documents built by extract.py with a tiny MongoDB matcher (the subset of operators the spec allows)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from fhir_server.search.extract import extract_index
from fhir_server.search.query import build_filter, build_param_filter
from fhir_server.search.registry import load_registry

BASE = "http://127.0.0.1:8080/fhir"

# ---------------------------------------------------------------------------------------------------
# A tiny MongoDB matcher: equality/array membership, $in $nin $ne $gt $gte $lt $lte $exists $regex
# $elemMatch (operators on arrays of scalars), $and $or $nor. Comparisons only within a type class.


def _resolve(doc: Any, path: str) -> list[Any]:
    values = [doc]
    for part in path.split("."):
        nxt = []
        for v in values:
            if isinstance(v, dict) and part in v:
                nxt.append(v[part])
            elif isinstance(v, list):
                nxt.extend(e[part] for e in v if isinstance(e, dict) and part in e)
        values = nxt
    return values


def _elements(values: list[Any]) -> list[Any]:
    out = []
    for v in values:
        out.extend(v if isinstance(v, list) else [v])
    return out


def _comparable(a: Any, b: Any) -> bool:
    num = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    return (isinstance(a, num) and isinstance(b, num)) or (isinstance(a, str) and isinstance(b, str))


_CMP = {
    "$gt": lambda a, b: a > b,
    "$gte": lambda a, b: a >= b,
    "$lt": lambda a, b: a < b,
    "$lte": lambda a, b: a <= b,
}


def _op(values: list[Any], op: str, arg: Any) -> bool:
    elems = _elements(values)
    if op == "$exists":
        return bool(values) == arg
    if op == "$ne":
        return arg not in elems
    if op == "$in":
        return any(e in arg for e in elems)
    if op == "$nin":
        return not any(e in arg for e in elems)
    if op in _CMP:
        return any(_comparable(e, arg) and _CMP[op](e, arg) for e in elems)
    if op == "$regex":
        return any(isinstance(e, str) and re.search(arg, e) for e in elems)
    if op == "$elemMatch":
        arrays = [v for v in values if isinstance(v, list)]
        return any(all(_op([e], o, a) for o, a in arg.items()) for arr in arrays for e in arr)
    raise AssertionError(f"operator {op} not allowed by the storage spec")


def matches(doc: dict[str, Any], flt: dict[str, Any]) -> bool:
    for key, cond in flt.items():
        if key == "$and":
            ok = all(matches(doc, c) for c in cond)
        elif key == "$or":
            ok = any(matches(doc, c) for c in cond)
        elif key == "$nor":
            ok = not any(matches(doc, c) for c in cond)
        elif isinstance(cond, dict) and cond and all(k.startswith("$") for k in cond):
            ok = all(_op(_resolve(doc, key), op, arg) for op, arg in cond.items())
        else:
            ok = cond in _elements(_resolve(doc, key))
        if not ok:
            return False
    return True


# ---------------------------------------------------------------------------------------------------


def docs(resources: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {rid: {"_id": rid, "i": extract_index(r, load_registry(), BASE)} for rid, r in resources.items()}


def search(documents: dict[str, dict[str, Any]], rtype: str, query: str, now: datetime | None = None) -> set[str]:
    key, _, value = query.partition("=")
    name, _, modifier = key.partition(":")
    flt = build_param_filter(rtype, name, modifier or None, value, load_registry(), BASE, now=now)
    return {rid for rid, doc in documents.items() if matches(doc, flt)}


# ---------------------------------------------------------------------------------------------------
# Dates


def _patient_born(value: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "birthDate": value}


DATED = docs(
    {
        "Y": {"resourceType": "Encounter", "period": {"start": "2000", "end": "2000"}},
        "M": {"resourceType": "Encounter", "period": {"start": "2000-06", "end": "2000-06"}},
        "D": {"resourceType": "Encounter", "period": {"start": "2000-06-15", "end": "2000-06-15"}},
        "T": {
            "resourceType": "Encounter",
            "period": {"start": "2000-06-15T10:00:00Z", "end": "2000-06-15T10:00:00Z"},
        },
        "P": {"resourceType": "Encounter", "period": {"start": "1999-12-01", "end": "2000-01-31"}},
        "N": {"resourceType": "Encounter", "period": {"start": "2001-01-01", "end": "2001-01-01"}},
        "O": {"resourceType": "Encounter", "period": {"start": "2002-01-01"}},
        "-": {"resourceType": "Encounter", "status": "planned"},
    }
)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("date=2000", "Y M D T"),
        ("date=eq2000", "Y M D T"),
        ("date=2000-06", "M D T"),
        ("date=2000-06-15", "D T"),
        ("date=2000-06-15T10:00", "T"),
        ("date=2000-06-15T12:00:00+02:00", "T"),
        ("date=ne2000", "P N O -"),
        ("date=gt2000", "N O"),
        ("date=gt2000-06-15", "Y M N O"),
        ("date=lt2000", "P"),
        ("date=lt2000-06-15", "Y M P"),
        ("date=ge2000", "Y M D T N O"),
        ("date=le2000", "Y M D T P"),
        ("date=ge2000-06-15", "Y M D T N O"),
        ("date=le2000-06-15", "Y M D T P"),
        ("date=sa2000", "N O"),
        ("date=sa2000-06-15", "N O"),
        ("date=eb2000", ""),
        ("date=eb2000-06", "P"),
        ("date=gt3000", "O"),
        ("date=2000,2001", "Y M D T N"),
    ],
)
def test_date_prefixes(query: str, expected: str) -> None:
    assert search(DATED, "Encounter", query) == set(expected.split())


def test_date_approximate() -> None:
    near = datetime(2000, 7, 1, tzinfo=UTC)  # 10% of 16 days < 1 day: the window is 2000-06-14..2000-06-16
    assert search(DATED, "Encounter", "date=ap2000-06-15", now=near) == {"Y", "M", "D", "T"}
    far = datetime(2024, 1, 1, tzinfo=UTC)  # 10% of ~24 years: 1998..2002
    assert search(DATED, "Encounter", "date=ap2000-06-15", now=far) == {"Y", "M", "D", "T", "P", "N", "O"}


def test_time_zones() -> None:
    documents = docs(
        {
            "paris": {"resourceType": "Observation", "effectiveDateTime": "2020-01-01T10:00:00+02:00"},
            "utc": {"resourceType": "Observation", "effectiveDateTime": "2020-01-01T10:00:00Z"},
            "day": {"resourceType": "Observation", "effectiveDateTime": "2020-01-01"},
        }
    )
    assert search(documents, "Observation", "date=2020-01-01T08:00:00Z") == {"paris"}
    assert search(documents, "Observation", "date=2020-01-01T10:00:00+02:00") == {"paris"}
    assert search(documents, "Observation", "date=2020-01-01T12:00:00+02:00") == {"utc"}
    assert search(documents, "Observation", "date=2020-01-01T08:00:00.250Z") == {"paris"}
    assert search(documents, "Observation", "date=2020-01-01") == {"paris", "utc", "day"}
    # a date without time is a whole (UTC) day: not equal to a minute, but "le" it
    assert search(documents, "Observation", "date=2020-01-01T10:00") == {"utc"}
    assert search(documents, "Observation", "date=le2020-01-01T10:00") == {"paris", "utc", "day"}
    assert search(documents, "Observation", "date=gt2020-01-01T09:00:00Z") == {"utc", "day"}


def test_partial_birth_dates() -> None:
    documents = docs({"y": _patient_born("1980"), "m": _patient_born("1980-03"), "d": _patient_born("1980-03-15")})
    assert search(documents, "Patient", "birthdate=1980") == {"y", "m", "d"}
    assert search(documents, "Patient", "birthdate=1980-03") == {"m", "d"}
    assert search(documents, "Patient", "birthdate=1980-03-15") == {"d"}
    assert search(documents, "Patient", "birthdate=lt1980-03-15") == {"y", "m"}
    assert search(documents, "Patient", "birthdate=gt1980-03-15") == {"y", "m"}
    assert search(documents, "Patient", "birthdate=ge1980-03-15") == {"y", "m", "d"}


# ---------------------------------------------------------------------------------------------------
# Strings and tokens

PEOPLE = docs(
    {
        "helene": {
            "resourceType": "Patient",
            "name": [{"family": "Lefèvre", "given": ["Hélène"]}],
            "gender": "female",
            "identifier": [
                {
                    "system": "urn:oid:1.2.250.1.213.1.4.8",
                    "value": "123",
                    "type": {"coding": [{"system": "http://t", "code": "INS-NIR"}], "text": "NIR"},
                }
            ],
            "telecom": [{"system": "email", "value": "h@x.fr"}],
        },
        "helena": {
            "resourceType": "Patient",
            "name": [{"family": "Smith", "given": ["Helena"]}],
            "gender": "female",
            "identifier": [{"value": "123"}],
        },
        "jean": {
            "resourceType": "Patient",
            "name": [{"family": "Dupont", "given": ["Jean-Marc"]}],
            "gender": "male",
            "identifier": [{"system": "http://other", "value": "456"}],
        },
        "anon": {"resourceType": "Patient"},
    }
)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("name=helene", "helene"),
        ("name=Hélène", "helene"),
        ("name=HEL", "helene helena"),
        ("family=lefevre", "helene"),
        ("family=LEFÈVRE", "helene"),
        ("family=efe", ""),
        ("family:contains=efe", "helene"),
        ("family:exact=Lefèvre", "helene"),
        ("family:exact=lefevre", ""),
        ("given=jean-m", "jean"),
        ("name=dupont,smith", "helena jean"),
        ("name:missing=true", "anon"),
        ("name:missing=false", "helene helena jean"),
    ],
)
def test_strings(query: str, expected: str) -> None:
    assert search(PEOPLE, "Patient", query) == set(expected.split())


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("gender=female", "helene helena"),
        ("gender:not=male", "helene helena anon"),
        ("gender:not=male,female", "anon"),
        ("identifier=123", "helene helena"),
        ("identifier=urn:oid:1.2.250.1.213.1.4.8|123", "helene"),
        ("identifier=|123", "helena"),
        ("identifier=http://other|", "jean"),
        ("identifier:text=nir", "helene"),
        ("identifier:of-type=http://t|INS-NIR|123", "helene"),
        ("identifier:not=123", "jean anon"),
        ("email=h@x.fr", "helene"),
        ("telecom=email|h@x.fr", "helene"),
    ],
)
def test_tokens(query: str, expected: str) -> None:
    assert search(PEOPLE, "Patient", query) == set(expected.split())


def test_references() -> None:
    documents = docs(
        {
            "rel": {"resourceType": "Observation", "subject": {"reference": "Patient/1"}},
            "abs": {"resourceType": "Observation", "subject": {"reference": f"{BASE}/Patient/1/_history/2"}},
            "grp": {"resourceType": "Observation", "subject": {"reference": "Group/1"}},
            "ext": {"resourceType": "Observation", "subject": {"reference": "http://other/fhir/Patient/1"}},
            "idf": {"resourceType": "Observation", "subject": {"identifier": {"system": "s", "value": "v"}}},
        }
    )
    assert search(documents, "Observation", "subject=1") == {"rel", "abs", "grp"}
    assert search(documents, "Observation", "patient=1") == {"rel", "abs"}
    assert search(documents, "Observation", "subject:Group=1") == {"grp"}
    assert search(documents, "Observation", f"subject={BASE}/Patient/1") == {"rel", "abs"}
    assert search(documents, "Observation", "subject=http://other/fhir/Patient/1") == {"ext"}
    assert search(documents, "Observation", "subject:identifier=s|v") == {"idf"}
    assert search(documents, "Observation", "subject:identifier=v") == {"idf"}


# ---------------------------------------------------------------------------------------------------
# Numbers, quantities, composites, uris


def test_numbers() -> None:
    values = {"a": 100, "b": 99.6, "c": 100.4, "d": 100.5, "e": 150}
    documents = docs(
        {k: {"resourceType": "RiskAssessment", "prediction": [{"probabilityDecimal": v}]} for k, v in values.items()}
    )
    assert search(documents, "RiskAssessment", "probability=100") == {"a", "b", "c"}
    assert search(documents, "RiskAssessment", "probability=100.0") == {"a"}
    assert search(documents, "RiskAssessment", "probability=1e2") == {"a", "b", "c", "d"}
    assert search(documents, "RiskAssessment", "probability=ne100") == {"d", "e"}
    assert search(documents, "RiskAssessment", "probability=gt100") == {"c", "d", "e"}
    assert search(documents, "RiskAssessment", "probability=ge100") == {"a", "c", "d", "e"}
    assert search(documents, "RiskAssessment", "probability=lt100") == {"b"}
    assert search(documents, "RiskAssessment", "probability=le100") == {"a", "b"}
    assert search(documents, "RiskAssessment", "probability=ap100") == {"a", "b", "c", "d"}


def _obs_quantity(value: float, **unit: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "valueQuantity": {"value": value, **unit}}


def test_quantities() -> None:
    ucum = "http://unitsofmeasure.org"
    documents = docs(
        {
            "mg": _obs_quantity(5.4, unit="mg", system=ucum, code="mg"),
            "unit": _obs_quantity(5.4, unit="mg"),
            "g": _obs_quantity(5.4, unit="g", system=ucum, code="g"),
            "big": _obs_quantity(12, unit="mg", system=ucum, code="mg"),
        }
    )
    assert search(documents, "Observation", f"value-quantity=5.4|{ucum}|mg") == {"mg"}
    assert search(documents, "Observation", "value-quantity=5.4||mg") == {"mg", "unit"}
    assert search(documents, "Observation", "value-quantity=5.4") == {"mg", "unit", "g"}
    assert search(documents, "Observation", f"value-quantity=gt5|{ucum}|mg") == {"mg", "big"}
    assert search(documents, "Observation", f"value-quantity=lt5|{ucum}|g") == set()


def _bp(rid: str, systolic: float, diastolic: float) -> dict[str, Any]:
    def comp(code: str, value: float) -> dict[str, Any]:
        return {
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "valueQuantity": {
                "value": value,
                "unit": "mmHg",
                "system": "http://unitsofmeasure.org",
                "code": "mm[Hg]",
            },
        }

    return {
        "resourceType": "Observation",
        "id": rid,
        "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
        "component": [comp("8480-6", systolic), comp("8462-4", diastolic)],
    }


def test_composites_pair_codes_with_their_own_values() -> None:
    documents = docs(
        {
            "high": _bp("high", 160, 95),
            "normal": _bp("normal", 120, 80),
            "weight": {
                "resourceType": "Observation",
                "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
                "valueQuantity": {"value": 70, "system": "http://unitsofmeasure.org", "code": "kg"},
            },
        }
    )
    assert search(documents, "Observation", "component-code-value-quantity=8480-6$gt140") == {"high"}
    # 95 is a diastolic value: it must not be paired with the systolic code
    assert search(documents, "Observation", "component-code-value-quantity=8480-6$lt100") == set()
    assert search(documents, "Observation", "component-code-value-quantity=8462-4$lt100") == {
        "high",
        "normal",
    }
    assert search(
        documents,
        "Observation",
        "combo-code-value-quantity=http://loinc.org|8480-6$120|http://unitsofmeasure.org|mm[Hg]",
    ) == {"normal"}
    assert search(documents, "Observation", "combo-code-value-quantity=29463-7$ge70") == {"weight"}
    assert search(documents, "Observation", "code-value-quantity=http://loinc.org|29463-7$70") == {"weight"}
    assert search(documents, "Observation", "code-value-quantity=8480-6$120") == set()
    assert search(documents, "Observation", "code-value-quantity=29463-7$70,8480-6$120") == {"weight"}


def test_composite_tokens_and_strings() -> None:
    documents = docs(
        {
            "pos": {
                "resourceType": "Observation",
                "code": {"coding": [{"system": "http://loinc.org", "code": "1"}]},
                "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "10828004"}]},
            },
            "txt": {
                "resourceType": "Observation",
                "code": {"coding": [{"code": "2"}]},
                "valueString": "Élevé",
            },
        }
    )
    assert search(documents, "Observation", "code-value-concept=1$10828004") == {"pos"}
    assert search(
        documents, "Observation", "code-value-concept=http://loinc.org|1$http://snomed.info/sct|10828004"
    ) == {"pos"}
    assert search(documents, "Observation", "code-value-concept=2$10828004") == set()
    assert search(documents, "Observation", "code-value-string=2$eleve") == {"txt"}
    assert search(documents, "Observation", "code-value-string=|2$ÉLEVÉ") == {"txt"}


def test_uris() -> None:
    documents = docs(
        {
            "a": {"resourceType": "ValueSet", "url": "http://acme.org/fhir/ValueSet/a"},
            "b": {"resourceType": "ValueSet", "url": "http://acme.org/fhir/ValueSet/b"},
            "root": {"resourceType": "ValueSet", "url": "http://acme.org/fhir"},
        }
    )
    assert search(documents, "ValueSet", "url=http://acme.org/fhir/ValueSet/a") == {"a"}
    assert search(documents, "ValueSet", "url:below=http://acme.org/fhir/ValueSet") == {"a", "b"}
    assert search(documents, "ValueSet", "url:above=http://acme.org/fhir/ValueSet/a/_history/1") == {
        "a",
        "root",
    }


def test_build_filter_is_an_and_of_parameters() -> None:
    flt, unknown, deferred = build_filter(
        "Patient", [("gender", "female"), ("name", "hel"), ("_count", "5")], load_registry(), BASE
    )
    assert (unknown, deferred) == ([], [])
    assert {rid for rid, doc in PEOPLE.items() if matches(doc, flt)} == {"helene", "helena"}
    flt, _, _ = build_filter("Patient", [("name", "hel"), ("name", "smith")], load_registry(), BASE)
    assert {rid for rid, doc in PEOPLE.items() if matches(doc, flt)} == {"helena"}
