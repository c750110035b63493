"""End-user login through external OpenID Connect providers: Pro Santé Connect and FranceConnect.

Practitioners log in through Pro Santé Connect (PSC: e-CPS / CPS card), usagers through FranceConnect.
A provider is enabled when its discovery URL is set (`FHIR_PSC_DISCOVERY_URL`,
`FHIR_FRANCECONNECT_DISCOVERY_URL`, with `..._CLIENT_ID` / `..._CLIENT_SECRET`).

The flow, driven by `auth/oauth.py`:

1. `GET /oauth/authorize` validates the app's request, stores it as a pending authorisation
   (`oauth_codes` {_id: "authz:<id>", ..., exp}) and redirects to `/oauth/login/{provider}?authz=<id>`
   (provider chosen by `idp` or `login_hint` = `psc` | `franceconnect`; default psc when both are on).
2. `GET /oauth/login/{provider}` redirects to the provider's authorization endpoint (from its discovery
   document, cached): redirect_uri `/oauth/callback/{provider}`, state = the pending id, a nonce,
   PKCE S256, the provider's scopes and acr_values.
3. `GET /oauth/callback/{provider}` exchanges the code (client_secret_basic or client_secret_post),
   validates the id_token (provider JWKS, RS256/ES256, iss, aud, exp, nonce), reads userinfo when the
   provider has one, maps the user to a Practitioner (PSC, identifier `urn:oid:1.2.250.1.71.4.2.1`,
   the national id `SubjectNameID` / `preferred_username`, else `sub`) or a Patient (FranceConnect,
   identifier `https://franceconnect.gouv.fr|<sub>`), created if absent, then issues our authorisation
   code to the app. Any failure redirects to the app with `error=access_denied`.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from fhir_server.config import Settings
from fhir_server.context import ID_RE, ServerContext
from fhir_server.errors import FHIRError

PROVIDERS = ("psc", "franceconnect")
RPPS_SYSTEM = "urn:oid:1.2.250.1.71.4.2.1"
FRANCECONNECT_SYSTEM = "https://franceconnect.gouv.fr"
ID_TOKEN_ALGS = ["RS256", "ES256"]


class FederationError(Exception):
    """The login failed: the app gets error=access_denied with this description."""


@dataclass(frozen=True)
class Provider:
    name: str
    discovery_url: str
    client_id: str
    client_secret: str
    scope: str
    acr_values: str
    auth_method: str  # "", client_secret_basic or client_secret_post ("" = from discovery)


def providers(settings: Settings) -> dict[str, Provider]:
    """The enabled providers, in preference order (psc first)."""
    out: dict[str, Provider] = {}
    for name in PROVIDERS:
        url = getattr(settings, f"{name}_discovery_url")
        if url:
            out[name] = Provider(
                name=name,
                discovery_url=url,
                client_id=getattr(settings, f"{name}_client_id"),
                client_secret=getattr(settings, f"{name}_client_secret"),
                scope=getattr(settings, f"{name}_scope"),
                acr_values=getattr(settings, f"{name}_acr_values"),
                auth_method=getattr(settings, f"{name}_token_auth_method"),
            )
    return out


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, create_s256_code_challenge(verifier)


class Federation:
    """Discovery and JWKS caches plus the provider calls; one per AuthServer."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.providers = providers(ctx.settings)
        self._discovery: dict[str, tuple[float, dict[str, Any]]] = {}
        self._jwks: dict[str, tuple[float, KeySet]] = {}

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self.settings.federation_http_timeout_seconds, follow_redirects=False)

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with self._client() as http:
                r = await http.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise FederationError(f"the identity provider is unreachable ({type(exc).__name__})") from None
        if r.status_code != 200:
            raise FederationError(f"the identity provider answered {r.status_code} at {url}")
        try:
            body = r.json()
        except ValueError:
            raise FederationError(f"the identity provider sent no JSON at {url}") from None
        if not isinstance(body, dict):
            raise FederationError(f"the identity provider sent unexpected JSON at {url}")
        return body

    async def discovery(self, provider: Provider) -> dict[str, Any]:
        cached = self._discovery.get(provider.name)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        doc = await self._get_json(provider.discovery_url)
        for name in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(doc.get(name), str):
                raise FederationError(f"the provider's discovery document has no {name}")
        self._discovery[provider.name] = (time.monotonic() + self.settings.federation_cache_seconds, doc)
        return doc

    async def keys(self, provider: Provider, *, refresh: bool = False) -> KeySet:
        cached = self._jwks.get(provider.name)
        if cached and cached[0] > time.monotonic() and not refresh:
            return cached[1]
        doc = await self.discovery(provider)
        try:
            keyset = KeySet.import_key_set(await self._get_json(doc["jwks_uri"]))  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise FederationError(f"the provider's JWKS is unusable: {exc}") from None
        self._jwks[provider.name] = (time.monotonic() + self.settings.federation_cache_seconds, keyset)
        return keyset

    async def authorization_url(
        self, provider: Provider, redirect_uri: str, state: str, nonce: str, challenge: str
    ) -> str:
        doc = await self.discovery(provider)
        params = {
            "response_type": "code",
            "client_id": provider.client_id,
            "redirect_uri": redirect_uri,
            "scope": provider.scope,
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        if provider.acr_values:
            params["acr_values"] = provider.acr_values
        endpoint = doc["authorization_endpoint"]
        return endpoint + ("&" if urlsplit(endpoint).query else "?") + urlencode(params)

    async def login(self, provider: Provider, code: str, redirect_uri: str, verifier: str, nonce: str) -> dict:
        """Code -> tokens -> verified id_token claims, merged with userinfo (same sub)."""
        doc = await self.discovery(provider)
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        method = provider.auth_method
        if not method:
            supported = doc.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
            method = "client_secret_basic" if "client_secret_basic" in supported else "client_secret_post"
        auth = None
        if method == "client_secret_post":
            form.update(client_id=provider.client_id, client_secret=provider.client_secret)
        else:
            auth = httpx.BasicAuth(provider.client_id, provider.client_secret)
        try:
            async with self._client() as http:
                r = await http.post(doc["token_endpoint"], data=form, auth=auth, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise FederationError(
                f"the identity provider's token endpoint is unreachable ({type(exc).__name__})"
            ) from None
        try:
            tokens = r.json()
        except ValueError:
            tokens = {}
        if r.status_code != 200 or not isinstance(tokens, dict) or not isinstance(tokens.get("id_token"), str):
            error = tokens.get("error") if isinstance(tokens, dict) else None
            raise FederationError(f"the identity provider refused the code ({r.status_code} {error or ''})".strip())
        claims = await self.verify_jwt(provider, tokens["id_token"], nonce=nonce)
        userinfo_endpoint = doc.get("userinfo_endpoint")
        access_token = tokens.get("access_token")
        if isinstance(userinfo_endpoint, str) and isinstance(access_token, str):
            info = await self.userinfo(provider, userinfo_endpoint, access_token)
            if info.get("sub") != claims["sub"]:
                raise FederationError("userinfo is about another subject than the id_token")
            claims = {**info, **claims}
        return claims

    async def verify_jwt(self, provider: Provider, value: str, *, nonce: str | None) -> dict[str, Any]:
        doc = await self.discovery(provider)
        keyset = await self.keys(provider)
        try:
            try:
                token = jwt.decode(value, keyset, algorithms=ID_TOKEN_ALGS)
            except InvalidKeyIdError:
                # An unknown kid: the provider may have rotated its keys.
                token = jwt.decode(value, await self.keys(provider, refresh=True), algorithms=ID_TOKEN_ALGS)
            options: dict[str, Any] = {
                "iss": {"essential": True, "value": doc["issuer"]},
                "aud": {"essential": True, "value": provider.client_id},
                "exp": {"essential": True},
                "sub": {"essential": True},
            }
            if nonce is not None:
                options["nonce"] = {"essential": True, "value": nonce}
            jwt.JWTClaimsRegistry(leeway=60, **options).validate(token.claims)
        except (JoseError, ValueError) as exc:
            raise FederationError(f"invalid id_token from the identity provider: {exc}") from None
        claims = dict(token.claims)
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise FederationError("the id_token has no sub")
        return claims

    async def userinfo(self, provider: Provider, endpoint: str, access_token: str) -> dict[str, Any]:
        try:
            async with self._client() as http:
                r = await http.get(endpoint, headers={"Authorization": "Bearer " + access_token})
        except httpx.HTTPError as exc:
            raise FederationError(f"the identity provider's userinfo is unreachable ({type(exc).__name__})") from None
        if r.status_code != 200:
            raise FederationError(f"the identity provider's userinfo answered {r.status_code}")
        ctype = r.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "application/jwt":
            # Signed userinfo (FranceConnect v2); encrypted (JWE) userinfo is not supported.
            return await self.verify_jwt(provider, r.text.strip(), nonce=None)
        try:
            info = r.json()
        except ValueError:
            raise FederationError("the identity provider's userinfo is not JSON") from None
        if not isinstance(info, dict):
            raise FederationError("the identity provider's userinfo is not a JSON object")
        return info

    # ---- user mapping -----------------------------------------------------------------------------

    async def map_user(self, provider: Provider, claims: dict[str, Any]) -> str:
        """The FHIR reference of the logged-in user (Practitioner for PSC, Patient for FranceConnect)."""
        if provider.name == "psc":
            value = claims.get("SubjectNameID") or claims.get("preferred_username") or claims["sub"]
            resource: dict[str, Any] = {
                "resourceType": "Practitioner",
                "identifier": [{"system": RPPS_SYSTEM, "value": str(value)}],
            }
            rtype, system, prefix = "Practitioner", RPPS_SYSTEM, "psc-"
        else:
            value = claims["sub"]
            resource = {"resourceType": "Patient", "identifier": [{"system": FRANCECONNECT_SYSTEM, "value": value}]}
            if isinstance(claims.get("birthdate"), str) and claims["birthdate"]:
                resource["birthDate"] = claims["birthdate"]
            if claims.get("gender") in ("male", "female", "other", "unknown"):
                resource["gender"] = claims["gender"]
            rtype, system, prefix = "Patient", FRANCECONNECT_SYSTEM, "fc-"
        name: dict[str, Any] = {}
        if isinstance(claims.get("family_name"), str) and claims["family_name"]:
            name["family"] = claims["family_name"]
        if isinstance(claims.get("given_name"), str) and claims["given_name"]:
            name["given"] = claims["given_name"].split()
        if name:
            resource["name"] = [name]
        return await self._find_or_create(rtype, system, str(value), prefix, resource)

    async def _find_or_create(self, rtype: str, system: str, value: str, prefix: str, resource: dict) -> str:
        from fhir_server.search.engine import matching_ids

        token = system + "|" + value.replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,").replace("$", "\\$")
        ids = await matching_ids(self.ctx, rtype, [("identifier", token)], strict=True, what="the login mapping")
        if ids:
            return f"{rtype}/{sorted(ids)[0]}"
        # A deterministic id: two first logins at once create one resource, not two.
        rid = (
            prefix + value if ID_RE.match(prefix + value) else prefix + hashlib.sha256(value.encode()).hexdigest()[:40]
        )
        try:
            await self.ctx.store.create(rtype, resource, rid=rid)
        except FHIRError as exc:
            if exc.status != 409:
                raise
            doc = await self.ctx.store.current(rtype, rid)
            if doc is None or doc.get("gone"):
                raise FederationError(f"{rtype}/{rid} was deleted: the account is closed") from None
        return f"{rtype}/{rid}"
