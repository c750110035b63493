"""JSON Web Keys: the server's public signing key as a JWKS, and checks of client keys and assertions.

JOSE work is done with joserfc (authlib's JOSE successor; `authlib.jose` is deprecated since authlib 1.6).
"""

from __future__ import annotations

import base64
import json
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey

from fhir_server.auth.keys import key_path, load_or_create_signing_key
from fhir_server.auth.tokens import ALGORITHM

# Client assertions (SMART Backend Services): RS384 and ES384 only.
ASSERTION_ALGORITHMS = ("RS384", "ES384")
ASSERTION_MAX_LIFETIME = 300  # exp at most 5 minutes ahead
LEEWAY = 30


class AssertionRejected(Exception):
    pass


def server_jwks(data_dir: Path) -> dict[str, Any]:
    """The public half of the token-signing key, as a JWK Set (kid = RFC 7638 thumbprint)."""
    path = key_path(data_dir)
    mtime = path.stat().st_mtime_ns if path.exists() else 0
    return _server_jwks(str(data_dir), mtime)


@lru_cache(maxsize=8)
def _server_jwks(data_dir: str, _mtime: int) -> dict[str, Any]:
    public = load_or_create_signing_key(Path(data_dir)).public_key()
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    key = RSAKey.import_key(pem)
    jwk = key.as_dict(private=False)
    jwk.update(kid=key.thumbprint(), alg=ALGORITHM, use="sig")
    return {"keys": [jwk]}


def check_client_jwks(jwks: Any) -> list[dict[str, Any]]:
    """Validate a client's registered JWKS: public RSA (>= 2048 bits) or EC P-384 keys only."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise ValueError('jwks must be {"keys": [<JWK>, ...]} with at least one key')
    keys: list[dict[str, Any]] = []
    for jwk in jwks["keys"]:
        if not isinstance(jwk, dict):
            raise ValueError("each JWK must be an object")
        if "d" in jwk:
            raise ValueError("a registered JWK must be a public key (found a private key member 'd')")
        kty = jwk.get("kty")
        try:
            if kty == "RSA":
                key = RSAKey.import_key(jwk)
                if key.raw_value.key_size < 2048:
                    raise ValueError("RSA keys must have at least 2048 bits")
            elif kty == "EC":
                if jwk.get("crv") != "P-384":
                    raise ValueError("EC keys must be on curve P-384 (ES384)")
                ECKey.import_key(jwk)
            else:
                raise ValueError(f"unsupported key type {kty!r} (RSA for RS384, EC P-384 for ES384)")
        except JoseError as exc:
            raise ValueError(f"invalid JWK: {exc}") from None
        keys.append(jwk)
    return keys


def _unverified(segment: str) -> dict[str, Any]:
    try:
        value = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except ValueError:
        raise AssertionRejected("malformed JWT") from None
    if not isinstance(value, dict):
        raise AssertionRejected("malformed JWT")
    return value


def unverified_claims(assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWT, not checked: only to find which client signed it."""
    parts = assertion.split(".")
    if len(parts) != 3:
        raise AssertionRejected("the client assertion is not a signed JWT")
    return _unverified(parts[0]), _unverified(parts[1])


def verify_client_assertion(
    assertion: str, jwks: dict[str, Any], client_id: str, audience: str, now: int | None = None
) -> dict[str, Any]:
    """Check a private_key_jwt client assertion; return its claims (with jti) or raise AssertionRejected."""
    now = int(time.time()) if now is None else now
    header, _ = unverified_claims(assertion)
    alg = header.get("alg")
    if alg not in ASSERTION_ALGORITHMS:
        raise AssertionRejected(f"client assertions must be signed {' or '.join(ASSERTION_ALGORITHMS)}")
    kty = "RSA" if alg.startswith("RS") else "EC"
    candidates = [k for k in jwks.get("keys", []) if k.get("kty") == kty]
    kid = header.get("kid")
    if kid is not None:
        candidates = [k for k in candidates if k.get("kid") == kid]
    if not candidates:
        raise AssertionRejected("no registered key of the client matches the assertion's kid/alg")
    claims: dict[str, Any] | None = None
    for jwk in candidates:
        try:
            token = jwt.decode(assertion, KeySet.import_key_set({"keys": [jwk]}), algorithms=[alg])
        except (JoseError, ValueError):
            continue
        claims = dict(token.claims)
        break
    if claims is None:
        raise AssertionRejected("the client assertion's signature does not verify with the registered keys")
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        raise AssertionRejected("the client assertion's iss and sub must both be the client_id")
    aud = claims.get("aud")
    if not (aud == audience or (isinstance(aud, list) and audience in aud)):
        raise AssertionRejected(f"the client assertion's aud must be the token endpoint {audience}")
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise AssertionRejected("the client assertion has no exp")
    if exp < now - LEEWAY:
        raise AssertionRejected("the client assertion has expired")
    if exp > now + ASSERTION_MAX_LIFETIME + LEEWAY:
        raise AssertionRejected("the client assertion's exp is more than 5 minutes ahead")
    nbf = claims.get("nbf")
    if isinstance(nbf, int | float) and nbf > now + LEEWAY:
        raise AssertionRejected("the client assertion is not valid yet")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 256:
        raise AssertionRejected("the client assertion has no jti")
    return claims
