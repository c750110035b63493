"""Security headers, CORS and the per-client rate limit."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager

from fhir_server.app import create_app
from tests.conftest import TEST_BASE, make_settings, token_for


async def test_security_headers(client: httpx.AsyncClient) -> None:
    r = await client.get("metadata")
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["cache-control"] == "no-store"
    r = await client.get("Patient/unknown")
    assert r.headers["x-content-type-options"] == "nosniff"


@pytest.fixture
async def strict_client(ferretdb_uri: str, tmp_path) -> AsyncIterator[tuple[httpx.AsyncClient, object]]:
    settings = make_settings(ferretdb_uri, tmp_path, rate_limit_per_minute=5, cors_origins=["https://app.esante.fr"])
    app = create_app(settings)
    async with LifespanManager(app):
        headers = {"Authorization": f"Bearer {token_for(settings)}"}
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=TEST_BASE + "/", headers=headers
        ) as c:
            yield c, settings


async def test_rate_limit_and_cors(strict_client) -> None:
    client, _ = strict_client
    statuses = [(await client.get("Patient")).status_code for _ in range(8)]
    assert statuses[:5] == [200] * 5
    assert 429 in statuses[5:]
    r = await client.get("Patient")
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert r.json()["issue"][0]["code"] == "throttled"
    pre = await client.options(
        "Patient", headers={"Origin": "https://app.esante.fr", "Access-Control-Request-Method": "GET"}
    )
    assert pre.headers["access-control-allow-origin"] == "https://app.esante.fr"
    other = await client.options(
        "Patient", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    )
    assert "access-control-allow-origin" not in other.headers
