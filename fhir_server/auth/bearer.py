"""The Bearer access token of a request, verified (signature, exp, nbf, iss, aud): one place for every
protected surface (FHIR routes in app.py, DICOMweb in dicomweb/security.py)."""

from __future__ import annotations

from starlette.requests import Request

from fhir_server.auth.tokens import AccessToken, InvalidToken, TokenVerifier
from fhir_server.errors import FHIRError


def verified_access(request: Request) -> AccessToken | None:
    """The request's verified token, also kept in request.state.access; None when the server runs
    without authorisation; 401 (with a Bearer challenge) when missing or invalid."""
    verifier: TokenVerifier | None = request.app.state.verifier
    if verifier is None:
        return None
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        challenge = {"WWW-Authenticate": 'Bearer realm="fhir-server"'}
        raise FHIRError(401, "a Bearer access token is required", code="login", headers=challenge)
    try:
        access = verifier.verify(token.strip())
    except InvalidToken as exc:
        raise FHIRError(
            401,
            f"invalid access token: {exc}",
            code="login",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        ) from None
    request.state.access = access
    return access
