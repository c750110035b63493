"""The fallback local login (auth/local_login.py): password, then a one-time code received by a real SMTP
server (aiosmtpd on 127.0.0.1) or by SMS through a real HTTP gateway sink, both run by the test."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from fhir_server.auth.local_login import COOKIE, SESSION_PREFIX, USERS, hash_password
from fhir_server.auth.oauth import CODES
from fhir_server.config import Settings
from tests.conftest import TEST_BASE, make_settings
from tests.helpers import public_client_file
from tests.http_sink import Sink, serve
from tests.smtp_sink import Mailbox, run_mailbox

ORIGIN = "http://testserver"
REDIRECT = "https://app.example.fr/callback"
LOGIN_URL = ORIGIN + "/oauth/login/local"
PASSWORD = "Tres-Secret-2026"


@pytest.fixture(scope="module")
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    yield from run_mailbox()


@pytest.fixture(scope="module")
def sms_gateway() -> Iterator[Sink]:
    yield from serve(Sink())


@pytest.fixture(scope="module")
async def settings(
    ferretdb_uri: str, tmp_path_factory: pytest.TempPathFactory, mailbox: tuple[Mailbox, int], sms_gateway: Sink
) -> Settings:
    data = tmp_path_factory.mktemp("data")
    clients_file = public_client_file(data, "smart-app", REDIRECT, "openid fhirUser offline_access user/*.rs")
    return make_settings(
        ferretdb_uri,
        data,
        oauth_clients_file=clients_file,
        local_login=True,
        smtp_host="127.0.0.1",
        smtp_port=mailbox[1],
        smtp_from="fhir@example.fr",
        sms_gateway_url=sms_gateway.base + "/sms",
        sms_gateway_token="gateway-secret",
    )


@pytest.fixture(scope="module")
async def oauth(app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as c:
        yield c


def db(app: Any) -> Any:
    return app.state.server.database.db


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def claims_of(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


async def practitioner(client: httpx.AsyncClient) -> str:
    r = await client.post("Practitioner", json={"resourceType": "Practitioner"})
    assert r.status_code == 201, r.text
    return "Practitioner/" + r.json()["id"]


async def account(client: httpx.AsyncClient, login: str, **extra: Any) -> dict[str, Any]:
    body = {
        "login": login,
        "user": await practitioner(client),
        "email": f"{login}@example.fr",
        "password": PASSWORD,
        **extra,
    }
    r = await client.post(ORIGIN + "/oauth/users", json=body)
    assert r.status_code == 201, r.text
    return r.json()


async def start(oauth: httpx.AsyncClient, challenge: str, **params: str) -> httpx.Response:
    """Authorize, follow to the password form; a fresh cookie jar per login."""
    oauth.cookies.clear()
    query = {
        "response_type": "code",
        "client_id": "smart-app",
        "redirect_uri": REDIRECT,
        "scope": "openid fhirUser user/*.rs",
        "state": "app-state",
        "aud": TEST_BASE,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **params,
    }
    r = await oauth.get(ORIGIN + "/oauth/authorize", params=query)
    assert r.status_code == 302, r.text
    assert r.headers["location"].startswith(LOGIN_URL + "?authz=")
    r = await oauth.get(r.headers["location"])
    assert r.status_code == 200 and 'name="password"' in r.text, r.text
    cookie = r.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower() and "secure" not in cookie.lower()
    return r


async def password(oauth: httpx.AsyncClient, login: str, pw: str = PASSWORD) -> httpx.Response:
    return await oauth.post(LOGIN_URL, data={"login": login, "password": pw})


async def code(oauth: httpx.AsyncClient, value: str) -> httpx.Response:
    return await oauth.post(LOGIN_URL, data={"code": value})


async def exchange(oauth: httpx.AsyncClient, location: str, verifier: str) -> httpx.Response:
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == ["app-state"], query
    form = {
        "grant_type": "authorization_code",
        "code": query["code"][0],
        "redirect_uri": REDIRECT,
        "client_id": "smart-app",
        "code_verifier": verifier,
    }
    return await oauth.post(ORIGIN + "/oauth/token", data=form)


async def login_events(client: httpx.AsyncClient, count: int) -> list[str]:
    """The last `count` login events of the local login (the token endpoint's are left out)."""
    r = await client.get("AuditEvent", params={"subtype": "110122", "_sort": "-_lastUpdated", "_count": "20"})
    entries = [e["resource"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match"]
    return [e["outcomeDesc"] for e in entries if e["outcomeDesc"].startswith("local-")][:count]


def body(acct: dict[str, Any]) -> dict[str, Any]:
    return {k: acct[k] for k in ("login", "user", "email")}


def wrong(value: str) -> str:
    return f"{(int(value) + 1) % 10**6:06d}"


# ---- tests ----------------------------------------------------------------------------------------


async def test_full_flow(
    oauth: httpx.AsyncClient, client: httpx.AsyncClient, mailbox: tuple[Mailbox, int], app: Any
) -> None:
    acct = await account(client, "JDupont")
    assert acct["login"] == "jdupont" and "password_hash" not in acct
    stored = await db(app)[USERS].find_one({"_id": "jdupont"})
    assert stored["password_hash"].startswith("scrypt$") and PASSWORD not in json.dumps(stored, default=str)
    verifier, challenge = pkce()
    await start(oauth, challenge, idp="local")
    r = await password(oauth, "JDupont")
    assert r.status_code == 200 and 'name="code"' in r.text, r.text
    otp = mailbox[0].last_code("jdupont@example.fr")
    r = await code(oauth, otp)
    assert r.status_code == 302, r.text
    assert r.headers["location"].startswith(REDIRECT + "?")
    r = await exchange(oauth, r.headers["location"], verifier)
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    assert claims_of(token)["fhirUser"] == acct["user"]
    r = await oauth.get(f"{TEST_BASE}/{acct['user']}", headers={"Authorization": "Bearer " + token})
    assert r.status_code == 200, r.text
    # The session and the code are single use.
    assert (await code(oauth, otp)).status_code == 400
    assert await db(app)[CODES].count_documents({"login": "jdupont"}) == 0
    events = await login_events(client, 3)
    assert events[0] == "local-otp: success" and "local-password: success" in events


async def test_code_by_sms(
    oauth: httpx.AsyncClient, client: httpx.AsyncClient, sms_gateway: Sink, mailbox: tuple[Mailbox, int]
) -> None:
    r = await client.patch(ORIGIN + "/oauth/users/texto", json={"phone": "12"})
    assert r.status_code == 400 and "phone" in r.json()["error_description"]
    acct = await account(client, "texto", phone="06 12 34 56 78", otp_channel="sms")
    assert acct["phone"] == "+33612345678" and acct["otp_channel"] == "sms"
    r = await client.patch(ORIGIN + "/oauth/users/texto", json={"phone": "12"})
    assert r.status_code == 400 and "phone" in r.json()["error_description"]
    verifier, challenge = pkce()
    await start(oauth, challenge)
    mails_before = len(mailbox[0].messages)
    r = await password(oauth, "texto")
    assert r.status_code == 200 and 'name="code"' in r.text, r.text
    sms = sms_gateway.to("/sms")[-1]
    assert sms.headers["authorization"] == "Bearer gateway-secret"
    assert sms.json()["to"] == "+33612345678"
    otp = re.search(r"\b(\d{6})\b", sms.json()["text"]).group(1)  # type: ignore[union-attr]
    assert len(mailbox[0].messages) == mails_before  # not by e-mail too
    r = await code(oauth, otp)
    assert r.status_code == 302, r.text
    r = await exchange(oauth, r.headers["location"], verifier)
    assert claims_of(r.json()["access_token"])["fhirUser"] == acct["user"]


async def test_sms_gateway_down_ends_the_login(
    oauth: httpx.AsyncClient, client: httpx.AsyncClient, sms_gateway: Sink
) -> None:
    await account(client, "texto2", phone="+33611111111", otp_channel="sms")
    _, challenge = pkce()
    await start(oauth, challenge)
    sms_gateway.failures["/sms"] = 1
    r = await password(oauth, "texto2")
    assert r.status_code == 503 and 'name="code"' not in r.text
    assert (await login_events(client, 1))[0].startswith("local-otp: the code could not be sent to 'texto2'")


async def test_an_administrator_switches_the_local_login_off(
    oauth: httpx.AsyncClient, client: httpx.AsyncClient, mailbox: tuple[Mailbox, int]
) -> None:
    """Spec téléexpertise §8 test 15: with the mode switched off by an administrator, password+OTP → 401."""
    await account(client, "offmode")
    _, challenge = pkce()
    await start(oauth, challenge)  # a login already under way when the mode is switched off
    anonymous = await oauth.put(ORIGIN + "/oauth/login-modes", json={"disabled": ["local"]})
    assert anonymous.status_code == 401
    r = await client.put(ORIGIN + "/oauth/login-modes", json={"disabled": ["nope"]})
    assert r.status_code == 400
    r = await client.put(ORIGIN + "/oauth/login-modes", json={"disabled": ["local"]})
    assert r.status_code == 200 and r.json()["disabled"] == ["local"]
    try:
        r = await password(oauth, "offmode")
        assert r.status_code == 401 and 'name="code"' not in r.text
        assert "switched off" in r.json()["error_description"]
        assert (await login_events(client, 1))[0].startswith("local-login: the login mode 'local' is switched off")
        r = await client.get("AuditEvent", params={"subtype": "110129"})
        assert r.json()["entry"][0]["resource"]["outcomeDesc"] == "login modes switched off: local"
    finally:
        r = await client.put(ORIGIN + "/oauth/login-modes", json={"disabled": []})
        assert r.status_code == 200 and r.json()["disabled"] == []
    # Switched on again: the login works.
    _, challenge = pkce()
    await start(oauth, challenge)
    r = await password(oauth, "offmode")
    assert r.status_code == 200 and 'name="code"' in r.text


async def test_wrong_password(oauth: httpx.AsyncClient, client: httpx.AsyncClient, app: Any) -> None:
    await account(client, "wrongpw")
    _, challenge = pkce()
    await start(oauth, challenge)
    r = await password(oauth, "wrongpw", PASSWORD + "x")
    assert r.status_code == 401 and "incorrect" in r.text and 'name="password"' in r.text
    r = await password(oauth, "nobody", PASSWORD)
    assert r.status_code == 401 and "incorrect" in r.text
    assert (await db(app)[USERS].find_one({"_id": "wrongpw"}))["failures"] == 1
    events = await login_events(client, 2)
    assert events[0].startswith("local-password: unknown login")
    assert events[1].startswith("local-password: wrong password for 'wrongpw'")
    # Success resets the count.
    r = await password(oauth, "wrongpw")
    assert r.status_code == 200 and 'name="code"' in r.text
    assert (await db(app)[USERS].find_one({"_id": "wrongpw"}))["failures"] == 0


async def test_lockout(oauth: httpx.AsyncClient, client: httpx.AsyncClient, app: Any) -> None:
    await account(client, "locky")
    _, challenge = pkce()
    await start(oauth, challenge)
    for _ in range(5):
        r = await password(oauth, "locky", "Not-The-Password-1")
        assert r.status_code == 401
    r = await password(oauth, "locky")  # the right password, but locked: the same generic answer
    assert r.status_code == 401 and "incorrect" in r.text and 'name="code"' not in r.text
    doc = await db(app)[USERS].find_one({"_id": "locky"})
    assert doc["locked_until"] > 0
    events = await login_events(client, 2)
    assert events[0] == "local-password: account 'locky' is locked"
    assert "account locked after 5 failures" in events[1]
    # Once the lock has passed (aged here), the right password works again; the admin can also unlock.
    await db(app)[USERS].update_one({"_id": "locky"}, {"$set": {"locked_until": 1}})
    r = await password(oauth, "locky")
    assert r.status_code == 200 and 'name="code"' in r.text
    r = await client.patch(ORIGIN + "/oauth/users/locky", json={"unlock": True})
    assert r.status_code == 200 and r.json()["failures"] == 0


async def test_wrong_then_right_code(
    oauth: httpx.AsyncClient, client: httpx.AsyncClient, mailbox: tuple[Mailbox, int]
) -> None:
    acct = await account(client, "codey")
    verifier, challenge = pkce()
    await start(oauth, challenge)
    assert (await password(oauth, "codey")).status_code == 200
    otp = mailbox[0].last_code("codey@example.fr")
    r = await code(oauth, wrong(otp))
    assert r.status_code == 401 and "Code incorrect" in r.text
    r = await code(oauth, otp)
    assert r.status_code == 302, r.text
    r = await exchange(oauth, r.headers["location"], verifier)
    assert claims_of(r.json()["access_token"])["fhirUser"] == acct["user"]
    events = await login_events(client, 2)
    assert events[0] == "local-otp: success" and events[1] == "local-otp: wrong code for 'codey'"


async def test_code_attempts_and_expiry(
    oauth: httpx.AsyncClient, client: httpx.AsyncClient, mailbox: tuple[Mailbox, int], app: Any
) -> None:
    await account(client, "tries")
    _, challenge = pkce()
    await start(oauth, challenge)
    await password(oauth, "tries")
    otp = mailbox[0].last_code("tries@example.fr")
    assert (await code(oauth, wrong(otp))).status_code == 401
    assert (await code(oauth, wrong(otp))).status_code == 401
    r = await code(oauth, wrong(otp))
    assert r.status_code == 401 and "Trop de codes" in r.text
    r = await code(oauth, otp)  # the session is gone
    assert r.status_code == 400 and "Relancez" in r.text
    # Expiry: the code's deadline is aged.
    await start(oauth, challenge)
    await password(oauth, "tries")
    otp = mailbox[0].last_code("tries@example.fr")
    await db(app)[CODES].update_one({"login": "tries"}, {"$set": {"otp_exp": 1}})
    r = await code(oauth, otp)
    assert r.status_code == 401 and "expiré" in r.text
    assert (await login_events(client, 1))[0] == "local-otp: code expired for 'tries'"


async def test_idle_session(oauth: httpx.AsyncClient, client: httpx.AsyncClient, app: Any) -> None:
    await account(client, "sleepy")
    _, challenge = pkce()
    await start(oauth, challenge)
    sid = oauth.cookies[COOKIE]
    key = SESSION_PREFIX + hashlib.sha256(sid.encode()).hexdigest()
    await db(app)[CODES].update_one({"_id": key}, {"$set": {"last": 1}})
    r = await password(oauth, "sleepy")
    assert r.status_code == 400 and "inactivité" in r.text
    assert await db(app)[CODES].find_one({"_id": key}) is None
    assert (await login_events(client, 1))[0] == "local-password: login session expired"
    # No cookie, or a forged one: refused too.
    oauth.cookies.clear()
    assert (await password(oauth, "sleepy")).status_code == 400
    oauth.cookies.set(COOKIE, "forged", domain="testserver")
    assert (await password(oauth, "sleepy")).status_code == 400


@pytest.mark.parametrize(
    ("pw", "why"),
    [
        ("Short-1a", "at least 12"),
        ("alllowercaseletters", "at least 3 of"),
        ("lowercase-and-other", "at least 3 of"),
        ("Xx-policyuser-2026", "must not contain the login"),
    ],
)
async def test_password_policy(client: httpx.AsyncClient, pw: str, why: str) -> None:
    body = {"login": "policyuser", "user": await practitioner(client), "email": "p@example.fr", "password": pw}
    r = await client.post(ORIGIN + "/oauth/users", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_password" and why in r.json()["error_description"]


async def test_users_admin_api(client: httpx.AsyncClient, anon_client: httpx.AsyncClient) -> None:
    acct = await account(client, "admin-api")
    r = await client.post(ORIGIN + "/oauth/users", json={**body(acct), "password": PASSWORD})
    assert r.status_code == 409
    r = await client.post(
        ORIGIN + "/oauth/users",
        json={"login": "x", "user": "Practitioner/nope", "email": "a@b.fr", "password": PASSWORD},
    )
    assert r.status_code == 400 and "existing" in r.json()["error_description"]
    r = await client.patch(ORIGIN + "/oauth/users/admin-api", json={"password": "weak"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_password"
    r = await client.patch(ORIGIN + "/oauth/users/admin-api", json={"password": "Another-Good-One-7"})
    assert r.status_code == 200 and "password_hash" not in r.json()
    assert (await client.get(ORIGIN + "/oauth/users/admin-api")).json()["email"] == "admin-api@example.fr"
    assert (await anon_client.post(ORIGIN + "/oauth/users", json={})).status_code == 401
    assert (await anon_client.get(ORIGIN + "/oauth/users/admin-api")).status_code == 401
    assert (await client.delete(ORIGIN + "/oauth/users/admin-api")).status_code == 204
    assert (await client.get(ORIGIN + "/oauth/users/admin-api")).status_code == 404


async def test_with_psc_and_https(ferretdb_uri: str, tmp_path: Any, client: httpx.AsyncClient) -> None:
    """Local next to Pro Santé Connect: chosen by idp=local; Secure cookie under an https base; no SMTP
    server configured: the code cannot be sent (503)."""
    from asgi_lifespan import LifespanManager

    from fhir_server.app import create_app

    clients_file = public_client_file(tmp_path, "smart-app", REDIRECT, "openid fhirUser user/*.rs")
    settings = make_settings(
        ferretdb_uri,
        tmp_path,
        oauth_clients_file=clients_file,
        oauth_base_url="https://auth.example.fr",
        local_login=True,
        psc_discovery_url="http://127.0.0.1:9/psc/.well-known/openid-configuration",
        psc_client_id="x",
        psc_client_secret="y" * 16,
    )
    app = create_app(settings)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as c:
            _, challenge = pkce()
            query = {
                "response_type": "code",
                "client_id": "smart-app",
                "redirect_uri": REDIRECT,
                "scope": "openid fhirUser user/*.rs",
                "aud": TEST_BASE,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
            r = await c.get("/oauth/authorize", params=query)
            assert r.headers["location"].startswith("https://auth.example.fr/oauth/login/psc?")
            r = await c.get("/oauth/authorize", params={**query, "idp": "local"})
            location = r.headers["location"]
            assert location.startswith("https://auth.example.fr/oauth/login/local?authz=")
            r = await c.get("/oauth/login/local?" + urlsplit(location).query)
            assert r.status_code == 200 and "; secure" in r.headers["set-cookie"].lower()
            sid = r.headers["set-cookie"].split(";")[0].split("=", 1)[1]
            pid = (await practitioner(client)).split("/")[1]
            await db(app)[USERS].insert_one(
                {
                    "_id": "nomail",
                    "user": f"Practitioner/{pid}",
                    "email": "n@example.fr",
                    "failures": 0,
                    "password_hash": hash_password(PASSWORD),
                }
            )
            r = await c.post(
                "/oauth/login/local",
                data={"login": "nomail", "password": PASSWORD},
                headers={"Cookie": f"{COOKIE}={sid}"},
            )
            assert r.status_code == 503 and "envoyé" in r.text
    disabled = create_app(make_settings(ferretdb_uri, tmp_path, oauth_clients_file=clients_file))
    async with LifespanManager(disabled):
        transport = httpx.ASGITransport(app=disabled)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as c:
            assert (await c.get("/oauth/login/local", params={"authz": "x"})).status_code == 404
            assert (await c.post("/oauth/login/local", data={"login": "a"})).status_code == 404
