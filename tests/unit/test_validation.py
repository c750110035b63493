"""Unit tests of fhir_server.validation: FHIR R4 JSON structural validation (no server, no I/O
beyond reading the shared Synthea and search-parameter fixtures when they are present)."""

from __future__ import annotations

import bz2
import copy
import dataclasses
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from fhir_server import validation
from fhir_server.validation import (
    R4_RESOURCE_TYPES,
    TYPES_WITHOUT_R4B_MODEL,
    Issue,
    is_known_type,
    validate_resource,
    warm_up,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
SYNTHEA = SHARED / "fixtures" / "synthea"
# Two batch bundles (organizations, practitioners) and the smallest patient record.
SYNTHEA_BUNDLES = [
    "0-hospitalInformation1625911868739.json.bz2",
    "0-practitionerInformation1625911868739.json.bz2",
    "8a4c9c04-1524-9f1c-d65b-9b17e4520fef.json.bz2",
]
R4_ONLY = {
    "EffectEvidenceSynthesis",
    "MedicinalProduct",
    "MedicinalProductAuthorization",
    "MedicinalProductContraindication",
    "MedicinalProductIndication",
    "MedicinalProductIngredient",
    "MedicinalProductInteraction",
    "MedicinalProductManufactured",
    "MedicinalProductPackaged",
    "MedicinalProductPharmaceutical",
    "MedicinalProductUndesirableEffect",
    "RiskEvidenceSynthesis",
    "SubstanceNucleicAcid",
    "SubstancePolymer",
    "SubstanceProtein",
    "SubstanceReferenceInformation",
    "SubstanceSourceMaterial",
    "SubstanceSpecification",
}
R4B_ONLY = [
    "AdministrableProductDefinition",
    "Citation",
    "ClinicalUseDefinition",
    "EvidenceReport",
    "Ingredient",
    "ManufacturedItemDefinition",
    "MedicinalProductDefinition",
    "NutritionProduct",
    "PackagedProductDefinition",
    "RegulatedAuthorization",
    "SubscriptionStatus",
    "SubscriptionTopic",
    "SubstanceDefinition",
]
# A FHIRPath location as the validator writes them: Type(.element([index])?)*
FHIRPATH = re.compile(r"[A-Z][A-Za-z]*(\.[A-Za-z][A-Za-z0-9_]*(\[\d+\])?)*")
XHTML = "http://www.w3.org/1999/xhtml"


def issues_of(resource: object, expected_type: str | None = None) -> list[tuple[str, str]]:
    """(code, expression) of every issue, each with exactly one expression."""
    found = validate_resource(resource, expected_type)
    for issue in found:
        assert isinstance(issue, Issue)
        assert issue.severity == "error" and issue.diagnostics
    return [(i.code, i.expression[0] if i.expression else "") for i in found]


def only_issue(resource: object, expected_type: str | None = None) -> Issue:
    found = validate_resource(resource, expected_type)
    assert len(found) == 1, found
    return found[0]


def patient(**elements: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", **elements}


def observation(**elements: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, **elements}


def ext(url: str = "http://example.org/x", **value: Any) -> dict[str, Any]:
    return {"url": url, **(value or {"valueString": "v"})}


# ---- the API -------------------------------------------------------------------------


def test_issue_is_a_small_frozen_dataclass() -> None:
    issue = only_issue(patient(foo=1))
    assert issue == Issue("error", "structure", "Unknown element 'foo'", ("Patient.foo",))
    with pytest.raises(dataclasses.FrozenInstanceError):
        issue.code = "x"  # type: ignore[misc]
    assert issue.as_fhir() == {
        "severity": "error",
        "code": "structure",
        "diagnostics": "Unknown element 'foo'",
        "expression": ["Patient.foo"],
    }


def test_r4_resource_types() -> None:
    assert len(R4_RESOURCE_TYPES) == 146
    assert R4_ONLY <= R4_RESOURCE_TYPES
    assert {"Patient", "Bundle", "Binary", "Parameters", "OperationOutcome", "Evidence"} <= R4_RESOURCE_TYPES
    assert not set(R4B_ONLY) & R4_RESOURCE_TYPES
    assert not {"Resource", "DomainResource", "MetadataResource"} & R4_RESOURCE_TYPES
    assert R4_ONLY | {"Evidence", "EvidenceVariable"} == TYPES_WITHOUT_R4B_MODEL


def test_r4_resource_types_match_the_r4_search_parameter_bases() -> None:
    path = SHARED / "fhir-r4" / "search-parameters.json"
    if not path.exists():
        pytest.skip("shared/fhir-r4 is not available")
    bases = {b for e in json.loads(path.read_text())["entry"] for b in e["resource"].get("base", [])}
    # R4 types that no R4 search parameter is defined on
    no_search_parameter = {
        "Binary", "BiologicallyDerivedProduct", "CatalogEntry", "MedicinalProductIngredient",
        "MedicinalProductManufactured", "ObservationDefinition", "OperationOutcome", "Parameters",
        "SubstanceNucleicAcid", "SubstancePolymer", "SubstanceProtein", "SubstanceReferenceInformation",
        "SubstanceSourceMaterial",
    }  # fmt: skip
    assert bases - {"Resource", "DomainResource"} | no_search_parameter == R4_RESOURCE_TYPES


@pytest.mark.parametrize("name", ["Patient", "Observation", "Bundle", "MedicinalProduct", "Binary"])
def test_known_types(name: str) -> None:
    assert is_known_type(name)


@pytest.mark.parametrize("name", [*R4B_ONLY, "Resource", "DomainResource", "patient", "", None, 3, "Foo"])
def test_unknown_types(name: object) -> None:
    assert not is_known_type(name)


def test_every_r4_type_can_be_validated() -> None:
    for name in sorted(R4_RESOURCE_TYPES):
        found = validate_resource({"resourceType": name, "id": "x1"}, name)
        assert all(i.code == "required" for i in found), (name, found)  # only missing elements
    assert warm_up() > 600  # every resource, datatype and backbone element definition


def test_an_internal_failure_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr("fhir_server.validation._Walk.resource", boom)
    assert validate_resource(patient()) == [
        Issue("fatal", "exception", "Validation failed unexpectedly: RuntimeError", ())
    ]


def test_valid_resources_have_no_issues() -> None:
    assert validate_resource(patient(id="p1", active=True, gender="female", birthDate="1970-05-01")) == []
    assert validate_resource(observation(valueQuantity={"value": 1.5, "unit": "mg"}), "Observation") == []


# ---- never raises ----------------------------------------------------------------------

GARBAGE: list[object] = [
    None,
    0,
    1.5,
    True,
    "Patient",
    b"{}",
    [],
    [{"resourceType": "Patient"}],
    {},
    {"resourceType": None},
    {"resourceType": 42},
    {"resourceType": ["Patient"]},
    {"resourceType": "Foo"},
    {"resourceType": ""},
    {1: 2, "resourceType": "Patient"},
    patient(name=[[[[]]]]),
    patient(name=[None, {}, [], "x", 1]),
    patient(name={"given": {"a": "b"}}),
    patient(_name={"x": 1}, _foo=[1], __=None, **{"a b": 1, "": 2, "x" * 500: 3}),
    patient(contained=[1, None, {}, {"resourceType": "Patient", "contained": [{"resourceType": "X"}]}]),
    patient(multipleBirthInteger=2**80, extension=[{"url": None, "valueDecimal": float("nan")}]),
    patient(birthDate=object(), gender=("male",), telecom={1, 2}),
    patient(text={"status": "generated", "div": "<div xmlns='http://www.w3.org/1999/xhtml'><"}),
    {"resourceType": "Bundle", "type": "batch", "entry": [{"resource": "x"}, {"resource": [1]}, None]},
    {"resourceType": "Parameters", "parameter": [{"name": "a", "part": [{"resource": {"x": 1}}]}]},
    {"resourceType": "MedicinalProduct", "name": "x", "_name": [None], "contained": 5},
]


@pytest.mark.parametrize("garbage", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_gives_issues_and_never_raises(garbage: object) -> None:
    found = validate_resource(garbage)
    assert found and all(isinstance(i, Issue) for i in found)
    assert all(i.code != "exception" for i in found), found
    assert all(FHIRPATH.fullmatch(e) for i in found for e in i.expression), found


def test_deep_nesting_is_refused_without_recursion_error() -> None:
    nested: dict[str, Any] = ext()
    for _ in range(5000):
        nested = {"url": "http://example.org/x", "extension": [nested]}
    found = validate_resource(patient(extension=[nested]))
    assert [i.code for i in found] == ["too-costly"]


def test_random_mutations_never_raise() -> None:
    rng = random.Random(20240601)
    base = observation(
        id="o1",
        subject={"reference": "Patient/1"},
        component=[{"code": {"coding": [{"system": "http://loinc.org", "code": "1"}]}, "valueInteger": 3}],
        _status={"extension": [ext()]},
    )
    junk: list[object] = [None, "", "x", 0, -1, 2.5, True, [], [None], {}, {"foo": 1}, [{}], "\u0000"]

    def mutate(node: Any) -> None:
        if isinstance(node, dict) and node:
            key = rng.choice(list(node))
            if rng.random() < 0.5:
                node[key] = copy.deepcopy(rng.choice(junk))
            else:
                mutate(node[key])
        elif isinstance(node, list) and node:
            index = rng.randrange(len(node))
            if rng.random() < 0.5:
                node[index] = copy.deepcopy(rng.choice(junk))
            else:
                mutate(node[index])

    for _ in range(300):
        resource = copy.deepcopy(base)
        for _ in range(rng.randint(1, 3)):
            mutate(resource)
        for issue in validate_resource(resource):
            assert issue.code != "exception", issue
            assert all(FHIRPATH.fullmatch(e) for e in issue.expression), issue


# ---- unknown elements and JSON types --------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "expression"),
    [
        (patient(foo=1), "Patient.foo"),
        (patient(name=[{"family": "X", "foo": 1}]), "Patient.name[0].foo"),
        (patient(name=[{"family": "X"}, {"given": ["a"], "_foo": {}}]), "Patient.name[1].foo"),
        (patient(fhir_comments=["R4 JSON has no comments"]), "Patient.fhir_comments"),
        (patient(valueString="x"), "Patient.valueString"),
        (patient(name=[{"resourceType": "HumanName", "family": "X"}]), "Patient.name[0].resourceType"),
        (observation(valueQuantity={"value": 1, "units": "mg"}), "Observation.valueQuantity.units"),
        (
            observation(valueCodeableReference={"concept": {"text": "x"}}),
            "Observation.valueCodeableReference",
        ),
    ],
)
def test_unknown_elements_are_refused(resource: dict[str, Any], expression: str) -> None:
    issue = only_issue(resource)
    assert (issue.code, issue.expression) == ("structure", (expression,))


@pytest.mark.parametrize(
    ("resource", "expression"),
    [
        (patient(active="true"), "Patient.active"),
        (patient(active=1), "Patient.active"),
        (patient(multipleBirthInteger="3"), "Patient.multipleBirthInteger"),
        (patient(multipleBirthInteger=True), "Patient.multipleBirthInteger"),
        (patient(multipleBirthInteger=3.0), "Patient.multipleBirthInteger"),
        (patient(multipleBirthBoolean="false"), "Patient.multipleBirthBoolean"),
        (patient(name=[{"family": 5}]), "Patient.name[0].family"),
        (patient(name=[{"given": ["a", 7]}]), "Patient.name[0].given[1]"),
        (patient(birthDate=19700501), "Patient.birthDate"),
        (patient(gender=True), "Patient.gender"),
        (patient(maritalStatus="M"), "Patient.maritalStatus"),
        (patient(name=["Smith"]), "Patient.name[0]"),
        (patient(active={"value": True}), "Patient.active"),
        (observation(valueQuantity={"value": "1.5"}), "Observation.valueQuantity.value"),
        (observation(valueQuantity={"value": True}), "Observation.valueQuantity.value"),
        (observation(valueInteger="4"), "Observation.valueInteger"),
    ],
)
def test_wrong_json_types_are_refused(resource: dict[str, Any], expression: str) -> None:
    issue = only_issue(resource)
    assert (issue.code, issue.expression) == ("structure", (expression,))


@pytest.mark.parametrize(
    ("resource", "expression", "ok"),
    [
        (patient(multipleBirthInteger=2**31 - 1), "", True),
        (patient(multipleBirthInteger=-(2**31)), "", True),
        (patient(multipleBirthInteger=2**31), "Patient.multipleBirthInteger", False),
        (patient(multipleBirthInteger=-(2**31) - 1), "Patient.multipleBirthInteger", False),
        ({"resourceType": "Bundle", "type": "searchset", "total": 0}, "", True),
        ({"resourceType": "Bundle", "type": "searchset", "total": -1}, "Bundle.total", False),
        (patient(photo=[{"contentType": "image/png", "size": -5}]), "Patient.photo[0].size", False),
        (
            {"resourceType": "Immunization", "status": "completed", "vaccineCode": {"text": "x"},
             "patient": {"reference": "Patient/1"}, "occurrenceString": "2020",
             "protocolApplied": [{"doseNumberPositiveInt": 0}]},
            "Immunization.protocolApplied[0].doseNumberPositiveInt",
            False,
        ),
        (observation(valueSampledData={"origin": {"value": 0}, "period": 1, "dimensions": 1}), "", True),
        (
            observation(valueSampledData={"origin": {"value": 0}, "period": 1, "dimensions": 0}),
            "Observation.valueSampledData.dimensions",
            False,
        ),
    ],
)  # fmt: skip
def test_integer_ranges(resource: dict[str, Any], expression: str, ok: bool) -> None:
    assert issues_of(resource) == ([] if ok else [("value", expression)])


# ---- arrays, single values, empty values, nulls ------------------------------------------


@pytest.mark.parametrize(
    ("resource", "expression"),
    [
        (patient(gender=["male"]), "Patient.gender"),
        (patient(birthDate=["1970"]), "Patient.birthDate"),
        (patient(maritalStatus=[{"text": "x"}]), "Patient.maritalStatus"),
        (patient(name={"family": "X"}), "Patient.name"),
        (patient(name=[{"given": "Anna"}]), "Patient.name[0].given"),
        (patient(identifier={"value": "1"}), "Patient.identifier"),
        (patient(_birthDate=[{"extension": [ext()]}]), "Patient.birthDate"),
        (patient(name=[{"given": ["a"], "_given": {"extension": [ext()]}}]), "Patient.name[0].given"),
    ],
)
def test_cardinality_of_arrays(resource: dict[str, Any], expression: str) -> None:
    issue = only_issue(resource)
    assert (issue.code, issue.expression) == ("structure", (expression,))


@pytest.mark.parametrize(
    ("resource", "code", "expression"),
    [
        (patient(gender=""), "value", "Patient.gender"),
        (patient(name=[{"given": [""]}]), "value", "Patient.name[0].given[0]"),
        (patient(maritalStatus={}), "structure", "Patient.maritalStatus"),
        (patient(name=[{}]), "structure", "Patient.name[0]"),
        (patient(name=[]), "structure", "Patient.name"),
        (patient(name=[{"given": []}]), "structure", "Patient.name[0].given"),
        (patient(gender=None), "structure", "Patient.gender"),
        (patient(maritalStatus=None), "structure", "Patient.maritalStatus"),
        (patient(name=[None]), "structure", "Patient.name[0]"),
        (patient(name=[{"given": ["a", None]}]), "structure", "Patient.name[0].given[1]"),
        (patient(name=[{"given": [None], "_given": [None]}]), "structure", "Patient.name[0].given[0]"),
        (patient(_gender={}), "structure", "Patient.gender"),
    ],
)
def test_empty_values_and_nulls_are_refused(resource: dict[str, Any], code: str, expression: str) -> None:
    issue = only_issue(resource)
    assert (issue.code, issue.expression) == (code, (expression,))


def test_null_is_allowed_as_a_placeholder_in_paired_primitive_arrays() -> None:
    name = {"given": ["Anna", None], "_given": [None, {"extension": [ext()]}]}
    assert validate_resource(patient(name=[name])) == []
    name = {"given": ["Anna", "Maria"], "_given": [None, {"id": "g2", "extension": [ext()]}]}
    assert validate_resource(patient(name=[name])) == []
    # only extensions, no values at all
    assert validate_resource(patient(name=[{"_given": [{"extension": [ext()]}]}])) == []


def test_paired_primitive_arrays_must_have_the_same_length() -> None:
    name = {"given": ["Anna", "Maria"], "_given": [None]}
    assert issues_of(patient(name=[name])) == [("structure", "Patient.name[0].given")]


# ---- primitive formats -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("element", "value", "ok"),
    [
        ("birthDate", "1970", True),
        ("birthDate", "1970-05", True),
        ("birthDate", "2000-02-29", True),
        ("birthDate", "1970-13-01", False),
        ("birthDate", "2001-02-29", False),
        ("birthDate", "1970-04-31", False),
        ("birthDate", "1970-05-01T10:00:00Z", False),
        ("birthDate", "0000", False),
        ("birthDate", "1er mai 1970", False),
        ("deceasedDateTime", "2020-01-01T10:00:00+01:00", True),
        ("deceasedDateTime", "2020-01-01T10:00:00.123Z", True),
        ("deceasedDateTime", "2020-01-01", True),
        ("deceasedDateTime", "2020-01-01T10:00:00", False),
        ("deceasedDateTime", "2020-01-01T10:00Z", False),
        ("deceasedDateTime", "2020-01-01 10:00:00Z", False),
        ("id", "a" * 64, True),
        ("id", "A-b.9", True),
        ("id", "a" * 65, False),
        ("id", "a_b", False),
        ("id", "a b", False),
        ("implicitRules", "http://example.org/rules", True),
        ("implicitRules", "http://example.org/a rule", False),
        ("language", "fr-FR", True),
        ("gender", " male", False),
    ],
)
def test_patient_primitive_formats(element: str, value: str, ok: bool) -> None:
    found = issues_of(patient(**{element: value}))
    assert found == ([] if ok else [("value", f"Patient.{element}")])


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ({"valueUuid": "urn:uuid:6ba7b810-9dad-11d1-80b4-00c04fd430c8"}, True),  # a version 1 UUID
        ({"valueUuid": "6ba7b810-9dad-11d1-80b4-00c04fd430c8"}, False),
        ({"valueUuid": "urn:uuid:6BA7B810-9DAD-11D1-80B4-00C04FD430C8"}, False),
        ({"valueOid": "urn:oid:1.2.250.1.213"}, True),
        ({"valueOid": "1.2.250.1.213"}, False),
        ({"valueInstant": "2020-01-01T10:00:00Z"}, True),
        ({"valueInstant": "2020-01-01T10:00Z"}, False),
        ({"valueInstant": "2020-01-01"}, False),
        ({"valueTime": "23:59:59"}, True),
        ({"valueTime": "24:00:00"}, False),
        ({"valueTime": "10:00"}, False),
        ({"valueBase64Binary": "aGVsbG8="}, True),
        ({"valueBase64Binary": "aGVs\nbG8/"}, True),
        ({"valueBase64Binary": "not base64!"}, False),
        ({"valueBase64Binary": "aGVsbG8"}, False),
        ({"valueCode": "a b"}, True),
        ({"valueCode": "a  b"}, False),
        ({"valueCode": "a "}, False),
        ({"valueDecimal": 0.1}, True),
        ({"valueDecimal": 10}, True),
        ({"valueDecimal": float("inf")}, False),
        ({"valueUnsignedInt": 0}, True),
        ({"valuePositiveInt": 0}, False),
        ({"valueCanonical": "http://hl7.org/fhir/StructureDefinition/x|4.0.1"}, True),
        ({"valueUrl": "http://example.org/a b"}, False),
        ({"valueMarkdown": "**bold**"}, True),
    ],
)
def test_extension_value_formats(value: dict[str, Any], ok: bool) -> None:
    found = issues_of(patient(extension=[ext(**value)]))
    assert found == ([] if ok else [("value", f"Patient.extension[0].{next(iter(value))}")])


# ---- narrative ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("div", "ok"),
    [
        (f'<div xmlns="{XHTML}">Anna <b>Smith</b></div>', True),
        (f'<div xmlns="{XHTML}"><p>caf&eacute;&nbsp;&amp; th&#233;</p></div>', True),
        (f'<div xmlns="{XHTML}"><img src="#p1" alt=""/></div>', True),
        (f'<div xmlns="{XHTML}"><table><tr><td colspan="2">x</td></tr></table></div>', True),
        ("<div>no namespace</div>", False),
        (f'<p xmlns="{XHTML}">not a div</p>', False),
        (f'<div xmlns="{XHTML}">unclosed <b></div>', False),
        (f'<div xmlns="{XHTML}"><script>alert(1)</script></div>', False),
        (f'<div xmlns="{XHTML}"><p onclick="alert(1)">x</p></div>', False),
        (f'<div xmlns="{XHTML}"><a href="javascript:alert(1)">x</a></div>', False),
        (f'<div xmlns="{XHTML}">   </div>', False),
        (f'<!DOCTYPE div><div xmlns="{XHTML}">x</div>', False),
        ("plain text", False),
    ],
)
def test_narrative(div: str, ok: bool) -> None:
    found = issues_of(patient(text={"status": "generated", "div": div}))
    assert found == ([] if ok else [("value", "Patient.text.div")])


def test_narrative_requires_status_and_div() -> None:
    assert issues_of(patient(text={"status": "generated"})) == [("required", "Patient.text.div")]
    found = issues_of(patient(text={"div": f'<div xmlns="{XHTML}">x</div>'}))
    assert found == [("required", "Patient.text.status")]


# ---- required elements, choices, bindings ----------------------------------------------


@pytest.mark.parametrize(
    ("resource", "expression"),
    [
        ({"resourceType": "Observation", "code": {"text": "x"}}, "Observation.status"),
        ({"resourceType": "Observation", "status": "final"}, "Observation.code"),
        (patient(link=[{"type": "seealso"}]), "Patient.link[0].other"),
        (patient(extension=[{"valueString": "x"}]), "Patient.extension[0].url"),
        (
            {"resourceType": "MedicationRequest", "status": "active", "intent": "order",
             "subject": {"reference": "Patient/1"}},
            "MedicationRequest.medication",
        ),
        ({"resourceType": "Bundle"}, "Bundle.type"),
    ],
)  # fmt: skip
def test_missing_required_elements(resource: dict[str, Any], expression: str) -> None:
    issue = only_issue(resource)
    assert (issue.code, issue.expression) == ("required", (expression,))


def test_a_required_primitive_may_be_given_by_its_extension_only() -> None:
    absent = {"extension": [ext("http://hl7.org/fhir/StructureDefinition/data-absent-reason", valueCode="unknown")]}
    resource = {"resourceType": "Observation", "_status": absent, "code": {"text": "x"}}
    assert validate_resource(resource) == []


def test_choice_conflicts() -> None:
    issue = only_issue(patient(deceasedBoolean=True, deceasedDateTime="2020"))
    assert (issue.code, issue.expression) == ("structure", ("Patient.deceased",))
    assert "deceasedBoolean" in issue.diagnostics and "deceasedDateTime" in issue.diagnostics
    found = issues_of(observation(valueString="a", _valueBoolean={"extension": [ext()]}))
    assert found == [("structure", "Observation.value")]


@pytest.mark.parametrize(
    ("resource", "expression", "allowed"),
    [
        (patient(gender="blah"), "Patient.gender", "female, male, other, unknown"),
        (patient(gender="Male"), "Patient.gender", "female, male"),
        (observation(status="done"), "Observation.status", "amended, cancelled, corrected"),
        # R4 picks three event-status codes for Immunization.status
        (
            {
                "resourceType": "Immunization",
                "status": "in-progress",
                "vaccineCode": {"text": "x"},
                "patient": {"reference": "Patient/1"},
                "occurrenceString": "2020",
            },
            "Immunization.status",
            "completed, entered-in-error, not-done)",
        ),
        (
            patient(link=[{"other": {"reference": "Patient/2"}, "type": "see-also"}]),
            "Patient.link[0].type",
            "seealso",
        ),
        (
            observation(valueQuantity={"value": 1, "comparator": "~"}),
            "Observation.valueQuantity.comparator",
            "<=",
        ),
        (
            patient(telecom=[{"system": "fax", "value": "1", "use": "office"}]),
            "Patient.telecom[0].use",
            "work",
        ),
    ],
)
def test_codes_outside_required_bindings(resource: dict[str, Any], expression: str, allowed: str) -> None:
    issue = only_issue(resource)
    assert (issue.code, issue.expression) == ("code-invalid", (expression,))
    assert allowed in issue.diagnostics


@pytest.mark.parametrize("status", ["registered", "corrected", "cancelled", "entered-in-error", "unknown"])
def test_r4_codes_beyond_the_r4b_model_enum_are_accepted(status: str) -> None:
    # The R4B model lists "registered | preliminary | final | amended +"; R4's value set has more.
    assert validate_resource(observation(status=status)) == []


def test_required_binding_on_codeable_concept() -> None:
    def condition(clinical_status: dict[str, Any]) -> dict[str, Any]:
        return {
            "resourceType": "Condition",
            "subject": {"reference": "Patient/1"},
            "clinicalStatus": clinical_status,
        }

    system = "http://terminology.hl7.org/CodeSystem/condition-clinical"
    assert validate_resource(condition({"coding": [{"system": system, "code": "active"}]})) == []
    for bad in (
        {"coding": [{"system": system, "code": "busy"}]},
        {"coding": [{"code": "active"}]},
        {"text": "x"},
    ):
        issue = only_issue(condition(bad))
        assert (issue.code, issue.expression) == ("code-invalid", ("Condition.clinicalStatus",))
    garbled = {"coding": [{"system": {"a": 1}, "code": ["active"]}]}
    assert issues_of(condition(garbled)) == [
        ("structure", "Condition.clinicalStatus.coding[0].system"),
        ("structure", "Condition.clinicalStatus.coding[0].code"),
        ("code-invalid", "Condition.clinicalStatus"),
    ]


# ---- _element siblings and extensions -------------------------------------------------


def test_primitive_extensions() -> None:
    assert validate_resource(patient(birthDate="1970", _birthDate={"extension": [ext()]})) == []
    assert validate_resource(patient(_birthDate={"id": "b", "extension": [ext()]})) == []
    bad = patient(birthDate="1970", _birthDate={"extension": [{"valueString": "x"}]})
    assert issues_of(bad) == [("required", "Patient.birthDate.extension[0].url")]
    bad = patient(birthDate="1970", _birthDate={"extension": [ext(valueString="")]})
    assert issues_of(bad) == [("value", "Patient.birthDate.extension[0].valueString")]
    assert issues_of(patient(_birthDate={"foo": 1})) == [
        ("structure", "Patient.birthDate.foo"),
        ("structure", "Patient.birthDate"),  # ele-1: neither a value nor extensions
    ]
    assert issues_of(patient(_birthDate={"id": "x"})) == [("structure", "Patient.birthDate")]  # ele-1
    assert issues_of(patient(_name=[{"extension": [ext()]}])) == [("structure", "Patient.name")]
    assert issues_of(patient(_foo={"extension": [ext()]})) == [("structure", "Patient.foo")]


def test_extension_must_have_a_value_or_extensions_but_not_both() -> None:
    assert validate_resource(patient(extension=[{"url": "http://x", "extension": [ext()]}])) == []
    both = {"url": "http://x", "valueString": "a", "extension": [ext()]}
    assert issues_of(patient(extension=[both])) == [("invariant", "Patient.extension[0]")]
    assert issues_of(patient(modifierExtension=[{"url": "http://x"}])) == [
        ("invariant", "Patient.modifierExtension[0]")
    ]


def test_r4_extension_value_types() -> None:
    # valueMeta is R4 (dropped in R4B); valueCodeableReference / valueRatioRange are R4B only.
    assert validate_resource(patient(extension=[ext(valueMeta={"versionId": "1"})])) == []
    assert issues_of(patient(extension=[ext(valueMeta={"versionId": ""})])) == [
        ("value", "Patient.extension[0].valueMeta.versionId")
    ]
    for r4b_only in ({"valueCodeableReference": {"concept": {"text": "x"}}}, {"valueRatioRange": {}}):
        assert issues_of(patient(extension=[ext(**r4b_only)])) == [
            ("structure", f"Patient.extension[0].{next(iter(r4b_only))}")
        ]


def test_other_r4_r4b_differences() -> None:
    activity = {"resourceType": "ActivityDefinition", "status": "draft"}
    assert validate_resource(activity) == []
    assert issues_of(dict(activity, subjectCanonical="http://x")) == [
        ("structure", "ActivityDefinition.subjectCanonical")
    ]


# ---- resourceType, id, expected type ----------------------------------------------------


def test_resource_type_problems() -> None:
    assert issues_of({"id": "1"}) == [("structure", "")]
    assert issues_of({"resourceType": 1}) == [("structure", "")]
    assert issues_of({"resourceType": "Foo"}) == [("not-supported", "")]
    assert issues_of(patient(), "Observation") == [("invalid", "Patient")]
    assert issues_of(patient(), "Foo") == [("not-supported", ""), ("invalid", "Patient")]


@pytest.mark.parametrize("name", R4B_ONLY)
def test_r4b_only_types_are_unknown_in_r4(name: str) -> None:
    issue = only_issue({"resourceType": name})
    assert issue.code == "not-supported" and "R4" in issue.diagnostics


# ---- contained resources and bundles ------------------------------------------------------


def test_contained_resources_are_validated_with_their_own_type() -> None:
    med = {"resourceType": "Medication", "id": "m1", "code": {"text": "aspirin"}}
    ok = {
        "resourceType": "MedicationRequest",
        "contained": [med],
        "status": "active",
        "intent": "order",
        "medicationReference": {"reference": "#m1"},
        "subject": {"reference": "Patient/1"},
    }
    assert validate_resource(ok) == []
    bad = copy.deepcopy(ok)
    bad["contained"] = [dict(med, status="blah", foo=1), {"id": "x"}, {"resourceType": "Citation"}]
    assert issues_of(bad) == [
        ("code-invalid", "MedicationRequest.contained[0].status"),
        ("structure", "MedicationRequest.contained[0].foo"),
        ("structure", "MedicationRequest.contained[1]"),
        ("not-supported", "MedicationRequest.contained[2]"),
    ]


def test_contained_resource_invariants() -> None:
    inner = {"resourceType": "Patient", "id": "p", "meta": {"versionId": "1"}, "contained": [patient(id="q")]}
    found = issues_of(observation(contained=[inner]))
    assert found == [
        ("invariant", "Observation.contained[0]"),
        ("invariant", "Observation.contained[0].meta"),
    ]


def test_bundle_entries_are_validated_recursively() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:1", "resource": patient(), "request": {"method": "POST", "url": "Patient"}},
            {"resource": patient(name=[{"foo": 1}]), "request": {"method": "POST", "url": "Patient"}},
            {"resource": observation(status="blah"), "request": {"method": "PUT", "url": "Observation/1"}},
            {"request": {"method": "FETCH", "url": "Patient/1"}},
            {"resource": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"x": 1}}]}},
        ],
    }
    assert issues_of(bundle) == [
        ("structure", "Bundle.entry[1].resource.name[0].foo"),
        ("code-invalid", "Bundle.entry[2].resource.status"),
        ("code-invalid", "Bundle.entry[3].request.method"),
        ("structure", "Bundle.entry[4].resource.entry[0].resource"),
    ]


def test_parameters_resources_are_validated() -> None:
    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "p", "part": [{"name": "r", "resource": patient(active="yes")}]}],
    }
    assert issues_of(parameters) == [("structure", "Parameters.parameter[0].part[0].resource.active")]


# ---- R4 types without an R4B model ---------------------------------------------------


def test_r4_only_resources_are_validated_from_the_r4_definitions() -> None:
    product = {"resourceType": "MedicinalProduct", "id": "mp1", "name": [{"productName": "Doliprane"}]}
    assert validate_resource(product) == []
    assert validate_resource(product, "MedicinalProduct") == []
    bad = dict(product, name=[{"productName": ""}], foo=1, specialMeasures="x")
    assert issues_of(bad) == [
        ("value", "MedicinalProduct.name[0].productName"),
        ("structure", "MedicinalProduct.foo"),
        ("structure", "MedicinalProduct.specialMeasures"),
    ]
    assert issues_of({"resourceType": "MedicinalProduct"}) == [("required", "MedicinalProduct.name")]
    spec = {"resourceType": "SubstanceSpecification", "molecularWeight": [{"amount": {"value": 1}}]}
    assert validate_resource(spec) == []
    polymer = {"resourceType": "SubstancePolymer", "repeat": [{"numberOfUnits": "2"}]}
    assert issues_of(polymer) == [("structure", "SubstancePolymer.repeat[0].numberOfUnits")]


def test_evidence_uses_the_r4_structure() -> None:
    r4 = {
        "resourceType": "Evidence",
        "status": "active",
        "exposureBackground": {"reference": "EvidenceVariable/1"},
    }
    assert validate_resource(r4) == []
    r4b = {
        "resourceType": "Evidence",
        "status": "active",
        "variableDefinition": [{"variableRole": {"text": "x"}}],
    }
    assert issues_of(r4b) == [
        ("structure", "Evidence.variableDefinition"),
        ("required", "Evidence.exposureBackground"),
    ]


def test_r4_evidence_in_a_bundle_is_not_judged_by_the_r4b_model() -> None:
    evidence = {
        "resourceType": "Evidence",
        "status": "active",
        "exposureBackground": {"reference": "Group/1"},
    }
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": evidence}]}
    assert validate_resource(bundle) == []
    assert validate_resource(bundle, model_check=False) == []


def test_r4_only_resource_in_a_bundle() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {"resourceType": "MedicinalProduct", "name": [{"productName": "x"}]}}],
    }
    assert validate_resource(bundle) == []
    bundle["entry"][0]["resource"]["name"] = [{}]
    assert issues_of(bundle) == [("structure", "Bundle.entry[0].resource.name[0]")]


# ---- Synthea (R4) ------------------------------------------------------------------------


def _synthea(name: str) -> dict[str, Any]:
    path = SYNTHEA / name
    if not path.exists():
        pytest.skip("shared Synthea fixtures are not available")
    return json.loads(bz2.decompress(path.read_bytes()))


@pytest.mark.parametrize("name", SYNTHEA_BUNDLES)
def test_synthea_bundles_are_valid(name: str) -> None:
    bundle = _synthea(name)
    for index, entry in enumerate(bundle["entry"]):
        resource = entry["resource"]
        assert validate_resource(resource, resource["resourceType"]) == [], index
    assert validate_resource(bundle, "Bundle") == []


def test_synthea_errors_are_located() -> None:
    bundle = _synthea(SYNTHEA_BUNDLES[2])
    patient_index = next(i for i, e in enumerate(bundle["entry"]) if e["resource"]["resourceType"] == "Patient")
    resource = bundle["entry"][patient_index]["resource"]
    resource["name"][0]["given"].append(7)
    resource["address"][0]["extension"][0]["extension"][0]["valueDecimal"] = "42.1"
    resource["communication"][0]["language"]["coding"][0]["foo"] = "bar"
    assert issues_of(resource) == [
        ("structure", f"Patient.name[0].given[{len(resource['name'][0]['given']) - 1}]"),
        ("structure", "Patient.address[0].extension[0].extension[0].valueDecimal"),
        ("structure", "Patient.communication[0].language.coding[0].foo"),
    ]
    prefix = f"Bundle.entry[{patient_index}].resource"
    assert [e for _, e in issues_of(bundle)] == [
        f"{prefix}.name[0].given[{len(resource['name'][0]['given']) - 1}]",
        f"{prefix}.address[0].extension[0].extension[0].valueDecimal",
        f"{prefix}.communication[0].language.coding[0].foo",
    ]


# ---- the pydantic pass ----------------------------------------------------------------


def test_model_errors_are_mapped_to_issues(monkeypatch: pytest.MonkeyPatch) -> None:
    # Blind the walk to dates: the R4B model then catches the impossible date on its own.
    monkeypatch.setitem(validation._PRIMITIVE_CHECKS, "date", lambda value: None)
    resource = patient(name=[{"family": "X"}], birthDate="2001-02-30")
    found = validate_resource(resource)
    assert [(i.code, i.expression) for i in found] == [("value", ("Patient.birthDate",))]
    assert found[0].diagnostics.startswith("R4B model: ")
    assert validate_resource(resource, model_check=False) == []


def test_pydantic_loc_to_fhirpath() -> None:
    _loc_to_fhirpath, _pydantic_code = validation._loc_to_fhirpath, validation._pydantic_code
    assert _loc_to_fhirpath("Patient", ("name", 0, "_given", 1)) == "Patient.name[0].given[1]"
    assert _loc_to_fhirpath("Observation", ("valueQuantity", "value")) == "Observation.valueQuantity.value"
    assert _loc_to_fhirpath("Patient", ("root", "function-wrap[x]", "id")) == "Patient.id"
    assert _pydantic_code({"type": "extra_forbidden", "msg": ""}) == "structure"
    assert _pydantic_code({"type": "model_field_validation.missing", "msg": ""}) == "required"
    assert _pydantic_code({"type": "string_pattern_mismatch", "msg": ""}) == "value"
