"""The embedded OAuth 2.0 authorisation server: SMART Backend Services and App Launch (auth/oauth.py)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc.jwk import ECKey, RSAKey

from fhir_server.auth.oauth import check_revoked
from fhir_server.auth.tokens import TokenVerifier
from fhir_server.config import Settings
from fhir_server.errors import FHIRError
from tests.conftest import TEST_BASE, make_settings, token_for
from tests.helpers import public_client_file

ORIGIN = "http://testserver"
TOKEN_URL = ORIGIN + "/oauth/token"
REDIRECT = "https://app.example.fr/callback"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP384R1())
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _public_jwk(key: object, kid: str) -> dict:
    jwk = (RSAKey if isinstance(key, rsa.RSAPrivateKey) else ECKey).import_key(key.public_key()).as_dict(private=False)  # type: ignore[attr-defined]
    return {**jwk, "kid": kid}


@pytest.fixture(scope="module")
async def settings(ferretdb_uri: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    data = tmp_path_factory.mktemp("data")
    clients_file = data / "clients.json"
    clients_file.write_text(
        json.dumps(
            [
                {
                    "client_id": "bi-rs384",
                    "token_endpoint_auth_method": "private_key_jwt",
                    "jwks": {"keys": [_public_jwk(RSA_KEY, "rs-1")]},
                    "scope": "system/*.rs",
                }
            ]
        )
    )
    return make_settings(ferretdb_uri, data, oauth_dev_login=True, oauth_clients_file=clients_file)


@pytest.fixture(scope="module")
async def oauth(app: object) -> AsyncIterator[httpx.AsyncClient]:
    """No default token, absolute URLs (the OAuth endpoints live outside /fhir)."""
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as c:
        yield c


def assertion(client_id: str, key: object, alg: str, kid: str, **overrides: object) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": TOKEN_URL, "exp": now + 240, "jti": uuid.uuid4().hex}
    claims.update(overrides)
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})  # type: ignore[arg-type]


def backend_form(signed: str, scope: str = "system/*.rs") -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "scope": scope,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": signed,
    }


@pytest.fixture(scope="module")
async def registered(client: httpx.AsyncClient) -> dict[str, str]:
    """The ES384 backend client and a public SMART app, through the admin API; a patient and a practitioner."""
    es = {
        "client_id": "bi-es384",
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": {"keys": [_public_jwk(EC_KEY, "ec-1")]},
        "scope": "system/Patient.rs system/Observation.rs",
    }
    app = {
        "client_id": "smart-app",
        "token_endpoint_auth_method": "none",
        "redirect_uris": [REDIRECT],
        "scope": "openid fhirUser launch launch/patient offline_access patient/*.rs user/*.rs",
    }
    for body in (es, app):
        r = await client.post(ORIGIN + "/oauth/clients", json=body)
        assert r.status_code == 201, r.text
    r = await client.post("Patient", json={"resourceType": "Patient", "name": [{"family": "Martin"}]})
    assert r.status_code == 201, r.text
    patient = r.json()["id"]
    r = await client.post("Practitioner", json={"resourceType": "Practitioner", "name": [{"family": "Durand"}]})
    practitioner = r.json()["id"]
    return {"patient": patient, "practitioner": practitioner}


async def test_well_known(anon_client: httpx.AsyncClient, settings: Settings) -> None:
    r = await anon_client.get(TEST_BASE + "/.well-known/smart-configuration")
    assert r.status_code == 200, r.text
    conf = r.json()
    assert conf["token_endpoint"] == TOKEN_URL
    assert conf["authorization_endpoint"] == ORIGIN + "/oauth/authorize"
    assert conf["code_challenge_methods_supported"] == ["S256"]
    assert {"private_key_jwt", "client_secret_basic"} <= set(conf["token_endpoint_auth_methods_supported"])
    assert {"launch-ehr", "client-confidential-asymmetric", "permission-v2", "sso-openid-connect"} <= set(
        conf["capabilities"]
    )
    assert conf["introspection_endpoint"] and conf["revocation_endpoint"]
    r = await anon_client.get(conf["jwks_uri"])
    assert r.status_code == 200
    (key,) = r.json()["keys"]
    assert key["kty"] == "RSA" and key["kid"] and "d" not in key
    # The published key verifies the tokens the server mints.
    public = jwt.PyJWK(key).key
    jwt.decode(token_for(settings), public, algorithms=["RS256"], audience=TEST_BASE)


async def test_backend_services_rs384(oauth: httpx.AsyncClient, registered: dict) -> None:
    signed = assertion("bi-rs384", RSA_KEY, "RS384", "rs-1")
    r = await oauth.post(TOKEN_URL, data=backend_form(signed, "system/*.rs system/*.cud"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    assert body["scope"] == "system/*.rs"  # requested ∩ registered
    headers = {"Authorization": "Bearer " + body["access_token"]}
    r = await oauth.get(f"{TEST_BASE}/Patient/{registered['patient']}", headers=headers)
    assert r.status_code == 200, r.text
    r = await oauth.post(TEST_BASE + "/Patient", json={"resourceType": "Patient"}, headers=headers)
    assert r.status_code == 403


async def test_backend_services_es384(oauth: httpx.AsyncClient, registered: dict) -> None:
    signed = assertion("bi-es384", EC_KEY, "ES384", "ec-1")
    r = await oauth.post(TOKEN_URL, data=backend_form(signed, "system/Patient.rs system/Practitioner.rs"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["scope"] == "system/Patient.rs"
    headers = {"Authorization": "Bearer " + body["access_token"]}
    r = await oauth.get(TEST_BASE + "/Patient", headers=headers)
    assert r.status_code == 200, r.text
    assert any(e["resource"]["id"] == registered["patient"] for e in r.json().get("entry", []))
    r = await oauth.get(TEST_BASE + "/Practitioner", headers=headers)
    assert r.status_code == 403


@pytest.mark.parametrize(
    "make",
    [
        # signed by another key (bad signature)
        lambda: assertion("bi-rs384", rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS384", "rs-1"),
        lambda: assertion("bi-rs384", RSA_KEY, "RS384", "rs-1", aud="https://elsewhere/oauth/token"),  # wrong aud
        lambda: assertion("bi-rs384", RSA_KEY, "RS384", "rs-1", exp=int(time.time()) - 600),  # expired
        lambda: assertion("bi-rs384", RSA_KEY, "RS384", "rs-1", exp=int(time.time()) + 3600),  # too far ahead
        lambda: assertion("bi-rs384", RSA_KEY, "RS256", "rs-1"),  # RS256 is not allowed for assertions
        lambda: assertion("bi-rs384", RSA_KEY, "RS384", "rs-1", sub="someone-else"),  # iss != sub
        lambda: assertion("nobody", RSA_KEY, "RS384", "rs-1"),  # unknown client
    ],
)
async def test_bad_assertions(oauth: httpx.AsyncClient, registered: dict, make) -> None:
    r = await oauth.post(TOKEN_URL, data=backend_form(make()))
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "invalid_client"


async def test_replayed_jti(oauth: httpx.AsyncClient, registered: dict) -> None:
    signed = assertion("bi-rs384", RSA_KEY, "RS384", "rs-1")
    assert (await oauth.post(TOKEN_URL, data=backend_form(signed))).status_code == 200
    r = await oauth.post(TOKEN_URL, data=backend_form(signed))
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert "jti" in r.json()["error_description"]


async def test_token_endpoint_errors(oauth: httpx.AsyncClient, registered: dict) -> None:
    r = await oauth.post(TOKEN_URL, data={"grant_type": "password", "username": "x"})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    r = await oauth.post(TOKEN_URL, data={"grant_type": "client_credentials", "scope": "system/*.rs"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    signed = assertion("bi-rs384", RSA_KEY, "RS384", "rs-1")
    r = await oauth.post(TOKEN_URL, data=backend_form(signed, "patient/*.rs"))
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    r = await oauth.post(TOKEN_URL, content=json.dumps({"grant_type": "client_credentials"}))
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


async def authorize(oauth: httpx.AsyncClient, challenge: str, **params: str) -> httpx.Response:
    query = {
        "response_type": "code",
        "client_id": "smart-app",
        "redirect_uri": REDIRECT,
        "scope": "openid fhirUser launch/patient offline_access patient/*.rs",
        "state": "st-42",
        "aud": TEST_BASE,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    query.update(params)
    return await oauth.get(ORIGIN + "/oauth/authorize", params=query)


def code_of(response: httpx.Response) -> str:
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == ["st-42"], query
    assert "code" in query, query
    return query["code"][0]


async def exchange(oauth: httpx.AsyncClient, code: str, verifier: str) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": "smart-app",
        "code_verifier": verifier,
    }
    return await oauth.post(TOKEN_URL, data=form)


async def test_authorization_code_pkce(oauth: httpx.AsyncClient, registered: dict) -> None:
    verifier, challenge = pkce()
    pid = registered["patient"]
    r = await authorize(oauth, challenge, user=f"Practitioner/{registered['practitioner']}", patient=pid)
    code = code_of(r)
    r = await exchange(oauth, code, verifier)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["patient"] == pid and body["refresh_token"] and body["id_token"]
    assert set(body["scope"].split()) == {"openid", "fhirUser", "launch/patient", "offline_access", "patient/*.rs"}
    headers = {"Authorization": "Bearer " + body["access_token"]}
    r = await oauth.get(f"{TEST_BASE}/Patient/{pid}", headers=headers)
    assert r.status_code == 200, r.text
    r = await oauth.get(f"{TEST_BASE}/Patient", headers=headers)
    assert r.status_code == 200 and [e["resource"]["id"] for e in r.json()["entry"]] == [pid]
    # The code is single-use.
    r = await exchange(oauth, code, verifier)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


async def test_authorization_code_wrong_verifier(oauth: httpx.AsyncClient, registered: dict) -> None:
    _, challenge = pkce()
    r = await authorize(oauth, challenge, user=f"Patient/{registered['patient']}")
    r = await exchange(oauth, code_of(r), pkce()[0])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


async def test_authorize_errors(oauth: httpx.AsyncClient, registered: dict) -> None:
    _, challenge = pkce()
    user = f"Practitioner/{registered['practitioner']}"
    # An unregistered redirect URI is never redirected to.
    r = await authorize(oauth, challenge, user=user, redirect_uri="https://evil.example/cb")
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = await authorize(oauth, challenge, user=user, code_challenge_method="plain")
    assert r.status_code == 302 and "error=invalid_request" in r.headers["location"]
    r = await authorize(oauth, challenge, user="Practitioner/does-not-exist")
    assert r.status_code == 302 and "error=access_denied" in r.headers["location"]


async def test_ehr_launch(oauth: httpx.AsyncClient, client: httpx.AsyncClient, registered: dict) -> None:
    r = await client.post(ORIGIN + "/oauth/launch", json={"patient": registered["patient"]})
    assert r.status_code == 201, r.text
    launch = r.json()["launch"]
    verifier, challenge = pkce()
    r = await authorize(
        oauth,
        challenge,
        user=f"Practitioner/{registered['practitioner']}",
        launch=launch,
        scope="launch openid fhirUser patient/*.rs user/Practitioner.rs",
    )
    r = await exchange(oauth, code_of(r), verifier)
    assert r.status_code == 200, r.text
    assert r.json()["patient"] == registered["patient"]
    assert "refresh_token" not in r.json()  # neither offline_access nor online_access


async def test_refresh_rotation(oauth: httpx.AsyncClient, registered: dict) -> None:
    verifier, challenge = pkce()
    r = await authorize(oauth, challenge, user=f"Patient/{registered['patient']}")
    first = (await exchange(oauth, code_of(r), verifier)).json()
    form = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"], "client_id": "smart-app"}
    r = await oauth.post(TOKEN_URL, data=form)
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"] and second["patient"] == registered["patient"]
    # The old refresh token is refused, and its reuse ends the grant (the new one too).
    r = await oauth.post(TOKEN_URL, data=form)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    r = await oauth.post(TOKEN_URL, data={**form, "refresh_token": second["refresh_token"]})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


async def introspect(oauth: httpx.AsyncClient, token: str) -> dict:
    signed = assertion("bi-rs384", RSA_KEY, "RS384", "rs-1")
    form = {
        "token": token,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": signed,
    }
    r = await oauth.post(ORIGIN + "/oauth/introspect", data=form)
    assert r.status_code == 200, r.text
    return r.json()


async def test_revocation(oauth: httpx.AsyncClient, registered: dict, app: object, settings: Settings) -> None:
    signed = assertion("bi-rs384", RSA_KEY, "RS384", "rs-1")
    access = (await oauth.post(TOKEN_URL, data=backend_form(signed))).json()["access_token"]
    info = await introspect(oauth, access)
    assert info["active"] is True and info["client_id"] == "bi-rs384" and info["scope"] == "system/*.rs"
    form = {"token": access, **backend_form(assertion("bi-rs384", RSA_KEY, "RS384", "rs-1"))}
    del form["grant_type"], form["scope"]
    r = await oauth.post(ORIGIN + "/oauth/revoke", data=form)
    assert r.status_code == 200, r.text
    assert (await introspect(oauth, access)) == {"active": False}
    assert (await introspect(oauth, "not-a-token")) == {"active": False}
    # Introspection needs an authenticated client.
    r = await oauth.post(ORIGIN + "/oauth/introspect", data={"token": access})
    assert r.status_code == 401
    # The hook the FHIR endpoints await after the token check refuses it too.
    with pytest.raises(FHIRError) as refused:
        await check_revoked(_with_token(app, access))
    assert refused.value.status == 401
    await check_revoked(_with_token(app, token_for(settings)))  # an unrevoked token passes


def _with_token(app: object, token: str) -> SimpleNamespace:
    access = TokenVerifier(app.state.server.settings.data_dir, TEST_BASE, TEST_BASE).verify(token)  # type: ignore[attr-defined]
    return SimpleNamespace(app=app, state=SimpleNamespace(access=access))


async def test_revoke_refresh_token_ends_grant(oauth: httpx.AsyncClient, registered: dict) -> None:
    verifier, challenge = pkce()
    r = await authorize(oauth, challenge, user=f"Patient/{registered['patient']}")
    tokens = (await exchange(oauth, code_of(r), verifier)).json()
    assert (await introspect(oauth, tokens["access_token"]))["active"] is True
    r = await oauth.post(ORIGIN + "/oauth/revoke", data={"token": tokens["refresh_token"], "client_id": "smart-app"})
    assert r.status_code == 200
    assert (await introspect(oauth, tokens["refresh_token"])) == {"active": False}
    assert (await introspect(oauth, tokens["access_token"])) == {"active": False}


async def test_client_admin_api(client: httpx.AsyncClient, anon_client: httpx.AsyncClient, registered: dict) -> None:
    r = await anon_client.get(ORIGIN + "/oauth/clients")
    assert r.status_code == 401
    r = await client.get(ORIGIN + "/oauth/clients")
    assert r.status_code == 200
    ids = {c["client_id"]: c["source"] for c in r.json()}
    assert ids["bi-rs384"] == "file" and ids["bi-es384"] == "api"
    body = {"client_id": "basic-app", "token_endpoint_auth_method": "client_secret_basic", "scope": "system/*.rs"}
    body["grant_types"] = ["client_credentials"]
    r = await client.post(ORIGIN + "/oauth/clients", json=body)
    assert r.status_code == 201, r.text
    secret = r.json()["client_secret"]
    basic = base64.b64encode(f"basic-app:{secret}".encode()).decode()
    r = await client.post(
        TOKEN_URL,
        data={"grant_type": "client_credentials", "scope": "system/*.rs"},
        headers={"Authorization": "Basic " + basic},
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        TOKEN_URL,
        data={"grant_type": "client_credentials", "scope": "system/*.rs"},
        headers={"Authorization": "Basic " + base64.b64encode(b"basic-app:wrong-secret-0000").decode()},
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    assert (await client.post(ORIGIN + "/oauth/clients", json=body)).status_code == 409
    assert (await client.delete(ORIGIN + "/oauth/clients/bi-rs384")).status_code == 409  # from the file
    assert (await client.delete(ORIGIN + "/oauth/clients/basic-app")).status_code == 204
    assert (await client.get(ORIGIN + "/oauth/clients/basic-app")).status_code == 404
    bad = {"client_id": "x", "token_endpoint_auth_method": "private_key_jwt", "scope": "system/*.rs", "jwks": {}}
    assert (await client.post(ORIGIN + "/oauth/clients", json=bad)).status_code == 400


async def test_dev_login_off(ferretdb_uri: str, tmp_path: Path) -> None:
    """Without FHIR_OAUTH_DEV_LOGIN the authorize endpoint says end-user login is not there yet."""
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
                "user": "Practitioner/x",
            }
            r = await c.get(ORIGIN + "/oauth/authorize", params=params)
            assert r.status_code == 501
            assert "Pro Santé Connect" in r.json()["error_description"]


async def test_revoked_token_is_refused_by_fhir_endpoints(anon_client: httpx.AsyncClient, settings, app) -> None:
    from fhir_server.auth.oauth import TOKENS
    from tests.conftest import token_for

    token = token_for(settings, "system/*.read")
    headers = {"Authorization": f"Bearer {token}"}
    assert (await anon_client.get("Patient", headers=headers)).status_code == 200
    claims = jwt_claims(token)
    # As another instance records a revocation: this one sees it at its next look (FHIR_REVOCATION_CHECK_SECONDS).
    revocation = {"_id": f"revoked:{claims['jti']}", "exp": claims["exp"] + 60, "at": int(time.time() * 1000)}
    await app.state.server.database.db[TOKENS].insert_one(revocation)
    deadline = time.monotonic() + 30 * settings.revocation_check_seconds
    for _ in range(10_000):  # polled: the instance looks again once its view is older than the setting
        r = await anon_client.get("Patient", headers=headers)
        if r.status_code != 200 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert r.status_code == 401
    assert "invalid_token" in r.headers["www-authenticate"]


def jwt_claims(token: str) -> dict:
    import base64
    import json

    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


async def test_logins_are_audited(oauth: httpx.AsyncClient, client: httpx.AsyncClient, registered: dict) -> None:
    good = backend_form(assertion("bi-rs384", RSA_KEY, "RS384", "rs-1"))
    assert (await oauth.post(TOKEN_URL, data=good)).status_code == 200
    bad = backend_form(assertion("bi-rs384", EC_KEY, "ES384", "rs-1"))
    assert (await oauth.post(TOKEN_URL, data=bad)).status_code == 401
    r = await client.get("AuditEvent", params={"subtype": "110122", "_sort": "-_lastUpdated", "_count": "2"})
    events = [e["resource"] for e in r.json()["entry"] if e["search"]["mode"] == "match"]
    assert [e["outcome"] for e in events] == ["4", "0"]
    assert all("private_key_jwt" in e["outcomeDesc"] for e in events)
    assert events[1]["agent"][0]["who"]["identifier"]["value"] == "bi-rs384"


async def test_openid_discovery_matches_tokens(anon_client: httpx.AsyncClient, settings: Settings) -> None:
    from tests.conftest import token_for

    oidc = (await anon_client.get(".well-known/openid-configuration")).json()
    assert oidc["issuer"] == TEST_BASE
    assert jwt_claims(token_for(settings))["iss"] == oidc["issuer"]
    smart = (await anon_client.get(".well-known/smart-configuration")).json()
    assert smart["issuer"] == oidc["issuer"] and smart["jwks_uri"] == oidc["jwks_uri"]
