"""Expression evaluation: the fast dict walk must select what fhirpathpy selects."""

from __future__ import annotations

import bz2
import json
from pathlib import Path
from typing import Any

import pytest

from fhir_server.search.paths import (
    compile_expression,
    compile_fast,
    compile_fhirpath,
    is_fast,
    reference_type,
)
from fhir_server.search.registry import load_registry

SYNTHEA = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "synthea"

OBS: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "bp",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
    "subject": {"reference": "Patient/p1"},
    "effectivePeriod": {"start": "2020-01-01", "end": "2020-01-02"},
    "component": [
        {"code": {"coding": [{"code": "8480-6"}]}, "valueQuantity": {"value": 120}},
        {"code": {"coding": [{"code": "8462-4"}]}, "valueQuantity": {"value": 80}},
        {"code": {"coding": [{"code": "x"}]}, "valueString": "text"},
    ],
}


def values(expr: str, resource: dict[str, Any], context: str | None = None) -> list[Any]:
    return [item.value for item in compile_expression(expr, context or resource["resourceType"])(resource)]


def test_every_r4_expression_but_three_takes_the_fast_path() -> None:
    registry = load_registry()
    slow = sorted(
        (rtype, code)
        for rtype in registry.resource_types
        for code, p in registry.params_for(rtype).items()
        if p.expression and p.type != "special" and not is_fast(p.expression, rtype)
    )
    assert slow == [("Bundle", "composition"), ("Bundle", "message"), ("Patient", "deceased")]


def test_choice_elements_and_casts() -> None:
    items = compile_fast("Observation.effective", "Observation")(OBS)
    assert [(i.value, i.type) for i in items] == [({"start": "2020-01-01", "end": "2020-01-02"}, "Period")]
    assert values("(Observation.component.value as Quantity)", OBS) == [{"value": 120}, {"value": 80}]
    assert values("Observation.component.value.as(string)", OBS) == ["text"]
    assert values("(Observation.value as Quantity)", OBS) == []


def test_relative_expressions_from_a_backbone_element() -> None:
    comp = OBS["component"][0]
    items = compile_expression("value.as(Quantity)", "Observation.component")(comp)
    assert [(i.value, i.type) for i in items] == [({"value": 120}, "Quantity")]
    composite = compile_expression("Observation | Observation.component", "Observation")(OBS)
    assert [i.path for i in composite] == ["Observation"] + ["Observation.component"] * 3


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ({"reference": "Patient/1"}, "Patient"),
        ({"reference": "http://other.org/fhir/Patient/1/_history/2"}, "Patient"),
        ({"reference": "urn:uuid:0b2c"}, None),
        ({"reference": "urn:uuid:0b2c", "type": "Patient"}, "Patient"),
        ({"reference": "#contained"}, None),
        ({"identifier": {"value": "x"}}, None),
        ("Group/7", "Group"),
    ],
)
def test_reference_type(reference: Any, expected: str | None) -> None:
    assert reference_type(reference) == expected


def test_where_resolve_is_decided_from_the_reference() -> None:
    expr = "Observation.subject.where(resolve() is Patient)"
    assert values(expr, OBS) == [{"reference": "Patient/p1"}]
    assert values(expr, {**OBS, "subject": {"reference": "Group/g"}}) == []
    # the fhirpathpy fallback answers resolve() the same way
    assert [i.value for i in compile_fhirpath(expr, "Observation")(OBS)] == [{"reference": "Patient/p1"}]


def test_where_equals_and_extensions() -> None:
    patient = {
        "resourceType": "Patient",
        "telecom": [{"system": "phone", "value": "1"}, {"system": "email", "value": "a@b.fr"}],
        "extension": [{"url": "http://x/birthsex", "valueCode": "F"}],
    }
    assert values("Patient.telecom.where(system='email')", patient) == [{"system": "email", "value": "a@b.fr"}]
    assert values("Patient.extension('http://x/birthsex').value", patient) == ["F"]


def test_fallback_expressions() -> None:
    deceased = "Patient.deceased.exists() and Patient.deceased != false"
    assert values(deceased, {"resourceType": "Patient", "deceasedDateTime": "2020"}) == [True]
    assert values(deceased, {"resourceType": "Patient", "deceasedBoolean": False}) == [False]
    bundle = {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Composition", "id": "c"}}]}
    assert values("Bundle.entry[0].resource", bundle) == [{"resourceType": "Composition", "id": "c"}]


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def test_fast_path_agrees_with_fhirpathpy_on_synthea() -> None:
    files = sorted(SYNTHEA.glob("*.json.bz2"))
    if not files:
        pytest.skip("../shared fixtures not available")
    registry = load_registry()
    bundle = json.loads(bz2.open(files[-1]).read())
    seen: dict[str, int] = {}
    checked = 0
    for entry in bundle["entry"]:
        resource = entry["resource"]
        rtype = resource["resourceType"]
        if seen.get(rtype, 0) >= 5:  # a few of each type keeps the test fast
            continue
        seen[rtype] = seen.get(rtype, 0) + 1
        for code, param in registry.params_for(rtype).items():
            if not param.expression or not is_fast(param.expression, rtype):
                continue
            fast = {_key(i.value) for i in compile_fast(param.expression, rtype)(resource)}
            try:
                slow = {_key(i.value) for i in compile_fhirpath(param.expression, rtype)(resource)}
            except Exception:  # fhirpathpy rejects `(X.component.value as T)` on several components
                continue
            assert fast == slow, (rtype, code)
            checked += 1
    assert checked > 200
