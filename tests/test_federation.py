"""End-user login through Pro Santé Connect and FranceConnect (auth/federation.py), against a local
OpenID Connect provider run by uvicorn in a background thread."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import httpx
import pytest
import uvicorn
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from fhir_server.auth.federation import FRANCECONNECT_SYSTEM, RPPS_SYSTEM
from fhir_server.config import Settings
from tests.conftest import TEST_BASE, make_settings
from tests.helpers import public_client_file

ORIGIN = "http://testserver"
TOKEN_URL = ORIGIN + "/oauth/token"
REDIRECT = "https://app.example.fr/callback"
SECRETS = {"psc": ("fhir-psc", "psc-secret-0123456789"), "franceconnect": ("fhir-fc", "fc-secret-0123456789")}


# ---- the fake OpenID Connect provider -------------------------------------------------------------


class FakeProvider:
    """Two providers (`/psc`, `/franceconnect`) on one Starlette app; the user logs in automatically."""

    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "idp-1", "use": "sig", "alg": "RS256"})
        self.other_key = RSAKey.generate_key(2048, parameters={"kid": "idp-1"})
        self.base = ""
        self.codes: dict[str, dict[str, Any]] = {}
        self.access: dict[str, dict[str, Any]] = {}
        self.users: dict[str, dict[str, Any]] = {}
        self.tweak: str | None = None  # "nonce" | "signature" | "aud" | "deny"
        self.seen: dict[str, dict[str, str]] = {}
        self.app = Starlette(
            routes=[
                Route("/{p}/.well-known/openid-configuration", self.discovery),
                Route("/{p}/authorize", self.authorize),
                Route("/{p}/token", self.token, methods=["POST"]),
                Route("/{p}/jwks", self.jwks),
                Route("/{p}/userinfo", self.userinfo),
            ]
        )

    def issuer(self, p: str) -> str:
        return f"{self.base}/{p}"

    async def discovery(self, request: Request) -> Response:
        iss = self.issuer(request.path_params["p"])
        methods = ["client_secret_post"] if request.path_params["p"] == "franceconnect" else ["client_secret_basic"]
        return JSONResponse(
            {
                "issuer": iss,
                "authorization_endpoint": iss + "/authorize",
                "token_endpoint": iss + "/token",
                "jwks_uri": iss + "/jwks",
                "userinfo_endpoint": iss + "/userinfo",
                "token_endpoint_auth_methods_supported": methods,
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        )

    async def authorize(self, request: Request) -> Response:
        p, q = request.path_params["p"], request.query_params
        self.seen[p] = dict(q)
        assert q["client_id"] == SECRETS[p][0] and q["response_type"] == "code"
        assert q["code_challenge_method"] == "S256" and q["nonce"] and q["state"]
        if self.tweak == "deny":
            query = urlencode({"error": "access_denied", "state": q["state"]})
            return RedirectResponse(q["redirect_uri"] + "?" + query, status_code=302)
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"p": p, **dict(q)}
        return RedirectResponse(q["redirect_uri"] + "?" + urlencode({"code": code, "state": q["state"]}), 302)

    async def token(self, request: Request) -> Response:
        p = request.path_params["p"]
        form = dict(parse_qsl((await request.body()).decode()))
        client_id, secret = SECRETS[p]
        header = request.headers.get("authorization", "")
        if header.startswith("Basic "):
            given = tuple(base64.b64decode(header[6:]).decode().split(":", 1))
        else:
            given = (form.get("client_id"), form.get("client_secret"))
        if given != (client_id, secret):
            return JSONResponse({"error": "invalid_client"}, 401)
        req = self.codes.pop(str(form.get("code")), None)
        if req is None or req["p"] != p or req["redirect_uri"] != form.get("redirect_uri"):
            return JSONResponse({"error": "invalid_grant"}, 400)
        digest = hashlib.sha256(str(form.get("code_verifier")).encode()).digest()
        if base64.urlsafe_b64encode(digest).decode().rstrip("=") != req["code_challenge"]:
            return JSONResponse({"error": "invalid_grant", "error_description": "PKCE"}, 400)
        user = self.users[p]
        now = int(time.time())
        claims = {
            "iss": self.issuer(p),
            "sub": user["sub"],
            "aud": "someone-else" if self.tweak == "aud" else client_id,
            "iat": now,
            "exp": now + 60,
            "nonce": "not-the-nonce" if self.tweak == "nonce" else req["nonce"],
            "acr": req.get("acr_values", ""),
        }
        key = self.other_key if self.tweak == "signature" else self.key
        id_token = jwt.encode({"alg": "RS256", "kid": "idp-1"}, claims, key)
        access = secrets.token_urlsafe(16)
        self.access[access] = user
        return JSONResponse({"access_token": access, "token_type": "Bearer", "id_token": id_token, "expires_in": 60})

    async def jwks(self, request: Request) -> Response:
        return JSONResponse({"keys": [self.key.as_dict(private=False)]})

    async def userinfo(self, request: Request) -> Response:
        user = self.access.get(request.headers.get("authorization", "")[len("Bearer ") :])
        if user is None:
            return JSONResponse({"error": "invalid_token"}, 401)
        return JSONResponse(user)


@pytest.fixture(scope="module")
def provider() -> Iterator[FakeProvider]:
    fake = FakeProvider()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    fake.base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(fake.app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the fake provider did not start"
        time.sleep(0.02)
    yield fake
    server.should_exit = True
    thread.join(10)
    sock.close()


@pytest.fixture(scope="module")
async def settings(ferretdb_uri: str, tmp_path_factory: pytest.TempPathFactory, provider: FakeProvider) -> Settings:
    data = tmp_path_factory.mktemp("data")
    scope = "openid fhirUser launch/patient offline_access patient/*.rs user/*.rs"
    clients_file = public_client_file(data, "smart-app", REDIRECT, scope)
    return make_settings(
        ferretdb_uri,
        data,
        oauth_clients_file=clients_file,
        oauth_dev_login=True,
        psc_discovery_url=provider.base + "/psc/.well-known/openid-configuration",
        psc_client_id=SECRETS["psc"][0],
        psc_client_secret=SECRETS["psc"][1],
        franceconnect_discovery_url=provider.base + "/franceconnect/.well-known/openid-configuration",
        franceconnect_client_id=SECRETS["franceconnect"][0],
        franceconnect_client_secret=SECRETS["franceconnect"][1],
    )


@pytest.fixture(scope="module")
async def oauth(app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as c:
        yield c


@pytest.fixture(autouse=True)
def _reset(provider: FakeProvider) -> None:
    provider.tweak = None
    provider.users = {
        "psc": {
            "sub": "f:550dc1c8-d97b-4b1e-ac8c-8eb4471cf9dd:ANS:899700218896",
            "SubjectNameID": "899700218896",
            "preferred_username": "899700218896",
            "given_name": "Jean Paul",
            "family_name": "DOCTEUR",
        },
        "franceconnect": {
            "sub": "b6048e95bb134ec5b1d1e1fa69f287172e91722b9354d637a1bcf2ebb0fd2ef5v1",
            "given_name": "Angela Claire Louise",
            "family_name": "DUBOIS",
            "birthdate": "1962-08-24",
            "gender": "female",
        },
    }


# ---- helpers --------------------------------------------------------------------------------------


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def claims_of(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


async def login(oauth: httpx.AsyncClient, challenge: str, **params: str) -> tuple[dict[str, list[str]], list[str]]:
    """Authorize, then follow the redirects by hand (ours in-process, the provider's over HTTP) until the
    app's redirect URI; its query, and the hops taken."""
    query = {
        "response_type": "code",
        "client_id": "smart-app",
        "redirect_uri": REDIRECT,
        "scope": "openid fhirUser user/*.rs",
        "state": "app-state",
        "nonce": "app-nonce",
        "aud": TEST_BASE,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    query.update(params)
    r = await oauth.get(ORIGIN + "/oauth/authorize", params=query)
    hops = []
    async with httpx.AsyncClient(timeout=10) as external:
        for _ in range(10):
            assert r.status_code == 302, r.text
            location = r.headers["location"]
            hops.append(location)
            if location.startswith(REDIRECT + "?"):
                return parse_qs(urlsplit(location).query), hops
            r = await (oauth if location.startswith(ORIGIN) else external).get(location)
    raise AssertionError(f"too many redirects: {hops}")


async def exchange(oauth: httpx.AsyncClient, code: str, verifier: str) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": "smart-app",
        "code_verifier": verifier,
    }
    return await oauth.post(TOKEN_URL, data=form)


# ---- tests ----------------------------------------------------------------------------------------


async def test_psc_login(oauth: httpx.AsyncClient, client: httpx.AsyncClient, provider: FakeProvider) -> None:
    verifier, challenge = pkce()
    query, hops = await login(oauth, challenge)
    assert hops[0].startswith(ORIGIN + "/oauth/login/psc?authz=")
    assert hops[1].startswith(provider.base + "/psc/authorize?")
    assert hops[2].startswith(ORIGIN + "/oauth/callback/psc?")
    seen = provider.seen["psc"]
    assert seen["acr_values"] == "eidas1" and seen["scope"] == "openid scope_all"
    assert seen["redirect_uri"] == ORIGIN + "/oauth/callback/psc"
    assert query["state"] == ["app-state"], query
    r = await exchange(oauth, query["code"][0], verifier)
    assert r.status_code == 200, r.text
    body = r.json()
    user = claims_of(body["access_token"])["fhirUser"]
    assert user.startswith("Practitioner/")
    id_claims = claims_of(body["id_token"])
    assert id_claims["nonce"] == "app-nonce" and id_claims["fhirUser"] == f"{TEST_BASE}/{user}"
    r = await oauth.get(f"{TEST_BASE}/{user}", headers={"Authorization": "Bearer " + body["access_token"]})
    assert r.status_code == 200, r.text
    practitioner = r.json()
    assert practitioner["identifier"] == [{"system": RPPS_SYSTEM, "value": "899700218896"}]
    assert practitioner["name"] == [{"family": "DOCTEUR", "given": ["Jean", "Paul"]}]
    # The next login finds the same Practitioner.
    verifier, challenge = pkce()
    query, _ = await login(oauth, challenge)
    r = await exchange(oauth, query["code"][0], verifier)
    assert claims_of(r.json()["access_token"])["fhirUser"] == user
    r = await client.get("Practitioner", params={"identifier": f"{RPPS_SYSTEM}|899700218896"})
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [user.split("/")[1]]


async def test_psc_finds_existing_practitioner(
    oauth: httpx.AsyncClient, client: httpx.AsyncClient, provider: FakeProvider
) -> None:
    r = await client.post(
        "Practitioner",
        json={"resourceType": "Practitioner", "identifier": [{"system": RPPS_SYSTEM, "value": "810000000001"}]},
    )
    assert r.status_code == 201, r.text
    existing = r.json()["id"]
    provider.users["psc"] = {"sub": "some-sub", "preferred_username": "810000000001"}
    verifier, challenge = pkce()
    query, _ = await login(oauth, challenge)
    r = await exchange(oauth, query["code"][0], verifier)
    assert claims_of(r.json()["access_token"])["fhirUser"] == f"Practitioner/{existing}"


@pytest.mark.parametrize("tweak", ["nonce", "signature", "aud", "deny"])
async def test_bad_provider_answers(oauth: httpx.AsyncClient, provider: FakeProvider, tweak: str) -> None:
    provider.tweak = tweak
    _, challenge = pkce()
    query, _ = await login(oauth, challenge)
    assert query["error"] == ["access_denied"], query
    assert query["state"] == ["app-state"] and "code" not in query


async def test_callback_state_is_single_use(oauth: httpx.AsyncClient, provider: FakeProvider) -> None:
    _, challenge = pkce()
    _, hops = await login(oauth, challenge)
    callback = hops[2]
    r = await oauth.get(callback)
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = await oauth.get(ORIGIN + "/oauth/callback/psc", params={"code": "x", "state": "forged"})
    assert r.status_code == 400


async def test_franceconnect_login(oauth: httpx.AsyncClient, client: httpx.AsyncClient, provider: FakeProvider) -> None:
    verifier, challenge = pkce()
    scope = "openid fhirUser launch/patient patient/*.rs"
    query, hops = await login(oauth, challenge, idp="franceconnect", scope=scope)
    assert hops[0].startswith(ORIGIN + "/oauth/login/franceconnect?")
    assert provider.seen["franceconnect"]["scope"] == "openid given_name family_name birthdate gender"
    r = await exchange(oauth, query["code"][0], verifier)
    assert r.status_code == 200, r.text
    body = r.json()
    user = claims_of(body["access_token"])["fhirUser"]
    assert user == f"Patient/{body['patient']}"
    r = await oauth.get(f"{TEST_BASE}/{user}", headers={"Authorization": "Bearer " + body["access_token"]})
    assert r.status_code == 200, r.text
    patient = r.json()
    sub = provider.users["franceconnect"]["sub"]
    assert patient["identifier"] == [{"system": FRANCECONNECT_SYSTEM, "value": sub}]
    assert patient["birthDate"] == "1962-08-24" and patient["gender"] == "female"
    assert patient["name"] == [{"family": "DUBOIS", "given": ["Angela", "Claire", "Louise"]}]
    # login_hint works too, and the same Patient is found again.
    verifier, challenge = pkce()
    query, _ = await login(oauth, challenge, login_hint="franceconnect", scope=scope)
    r = await exchange(oauth, query["code"][0], verifier)
    assert claims_of(r.json()["access_token"])["fhirUser"] == user


async def test_dev_login_still_works(oauth: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    r = await client.post("Practitioner", json={"resourceType": "Practitioner"})
    pid = r.json()["id"]
    verifier, challenge = pkce()
    query, hops = await login(oauth, challenge, user=f"Practitioner/{pid}")
    assert len(hops) == 1
    r = await exchange(oauth, query["code"][0], verifier)
    assert claims_of(r.json()["access_token"])["fhirUser"] == f"Practitioner/{pid}"


async def test_logins_are_audited(oauth: httpx.AsyncClient, client: httpx.AsyncClient, provider: FakeProvider) -> None:
    _, challenge = pkce()
    await login(oauth, challenge)
    provider.tweak = "nonce"
    await login(oauth, challenge)
    r = await client.get("AuditEvent", params={"subtype": "110122", "_sort": "-_lastUpdated", "_count": "2"})
    events = [e["resource"] for e in r.json()["entry"] if e["search"]["mode"] == "match"]
    assert [e["outcome"] for e in events] == ["4", "0"]
    assert events[0]["outcomeDesc"].startswith("psc: invalid id_token")
    assert events[1]["outcomeDesc"] == "psc: success"
    # Who logged in (the Practitioner the RPPS number maps to), through which client.
    assert events[1]["agent"][0]["who"]["reference"].startswith("Practitioner/")
    assert events[1]["agent"][0]["altId"] == "smart-app"
    assert "reference" not in events[0]["agent"][0]["who"]  # a refused login names no user


async def test_provider_disabled(ferretdb_uri: str, tmp_path: Path) -> None:
    from asgi_lifespan import LifespanManager

    from fhir_server.app import create_app

    clients_file = public_client_file(tmp_path, "app", REDIRECT, "patient/*.rs")
    app = create_app(make_settings(ferretdb_uri, tmp_path, oauth_clients_file=clients_file))
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as c:
            _, challenge = pkce()
            params = {
                "response_type": "code",
                "client_id": "app",
                "redirect_uri": REDIRECT,
                "scope": "patient/*.rs",
                "aud": TEST_BASE,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
            r = await c.get(ORIGIN + "/oauth/authorize", params=params)
            assert r.status_code == 501 and "Pro Santé Connect" in r.json()["error_description"]
            assert (await c.get(ORIGIN + "/oauth/login/psc", params={"authz": "x"})).status_code == 404
            assert (await c.get(ORIGIN + "/oauth/callback/psc", params={"state": "x"})).status_code == 404
