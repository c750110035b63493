"""Test fixtures: one real FerretDB for the session, a fresh database per test module.

No mocks: every test talks HTTP (in-process ASGI, or a real `fhir-server serve` subprocess where
process life cycle matters) to the server, which talks the MongoDB wire protocol to FerretDB.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from fhir_server.app import create_app
from fhir_server.auth.tokens import mint_token
from fhir_server.config import REPO_ROOT, Settings
from fhir_server.ferretdb import EmbeddedFerretDB

SHARED = REPO_ROOT.parent / "shared"
FIXTURES = Path(__file__).parent / "fixtures"
TEST_BASE = "http://testserver/fhir"


@pytest.fixture(scope="session")
async def ferretdb_uri(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    db = EmbeddedFerretDB(Settings().resolved_ferretdb_bin(), tmp_path_factory.mktemp("ferretdb"))
    uri = await db.start()
    yield uri
    await db.stop()


def make_settings(uri: str, data_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "mongodb_uri": uri,
        "database": "t" + uuid.uuid4().hex[:12],
        "data_dir": data_dir,
        "base_url": TEST_BASE,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def token_for(settings: Settings, scope: str = "system/*.*") -> str:
    return mint_token(
        settings.data_dir, issuer=settings.resolved_token_issuer(), audience=TEST_BASE, scope=scope, lifetime=3600
    )


@pytest.fixture(scope="module")
async def settings(ferretdb_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(ferretdb_uri, tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
async def app(settings: Settings) -> AsyncIterator[object]:
    application = create_app(settings)
    async with LifespanManager(application, startup_timeout=120, shutdown_timeout=60):
        yield application


@pytest.fixture(scope="module")
async def client(app: object, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {token_for(settings)}"}
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE + "/", headers=headers) as c:
        yield c


@pytest.fixture(scope="module")
async def anon_client(app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=TEST_BASE + "/") as c:
        yield c
