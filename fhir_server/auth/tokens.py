"""Minting and checking access tokens: RS256-signed JWTs with iss, aud, exp, nbf, scope.

Only RS256 is accepted when checking, so `alg: none` and HS/RS confusion are refused by construction.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from fhir_server.auth.keys import load_or_create_signing_key

ALGORITHM = "RS256"
ADMIN_CLIENT = "fhir-server-admin"


@dataclass(frozen=True)
class AccessToken:
    subject: str
    client_id: str
    scopes: frozenset[str]
    claims: dict[str, Any]

    @property
    def patient(self) -> str | None:
        """The SMART launch context patient id, if any."""
        value = self.claims.get("patient")
        return str(value) if value else None


class InvalidToken(Exception):
    pass


def mint_token(
    data_dir: Path,
    *,
    issuer: str,
    audience: str,
    scope: str,
    lifetime: int,
    subject: str = ADMIN_CLIENT,
    client_id: str = ADMIN_CLIENT,
    extra: dict[str, Any] | None = None,
) -> str:
    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "client_id": client_id,
        "scope": scope,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "jti": secrets.token_urlsafe(16),
        **(extra or {}),
    }
    from fhir_server.auth.jwks import server_jwks  # late: jwks imports this module

    kid = server_jwks(data_dir)["keys"][0]["kid"]  # lets OIDC clients pick the key from our JWKS
    return jwt.encode(claims, load_or_create_signing_key(data_dir), algorithm=ALGORITHM, headers={"kid": kid})


class TokenVerifier:
    def __init__(self, data_dir: Path, issuer: str, audience: str) -> None:
        self._public_key = load_or_create_signing_key(data_dir).public_key()
        self.issuer = issuer
        self.audience = audience

    def verify(self, token: str) -> AccessToken:
        try:
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
                leeway=30,
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from None
        scopes = frozenset(str(claims.get("scope", "")).split())
        return AccessToken(claims["sub"], str(claims.get("client_id", "")), scopes, claims)
