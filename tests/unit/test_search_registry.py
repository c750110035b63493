"""The search-parameter registry: loading, per-type specialisation, custom parameters, the build script."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from fhir_server.search.extract import extract_index
from fhir_server.search.registry import (
    PROFILES_DIR,
    Registry,
    compact_definition,
    expression_for_type,
    load_registry,
    split_top_level,
)

SHARED_BUNDLE = PROFILES_DIR.parent.parent / "shared" / "fhir-r4" / "search-parameters.json"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry()


def test_registry_holds_all_r4_parameters(registry: Registry) -> None:
    custom = list((PROFILES_DIR / "search-parameters").glob("SearchParameter-*.json"))
    assert len(registry) == 1375 + len(custom)  # the official R4 ones, and ours (profiles/search-parameters/)
    assert {"Patient", "Observation", "Bundle"} <= registry.resource_types


def test_params_for_includes_common_parameters(registry: Registry) -> None:
    patient = registry.params_for("Patient")
    assert {"name", "birthdate", "_id", "_lastUpdated", "_tag", "_profile", "_text"} <= set(patient)
    assert patient["_lastUpdated"].expression == "Patient.meta.lastUpdated"
    assert patient["_tag"].type == "token"
    # Bundle is not a DomainResource: no _text, but Resource-level parameters apply.
    bundle = registry.params_for("Bundle")
    assert "_text" not in bundle and "_lastUpdated" in bundle
    assert registry.get("Patient", "nope") is None


def test_multi_type_expressions_are_specialised(registry: Registry) -> None:
    condition_code = registry.get("Condition", "code")
    assert condition_code is not None
    assert condition_code.expression == "Condition.code"
    assert condition_code.full_expression and "AllergyIntolerance.code" in condition_code.full_expression
    med = registry.get("MedicationRequest", "code")
    assert med is not None and med.expression == "(MedicationRequest.medication as CodeableConcept)"
    obs_patient = registry.get("Observation", "patient")
    assert obs_patient is not None
    assert obs_patient.expression == "Observation.subject.where(resolve() is Patient)"
    assert obs_patient.targets == ("Patient",)


def test_composite_components_know_their_types(registry: Registry) -> None:
    param = registry.get("Observation", "code-value-quantity")
    assert param is not None
    assert [(c.type, c.expression) for c in param.components] == [
        ("token", "code"),
        ("quantity", "value.as(Quantity)"),
    ]


def test_split_top_level_respects_parentheses_and_quotes() -> None:
    expr = "A.b.where(x = 'a|b') | (C.d as Quantity) | E.f"
    assert split_top_level(expr) == ["A.b.where(x = 'a|b')", "(C.d as Quantity)", "E.f"]


def test_expression_for_type() -> None:
    expr = "(A.value as Quantity) | B.code | A.other"
    assert expression_for_type(expr, "A") == "(A.value as Quantity) | A.other"
    assert expression_for_type("Resource.meta.tag", "Patient") == "Patient.meta.tag"
    assert expression_for_type("X.y", "Z") == "X.y"  # nothing applies: left to FHIRPath


def _write_profiles(tmp: Path, custom: list[dict]) -> Path:
    core = [
        compact_definition(
            {
                "resourceType": "SearchParameter",
                "url": "http://hl7.org/fhir/SearchParameter/Patient-gender",
                "code": "gender",
                "base": ["Patient"],
                "type": "token",
                "expression": "Patient.gender",
            }
        )
    ]
    (tmp / "search-parameters.r4.json").write_text(json.dumps({"params": core}))
    (tmp / "search-parameters").mkdir()
    for i, resource in enumerate(custom):
        (tmp / "search-parameters" / f"{i}.json").write_text(json.dumps(resource))
    return tmp


def test_custom_parameters_are_loaded_and_override(tmp_path: Path) -> None:
    custom_birthsex = {
        "resourceType": "SearchParameter",
        "url": "http://example.org/SearchParameter/patient-birthsex",
        "code": "birthsex",
        "base": ["Patient"],
        "type": "token",
        "expression": "Patient.extension('http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex').value",
    }
    override_gender = {
        "resourceType": "Bundle",
        "entry": [
            {
                "resource": {
                    "resourceType": "SearchParameter",
                    "url": "http://example.org/SearchParameter/gender",
                    "code": "gender",
                    "base": ["Patient"],
                    "type": "string",
                    "expression": "Patient.gender",
                }
            }
        ],
    }
    registry = load_registry(_write_profiles(tmp_path, [custom_birthsex, override_gender]))
    params = registry.params_for("Patient")
    assert params["birthsex"].url == custom_birthsex["url"]
    assert params["gender"].type == "string"
    patient = {
        "resourceType": "Patient",
        "gender": "female",
        "extension": [{"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex", "valueCode": "F"}],
    }
    index = extract_index(patient, registry, "http://localhost/fhir")
    assert index["birthsex"] == {"c": ["F"], "sc": ["|F"]}
    assert index["gender"] == {"n": ["female"], "x": ["female"]}


def test_build_script_reproduces_the_committed_registry() -> None:
    if not SHARED_BUNDLE.exists():
        pytest.skip("../shared not available")
    spec = importlib.util.spec_from_file_location("build_search_registry", PROFILES_DIR / "build_search_registry.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = (PROFILES_DIR / "search-parameters.r4.json").read_text(encoding="utf-8")
    assert module.dump(module.build(SHARED_BUNDLE)) == committed
