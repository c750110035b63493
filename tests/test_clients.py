"""Real FHIR client libraries against a real `fhir-server serve`: fhirpy (async) and fhirclient (SMART)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_lifecycle import Server, free_port


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("clients") / "var", free_port())
    server.wait_ready()
    yield server
    server.stop()


async def test_fhirpy_crud_and_search(running: Server) -> None:
    from fhirpy import AsyncFHIRClient

    client = AsyncFHIRClient(running.base, authorization=f"Bearer {running.token()}")
    patient = client.resource(
        "Patient", name=[{"family": "Lefèvre", "given": ["Hélène"]}], gender="female", birthDate="1970-05-12"
    )
    await patient.save()
    assert patient.id and patient["meta"]["versionId"] == "1"
    patient["active"] = True
    await patient.save()
    assert patient["meta"]["versionId"] == "2"
    found = await client.resources("Patient").search(name="helene").fetch_all()
    assert [p.id for p in found] == [patient.id]
    obs = client.resource("Observation", status="final", code={"text": "poids"}, subject=patient.to_reference())
    await obs.save()
    linked = await client.resources("Observation").search(subject=patient.to_reference().reference).fetch_all()
    assert [o.id for o in linked] == [obs.id]
    fetched = await client.reference("Patient", patient.id).to_resource()
    assert fetched["active"] is True
    for i in range(25):
        await client.resource("Basic", code={"text": f"n{i}"}).save()
    assert len(await client.resources("Basic").limit(10).fetch_all()) == 25  # follows next links
    await obs.delete()
    assert await client.resources("Observation").search(_id=obs.id).fetch() == []


def test_fhirclient_reads_and_searches(running: Server, tmp_path: Path) -> None:
    import httpx
    from fhirclient import client as smart_client
    from fhirclient.models.patient import Patient

    token = running.token()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    created = httpx.post(
        f"{running.base}/Patient", json={"resourceType": "Patient", "name": [{"family": "Dupont"}]}, headers=headers
    ).json()
    smart = smart_client.FHIRClient(settings={"app_id": "fhir-server-tests", "api_base": running.base + "/"})
    smart.server.session.headers["Authorization"] = f"Bearer {token}"
    patient = Patient.read(created["id"], smart.server)
    assert patient.name[0].family == "Dupont"
    bundle = Patient.where(struct={"family": "dupont"}).perform(smart.server)
    assert created["id"] in [e.resource.id for e in bundle.entry]
