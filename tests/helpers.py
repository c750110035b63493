"""Small helpers shared by the HTTP tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import FIXTURES

FHIR_JSON = "application/fhir+json"


def sample(resource_type: str, index: int = 0) -> dict[str, Any]:
    """A Synthea resource of that type from tests/fixtures (copied from ../shared/fixtures/synthea)."""
    bundle = json.loads((FIXTURES / "synthea-sample.json").read_text())
    found = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type]
    return json.loads(json.dumps(found[index]))


def patient(family: str = "Martin", given: str = "Hélène", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": family, "given": [given]}], **extra}


def outcome_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith(FHIR_JSON), response.headers.get("content-type")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    assert body["issue"], body
    return body


async def post(client: httpx.AsyncClient, resource: dict[str, Any], **headers: str) -> httpx.Response:
    return await client.post(resource["resourceType"], json=resource, headers={"Content-Type": FHIR_JSON, **headers})


async def put(client: httpx.AsyncClient, resource: dict[str, Any], **headers: str) -> httpx.Response:
    url = f"{resource['resourceType']}/{resource['id']}"
    return await client.put(url, json=resource, headers={"Content-Type": FHIR_JSON, **headers})


def public_client_file(directory: Path, client_id: str, redirect: str, scope: str) -> Path:
    """`clients.json` (FHIR_OAUTH_CLIENTS_FILE) registering one public SMART app (PKCE, no secret)."""
    path = directory / "clients.json"
    client = {"client_id": client_id, "token_endpoint_auth_method": "none", "redirect_uris": [redirect], "scope": scope}
    path.write_text(json.dumps([client]))
    return path
