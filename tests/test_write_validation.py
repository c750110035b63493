"""A write that is not valid FHIR R4 is refused with an OperationOutcome and changes nothing."""

from __future__ import annotations

import httpx
import pytest

from tests.helpers import FHIR_JSON, outcome_of, patient, post


async def _history_total(client: httpx.AsyncClient) -> int:
    # Every type the cases write (the AuditEvents recording the refusals are expected, and not counted).
    totals = [(await client.get(f"{t}/_history", params={"_count": "1"})).json()["total"] for t in ("Patient", "Basic")]
    return sum(totals)


@pytest.mark.parametrize(
    ("body", "status", "expression"),
    [
        (b"{not json", 400, None),
        (b"[1, 2]", 400, None),
        (b"", 400, None),
        (b'{"resourceType": "Observation", "status": "final", "code": {"text": "x"}}', 400, None),
        (b'{"name": [{"family": "X"}]}', 400, None),
        (b'{"resourceType": "Patient", "foo": 1}', 400, "Patient.foo"),
        (b'{"resourceType": "Patient", "name": [{"family": "X", "foo": 1}]}', 400, "Patient.name[0].foo"),
        (b'{"resourceType": "Patient", "active": "true"}', 400, "Patient.active"),
        (b'{"resourceType": "Patient", "name": {"family": "X"}}', 400, "Patient.name"),
        (b'{"resourceType": "Patient", "birthDate": "1er mai 1970"}', None, "Patient.birthDate"),
        (b'{"resourceType": "Patient", "gender": "homme"}', None, "Patient.gender"),
        (b'{"resourceType": "Patient", "link": [{"type": "seealso"}]}', None, "Patient.link[0].other"),
    ],
)
async def test_invalid_create_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, body: bytes, status: int | None, expression: str | None
) -> None:
    before = await _history_total(client)
    r = await client.post("Patient", content=body, headers={"Content-Type": FHIR_JSON})
    if status is None:
        assert r.status_code in (400, 422), r.text
    else:
        assert r.status_code == status, r.text
    issue = outcome_of(r)["issue"]
    assert all(i["severity"] in ("error", "fatal") for i in issue)
    if expression:
        assert any(expression in i.get("expression", []) for i in issue), issue
    assert await _history_total(client) == before


async def test_invalid_update_keeps_the_current_version(client: httpx.AsyncClient) -> None:
    created = (await post(client, patient())).json()
    bad = dict(created, gender="not-a-gender")
    r = await client.put(f"Patient/{created['id']}", json=bad, headers={"Content-Type": FHIR_JSON})
    assert r.status_code in (400, 422)
    current = (await client.get(f"Patient/{created['id']}")).json()
    assert current == created
    assert (await client.get(f"Patient/{created['id']}/_history")).json()["total"] == 1


async def test_xml_body_and_format(client: httpx.AsyncClient) -> None:
    r = await client.post("Patient", content=b"<Patient/>", headers={"Content-Type": "application/fhir+xml"})
    assert r.status_code == 415
    outcome_of(r)
    r = await client.get("metadata", params={"_format": "xml"})
    assert r.status_code == 406
    outcome_of(r)
    r = await client.get("metadata", headers={"Accept": "application/fhir+xml"})
    assert r.status_code == 406
    r = await client.get("metadata", params={"_format": "json"})
    assert r.status_code == 200


async def test_body_size_limit(client: httpx.AsyncClient, settings) -> None:
    huge = b'{"resourceType": "Basic", "code": {"text": "' + b"x" * (settings.max_body_bytes + 10) + b'"}}'
    r = await client.post("Basic", content=huge, headers={"Content-Type": FHIR_JSON})
    assert r.status_code == 413
    outcome_of(r)
