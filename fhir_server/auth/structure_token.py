"""Contextual call from a structure's SI (CCTP §3.2.2.7 flow 1): OAuth 2.0 Token Exchange (RFC 8693).

The structure's EHR already authenticated its user with its own OpenID provider; it opens a téléexpertise
dossier for that user with no second login by exchanging the id_token (or a JWT access token) its provider
issued for one of ours, at the token endpoint:

    POST /oauth/token
      grant_type=urn:ietf:params:oauth:grant-type:token-exchange
      subject_token=<the structure's id_token>
      subject_token_type=urn:ietf:params:oauth:token-type:id_token   (or ...:token-type:jwt)
      scope=openid fhirUser user/*.cruds                              (optional: default, the client's)
      dossier=ServiceRequest/<id>      (optional, ours: the dossier to open, returned as SMART fhirContext)
      launch=<id>                      (optional: a SMART launch id from POST /oauth/launch, patient context)
      + the client's usual authentication (a client registered with this grant type)

Answer (RFC 8693 §2.2 and SMART): access_token, issued_token_type ...:token-type:access_token, token_type
Bearer, expires_in, scope, `fhirContext` [{"reference": "ServiceRequest/<id>"}] and `patient` (the dossier's
subject, or the launch's), `encounter` (launch), `id_token` when `openid` was granted. No refresh token: the
EHR exchanges a fresh token of its provider instead, so our session never outlives the structure's.

Trusted issuers: `FHIR_TRUSTED_STRUCTURE_ISSUERS`, a JSON list of

    {
      "issuer": "https://sso.chu-x.fr/realms/chu",     # required, exactly the tokens' iss
      "audience": "teleexpertise",                     # required: the tokens' aud must contain it
      "structure": "https://finess.esante.gouv.fr|340000002",
                                                       # required: the structure in the annuaire, as
                                                       #   Organization/<id>, system|value, or a bare
                                                       #   FINESS géographique / SIRET value
      "rpps_claim": "rpps",                            # the claim holding the user's RPPS, and/or
      "internal_id_claim": "employee_number",          # the one holding the structure's internal id
      "internal_id_system": "...",                     # optional, default INTERNAL_ID_SYSTEM below
      "discovery_url": "...",                          # optional, default {issuer}/.well-known/openid-
      "jwks_uri": "...",                               #   configuration; or the JWKS URL directly
      "algorithms": ["RS256", "ES256"],                # optional (asymmetric algorithms only)
      "leeway_seconds": 60,                            # optional clock skew allowed on exp, nbf, iat
      "max_age_seconds": 3600,                         # optional: refuse tokens issued (iat) longer ago
      "clients": ["ehr-chu-x"]                         # optional: the only clients allowed this issuer
    }

Checks: a trusted `iss`, the signature against the issuer's JWKS (from discovery or jwks_uri, cached
FHIR_FEDERATION_CACHE_SECONDS, fetched again once when a token names an unknown kid: key rotation), `aud`,
`exp`, `nbf` and `iat` with the leeway. The user is the Practitioner of the annuaire with that RPPS
(`urn:oid:1.2.250.1.71.4.2.1`), or with the internal id "précédé de l'ID de l'établissement" (CCTP R-51):
identifier `{internal_id_system}|{FINESS géographique or SIRET of the structure}-{internal id}`; they must hold
an active téléexpertise PractitionerRole in that structure (itself or one of its communautés). Users are never
created here: the annuaire says who may work in the téléexpertise. Any failure is `invalid_grant` (400); the
mode `structure-token` can be switched off at run time (auth/login_modes.py: 401 access_denied). Every attempt
is audited as a login (oauth.py `_audit_login`, mode `structure-token`, the user once known).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from starlette.requests import Request

from fhir_server.auth.federation import FederationError
from fhir_server.auth.jwks import AssertionRejected, unverified_claims
from fhir_server.auth.tokens import AccessToken
from fhir_server.context import ID_RE, ServerContext
from fhir_server.errors import FHIRError
from fhir_server.search.errors import SearchError
from fhir_server.teleexpertise.codes import (
    BASE,
    FINESS_SYSTEM,
    FR_ID_TYPE,
    RPPS_SYSTEMS,
    SIRENE_SYSTEM,
    STRUCTURE_ID_TYPES,
    first_code,
    reference_of,
)

if TYPE_CHECKING:
    from fhir_server.auth.federation import Federation
    from fhir_server.auth.oauth import AuthServer

log = logging.getLogger(__name__)

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
SUBJECT_TOKEN_TYPES = (ID_TOKEN_TYPE, JWT_TOKEN_TYPE)
MODE = "structure-token"
# Identifier system of professionals without RPPS, value "<FINESS géo or SIRET>-<internal id>" (CCTP R-51).
INTERNAL_ID_SYSTEM = f"{BASE}/sid/practitioner-internal-id"
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
DEFAULT_ALGORITHMS = ("RS256", "ES256")
# Scopes that make no sense for an exchanged token: no interactive launch, no refresh token.
DROPPED_SCOPES = {"launch", "launch/patient", "offline_access", "online_access"}
_KEYS = {
    "issuer",
    "audience",
    "structure",
    "rpps_claim",
    "internal_id_claim",
    "internal_id_system",
    "discovery_url",
    "jwks_uri",
    "algorithms",
    "leeway_seconds",
    "max_age_seconds",
    "clients",
}


class ConfigError(ValueError):
    """FHIR_TRUSTED_STRUCTURE_ISSUERS cannot be used."""


@dataclass(frozen=True)
class TrustedIssuer:
    issuer: str
    audience: str
    structure: str
    rpps_claim: str | None
    internal_id_claim: str | None
    internal_id_system: str
    discovery_url: str | None
    jwks_uri: str | None
    algorithms: tuple[str, ...]
    leeway: int
    max_age: int | None
    clients: frozenset[str] | None


def _text(entry: dict[str, Any], name: str, where: str, *, required: bool = False) -> str | None:
    value = entry.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: {name} must be a non-empty string")
    return value.strip()


def _seconds(entry: dict[str, Any], name: str, where: str) -> int | None:
    value = entry.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{where}: {name} must be a number of seconds")
    return value


def parse_issuers(raw: Any) -> dict[str, TrustedIssuer]:
    """The trusted issuers by `iss`; ConfigError names what is wrong."""
    if not isinstance(raw, list):
        raise ConfigError("FHIR_TRUSTED_STRUCTURE_ISSUERS must be a JSON list of issuers")
    out: dict[str, TrustedIssuer] = {}
    for n, entry in enumerate(raw):
        where = f"FHIR_TRUSTED_STRUCTURE_ISSUERS[{n}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be a JSON object")
        unknown = set(entry) - _KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
        issuer = str(_text(entry, "issuer", where, required=True))
        if issuer in out:
            raise ConfigError(f"{where}: issuer {issuer!r} appears twice")
        rpps_claim = _text(entry, "rpps_claim", where)
        internal_claim = _text(entry, "internal_id_claim", where)
        if not rpps_claim and not internal_claim:
            raise ConfigError(f"{where}: rpps_claim and/or internal_id_claim is required (who the user is)")
        algorithms = entry.get("algorithms", list(DEFAULT_ALGORITHMS))
        if not isinstance(algorithms, list) or not algorithms or any(a not in ALGORITHMS for a in algorithms):
            raise ConfigError(f"{where}: algorithms must be a non-empty list among {', '.join(ALGORITHMS)}")
        clients = entry.get("clients")
        if clients is not None and (not isinstance(clients, list) or not all(isinstance(c, str) for c in clients)):
            raise ConfigError(f"{where}: clients must be a list of client_id")
        jwks_uri = _text(entry, "jwks_uri", where)
        discovery = _text(entry, "discovery_url", where)
        if not jwks_uri and not discovery:
            discovery = issuer.rstrip("/") + "/.well-known/openid-configuration"
        leeway = _seconds(entry, "leeway_seconds", where)
        out[issuer] = TrustedIssuer(
            issuer=issuer,
            audience=str(_text(entry, "audience", where, required=True)),
            structure=str(_text(entry, "structure", where, required=True)),
            rpps_claim=rpps_claim,
            internal_id_claim=internal_claim,
            internal_id_system=_text(entry, "internal_id_system", where) or INTERNAL_ID_SYSTEM,
            discovery_url=discovery,
            jwks_uri=jwks_uri,
            algorithms=tuple(algorithms),
            leeway=60 if leeway is None else leeway,
            max_age=_seconds(entry, "max_age_seconds", where),
            clients=frozenset(clients) if clients is not None else None,
        )
    return out


def _oauth_error(error: str, description: str, status: int = 400) -> Exception:
    from fhir_server.auth.oauth import OAuthError  # late: oauth.py imports this module

    return OAuthError(error, description, status)


def _rejected(description: str) -> Exception:
    return _oauth_error("invalid_grant", description)


def _token_value(value: str) -> str:
    """A value escaped for a token search parameter."""
    return value.replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,").replace("$", "\\$")


class StructureTokens:
    """The trusted issuers, their discovery documents and keys (cached); one per AuthServer."""

    def __init__(self, ctx: ServerContext, federation: Federation) -> None:
        self.ctx = ctx
        self.federation = federation  # its HTTP client settings and JSON fetching (errors as FederationError)
        self._issuers: dict[str, TrustedIssuer] | None = None
        self._jwks: dict[str, tuple[float, KeySet]] = {}

    def issuers(self) -> dict[str, TrustedIssuer]:
        if self._issuers is None:
            try:
                self._issuers = parse_issuers(self.ctx.settings.trusted_structure_issuers)
            except ConfigError as exc:
                log.error("structure token exchange is unusable: %s", exc)
                raise _oauth_error(
                    "server_error", f"the trusted structure issuers are misconfigured: {exc}", 500
                ) from None
        return self._issuers

    async def keys(self, issuer: TrustedIssuer, *, refresh: bool = False) -> KeySet:
        cached = self._jwks.get(issuer.issuer)
        if cached and cached[0] > time.monotonic() and not refresh:
            return cached[1]
        try:
            url = issuer.jwks_uri
            if not url:
                doc = await self.federation._get_json(str(issuer.discovery_url))
                if doc.get("issuer") != issuer.issuer or not isinstance(doc.get("jwks_uri"), str):
                    raise FederationError("its discovery document names another issuer or no jwks_uri")
                url = doc["jwks_uri"]
            keyset = KeySet.import_key_set(await self.federation._get_json(url))  # type: ignore[arg-type]
        except FederationError as exc:
            raise _rejected(f"the keys of {issuer.issuer} cannot be fetched: {exc}") from None
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise _rejected(f"the JWKS of {issuer.issuer} is unusable: {exc}") from None
        self._jwks[issuer.issuer] = (time.monotonic() + self.ctx.settings.federation_cache_seconds, keyset)
        return keyset

    async def verify(self, value: str) -> tuple[TrustedIssuer, dict[str, Any]]:
        """The trusted issuer and the verified claims of a subject token."""
        try:
            header, unverified = unverified_claims(value)
        except AssertionRejected:
            raise _rejected("the subject_token is not a signed JWT") from None
        issuer = self.issuers().get(unverified.get("iss")) if isinstance(unverified.get("iss"), str) else None
        if issuer is None:
            raise _rejected(f"the subject_token's issuer {str(unverified.get('iss'))[:200]!r} is not trusted")
        if header.get("alg") not in issuer.algorithms:
            raise _rejected(f"the subject_token must be signed {' or '.join(issuer.algorithms)}")
        algorithms = list(issuer.algorithms)
        try:
            try:
                token = jwt.decode(value, await self.keys(issuer), algorithms=algorithms)
            except InvalidKeyIdError:
                # A kid we do not hold: the provider may have rotated its keys.
                token = jwt.decode(value, await self.keys(issuer, refresh=True), algorithms=algorithms)
            jwt.JWTClaimsRegistry(
                leeway=issuer.leeway,
                iss={"essential": True, "value": issuer.issuer},
                aud={"essential": True, "value": issuer.audience},
                exp={"essential": True},
            ).validate(token.claims)
        except (JoseError, ValueError) as exc:
            raise _rejected(f"invalid subject_token from {issuer.issuer}: {exc}") from None
        claims = dict(token.claims)
        if issuer.max_age is not None:
            iat = claims.get("iat")
            if not isinstance(iat, (int, float)) or time.time() - iat > issuer.max_age + issuer.leeway:
                raise _rejected(f"the subject_token was issued more than {issuer.max_age} s ago (iat)")
        return issuer, claims

    async def structure(self, issuer: TrustedIssuer) -> tuple[str, str | None]:
        """The issuer's structure (`Organization/<id>`) and its FINESS géographique or SIRET."""
        from fhir_server.search.engine import matching_ids
        from fhir_server.teleexpertise.directory import org_kind, organizations

        spec = issuer.structure
        if spec.startswith("Organization/"):
            refs = {spec}
        else:
            tokens = [spec] if "|" in spec else [f"{s}|{_token_value(spec)}" for s in (FINESS_SYSTEM, SIRENE_SYSTEM)]
            ids = await matching_ids(
                self.ctx, "Organization", [("identifier", ",".join(tokens))], strict=True, what="the structure"
            )
            refs = {f"Organization/{i}" for i in ids}
        found = {r: o for r, o in (await organizations(self.ctx, refs)).items() if org_kind(o) == "structure"}
        if len(found) != 1:
            log.error("trusted issuer %s: structure %r is %s in the annuaire", issuer.issuer, spec, len(found))
            raise _oauth_error(
                "server_error", f"the structure configured for {issuer.issuer} is not one in the annuaire", 500
            )
        ((ref, org),) = found.items()
        number = next(
            (
                i.get("value")
                for i in org.get("identifier") or []
                if isinstance(i, dict) and first_code(i.get("type") or {}, FR_ID_TYPE) in STRUCTURE_ID_TYPES
            ),
            None,
        )
        return ref, number if isinstance(number, str) else None

    async def user(self, issuer: TrustedIssuer, claims: dict[str, Any]) -> tuple[str, str]:
        """The Practitioner the token is about, member of the issuer's structure; and that structure."""
        from fhir_server.search.engine import matching_ids
        from fhir_server.teleexpertise.directory import resolve_principal

        structure, number = await self.structure(issuer)
        tokens: list[str] = []
        described: list[str] = []
        rpps = claims.get(issuer.rpps_claim) if issuer.rpps_claim else None
        if isinstance(rpps, (str, int)) and str(rpps).strip():
            tokens += [f"{s}|{_token_value(str(rpps).strip())}" for s in RPPS_SYSTEMS]
            described.append(f"RPPS {str(rpps).strip()[:64]}")
        internal = claims.get(issuer.internal_id_claim) if issuer.internal_id_claim else None
        if isinstance(internal, (str, int)) and str(internal).strip() and number:
            value = f"{number}-{str(internal).strip()}"
            tokens.append(f"{issuer.internal_id_system}|{_token_value(value)}")
            described.append(f"internal id {value[:80]}")
        if not tokens:
            raise _rejected("the subject_token names no user (no RPPS nor internal id claim)")
        who = " / ".join(described)
        ids = await matching_ids(
            self.ctx, "Practitioner", [("identifier", ",".join(tokens))], strict=True, what="the token's user"
        )
        if not ids:
            raise _rejected(f"{who} is not a professional of the annuaire")
        for pid in sorted(ids):
            principal = await resolve_principal(self.ctx, f"Practitioner/{pid}")
            if principal is not None and any(m.structure == structure for m in principal.memberships):
                return f"Practitioner/{pid}", structure
        raise _rejected(f"{who} has no active téléexpertise role in the structure of {issuer.issuer}")


async def _visible(srv: AuthServer, access: AccessToken, ref: str) -> dict[str, Any] | None:
    """The resource when the new token's user may read it: the same policy as a read (auth/policy.py)."""
    from fhir_server.auth.policy import check_readable

    rtype, _, rid = ref.partition("/")
    if not ID_RE.match(rid):
        return None
    doc = await srv.ctx.store.current(rtype, rid)
    if doc is None or doc.get("gone") or not doc.get("res"):
        return None
    scope = {"type": "http", "method": "GET", "path": f"/{ref}", "headers": [], "state": {"access": access}}
    try:
        await check_readable(srv.ctx, Request(scope), rtype, doc["res"])
    except FHIRError:
        return None
    return doc["res"]


async def exchange(srv: AuthServer, request: Request, client: Any, form: dict[str, str]) -> dict[str, Any]:
    """The token-exchange grant: verified structure token + client + context → our access token."""
    from fhir_server.auth import login_modes
    from fhir_server.auth.oauth import grant_scopes

    request.state.login_mode = MODE
    await login_modes.refuse_if_disabled(srv, MODE)
    subject, kind = form.get("subject_token"), form.get("subject_token_type")
    if not subject or not kind:
        raise _oauth_error("invalid_request", "subject_token and subject_token_type are required")
    if kind not in SUBJECT_TOKEN_TYPES:
        raise _oauth_error("invalid_request", f"subject_token_type must be {' or '.join(SUBJECT_TOKEN_TYPES)}")
    if form.get("actor_token") or form.get("actor_token_type"):
        raise _oauth_error("invalid_request", "delegation (actor_token) is not supported")
    if form.get("requested_token_type") not in (None, ACCESS_TOKEN_TYPE):
        raise _oauth_error("invalid_request", f"requested_token_type can only be {ACCESS_TOKEN_TYPE}")
    for name in ("audience", "resource"):
        if form.get(name) not in (None, "") and form[name].rstrip("/") != srv.fhir_base:
            raise _oauth_error("invalid_target", f"{name} must be the FHIR base URL {srv.fhir_base}")
    dossier = form.get("dossier")
    if dossier is not None and (not dossier.startswith("ServiceRequest/") or not ID_RE.match(dossier.split("/", 1)[1])):
        raise _oauth_error("invalid_request", "dossier must name a ServiceRequest: ServiceRequest/<id>")

    structures: StructureTokens = srv.structure_tokens
    issuer, claims = await structures.verify(subject)
    if issuer.clients is not None and client.client_id not in issuer.clients:
        raise _rejected(f"the client {client.client_id!r} may not exchange tokens of {issuer.issuer}")
    try:
        user, _ = await structures.user(issuer, claims)
    except (FHIRError, SearchError) as exc:  # the annuaire lookup itself failed (e.g. a value it cannot search)
        raise _rejected(f"the user could not be looked up in the annuaire: {exc}"[:300]) from None
    request.state.login_user = user

    requested = form.get("scope") or " ".join(client.scopes)
    scopes = [s for s in grant_scopes(requested, client.scopes, system=False) if s not in DROPPED_SCOPES]
    if not scopes:
        raise _oauth_error("invalid_scope", "none of the requested scopes is registered for this client")

    patient = encounter = None
    launch = form.get("launch")
    if launch:
        ctx_doc = await srv.codes.find_one({"_id": "launch:" + launch})
        if ctx_doc is None or ctx_doc["exp"] < time.time() or ctx_doc.get("client_id") not in (None, client.client_id):
            raise _oauth_error("invalid_request", "unknown or expired launch")
        patient, encounter = ctx_doc.get("patient"), ctx_doc.get("encounter")
    if dossier:
        # The user's rights decide, not the scopes asked for (a token with no resource scope would count as
        # a system token for the policy).
        access = AccessToken(user, client.client_id, frozenset({"user/ServiceRequest.rs"}), {"fhirUser": user})
        resource = await _visible(srv, access, dossier)
        if resource is None:  # absent or not theirs: the same answer (existence must not leak)
            raise _oauth_error("invalid_request", f"{dossier} is not known")
        subject_ref = reference_of(resource.get("subject")) or ""
        dossier_patient = subject_ref.split("/", 1)[1] if subject_ref.startswith("Patient/") else None
        if patient and dossier_patient and patient != dossier_patient:
            raise _oauth_error("invalid_request", "the launch and the dossier are about different patients")
        patient = patient or dossier_patient
    body = await srv.issue(client, scopes, user=user, patient=patient, encounter=encounter)
    body["issued_token_type"] = ACCESS_TOKEN_TYPE
    if dossier:
        body["fhirContext"] = [{"reference": dossier}]
    return body
