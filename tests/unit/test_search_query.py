"""Exact MongoDB filters produced for each parameter type, and the errors for malformed values."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from fhir_server.search.common import hash16, split_escaped, unescape
from fhir_server.search.errors import SearchError, UnknownParameter
from fhir_server.search.query import build_filter, build_param_filter
from fhir_server.search.registry import load_registry

BASE = "http://127.0.0.1:8080/fhir"
NOW = datetime(2024, 1, 1, tzinfo=UTC)


def f(rtype: str, name: str, value: str, modifier: str | None = None) -> dict[str, Any]:
    return build_param_filter(rtype, name, modifier, value, load_registry(), BASE, now=NOW)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("Patient", "name", "Hélène"), {"i.name.n": {"$regex": "^helene"}}),
        (("Patient", "name", "Hélène", "exact"), {"i.name.x": "Hélène"}),
        (("Patient", "name", "fèv", "contains"), {"i.name.n": {"$regex": "fev"}}),
        (("Patient", "family", "d'Arc"), {"i.family.n": {"$regex": "^d'arc"}}),
        (("Patient", "name", "a.b"), {"i.name.n": {"$regex": "^a\\.b"}}),
        (
            ("Patient", "name", "a,b"),
            {"$or": [{"i.name.n": {"$regex": "^a"}}, {"i.name.n": {"$regex": "^b"}}]},
        ),
    ],
)
def test_string_filters(args: tuple, expected: dict) -> None:
    assert f(*args) == expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("Patient", "gender", "male"), {"i.gender.c": "male"}),
        (("Patient", "gender", "male,female"), {"i.gender.c": {"$in": ["male", "female"]}}),
        (("Patient", "identifier", "http://s|1"), {"i.identifier.sc": "http://s|1"}),
        (("Patient", "identifier", "|1"), {"i.identifier.sc": "|1"}),
        (("Patient", "identifier", "http://s|"), {"i.identifier.s": "http://s"}),
        (("Patient", "identifier", "a\\|b"), {"i.identifier.c": "a|b"}),
        (("Patient", "identifier", "a\\,b,c"), {"i.identifier.c": {"$in": ["a,b", "c"]}}),
        (("Patient", "gender", "male", "not"), {"i.gender.c": {"$ne": "male"}}),
        (("Patient", "gender", "male,other", "not"), {"i.gender.c": {"$nin": ["male", "other"]}}),
        (
            ("Patient", "identifier", "a,s|b", "not"),
            {"$nor": [{"$or": [{"i.identifier.c": "a"}, {"i.identifier.sc": "s|b"}]}]},
        ),
        (("Observation", "code", "Body Hé", "text"), {"i.code.t": {"$regex": "^body\\ he"}}),
        (("Patient", "identifier", "http://t|MR|12|3", "of-type"), {"i.identifier.ot": "http://t|MR|12|3"}),
        (("Patient", "_tag", "http://t|x"), {"i._tag.sc": "http://t|x"}),
    ],
)
def test_token_filters(args: tuple, expected: dict) -> None:
    assert f(*args) == expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("Observation", "patient", "123"), {"i.patient.r": "Patient/123"}),
        (
            ("Encounter", "participant", "p1"),
            {"i.participant.r": {"$in": ["Practitioner/p1", "PractitionerRole/p1", "RelatedPerson/p1"]}},
        ),
        (("Observation", "subject", "123", "Patient"), {"i.subject.r": "Patient/123"}),
        (("Observation", "subject", "Patient/1/_history/2"), {"i.subject.r": "Patient/1"}),
        (("Observation", "subject", f"{BASE}/Patient/1"), {"i.subject.r": "Patient/1"}),
        (
            ("Observation", "subject", "http://x.org/fhir/Patient/1"),
            {"i.subject.r": "http://x.org/fhir/Patient/1"},
        ),
        (("Observation", "subject", "s|v", "identifier"), {"i.subject.isc": "s|v"}),
        (("Observation", "subject", "v", "identifier"), {"i.subject.ic": "v"}),
        (
            ("Questionnaire", "definition", "http://q.org/Questionnaire/a|1.0"),
            {"i.definition.u": "http://q.org/Questionnaire/a|1.0"},
        ),
        (
            ("QuestionnaireResponse", "questionnaire", "http://q.org/Questionnaire/a|1.0"),
            {"i.questionnaire.cv": "http://q.org/Questionnaire/a|1.0"},
        ),
    ],
)
def test_reference_filters(args: tuple, expected: dict) -> None:
    assert f(*args) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2000", {"i.birthdate.eq": "Y2000"}),
        ("eq2000-02", {"i.birthdate.eq": "M2000-02"}),
        ("2000-02-03", {"i.birthdate.eq": "D2000-02-03"}),
        ("2000-02-03T10:05", {"i.birthdate.eq": "m2000-02-03T10:05"}),
        ("2020-01-01T10:00:00+02:00", {"i.birthdate.eq": "s2020-01-01T08:00:00"}),
        ("2020-01-01T10:00:00 02:00", {"i.birthdate.eq": "s2020-01-01T08:00:00"}),  # '+' decoded as space
        ("2020-01-01T08:00:00.123Z", {"i.birthdate.eq": "s2020-01-01T08:00:00"}),
        ("ne2000", {"i.birthdate.eq": {"$ne": "Y2000"}}),
        ("gt2000", {"i.birthdate.hi": {"$gt": "2000-12-31T23:59:59.999999Z"}}),
        ("lt2000", {"i.birthdate.lo": {"$lt": "2000-01-01T00:00:00.000000Z"}}),
        (
            "ge2000",
            {
                "$or": [
                    {"i.birthdate.hi": {"$gt": "2000-12-31T23:59:59.999999Z"}},
                    {"i.birthdate.eq": "Y2000"},
                ]
            },
        ),
        (
            "le2000",
            {
                "$or": [
                    {"i.birthdate.lo": {"$lt": "2000-01-01T00:00:00.000000Z"}},
                    {"i.birthdate.eq": "Y2000"},
                ]
            },
        ),
        ("sa2000", {"i.birthdate.lo": {"$gt": "2000-12-31T23:59:59.999999Z"}}),
        ("eb2000", {"i.birthdate.hi": {"$lt": "2000-01-01T00:00:00.000000Z"}}),
        (
            "ap2023-12-31",
            {
                "$and": [
                    {"i.birthdate.lo": {"$lte": "2024-01-01T23:59:59.999999Z"}},
                    {"i.birthdate.hi": {"$gte": "2023-12-30T00:00:00.000000Z"}},
                ]
            },
        ),
    ],
)
def test_date_filters(value: str, expected: dict) -> None:
    assert f("Patient", "birthdate", value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("100", {"i.probability.v": {"$elemMatch": {"$gte": 99.5, "$lt": 100.5}}}),
        ("100.00", {"i.probability.v": {"$elemMatch": {"$gte": 99.995, "$lt": 100.005}}}),
        ("1e2", {"i.probability.v": {"$elemMatch": {"$gte": 50.0, "$lt": 150.0}}}),
        ("ne0.5", {"$nor": [{"i.probability.v": {"$elemMatch": {"$gte": 0.45, "$lt": 0.55}}}]}),
        ("gt0.5", {"i.probability.v": {"$gt": 0.5}}),
        ("sa0.5", {"i.probability.v": {"$gt": 0.5}}),
        ("ge0.5", {"i.probability.v": {"$gte": 0.5}}),
        ("lt0.5", {"i.probability.v": {"$lt": 0.5}}),
        ("eb0.5", {"i.probability.v": {"$lt": 0.5}}),
        ("le0.5", {"i.probability.v": {"$lte": 0.5}}),
        ("ap100", {"i.probability.v": {"$elemMatch": {"$gte": 90.0, "$lte": 110.0}}}),
    ],
)
def test_number_filters(value: str, expected: dict) -> None:
    assert f("RiskAssessment", "probability", value) == expected


def test_quantity_filters() -> None:
    ucum_mg = hash16("http://unitsofmeasure.org|mg")
    assert f("Observation", "value-quantity", "gt5.4|http://unitsofmeasure.org|mg") == {
        f"i.value-quantity.u_{ucum_mg}": {"$gt": 5.4}
    }
    assert f("Observation", "value-quantity", "5.4||mg") == {
        f"i.value-quantity.u_{hash16('|mg')}": {"$elemMatch": {"$gte": 5.35, "$lt": 5.45}}
    }
    assert f("Observation", "value-quantity", "le5.4") == {"i.value-quantity.v": {"$lte": 5.4}}


def test_uri_filters() -> None:
    assert f("ValueSet", "url", "http://a.org/fhir/ValueSet/1") == {"i.url.u": "http://a.org/fhir/ValueSet/1"}
    assert f("ValueSet", "url", "http://a.org/fhir/", "below") == {"i.url.u": {"$regex": "^http://a\\.org/fhir/"}}
    assert f("ValueSet", "url", "http://a.org/fhir/ValueSet/1", "above") == {
        "i.url.u": {
            "$in": [
                "http://a.org/fhir/ValueSet/1",
                "http://a.org/fhir/ValueSet",
                "http://a.org/fhir",
                "http://a.org",
            ]
        }
    }


def test_composite_filters() -> None:
    key = hash16("http://loinc.org|8480-6")
    assert f("Observation", "code-value-quantity", "http://loinc.org|8480-6$gt100") == {
        f"i.code-value-quantity.q_{key}.v": {"$gt": 100.0}
    }
    assert f("Observation", "code-value-date", "8480-6$ge2020") == {
        "$or": [
            {f"i.code-value-date.d_{hash16('8480-6')}.hi": {"$gt": "2020-12-31T23:59:59.999999Z"}},
            {f"i.code-value-date.d_{hash16('8480-6')}.eq": "Y2020"},
        ]
    }
    assert f("Observation", "code-value-concept", "1234$http://snomed.info/sct|5") == {
        "i.code-value-concept.k": "1234$http://snomed.info/sct|5"
    }
    assert f("Observation", "code-value-string", "1234$Hé") == {"i.code-value-string.k": "1234$he"}


def test_missing_and_id() -> None:
    assert f("Patient", "name", "true", "missing") == {"i.name": {"$exists": False}}
    assert f("Observation", "code-value-quantity", "false", "missing") == {"i.code-value-quantity": {"$exists": True}}
    assert f("Patient", "_id", "a") == {"_id": "a"}
    assert f("Patient", "_id", "a,b") == {"_id": {"$in": ["a", "b"]}}
    assert f("Patient", "_id", "a", "not") == {"_id": {"$ne": "a"}}


def test_empty_values_are_ignored() -> None:
    assert f("Patient", "name", "") == {}
    assert f("Patient", "gender", ",") == {}


@pytest.mark.parametrize(
    "args",
    [
        ("Patient", "birthdate", "2020-13-01"),
        ("Patient", "birthdate", "20201"),
        ("Patient", "birthdate", "xx2020"),
        ("Patient", "birthdate", "2020-01-01T25:00"),
        ("Patient", "birthdate", "2000", "exact"),
        ("RiskAssessment", "probability", "abc"),
        ("RiskAssessment", "probability", "1.2.3"),
        ("RiskAssessment", "probability", "qq5"),
        ("Observation", "value-quantity", "5|mg"),
        ("Observation", "value-quantity", "5|http://unitsofmeasure.org|"),
        ("Observation", "code", "x", "in"),
        ("Observation", "code", "x", "below"),
        ("Observation", "code", "|"),
        ("Patient", "identifier", "MR|123", "of-type"),
        ("Patient", "name", "x", "text"),
        ("Observation", "subject", "x", "below"),
        ("Observation", "subject", "1", "Organization"),
        ("Observation", "subject", "Group/1", "Patient"),
        ("Patient", "name", "maybe", "missing"),
        ("Observation", "code-value-quantity", "8480-6"),
        ("Observation", "code-value-quantity", "|$5"),
        ("MolecularSequence", "chromosome-window-coordinate", "1$2$3"),
        ("ValueSet", "url", "x", "contains"),
        ("Patient", "_id", "a", "exact"),
    ],
)
def test_malformed_values_raise_search_error(args: tuple) -> None:
    with pytest.raises(SearchError):
        f(*args)


@pytest.mark.parametrize("name", ["nope", "_text", "_content", "_query", "near"])
def test_unknown_or_unsupported_parameters(name: str) -> None:
    rtype = "Location" if name == "near" else "Patient"
    with pytest.raises(UnknownParameter) as exc:
        f(rtype, name, "x")
    assert exc.value.message == name


def test_build_filter_ands_and_sorts_out_the_rest() -> None:
    flt, unknown, deferred = build_filter(
        "Patient",
        [
            ("name", "x"),
            ("_count", "10"),
            ("_sort", "-birthdate"),
            ("_include:iterate", "Patient:organization"),
            ("general-practitioner.name", "x"),
            ("general-practitioner:Practitioner.name", "y"),
            ("_has:Observation:patient:code", "1234"),
            ("foo", "1"),
            ("name:exact", "X"),
            ("birthdate", ""),
        ],
        load_registry(),
        BASE,
    )
    assert flt == {"$and": [{"i.name.n": {"$regex": "^x"}}, {"i.name.x": "X"}]}
    assert unknown == ["foo"]
    assert deferred == [
        ("general-practitioner.name", "x"),
        ("general-practitioner:Practitioner.name", "y"),
        ("_has:Observation:patient:code", "1234"),
    ]
    assert build_filter("Patient", [("gender", "male")], load_registry(), BASE) == (
        {"i.gender.c": "male"},
        [],
        [],
    )
    assert build_filter("Patient", [], load_registry(), BASE) == ({}, [], [])


def test_escapes() -> None:
    assert split_escaped("a\\,b,c", ",") == ["a\\,b", "c"]
    assert split_escaped("s|c|d", "|", 1) == ["s", "c|d"]
    assert unescape("a\\$b\\|c\\\\") == "a$b|c\\"
