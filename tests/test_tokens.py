"""Access tokens are checked on every request: signature, expiry, issuer, audience, algorithm."""

from __future__ import annotations

import base64
import json
import time

import httpx
import jwt
import pytest

from fhir_server.auth.keys import load_or_create_signing_key
from tests.conftest import TEST_BASE


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _claims(**overrides: object) -> dict:
    now = int(time.time())
    claims = {
        "iss": TEST_BASE,
        "aud": TEST_BASE,
        "sub": "tester",
        "client_id": "tester",
        "scope": "system/*.*",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _signed(settings, **overrides: object) -> str:
    return jwt.encode(_claims(**overrides), load_or_create_signing_key(settings.data_dir), algorithm="RS256")


@pytest.mark.parametrize(
    "make",
    [
        lambda s: _signed(s, exp=int(time.time()) - 3600),  # expired
        lambda s: _signed(s, nbf=int(time.time()) + 3600),  # not yet valid
        lambda s: _signed(s, iss="https://someone-else"),  # wrong issuer
        lambda s: _signed(s, aud="https://other-server/fhir"),  # wrong audience
        lambda s: _signed(s, exp=None),  # no expiry
        lambda s: _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(_claims()) + ".",  # alg none
        lambda s: jwt.encode(_claims(), "a-shared-secret", algorithm="HS256"),  # HS256
        lambda s: _signed(s)[:-6] + "AAAAAA",  # tampered signature
        lambda s: (
            _signed(s).rsplit(".", 2)[0]
            + "."
            + _b64(_claims(scope="system/*.* admin"))
            + "."
            + _signed(s).rsplit(".", 1)[1]
        ),  # tampered payload
        lambda s: "garbage",
    ],
)
async def test_bad_tokens_are_refused(anon_client: httpx.AsyncClient, settings, make) -> None:
    r = await anon_client.get("Patient", headers={"Authorization": f"Bearer {make(settings)}"})
    assert r.status_code == 401, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert "invalid_token" in r.headers["www-authenticate"]


async def test_good_token_and_schemes(anon_client: httpx.AsyncClient, settings) -> None:
    token = _signed(settings)
    assert (await anon_client.get("Patient", headers={"Authorization": f"Bearer {token}"})).status_code == 200
    assert (await anon_client.get("Patient", headers={"Authorization": f"Basic {token}"})).status_code == 401
    assert (await anon_client.get("Patient", headers={"Authorization": "Bearer"})).status_code == 401
