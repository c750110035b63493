"""Authentication flows of the téléexpertise (spec §4.7, §8 tests 13 and 15) against real peers.

Flow 1, the contextual call with the structure SI's OpenID token (auth/structure_token.py, RFC 8693 token
exchange): a structure's OpenID provider (discovery + JWKS served over HTTP by uvicorn on a local port) is
trusted for S2 (by FINESS, keys through discovery) and S3 (by SIRET, keys by jwks_uri); the test plays the
EHR that holds the id_token its provider signed (joserfc) and exchanges it at /oauth/token.

Test 13, first bullet: a professional of the annuaire logs in through Pro Santé Connect (the fake provider of
tests/test_federation.py) and another with password + code (the real SMTP sink); each login is one AuditEvent
with its mode, which the administrators of their structure see and the others do not.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import OctKey, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fhir_server.auth.structure_token import (
    ACCESS_TOKEN_TYPE,
    ID_TOKEN_TYPE,
    INTERNAL_ID_SYSTEM,
    JWT_TOKEN_TYPE,
    TOKEN_EXCHANGE,
    ConfigError,
    parse_issuers,
)
from fhir_server.config import Settings
from tests.conftest import TEST_BASE, make_settings
from tests.http_sink import serve
from tests.smtp_sink import Mailbox, run_mailbox
from tests.test_federation import SECRETS, FakeProvider, pkce
from tests.test_federation import exchange as code_exchange
from tests.test_federation import login as psc_login
from tests.test_local_login import code as otp_step
from tests.test_local_login import password as password_step
from tests.test_local_login import start as local_start
from tests.test_teleexpertise_world import JSON, RPPS, World, build_world, practitioner, role

ORIGIN = "http://testserver"
TOKEN_URL = ORIGIN + "/oauth/token"
REDIRECT = "https://app.example.fr/callback"
EHR_SECRETS = {"ehr-s2": "ehr-s2-secret-0123456789", "ehr-s3": "ehr-s3-secret-0123456789"}
AUDIENCES = {"s2": "teleexpertise-s2", "s3": "teleexpertise-s3"}
S3_SIRET = "12345678900011"  # tests/test_teleexpertise_world.py STRUCTURES


# ---- the structure's OpenID provider ------------------------------------------------------------------------


class StructureProvider:
    """The OpenID provider of each structure's SI (`/s2`, `/s3`, `/rogue`): discovery and JWKS only; the tokens
    it issues are signed by `sign` (the EHR got them when its user logged in there)."""

    def __init__(self) -> None:
        self.base = ""
        self.keys = {realm: self.new_key(f"{realm}-1") for realm in ("s2", "s3", "s9", "rogue")}
        self.jwks_hits: dict[str, int] = {}
        self.app = Starlette(
            routes=[
                Route("/{realm}/.well-known/openid-configuration", self.discovery),
                Route("/{realm}/jwks", self.jwks),
            ]
        )

    @staticmethod
    def new_key(kid: str) -> RSAKey:
        return RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})

    def issuer(self, realm: str) -> str:
        return f"{self.base}/{realm}"

    async def discovery(self, request: Request) -> Response:
        iss = self.issuer(request.path_params["realm"])
        return JSONResponse(
            {
                "issuer": iss,
                "authorization_endpoint": iss + "/auth",
                "token_endpoint": iss + "/token",
                "jwks_uri": iss + "/jwks",
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        )

    async def jwks(self, request: Request) -> Response:
        realm = request.path_params["realm"]
        self.jwks_hits[realm] = self.jwks_hits.get(realm, 0) + 1
        return JSONResponse({"keys": [self.keys[realm].as_dict(private=False)]})

    def sign(self, realm: str, *, key: Any = None, alg: str = "RS256", **claims: Any) -> str:
        now = int(time.time())
        body = {
            "iss": self.issuer(realm),
            "aud": AUDIENCES.get(realm, "teleexpertise"),
            "sub": secrets.token_hex(8),
            "iat": now,
            "exp": now + 300,
            "auth_time": now,
            **claims,
        }
        body = {k: v for k, v in body.items() if v is not None}
        key = key or self.keys[realm]
        return jwt.encode({"alg": alg, "kid": key.kid or f"{realm}-1"}, body, key)


@pytest.fixture(scope="module")
def idp() -> Iterator[StructureProvider]:
    yield from serve(StructureProvider())  # type: ignore[arg-type, misc]


@pytest.fixture(scope="module")
def psc() -> Iterator[FakeProvider]:
    yield from serve(FakeProvider())  # type: ignore[arg-type, misc]


@pytest.fixture(scope="module")
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    yield from run_mailbox()


@pytest.fixture(scope="module")
async def settings(
    ferretdb_uri: str,
    tmp_path_factory: pytest.TempPathFactory,
    idp: StructureProvider,
    psc: FakeProvider,
    mailbox: tuple[Mailbox, int],
) -> Settings:
    data = tmp_path_factory.mktemp("data")
    clients_file = data / "clients.json"
    scope = "openid fhirUser launch offline_access user/*.cruds patient/*.rs"
    clients = [
        {
            "client_id": "smart-app",
            "token_endpoint_auth_method": "none",
            "redirect_uris": [REDIRECT],
            "scope": "openid fhirUser user/*.rs",
        },
        *(
            {
                "client_id": cid,
                "token_endpoint_auth_method": "client_secret_basic",
                "client_secret": secret,
                "scope": scope,
                "grant_types": [TOKEN_EXCHANGE],
            }
            for cid, secret in EHR_SECRETS.items()
        ),
    ]
    clients_file.write_text(json.dumps(clients))
    issuers = [
        {
            "issuer": idp.issuer("s2"),
            "audience": AUDIENCES["s2"],
            "structure": "https://finess.esante.gouv.fr|340000002",
            "rpps_claim": "rpps",
            "max_age_seconds": 600,
        },
        {
            "issuer": idp.issuer("s3"),
            "audience": AUDIENCES["s3"],
            "structure": S3_SIRET,
            "rpps_claim": "rpps",
            "internal_id_claim": "matricule",
            "jwks_uri": idp.issuer("s3") + "/jwks",
            "clients": ["ehr-s3"],
        },
        {"issuer": idp.issuer("s9"), "audience": "teleexpertise", "structure": "999999999", "rpps_claim": "rpps"},
    ]
    return make_settings(
        ferretdb_uri,
        data,
        oauth_clients_file=clients_file,
        trusted_structure_issuers=issuers,
        psc_discovery_url=psc.base + "/psc/.well-known/openid-configuration",
        psc_client_id=SECRETS["psc"][0],
        psc_client_secret=SECRETS["psc"][1],
        local_login=True,
        smtp_host="127.0.0.1",
        smtp_port=mailbox[1],
        smtp_from="fhir@example.fr",
    )


@pytest.fixture(scope="module")
async def oauth(app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as c:
        yield c


@pytest.fixture(scope="module")
async def world(anon_client: httpx.AsyncClient, client: httpx.AsyncClient, settings: Settings) -> World:
    return await build_world(anon_client, dict(client.headers), settings)


@pytest.fixture(scope="module")
async def dossiers(world: World) -> dict[str, str]:
    """A dossier sent from C1 (S1) to communauté A (S2), and one sent to D (S3) only."""
    to_a, _ = await world.sent_dossier(world.orgs["A"])
    to_d, _ = await world.sent_dossier(world.orgs["D"])
    return {"A": to_a, "D": to_d}


# ---- helpers --------------------------------------------------------------------------------------------------


async def rpps_of(world: World, user: str) -> str:
    r = await world.client.get(world.people[user], headers=world.admin)
    return next(i["value"] for i in r.json()["identifier"] if i["system"] == RPPS)


async def exchange(
    oauth: httpx.AsyncClient, subject_token: str, client_id: str = "ehr-s2", **form: str
) -> httpx.Response:
    data = {
        "grant_type": TOKEN_EXCHANGE,
        "subject_token": subject_token,
        "subject_token_type": ID_TOKEN_TYPE,
        **form,
    }
    return await oauth.post(TOKEN_URL, data=data, auth=(client_id, EHR_SECRETS.get(client_id, "")))


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + token}


def refused(r: httpx.Response, error: str = "invalid_grant", status: int = 400) -> str:
    """The OAuth error answer (never a traceback); its description."""
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"] == error, body
    assert "access_token" not in body
    return body["error_description"]


async def logins(world: World, user: str, **params: Any) -> list[dict[str, Any]]:
    """Login AuditEvents (DCM 110122) as `user` finds them, newest first."""
    r = await world.get(user, "AuditEvent", subtype="110122", _sort="-_lastUpdated", _count=200, **params)
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match"]


def agents(event: dict[str, Any]) -> set[str]:
    return {a["who"]["reference"] for a in event.get("agent", []) if "reference" in a.get("who", {})}


def recorded(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["recorded"].replace("Z", "+00:00")).timestamp()


# ---- flow 1: the structure's OpenID token ---------------------------------------------------------------------


async def test_ehr_launch_opens_the_dossier_with_no_login(
    oauth: httpx.AsyncClient, world: World, idp: StructureProvider, dossiers: dict[str, str], app: Any
) -> None:
    """Spec §8 test 15, first bullet: one token exchange, then the dossier reads with no login prompt."""
    pending = app.state.server.database.db["oauth_codes"]
    before = await pending.count_documents({})
    subject = idp.sign("s2", rpps=await rpps_of(world, "a1"))
    scope = "openid fhirUser user/*.cruds"
    r = await exchange(oauth, subject, dossier=f"ServiceRequest/{dossiers['A']}", scope=scope)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["issued_token_type"] == ACCESS_TOKEN_TYPE and body["token_type"] == "Bearer"
    assert body["scope"] == scope and body["expires_in"] > 0
    assert body["fhirContext"] == [{"reference": f"ServiceRequest/{dossiers['A']}"}]
    assert "refresh_token" not in body
    claims = claims_of(body["access_token"])
    assert claims["fhirUser"] == world.people["a1"] and claims["aud"] == TEST_BASE
    assert claims_of(body["id_token"])["fhirUser"] == f"{TEST_BASE}/{world.people['a1']}"
    # The dossier opens with that token alone: no /oauth/authorize, no pending login was created.
    assert await pending.count_documents({}) == before
    r = await oauth.get(f"{TEST_BASE}/ServiceRequest/{dossiers['A']}", headers=bearer(body["access_token"]))
    assert r.status_code == 200, r.text
    assert body["patient"] == r.json()["subject"]["reference"].split("/")[1]
    # The téléexpertise rules still apply: a dossier of another communauté stays hidden.
    r = await oauth.get(f"{TEST_BASE}/ServiceRequest/{dossiers['D']}", headers=bearer(body["access_token"]))
    assert r.status_code == 404, r.text


async def test_a_jwt_access_token_and_the_default_scopes(
    oauth: httpx.AsyncClient, world: World, idp: StructureProvider
) -> None:
    subject = idp.sign("s2", rpps=await rpps_of(world, "a2"))
    r = await exchange(oauth, subject, subject_token_type=JWT_TOKEN_TYPE)
    assert r.status_code == 200, r.text
    body = r.json()
    # The client's scopes, less those an exchanged token cannot use (launch, refresh).
    assert body["scope"].split() == ["openid", "fhirUser", "user/*.cruds", "patient/*.rs"]
    assert "refresh_token" not in body and "fhirContext" not in body and "patient" not in body


async def test_the_context_of_a_smart_launch(
    oauth: httpx.AsyncClient, client: httpx.AsyncClient, world: World, idp: StructureProvider, dossiers: dict
) -> None:
    """The EHR may create a SMART launch (POST /oauth/launch) and pass its id: the patient comes back."""
    pid = await world.patient("a1", family="Lancement")
    r = await client.post(ORIGIN + "/oauth/launch", json={"patient": pid, "client_id": "ehr-s2"})
    assert r.status_code == 201, r.text
    launch = r.json()["launch"]
    subject = idp.sign("s2", rpps=await rpps_of(world, "a1"))
    r = await exchange(oauth, subject, launch=launch, scope="fhirUser user/*.cruds")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["patient"] == pid and claims_of(body["access_token"])["patient"] == pid
    # A launch of another client, an unknown one, or one about another patient than the dossier: refused.
    assert "launch" in refused(await exchange(oauth, subject, launch="nope"), "invalid_request")
    r = await exchange(oauth, subject, launch=launch, dossier=f"ServiceRequest/{dossiers['A']}")
    assert "different patients" in refused(r, "invalid_request")
    other = idp.sign("s3", rpps=await rpps_of(world, "d1"))
    assert "launch" in refused(await exchange(oauth, other, "ehr-s3", launch=launch), "invalid_request")


async def test_a_dossier_the_user_cannot_see_is_not_a_context(
    oauth: httpx.AsyncClient, world: World, idp: StructureProvider, dossiers: dict[str, str]
) -> None:
    subject = idp.sign("s2", rpps=await rpps_of(world, "a1"))
    hidden = refused(await exchange(oauth, subject, dossier=f"ServiceRequest/{dossiers['D']}"), "invalid_request")
    missing = refused(await exchange(oauth, subject, dossier="ServiceRequest/nope"), "invalid_request")
    assert hidden.endswith("is not known") and missing.endswith("is not known")  # existence does not leak
    refused(await exchange(oauth, subject, dossier=f"Patient/{dossiers['D']}"), "invalid_request")


async def test_an_internal_id_prefixed_by_the_structure(
    oauth: httpx.AsyncClient, client: httpx.AsyncClient, world: World, idp: StructureProvider
) -> None:
    """A professional without RPPS is known by the structure's internal id, prefixed by its SIRET (R-51)."""
    secretary = practitioner("SECRETAIRE", None)
    secretary["identifier"] = [{"system": INTERNAL_ID_SYSTEM, "value": f"{S3_SIRET}-sec042"}]
    r = await client.post("Practitioner", json=secretary, headers=JSON)
    assert r.status_code == 201, r.text
    ref = f"Practitioner/{r.json()['id']}"
    r = await client.post("PractitionerRole", json=role(ref, "ps", world.orgs["D"]), headers=JSON)
    assert r.status_code == 201, r.text
    subject = idp.sign("s3", matricule="sec042")
    r = await exchange(oauth, subject, "ehr-s3")
    assert r.status_code == 200, r.text
    assert claims_of(r.json()["access_token"])["fhirUser"] == ref
    # The same internal id from another structure's provider is another person (unknown here).
    assert "not a professional" in refused(await exchange(oauth, idp.sign("s3", matricule="sec999"), "ehr-s3"))
    # S3's provider is trusted for the client ehr-s3 only.
    assert "may not exchange" in refused(await exchange(oauth, subject, "ehr-s2"))


async def test_rotated_keys_are_fetched_again(oauth: httpx.AsyncClient, world: World, idp: StructureProvider) -> None:
    rpps = await rpps_of(world, "a1")
    assert (await exchange(oauth, idp.sign("s2", rpps=rpps))).status_code == 200
    hits = idp.jwks_hits["s2"]
    assert (await exchange(oauth, idp.sign("s2", rpps=rpps))).status_code == 200
    assert idp.jwks_hits["s2"] == hits  # cached
    old = idp.keys["s2"]
    idp.keys["s2"] = idp.new_key("s2-2")
    try:
        r = await exchange(oauth, idp.sign("s2", rpps=rpps))
        assert r.status_code == 200, r.text
        assert idp.jwks_hits["s2"] == hits + 1
        # A token signed with the retired key is refused now.
        refused(await exchange(oauth, idp.sign("s2", key=old, rpps=rpps)))
    finally:
        idp.keys["s2"] = old


def _bad_tokens(idp: StructureProvider, rpps: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Subject tokens that must be refused, and a word of the reason given."""
    now = int(time.time())
    forged = RSAKey.generate_key(2048, parameters={"kid": "s2-1"})
    return {
        "wrong signature": (idp.sign("s2", key=forged, rpps=rpps["a1"]), "invalid subject_token"),
        "expired": (idp.sign("s2", rpps=rpps["a1"], iat=now - 900, exp=now - 300), "expired"),
        "not yet valid": (idp.sign("s2", rpps=rpps["a1"], nbf=now + 900), "not yet valid"),
        "issued in the future": (idp.sign("s2", rpps=rpps["a1"], iat=now + 900, exp=now + 1200), "future"),
        "too old": (idp.sign("s2", rpps=rpps["a1"], iat=now - 3600, exp=now + 300), "issued more than"),
        "wrong audience": (idp.sign("s2", rpps=rpps["a1"], aud="someone-else"), "aud"),
        "untrusted issuer": (idp.sign("rogue", rpps=rpps["a1"]), "not trusted"),
        "issuer claimed by another key": (idp.sign("rogue", rpps=rpps["a1"], iss=idp.issuer("s2")), "invalid"),
        "symmetric algorithm": (
            jwt.encode({"alg": "HS256"}, {"iss": idp.issuer("s2")}, OctKey.generate_key(256)),
            "must be signed",
        ),
        "not a JWT": ("not-a-jwt", "not a signed JWT"),
        "unknown RPPS": (idp.sign("s2", rpps="19999999999"), "not a professional of the annuaire"),
        "no user claim": (idp.sign("s2"), "names no user"),
        "member of another structure": (idp.sign("s2", rpps=rpps["d1"]), "no active téléexpertise role"),
        "regional administrator without a role there": (idp.sign("s2", rpps=rpps["reg"]), "no active"),
    }


async def test_invalid_subject_tokens(oauth: httpx.AsyncClient, world: World, idp: StructureProvider) -> None:
    rpps = {user: await rpps_of(world, user) for user in ("a1", "d1", "reg")}
    for case, (token, reason) in _bad_tokens(idp, rpps).items():
        description = refused(await exchange(oauth, token))
        assert reason in description, (case, description)


async def test_malformed_requests(oauth: httpx.AsyncClient, world: World, idp: StructureProvider) -> None:
    subject = idp.sign("s2", rpps=await rpps_of(world, "a1"))
    refused(await exchange(oauth, subject, subject_token_type=ACCESS_TOKEN_TYPE), "invalid_request")
    refused(await exchange(oauth, ""), "invalid_request")
    refused(await exchange(oauth, subject, actor_token=subject, actor_token_type=ID_TOKEN_TYPE), "invalid_request")
    refused(await exchange(oauth, subject, requested_token_type=ID_TOKEN_TYPE), "invalid_request")
    refused(await exchange(oauth, subject, audience="https://elsewhere.example/fhir"), "invalid_target")
    refused(await exchange(oauth, subject, scope="system/*.*"), "invalid_scope")
    assert (await exchange(oauth, subject, resource=TEST_BASE)).status_code == 200
    # Client authentication as usual; the grant must be registered for the client.
    r = await oauth.post(
        TOKEN_URL,
        data={"grant_type": TOKEN_EXCHANGE, "subject_token": subject, "subject_token_type": ID_TOKEN_TYPE},
        auth=("ehr-s2", "wrong-secret-0123456789"),
    )
    refused(r, "invalid_client", 401)
    form = {"grant_type": TOKEN_EXCHANGE, "subject_token": subject, "subject_token_type": ID_TOKEN_TYPE}
    r = await oauth.post(TOKEN_URL, data={**form, "client_id": "smart-app"})
    refused(r, "unauthorized_client")


async def test_a_structure_missing_from_the_annuaire(
    oauth: httpx.AsyncClient, world: World, idp: StructureProvider
) -> None:
    """A configuration naming a structure the annuaire does not hold is the server's error, said as OAuth JSON."""
    r = await exchange(oauth, idp.sign("s9", rpps=await rpps_of(world, "a1")))
    assert "not one in the annuaire" in refused(r, "server_error", 500)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"issuer": "x"}, "JSON list"),
        (["x"], "JSON object"),
        ([{"audience": "a", "structure": "s", "rpps_claim": "rpps"}], "issuer must be"),
        ([{"issuer": "i", "structure": "s", "rpps_claim": "rpps"}], "audience must be"),
        ([{"issuer": "i", "audience": "a", "rpps_claim": "rpps"}], "structure must be"),
        ([{"issuer": "i", "audience": "a", "structure": "s"}], "rpps_claim and/or internal_id_claim"),
        (
            [{"issuer": "i", "audience": "a", "structure": "s", "rpps_claim": "r", "algorithms": ["HS256"]}],
            "algorithms",
        ),
        ([{"issuer": "i", "audience": "a", "structure": "s", "rpps_claim": "r", "jwks": {}}], "unknown keys jwks"),
        ([{"issuer": "i", "audience": "a", "structure": "s", "rpps_claim": "r", "max_age_seconds": -1}], "seconds"),
        ([{"issuer": "i", "audience": "a", "structure": "s", "rpps_claim": "r"}] * 2, "appears twice"),
    ],
)
def test_configuration_errors(raw: Any, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        parse_issuers(raw)


def test_configuration_defaults() -> None:
    (issuer,) = parse_issuers(
        [{"issuer": "https://sso.example/", "audience": "a", "structure": "s", "rpps_claim": "r"}]
    ).values()
    assert issuer.discovery_url == "https://sso.example/.well-known/openid-configuration" and issuer.jwks_uri is None
    assert issuer.algorithms == ("RS256", "ES256") and issuer.leeway == 60 and issuer.clients is None


async def test_discovery_announces_the_grant(oauth: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    r = await oauth.get(TEST_BASE + "/.well-known/smart-configuration")
    assert TOKEN_EXCHANGE in r.json()["grant_types_supported"]
    r = await client.get(ORIGIN + "/oauth/login-modes")
    assert r.json()["configured"] == ["psc", "local", "structure-token"]


async def test_an_administrator_switches_the_mode_off(
    oauth: httpx.AsyncClient, client: httpx.AsyncClient, world: World, idp: StructureProvider
) -> None:
    subject = idp.sign("s2", rpps=await rpps_of(world, "a1"))
    r = await client.put(ORIGIN + "/oauth/login-modes", json={"disabled": ["structure-token"]})
    assert r.status_code == 200 and r.json()["disabled"] == ["structure-token"]
    try:
        assert "switched off" in refused(await exchange(oauth, subject), "access_denied", 401)
        events = await logins(world, "reg")
        assert events[0]["outcomeDesc"].startswith("structure-token: ") and "switched off" in events[0]["outcomeDesc"]
        # The interactive logins are not affected.
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
        r = await oauth.get(ORIGIN + "/oauth/authorize", params=query)
        assert r.status_code == 302 and r.headers["location"].startswith(ORIGIN + "/oauth/login/psc?")
    finally:
        r = await client.put(ORIGIN + "/oauth/login-modes", json={"disabled": []})
        assert r.status_code == 200
    assert (await exchange(oauth, subject)).status_code == 200


async def test_each_exchange_is_an_audited_login(
    oauth: httpx.AsyncClient, world: World, idp: StructureProvider
) -> None:
    rpps = await rpps_of(world, "b1")
    start = time.time() - 1
    assert (await exchange(oauth, idp.sign("s2", rpps=rpps))).status_code == 200
    refused(await exchange(oauth, idp.sign("s2", rpps=rpps, aud="someone-else")))
    refused(await exchange(oauth, idp.sign("rogue", rpps=rpps)))
    failure, failure2, success = (await logins(world, "reg"))[:3]
    assert success["outcome"] == "0" and success["outcomeDesc"] == "structure-token: success"
    assert success["agent"][0]["who"] == {"reference": world.people["b1"]} and success["agent"][0]["altId"] == "ehr-s2"
    assert world.orgs["S2"] in agents(success) and start <= recorded(success) <= time.time() + 1
    for event in (failure, failure2):
        assert event["outcome"] == "4" and event["outcomeDesc"].startswith("structure-token: ")
        assert agents(event) == set()  # a refused login names nobody
    assert "not trusted" in failure["outcomeDesc"] and "aud" in failure2["outcomeDesc"]
    # The administrators of b1's structure see the login; those of another structure do not.
    assert success["id"] in {e["id"] for e in await logins(world, "adm2", agent=world.people["b1"])}
    assert await logins(world, "adm3", agent=world.people["b1"]) == []


# ---- spec §8 test 13, first bullet: PSC and password + code logins, each with its mode --------------------------


async def test_psc_and_otp_logins_are_audited_for_the_administrators(
    oauth: httpx.AsyncClient,
    client: httpx.AsyncClient,
    world: World,
    psc: FakeProvider,
    mailbox: tuple[Mailbox, int],
) -> None:
    """p (S2) logs in through Pro Santé Connect, z1 (S3) with password + e-mailed code: one login AuditEvent
    each, with the mode, the user and the time; adm2 sees p's only, adm3 z1's only, reg both."""
    start = time.time() - 1
    # Pro Santé Connect: the RPPS number finds the professional of the annuaire.
    psc.tweak = None
    psc.users = {"psc": {"sub": "f:psc:p", "preferred_username": await rpps_of(world, "p"), "family_name": "P"}}
    verifier, challenge = pkce()
    query, _ = await psc_login(oauth, challenge)
    r = await code_exchange(oauth, query["code"][0], verifier)
    assert r.status_code == 200, r.text
    assert claims_of(r.json()["access_token"])["fhirUser"] == world.people["p"]
    # Password + code by e-mail (the real SMTP sink).
    account = {
        "login": "z1",
        "user": world.people["z1"],
        "email": "z1@clinique.example.fr",
        "password": "Zephyr-Pass-2026",
    }
    assert (await client.post(ORIGIN + "/oauth/users", json=account)).status_code == 201
    verifier, challenge = pkce()
    await local_start(oauth, challenge, idp="local")
    r = await password_step(oauth, "z1", account["password"])
    assert r.status_code == 200 and 'name="code"' in r.text, r.text
    r = await otp_step(oauth, mailbox[0].last_code("z1@clinique.example.fr"))
    assert r.status_code == 302 and "code=" in r.headers["location"], r.text
    end = time.time() + 1

    expected = {"p": ("psc: success", "S2", "adm2", "adm3"), "z1": ("local-otp: success", "S3", "adm3", "adm2")}
    for user, (mode, structure, own_admin, other_admin) in expected.items():
        (event,) = await logins(world, "reg", agent=world.people[user])  # exactly one login of this user
        assert event["outcome"] == "0" and event["outcomeDesc"] == mode
        assert event["type"]["code"] == "110114" and event["subtype"][0]["code"] == "110122"
        assert event["agent"][0]["who"] == {"reference": world.people[user]} and event["agent"][0]["requestor"]
        assert world.orgs[structure] in agents(event)
        assert start <= recorded(event) <= end
        assert [e["id"] for e in await logins(world, own_admin, agent=world.people[user])] == [event["id"]]
        assert await logins(world, other_admin, agent=world.people[user]) == []
        assert (await world.get(other_admin, f"AuditEvent/{event['id']}")).status_code == 404
