"""The embedded OAuth 2.0 authorisation server: SMART App Launch 2.x and SMART Backend Services.

Endpoints (all outside the FHIR wrapper: OAuth JSON errors, no AuditEvent):

- `GET  {base}/.well-known/smart-configuration`, `GET {base}/.well-known/jwks.json` (no token needed)
- `GET  /oauth/authorize`   authorization code + PKCE S256. The end user logs in through Pro Santé
                            Connect (practitioners) or FranceConnect (usagers), see auth/federation.py:
                            the validated request is kept as a pending authorisation and the browser
                            goes to `/oauth/login/{provider}`; with both enabled, `idp` (or
                            `login_hint`) = `psc` | `franceconnect` | `local` chooses, default psc
                            (`local`: password + e-mail code, FHIR_LOCAL_LOGIN, auth/local_login.py). The
                            test login (`user=Practitioner/ID`, only with FHIR_OAUTH_DEV_LOGIN=true)
                            takes precedence when `user` is given; with no provider and no test
                            login: 501
- `GET  /oauth/login/{provider}`, `GET /oauth/callback/{provider}`  the OpenID Connect relying party
                            (provider = psc | franceconnect); logins are audited (mode psc|franceconnect)
- `POST /oauth/token`       client_credentials (private_key_jwt), authorization_code, refresh_token (rotating),
                            token exchange (RFC 8693) of a trusted structure's OpenID token, see
                            auth/structure_token.py (audited as a login, mode structure-token)
- `POST /oauth/revoke`      RFC 7009; `POST /oauth/introspect` RFC 7662 (an authenticated client, or a
                            Bearer token with `system/*.*`)
- `POST /oauth/launch`      (admin) creates an EHR launch id carrying patient/encounter context
- `GET|POST /oauth/clients`, `GET|DELETE /oauth/clients/{id}`  (admin) client registration
- `GET|POST /oauth/login/local`, `POST /oauth/users`, `GET|PATCH|DELETE /oauth/users/{login}`  the local
                            password + e-mail code login and its (admin) accounts, see auth/local_login.py

"admin" = a Bearer token (TokenVerifier) with the scope `system/*.*`.

Access tokens are minted by `auth.tokens.mint_token` (same key, issuer, audience = the FHIR base URL),
so the FHIR endpoints check them unchanged. Launch tokens carry `patient`/`encounter`/`fhirUser`, and a
`grant` claim naming the authorisation they come from (revoking its refresh token revokes the grant).
Revocation is enforced by `check_revoked(request)` (to be awaited after the token check).

A client, in `FHIR_OAUTH_CLIENTS_FILE` (a JSON list of these) or the body of `POST /oauth/clients`:

    {
      "client_id": "bi-export",                       # required, [A-Za-z0-9._~-]{1,128}
      "client_name": "Entrepôt BI",                   # optional
      "token_endpoint_auth_method": "private_key_jwt",  # private_key_jwt | client_secret_basic | none
      "jwks": {"keys": [{"kty": "RSA", "kid": "k1", "n": "...", "e": "AQAB"}]},
                                                      # private_key_jwt: public RSA (RS384) or EC P-384
                                                      # (ES384) keys; jwks_uri is not supported yet
      "client_secret": "at least 16 characters",      # client_secret_basic (or "client_secret_sha256":
                                                      # hex digest); POST without one generates it and
                                                      # returns it once
      "redirect_uris": ["https://app.example.fr/cb"], # required for authorization_code, exact match
      "scope": "system/*.rs",                         # what the client may ever be granted (string or list)
      "grant_types": ["client_credentials"]           # default: client_credentials for private_key_jwt,
                                                      # else authorization_code + refresh_token
    }

A requested scope is granted when a registered scope covers it (same exact string, or same context with
`*` or the same type and a superset of permissions: `patient/*.rs` covers `patient/Observation.read`).

State, in single-document operations only (FerretDB v1):
`oauth_clients` {_id: client_id, ...}; `oauth_codes` {_id: "code:<sha256>" | "launch:<id>" |
"authz:<id>" pending authorisation while the user logs in at the provider, ..., exp};
`oauth_tokens` {_id: "rt:<sha256>" refresh token | "jti:<client>:<jti>" used assertion |
"revoked:<jti>" revoked access token | "grant:<id>" revoked grant, ..., exp}. Expired documents are
purged at most once a minute by the token endpoint.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from authlib.oauth2.rfc7636 import create_s256_code_challenge
from pymongo.errors import DuplicateKeyError
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from fhir_server.auth import login_modes
from fhir_server.auth.clients import Client, ClientError, ClientRegistry, parse_client
from fhir_server.auth.federation import Federation, FederationError, pkce_pair
from fhir_server.auth.jwks import AssertionRejected, server_jwks, unverified_claims, verify_client_assertion
from fhir_server.auth.revocation import RevocationCache
from fhir_server.auth.scopes import V1
from fhir_server.auth.structure_token import TOKEN_EXCHANGE, StructureTokens
from fhir_server.auth.structure_token import exchange as structure_token_exchange
from fhir_server.auth.tokens import AccessToken, InvalidToken, TokenVerifier, mint_token
from fhir_server.context import ID_RE, ServerContext
from fhir_server.errors import FHIRError

CLIENTS = "oauth_clients"
CODES = "oauth_codes"
TOKENS = "oauth_tokens"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ADMIN_SCOPE = "system/*.*"
USER_TYPES = ("Practitioner", "Patient", "RelatedPerson")
MAX_FORM_BYTES = 64 * 1024
_RESOURCE_SCOPE = re.compile(r"^(patient|user|system)/(\*|[A-Za-z]+)\.(\*|read|write|[cruds]+)$")
_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
SCOPES_SUPPORTED = [
    "openid",
    "fhirUser",
    "launch",
    "launch/patient",
    "offline_access",
    "online_access",
    "patient/*.rs",
    "patient/*.cruds",
    "user/*.rs",
    "user/*.cruds",
    "system/*.rs",
    "system/*.cruds",
    "patient/*.read",
    "patient/*.*",
    "user/*.read",
    "user/*.*",
    "system/*.read",
    "system/*.*",
]
DEV_LOGIN_OFF = (
    "no end-user login is configured: enable Pro Santé Connect (FHIR_PSC_DISCOVERY_URL) and/or "
    "FranceConnect (FHIR_FRANCECONNECT_DISCOVERY_URL), and/or the local password + e-mail code login "
    "(FHIR_LOCAL_LOGIN=true); the test login (FHIR_OAUTH_DEV_LOGIN=true) is for tests only"
)


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400, headers: dict[str, str] | None = None):
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        self.headers = headers or {}


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={**_NO_STORE, **(headers or {})})


def _error(exc: OAuthError | ClientError) -> JSONResponse:
    """The RFC 6749 error answer; a client-registry failure is the server's (500)."""
    if isinstance(exc, ClientError):
        exc = OAuthError("server_error", str(exc), 500)
    return _json({"error": exc.error, "error_description": exc.description}, exc.status, exc.headers)


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _now() -> int:
    return int(time.time())


# ---- scopes ---------------------------------------------------------------------------------------


def _perms(perm: str) -> set[str]:
    return set(V1.get(perm, perm))


def covered(requested: str, registered: str) -> bool:
    if requested == registered:
        return True
    req, reg = _RESOURCE_SCOPE.match(requested), _RESOURCE_SCOPE.match(registered)
    if not req or not reg or req.group(1) != reg.group(1):
        return False
    if reg.group(2) not in ("*", req.group(2)):
        return False
    return _perms(req.group(3)) <= _perms(reg.group(3))


def grant_scopes(requested: str, registered: tuple[str, ...], *, system: bool) -> list[str]:
    """Requested ∩ registered; `system` grants only system/ scopes (client_credentials), else none of them."""
    granted = []
    for scope in dict.fromkeys(requested.split()):
        if scope.startswith("system/") != system:
            continue
        if any(covered(scope, reg) for reg in registered):
            granted.append(scope)
    return granted


# ---- the server object ----------------------------------------------------------------------------


class AuthServer:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        db = ctx.database.db
        self.clients = ClientRegistry(db[CLIENTS], ctx.settings.oauth_clients_file)
        self.codes = db[CODES]
        self.tokens = db[TOKENS]
        self.revocations = RevocationCache(self.tokens, ctx.settings.revocation_check_seconds)
        self.fhir_base = ctx.base_url.rstrip("/")
        self.verifier = TokenVerifier(ctx.settings.data_dir, ctx.settings.resolved_token_issuer(), self.fhir_base)
        self.oauth_base = oauth_base(ctx)
        self.token_endpoint = self.oauth_base + "/oauth/token"
        self.federation = Federation(ctx)
        self.structure_tokens = StructureTokens(ctx, self.federation)
        self._purged_at = 0

    # -- well-known --

    def smart_configuration(self) -> dict[str, Any]:
        o = self.oauth_base
        return {
            "issuer": self.settings.resolved_token_issuer(),
            "jwks_uri": self.fhir_base + "/.well-known/jwks.json",
            "authorization_endpoint": o + "/oauth/authorize",
            "token_endpoint": self.token_endpoint,
            "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
            "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"]
            + ([TOKEN_EXCHANGE] if self.settings.trusted_structure_issuers else []),
            "scopes_supported": SCOPES_SUPPORTED,
            "response_types_supported": ["code"],
            "capabilities": [
                "launch-ehr",
                "launch-standalone",
                "client-public",
                "client-confidential-symmetric",
                "client-confidential-asymmetric",
                "context-ehr-patient",
                "context-ehr-encounter",
                "context-standalone-patient",
                "permission-offline",
                "permission-online",
                "permission-patient",
                "permission-user",
                "permission-v1",
                "permission-v2",
                "sso-openid-connect",
            ],
            "code_challenge_methods_supported": ["S256"],
            "introspection_endpoint": o + "/oauth/introspect",
            "revocation_endpoint": o + "/oauth/revoke",
        }

    def openid_configuration(self) -> dict[str, Any]:
        """OpenID Connect discovery, at {issuer}/.well-known/openid-configuration (the issuer is the FHIR base)."""
        smart = self.smart_configuration()
        return {
            "issuer": smart["issuer"],
            "authorization_endpoint": smart["authorization_endpoint"],
            "token_endpoint": smart["token_endpoint"],
            "jwks_uri": smart["jwks_uri"],
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": smart["scopes_supported"],
            "token_endpoint_auth_methods_supported": smart["token_endpoint_auth_methods_supported"],
            "code_challenge_methods_supported": ["S256"],
            "grant_types_supported": smart["grant_types_supported"],
            "claims_supported": ["sub", "fhirUser", "iss", "aud", "exp", "iat", "nonce"],
        }

    # -- housekeeping --

    async def purge_expired(self) -> None:
        now = _now()
        if now - self._purged_at < 60:
            return
        self._purged_at = now
        for collection in (self.codes, self.tokens):
            await collection.delete_many({"exp": {"$lt": now - 60}})

    # -- client authentication --

    async def authenticate(self, request: Request, form: dict[str, str], *, allow_public: bool) -> Client:
        header = request.headers.get("authorization", "")
        basic = header[:6].lower() == "basic "
        assertion = form.get("client_assertion")
        if basic and assertion:
            raise OAuthError("invalid_request", "use one client authentication method, not several")
        if assertion is not None:
            return await self._authenticate_assertion(form, assertion)
        if basic:
            return await self._authenticate_basic(header[6:].strip())
        client_id = form.get("client_id")
        if not client_id:
            raise OAuthError("invalid_client", "client authentication is required", 401)
        client = await self.clients.get(client_id)
        if client is None or not client.public:
            raise OAuthError("invalid_client", "client authentication failed", 401)
        if not allow_public:
            raise OAuthError("invalid_client", "a public client cannot use this endpoint", 401)
        return client

    async def _authenticate_assertion(self, form: dict[str, str], assertion: str) -> Client:
        if form.get("client_assertion_type") != JWT_BEARER:
            raise OAuthError("invalid_client", f"client_assertion_type must be {JWT_BEARER}", 401)
        try:
            _, claims = unverified_claims(assertion)
            client_id = claims.get("iss")
            if not isinstance(client_id, str) or (form.get("client_id") not in (None, client_id)):
                raise AssertionRejected("the client assertion's iss must be the client_id")
            client = await self.clients.get(client_id)
            if client is None or client.auth_method != "private_key_jwt" or not client.jwks:
                raise AssertionRejected("unknown client, or not registered for private_key_jwt")
            checked = verify_client_assertion(assertion, client.jwks, client_id, self.token_endpoint)
        except AssertionRejected as exc:
            raise OAuthError("invalid_client", str(exc), 401) from None
        # One use per jti, remembered until the assertion expires.
        try:
            await self.tokens.insert_one({"_id": f"jti:{client_id}:{checked['jti']}", "exp": int(checked["exp"]) + 60})
        except DuplicateKeyError:
            raise OAuthError("invalid_client", "the client assertion's jti was already used", 401) from None
        return client

    async def _authenticate_basic(self, encoded: str) -> Client:
        challenge = {"WWW-Authenticate": 'Basic realm="fhir-server"'}
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except ValueError:
            raise OAuthError("invalid_client", "malformed Basic credentials", 401, challenge) from None
        raw_id, sep, raw_secret = decoded.partition(":")
        client = await self.clients.get(unquote(raw_id.replace("+", " "))) if sep else None
        secret = unquote(raw_secret.replace("+", " "))
        if client is None or client.auth_method != "client_secret_basic" or not client.check_secret(secret):
            raise OAuthError("invalid_client", "client authentication failed", 401, challenge)
        return client

    # -- issuing --

    async def issue(
        self,
        client: Client,
        scopes: list[str],
        *,
        user: str | None = None,
        patient: str | None = None,
        encounter: str | None = None,
        grant: str | None = None,
        nonce: str | None = None,
    ) -> dict[str, Any]:
        lifetime = self.settings.token_lifetime_seconds
        extra: dict[str, Any] = {}
        if patient:
            extra["patient"] = patient
        if encounter:
            extra["encounter"] = encounter
        if user:
            extra["fhirUser"] = user
        if grant:
            extra["grant"] = grant
        scope = " ".join(scopes)
        access = mint_token(
            self.settings.data_dir,
            issuer=self.settings.resolved_token_issuer(),
            audience=self.fhir_base,
            scope=scope,
            lifetime=lifetime,
            subject=user or client.client_id,
            client_id=client.client_id,
            extra=extra,
        )
        body: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "expires_in": lifetime, "scope": scope}
        if patient:
            body["patient"] = patient
            body["need_patient_banner"] = True
        if encounter:
            body["encounter"] = encounter
        if user and "openid" in scopes:
            id_extra: dict[str, Any] = {"nonce": nonce} if nonce else {}
            if "fhirUser" in scopes:
                id_extra["fhirUser"] = f"{self.fhir_base}/{user}"
            body["id_token"] = mint_token(
                self.settings.data_dir,
                issuer=self.settings.resolved_token_issuer(),
                audience=client.client_id,
                scope="openid",
                lifetime=lifetime,
                subject=user,
                client_id=client.client_id,
                extra=id_extra,
            )
        if grant and "refresh_token" in client.grant_types and {"offline_access", "online_access"} & set(scopes):
            refresh = secrets.token_urlsafe(32)
            await self.tokens.insert_one(
                {
                    "_id": "rt:" + _hash(refresh),
                    "client_id": client.client_id,
                    "grant": grant,
                    "scope": scope,
                    "user": user,
                    "patient": patient,
                    "encounter": encounter,
                    "used": False,
                    "exp": _now() + self.settings.oauth_refresh_lifetime_seconds,
                }
            )
            body["refresh_token"] = refresh
        return body

    async def revoke_grant(self, grant: str) -> None:
        lifetime = self.settings.oauth_refresh_lifetime_seconds + self.settings.token_lifetime_seconds
        await self.revocations.revoke("grant:" + grant, _now() + lifetime)

    async def is_revoked(self, claims: dict[str, Any], *, strict: bool = False) -> bool:
        """`strict` asks the database itself: refresh grants and introspection must not use a stale view."""
        return await self.revocations.is_revoked(claims, strict=strict)

    # -- grants --

    async def client_credentials(self, client: Client, form: dict[str, str]) -> dict[str, Any]:
        scopes = grant_scopes(form.get("scope", ""), client.scopes, system=True)
        if not scopes:
            raise OAuthError("invalid_scope", "none of the requested scopes is registered for this client")
        return await self.issue(client, scopes)

    async def authorization_code(self, client: Client, form: dict[str, str]) -> dict[str, Any]:
        code, verifier = form.get("code"), form.get("code_verifier")
        if not code or not form.get("redirect_uri"):
            raise OAuthError("invalid_request", "code and redirect_uri are required")
        doc = await self.codes.find_one_and_delete({"_id": "code:" + _hash(code)})
        if doc is None or doc["exp"] < _now():
            raise OAuthError("invalid_grant", "unknown, used or expired authorization code")
        if doc["client_id"] != client.client_id:
            raise OAuthError("invalid_grant", "the authorization code was issued to another client")
        if doc["redirect_uri"] != form["redirect_uri"]:
            raise OAuthError("invalid_grant", "redirect_uri differs from the authorization request's")
        if not verifier or not _VERIFIER.match(verifier):
            raise OAuthError("invalid_grant", "a code_verifier of 43-128 unreserved characters is required")
        if not secrets.compare_digest(create_s256_code_challenge(verifier), doc["code_challenge"]):
            raise OAuthError("invalid_grant", "the code_verifier does not match the code_challenge (S256)")
        return await self.issue(
            client,
            doc["scopes"],
            user=doc.get("user"),
            patient=doc.get("patient"),
            encounter=doc.get("encounter"),
            grant=secrets.token_urlsafe(16),
            nonce=doc.get("nonce"),
        )

    async def refresh(self, client: Client, form: dict[str, str]) -> dict[str, Any]:
        token = form.get("refresh_token")
        if not token:
            raise OAuthError("invalid_request", "refresh_token is required")
        key = "rt:" + _hash(token)
        doc = await self.tokens.find_one_and_update({"_id": key, "used": False}, {"$set": {"used": True}})
        if doc is None:
            used = await self.tokens.find_one({"_id": key})
            if used is not None and used.get("client_id") == client.client_id:
                # A rotated refresh token presented again: it leaked, end the whole grant.
                await self.revoke_grant(used["grant"])
            raise OAuthError("invalid_grant", "unknown, used or revoked refresh token")
        if doc["client_id"] != client.client_id:
            raise OAuthError("invalid_grant", "the refresh token was issued to another client")
        if doc["exp"] < _now() or await self.is_revoked({"grant": doc["grant"]}, strict=True):
            raise OAuthError("invalid_grant", "the refresh token has expired or was revoked")
        scopes = doc["scope"].split()
        if form.get("scope"):
            wanted = form["scope"].split()
            if not set(wanted) <= set(scopes):
                raise OAuthError("invalid_scope", "a refresh cannot widen the scopes of the grant")
            scopes = [s for s in scopes if s in wanted]
        return await self.issue(
            client,
            scopes,
            user=doc.get("user"),
            patient=doc.get("patient"),
            encounter=doc.get("encounter"),
            grant=doc["grant"],
        )

    async def resource_exists(self, resource_type: str, rid: str) -> bool:
        if not ID_RE.match(rid):
            return False
        doc = await self.ctx.store.current(resource_type, rid)
        return doc is not None and not doc.get("gone")


def oauth_base(ctx: ServerContext) -> str:
    """Where `/oauth/*` is served: FHIR_OAUTH_BASE_URL, else the FHIR base without its `/fhir`."""
    base = ctx.settings.oauth_base_url
    if not base:
        fhir = ctx.base_url.rstrip("/")
        base = fhir[: -len("/fhir")] if fhir.endswith("/fhir") else fhir
    return base.rstrip("/")


def auth_server(request: Request) -> AuthServer:
    state = request.app.state
    ctx = getattr(state, "server", None)
    if ctx is None:
        raise OAuthError("temporarily_unavailable", "the server is starting", 503)
    srv: AuthServer | None = getattr(state, "oauth_server", None)
    if srv is None or srv.ctx is not ctx:
        srv = AuthServer(ctx)
        state.oauth_server = srv
        state.revocations = srv.revocations
    return srv


def revocations(state: Any) -> RevocationCache:
    """The instance's revocation cache, shared with its AuthServer (tokens revoked here apply at once)."""
    ctx = state.server
    cache: RevocationCache | None = getattr(state, "revocations", None)
    if cache is None or cache.tokens.database is not ctx.database.db:
        cache = RevocationCache(ctx.database.db[TOKENS], ctx.settings.revocation_check_seconds)
        state.revocations = cache
    return cache


async def check_revoked(request: Request) -> None:
    """The revocation hook: await it right after the token was verified (request.state.access set).

    Raises the same 401 FHIRError as an invalid token when the token or its grant was revoked.
    """
    access: AccessToken | None = getattr(request.state, "access", None)
    if access is None:
        return
    if await revocations(request.app.state).is_revoked(access.claims):
        raise FHIRError(
            401,
            "invalid access token: revoked",
            code="login",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )


# ---- HTTP helpers ---------------------------------------------------------------------------------


async def _form(request: Request) -> dict[str, str]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "the body must be application/x-www-form-urlencoded")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise OAuthError("invalid_request", "request body too large", 413)
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        raise OAuthError("invalid_request", "malformed form body") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise OAuthError("invalid_request", f"parameter {name} appears more than once")
        form[name] = value
    return form


async def _admin(request: Request, srv: AuthServer) -> AccessToken | None:
    if not srv.settings.auth_enabled:
        return None
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise OAuthError("invalid_token", "a Bearer token with scope system/*.* is required", 401)
    try:
        access = srv.verifier.verify(token.strip())
    except InvalidToken as exc:
        raise OAuthError("invalid_token", f"invalid access token: {exc}", 401) from None
    if await srv.is_revoked(access.claims):
        raise OAuthError("invalid_token", "invalid access token: revoked", 401)
    if ADMIN_SCOPE not in access.scopes:
        raise OAuthError("insufficient_scope", "this needs a token with scope system/*.*", 403)
    return access


async def _json_body(request: Request) -> Any:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise OAuthError("invalid_request", "request body too large", 413)
    try:
        return json.loads(body)
    except ValueError:
        raise OAuthError("invalid_request", "the body must be JSON") from None


# ---- endpoints ------------------------------------------------------------------------------------


async def smart_configuration(request: Request) -> Response:
    try:
        srv = auth_server(request)
    except OAuthError as exc:
        return _error(exc)
    return JSONResponse(srv.smart_configuration(), headers={"Cache-Control": "public, max-age=3600"})


async def openid_configuration(request: Request) -> Response:
    try:
        srv = auth_server(request)
    except OAuthError as exc:
        return _error(exc)
    return JSONResponse(srv.openid_configuration(), headers={"Cache-Control": "public, max-age=3600"})


async def jwks(request: Request) -> Response:
    settings = request.app.state.server.settings
    return JSONResponse(server_jwks(settings.data_dir), headers={"Cache-Control": "public, max-age=3600"})


async def token(request: Request) -> Response:
    """The token endpoint; every attempt, granted or refused, is audited as a login."""
    form: dict[str, str] = {}
    try:
        response = await _token(request, form)
    except Exception:
        await _audit_login(request, form, False, "server error")
        raise
    await _audit_login(
        request,
        form,
        response.status_code == 200,
        "" if response.status_code == 200 else bytes(response.body).decode(errors="replace")[:200],
    )
    return response


async def _audit_login(request: Request, form: dict[str, str], success: bool, reason: str) -> None:
    from fhir_server import audit

    # A grant that is an end user's login (token exchange: auth/structure_token.py) names its mode and user.
    mode = getattr(request.state, "login_mode", None) or form.get("grant_type", "unknown grant")
    if form.get("client_assertion_type"):
        mode += " (private_key_jwt)"
    client_id = form.get("client_id") or getattr(request.state, "oauth_client_id", None)
    user = getattr(request.state, "login_user", None) if success else None
    await audit.record_login(
        request.app.state.server, request, client_id=client_id, mode=mode, success=success, reason=reason, user=user
    )


async def _token(request: Request, form: dict[str, str]) -> Response:
    try:
        srv = auth_server(request)
        await srv.purge_expired()
        form.update(await _form(request))
        grant = form.get("grant_type")
        exchange = grant == TOKEN_EXCHANGE and bool(srv.settings.trusted_structure_issuers)
        if grant not in ("client_credentials", "authorization_code", "refresh_token") and not exchange:
            raise OAuthError("unsupported_grant_type", f"grant_type {grant!r} is not supported")
        client = await srv.authenticate(request, form, allow_public=grant != "client_credentials")
        request.state.oauth_client_id = client.client_id
        if grant not in client.grant_types:
            raise OAuthError("unauthorized_client", f"the client is not registered for {grant}")
        if grant == "client_credentials":
            body = await srv.client_credentials(client, form)
        elif grant == "authorization_code":
            body = await srv.authorization_code(client, form)
        elif exchange:
            body = await structure_token_exchange(srv, request, client, form)
        else:
            body = await srv.refresh(client, form)
    except (OAuthError, ClientError) as exc:
        return _error(exc)
    return _json(body)


def _redirect(uri: str, params: dict[str, str | None]) -> Response:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    sep = "&" if urlsplit(uri).query else "?"
    return RedirectResponse(uri + sep + query, status_code=302, headers=_NO_STORE)


async def authorize(request: Request) -> Response:
    q = request.query_params
    try:
        srv = auth_server(request)
        client = await srv.clients.get(q.get("client_id", ""))
        if client is None:
            raise OAuthError("invalid_request", "unknown client_id")
        redirect_uri = q.get("redirect_uri", "")
        if redirect_uri not in client.redirect_uris:
            raise OAuthError("invalid_request", "redirect_uri does not match a registered redirect URI exactly")
    except (OAuthError, ClientError) as exc:
        return _error(exc)  # never redirect to an unverified URI
    state = q.get("state")

    def fail(error: str, description: str) -> Response:
        return _redirect(redirect_uri, {"error": error, "error_description": description, "state": state})

    if q.get("response_type") != "code":
        return fail("unsupported_response_type", "response_type must be code")
    if "authorization_code" not in client.grant_types:
        return fail("unauthorized_client", "the client is not registered for authorization_code")
    challenge = q.get("code_challenge", "")
    if q.get("code_challenge_method") != "S256" or not re.fullmatch(r"[A-Za-z0-9_-]{43}", challenge):
        return fail("invalid_request", "PKCE is required: code_challenge with code_challenge_method=S256")
    if q.get("aud", "").rstrip("/") != srv.fhir_base:
        return fail("invalid_request", f"aud must be the FHIR base URL {srv.fhir_base}")
    scopes = grant_scopes(q.get("scope", ""), client.scopes, system=False)
    if not scopes:
        return fail("invalid_scope", "none of the requested scopes is registered for this client")
    pending = {
        "client_id": client.client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": challenge,
        "scopes": scopes,
        "nonce": q.get("nonce"),
        "launch": q.get("launch"),
        "patient": q.get("patient"),
    }
    off = await login_modes.disabled_modes(srv.ctx.database.db)  # switched off by an administrator
    enabled = [m for m in login_modes.interactive_modes(srv) if m not in off]
    if enabled and not (srv.settings.oauth_dev_login and "user" in q):
        wanted = q.get("idp") or q.get("login_hint")
        provider = wanted if wanted in enabled else next(iter(enabled))
        authz = secrets.token_urlsafe(24)
        verifier, provider_challenge = pkce_pair()
        await srv.codes.insert_one(
            {
                "_id": "authz:" + authz,
                **pending,
                "provider": provider,
                "provider_nonce": secrets.token_urlsafe(24),
                "provider_verifier": verifier,
                "provider_challenge": provider_challenge,
                "exp": _now() + srv.settings.federation_login_lifetime_seconds,
            }
        )
        return _redirect(f"{srv.oauth_base}/oauth/login/{provider}", {"authz": authz})
    if not srv.settings.oauth_dev_login:
        return _json({"error": "login_unavailable", "error_description": DEV_LOGIN_OFF}, 501)

    user = q.get("user", "")
    utype, _, uid = user.partition("/")
    if utype not in USER_TYPES or not await srv.resource_exists(utype, uid):
        return fail("access_denied", "test login: user must name an existing Practitioner, Patient or RelatedPerson")
    return await complete_authorization(srv, client, pending, user)


async def complete_authorization(srv: AuthServer, client: Client, pending: dict[str, Any], user: str) -> Response:
    """Issue our authorization code for a validated request and its authenticated user (`Type/id`);
    redirect to the app's (verified) redirect URI with the code, or an error."""
    redirect_uri, state = pending["redirect_uri"], pending.get("state")
    scopes = list(pending["scopes"])
    utype, _, uid = user.partition("/")

    def fail(error: str, description: str) -> Response:
        return _redirect(redirect_uri, {"error": error, "error_description": description, "state": state})

    patient = encounter = None
    launch = pending.get("launch")
    if launch:
        if "launch" not in scopes:
            return fail("invalid_scope", "an EHR launch needs the launch scope")
        ctx_doc = await srv.codes.find_one({"_id": "launch:" + launch})
        if ctx_doc is None or ctx_doc["exp"] < _now() or ctx_doc.get("client_id") not in (None, client.client_id):
            return fail("invalid_request", "unknown or expired launch")
        patient, encounter = ctx_doc.get("patient"), ctx_doc.get("encounter")
    else:
        scopes = [s for s in scopes if s != "launch"]
        if "launch/patient" in scopes:
            patient = pending.get("patient") or (uid if utype == "Patient" else None)
            if not patient or not await srv.resource_exists("Patient", patient):
                return fail("invalid_request", "launch/patient: choose an existing patient (patient parameter)")
    code = secrets.token_urlsafe(32)
    await srv.codes.insert_one(
        {
            "_id": "code:" + _hash(code),
            "client_id": client.client_id,
            "redirect_uri": redirect_uri,
            "code_challenge": pending["code_challenge"],
            "scopes": scopes,
            "user": user,
            "patient": patient,
            "encounter": encounter,
            "nonce": pending.get("nonce"),
            "exp": _now() + srv.settings.oauth_code_lifetime_seconds,
        }
    )
    return _redirect(redirect_uri, {"code": code, "state": state})


async def _audit_federated(
    request: Request, client_id: str | None, mode: str, success: bool, reason: str, user: str | None = None
) -> None:
    from fhir_server import audit

    await audit.record_login(
        request.app.state.server, request, client_id=client_id, mode=mode, success=success, reason=reason, user=user
    )


def _callback_uri(srv: AuthServer, provider: str) -> str:
    return f"{srv.oauth_base}/oauth/callback/{provider}"


async def federated_login(request: Request) -> Response:
    """`GET /oauth/login/{provider}?authz=<id>`: on to the provider's authorization endpoint."""
    name = request.path_params["provider"]
    try:
        srv = auth_server(request)
    except OAuthError as exc:
        return _error(exc)
    provider = srv.federation.providers.get(name)
    if provider is None:
        return _error(OAuthError("invalid_request", f"login provider {name!r} is not enabled", 404))
    try:
        await login_modes.refuse_if_disabled(srv, name)
    except OAuthError as exc:
        return _error(exc)
    doc = await srv.codes.find_one({"_id": "authz:" + request.query_params.get("authz", "")})
    if doc is None or doc["exp"] < _now() or doc.get("provider") != name:
        return _error(OAuthError("invalid_request", "unknown or expired authorization request"))
    try:
        url = await srv.federation.authorization_url(
            provider,
            _callback_uri(srv, name),
            doc["_id"][len("authz:") :],
            doc["provider_nonce"],
            doc["provider_challenge"],
        )
    except FederationError as exc:
        await _audit_federated(request, doc["client_id"], name, False, str(exc))
        return _redirect(
            doc["redirect_uri"], {"error": "access_denied", "error_description": str(exc), "state": doc.get("state")}
        )
    return RedirectResponse(url, status_code=302, headers=_NO_STORE)


async def federated_callback(request: Request) -> Response:
    """`GET /oauth/callback/{provider}?code=..&state=<pending id>`: the provider sends the user back."""
    name = request.path_params["provider"]
    q = request.query_params
    try:
        srv = auth_server(request)
    except OAuthError as exc:
        return _error(exc)
    provider = srv.federation.providers.get(name)
    if provider is None:
        return _error(OAuthError("invalid_request", f"login provider {name!r} is not enabled", 404))
    # Single use: the pending request is consumed by its first callback, success or not.
    doc = await srv.codes.find_one_and_delete({"_id": "authz:" + q.get("state", "")})
    if doc is None or doc["exp"] < _now() or doc.get("provider") != name:
        await _audit_federated(request, doc["client_id"] if doc else None, name, False, "unknown or expired state")
        return _error(OAuthError("invalid_request", "unknown, used or expired authorization request (state)"))
    client_id = doc["client_id"]

    async def denied(reason: str) -> Response:
        await _audit_federated(request, client_id, name, False, reason)
        return _redirect(
            doc["redirect_uri"], {"error": "access_denied", "error_description": reason, "state": doc.get("state")}
        )

    try:
        client = await srv.clients.get(client_id)
    except ClientError as exc:
        return _error(exc)
    if client is None or doc["redirect_uri"] not in client.redirect_uris:
        await _audit_federated(request, client_id, name, False, "the client is no longer registered")
        return _error(OAuthError("invalid_request", "the client is no longer registered"))
    if name in await login_modes.disabled_modes(srv.ctx.database.db):
        return await denied(f"the login mode {name!r} is switched off by an administrator")
    if q.get("error") or not q.get("code"):
        return await denied(f"the identity provider refused the login: {q.get('error') or 'no code'}"[:200])
    try:
        claims = await srv.federation.login(
            provider, q["code"], _callback_uri(srv, name), doc["provider_verifier"], doc["provider_nonce"]
        )
        user = await srv.federation.map_user(provider, claims)
    except FederationError as exc:
        return await denied(str(exc))
    except FHIRError as exc:
        return await denied(f"the user could not be mapped: {exc.diagnostics}")
    response = await complete_authorization(srv, client, doc, user)
    location = response.headers.get("location", "")
    ok = "code" in dict(parse_qsl(urlsplit(location).query))
    reason = "" if ok else f"login of {user} refused: " + location[-150:]
    await _audit_federated(request, client_id, name, ok, reason, user=user if ok else None)
    return response


async def revoke(request: Request) -> Response:
    try:
        srv = auth_server(request)
        form = await _form(request)
        client = await srv.authenticate(request, form, allow_public=True)
        value = form.get("token")
        if not value:
            raise OAuthError("invalid_request", "token is required")
        doc = await srv.tokens.find_one({"_id": "rt:" + _hash(value)})
        if doc is not None:
            if doc["client_id"] == client.client_id:
                await srv.tokens.update_one({"_id": doc["_id"]}, {"$set": {"used": True}})
                await srv.revoke_grant(doc["grant"])
        else:
            try:
                access = srv.verifier.verify(value)
            except InvalidToken:
                access = None  # invalid or expired: nothing to revoke
            if access is not None and access.client_id == client.client_id and access.claims.get("jti"):
                await srv.revocations.revoke(f"revoked:{access.claims['jti']}", int(access.claims["exp"]) + 60)
    except (OAuthError, ClientError) as exc:
        return _error(exc)
    return Response(status_code=200, headers=_NO_STORE)


async def introspect(request: Request) -> Response:
    try:
        srv = auth_server(request)
        form = await _form(request)
        if request.headers.get("authorization", "").lower().startswith("bearer "):
            await _admin(request, srv)
        else:
            await srv.authenticate(request, form, allow_public=False)
        value = form.get("token")
        if not value:
            raise OAuthError("invalid_request", "token is required")
        inactive = {"active": False}
        doc = await srv.tokens.find_one({"_id": "rt:" + _hash(value)})
        if doc is not None:
            if doc.get("used") or doc["exp"] < _now() or await srv.is_revoked({"grant": doc["grant"]}, strict=True):
                return _json(inactive)
            body = {
                "active": True,
                "token_type": "refresh_token",
                "client_id": doc["client_id"],
                "scope": doc["scope"],
                "exp": doc["exp"],
            }
            return _json({**body, **({"patient": doc["patient"]} if doc.get("patient") else {})})
        try:
            access = srv.verifier.verify(value)
        except InvalidToken:
            return _json(inactive)
        if await srv.is_revoked(access.claims, strict=True):
            return _json(inactive)
        claims = access.claims
        body = {"active": True, "token_type": "Bearer", "client_id": access.client_id, "scope": " ".join(access.scopes)}
        for name in ("sub", "exp", "iat", "nbf", "iss", "aud", "jti", "patient", "encounter", "fhirUser"):
            if name in claims:
                body[name] = claims[name]
        return _json(body)
    except (OAuthError, ClientError) as exc:
        return _error(exc)


async def create_launch(request: Request) -> Response:
    try:
        srv = auth_server(request)
        await _admin(request, srv)
        body = await _json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("patient"), str):
            raise OAuthError("invalid_request", 'the body must be {"patient": "<id>", "encounter": "<id>"?}')
        if not await srv.resource_exists("Patient", body["patient"]):
            raise OAuthError("invalid_request", f"Patient/{body['patient']} does not exist")
        encounter = body.get("encounter")
        if encounter is not None and (
            not isinstance(encounter, str) or not await srv.resource_exists("Encounter", encounter)
        ):
            raise OAuthError("invalid_request", f"Encounter/{encounter} does not exist")
        client_id = body.get("client_id")
        launch = secrets.token_urlsafe(16)
        lifetime = srv.settings.oauth_launch_lifetime_seconds
        await srv.codes.insert_one(
            {
                "_id": "launch:" + launch,
                "patient": body["patient"],
                "encounter": encounter,
                "client_id": client_id if isinstance(client_id, str) else None,
                "exp": _now() + lifetime,
            }
        )
    except OAuthError as exc:
        return _error(exc)
    return _json({"launch": launch, "expires_in": lifetime}, 201)


async def clients_list(request: Request) -> Response:
    try:
        srv = auth_server(request)
        await _admin(request, srv)
        return _json([c.describe() for c in await srv.clients.all()])
    except (OAuthError, ClientError) as exc:
        return _error(exc)


async def clients_create(request: Request) -> Response:
    try:
        srv = auth_server(request)
        await _admin(request, srv)
        body = await _json_body(request)
        generated = None
        if (
            isinstance(body, dict)
            and body.get("token_endpoint_auth_method") == "client_secret_basic"
            and "client_secret" not in body
            and "client_secret_sha256" not in body
        ):
            generated = secrets.token_urlsafe(32)
            body = {**body, "client_secret": generated}
        client = parse_client(body)
        await srv.clients.add(client)
    except OAuthError as exc:
        return _error(exc)
    except ClientError as exc:
        status = 409 if "exists" in str(exc) or "configuration file" in str(exc) else 400
        return _error(OAuthError("invalid_client_metadata", str(exc), status))
    out = client.describe()
    if generated:
        out["client_secret"] = generated
    return _json(out, 201, {"Location": f"{srv.oauth_base}/oauth/clients/{client.client_id}"})


async def clients_read(request: Request) -> Response:
    try:
        srv = auth_server(request)
        await _admin(request, srv)
        client = await srv.clients.get(request.path_params["client_id"])
    except (OAuthError, ClientError) as exc:
        return _error(exc)
    if client is None:
        return _error(OAuthError("not_found", "no such client", 404))
    return _json(client.describe())


async def clients_delete(request: Request) -> Response:
    try:
        srv = auth_server(request)
        await _admin(request, srv)
        deleted = await srv.clients.delete(request.path_params["client_id"])
    except OAuthError as exc:
        return _error(exc)
    except ClientError as exc:
        return _error(OAuthError("invalid_request", str(exc), 409))
    if not deleted:
        return _error(OAuthError("not_found", "no such client", 404))
    return Response(status_code=204)


def routes(fhir_prefix: str = "/fhir") -> list[Route]:
    """The authorisation server's routes; they must come before the FHIR `/{type}/{id}` routes."""
    from fhir_server.auth import local_login

    return [
        Route(fhir_prefix + "/.well-known/smart-configuration", smart_configuration, methods=["GET"]),
        Route(fhir_prefix + "/.well-known/openid-configuration", openid_configuration, methods=["GET"]),
        *local_login.routes(),  # before /oauth/login/{provider}
        Route(fhir_prefix + "/.well-known/jwks.json", jwks, methods=["GET"]),
        Route("/oauth/authorize", authorize, methods=["GET"]),
        Route("/oauth/login/{provider}", federated_login, methods=["GET"]),
        Route("/oauth/callback/{provider}", federated_callback, methods=["GET"]),
        Route("/oauth/token", token, methods=["POST"]),
        Route("/oauth/revoke", revoke, methods=["POST"]),
        Route("/oauth/introspect", introspect, methods=["POST"]),
        Route("/oauth/launch", create_launch, methods=["POST"]),
        Route("/oauth/login-modes", login_modes.get_modes, methods=["GET"]),
        Route("/oauth/login-modes", login_modes.put_modes, methods=["PUT"]),
        Route("/oauth/clients", clients_list, methods=["GET"]),
        Route("/oauth/clients", clients_create, methods=["POST"]),
        Route("/oauth/clients/{client_id}", clients_read, methods=["GET"]),
        Route("/oauth/clients/{client_id}", clients_delete, methods=["DELETE"]),
    ]
