"""Login modes an administrator switches off at run time, without a restart.

Configuration says which end-user login modes exist (Pro Santé Connect, FranceConnect, the local
password + code login, `structure-token`: the exchange of a structure's OpenID token); an administrator
can switch any of them off (and on again) through `PUT /oauth/login-modes` with `{"disabled": ["local"]}`
(admin token, scope `system/*.*`), e.g. when a second factor channel is compromised. The state is one
document in `oauth_settings`, shared by every instance and read at each login step (logins are rare: one
`_id` lookup). A switched-off mode is not offered by `/oauth/authorize`, and a login already under way in
it (or a token exchange) is refused with 401.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

SETTINGS = "oauth_settings"
DOC_ID = "login-modes"


async def disabled_modes(db: Any) -> set[str]:
    doc = await db[SETTINGS].find_one({"_id": DOC_ID})
    return set((doc or {}).get("disabled") or [])


def interactive_modes(srv: Any) -> list[str]:
    """The modes `/oauth/authorize` can send a browser to."""
    return [*srv.federation.providers, *(["local"] if srv.settings.local_login else [])]


def configured_modes(srv: Any) -> list[str]:
    """Every login mode configured; `structure-token` is the token exchange of auth/structure_token.py."""
    structure = ["structure-token"] if srv.settings.trusted_structure_issuers else []
    return [*interactive_modes(srv), *structure]


async def refuse_if_disabled(srv: Any, mode: str) -> None:
    from fhir_server.auth.oauth import OAuthError

    if mode in await disabled_modes(srv.ctx.database.db):
        raise OAuthError("access_denied", f"the login mode {mode!r} is switched off by an administrator", 401)


async def get_modes(request: Request) -> Response:
    from fhir_server.auth.oauth import OAuthError, _admin, _error, _json, auth_server

    try:
        srv = auth_server(request)
        await _admin(request, srv)
        disabled = await disabled_modes(srv.ctx.database.db)
    except OAuthError as exc:
        return _error(exc)
    return _json({"configured": configured_modes(srv), "disabled": sorted(disabled)})


async def put_modes(request: Request) -> Response:
    from fhir_server import audit
    from fhir_server.auth.oauth import OAuthError, _admin, _error, _json, _json_body, auth_server

    try:
        srv = auth_server(request)
        access = await _admin(request, srv)
        body = await _json_body(request)
        disabled = body.get("disabled") if isinstance(body, dict) else None
        if not isinstance(disabled, list) or not all(isinstance(m, str) for m in disabled):
            raise OAuthError("invalid_request", 'the body must be {"disabled": [mode, ...]}')
        unknown = set(disabled) - set(configured_modes(srv))
        if unknown:
            raise OAuthError("invalid_request", f"unknown login modes: {', '.join(sorted(unknown))}")
        await srv.ctx.database.db[SETTINGS].replace_one(
            {"_id": DOC_ID}, {"disabled": sorted(set(disabled))}, upsert=True
        )
    except OAuthError as exc:
        return _error(exc)
    # A security setting changed: DICOM 110113 Security Alert / 110129 Security Configuration.
    await audit.write(srv.ctx, _configuration_event(request, access, sorted(set(disabled))))
    return _json({"configured": configured_modes(srv), "disabled": sorted(set(disabled))})


def _configuration_event(request: Request, access: Any, disabled: list[str]) -> dict[str, Any]:
    from fhir_server.storage.clock import fhir_instant, now_ms

    dcm = "http://dicom.nema.org/resources/ontology/DCM"
    who = {"identifier": {"value": access.subject}} if access else {"display": "auth disabled"}
    return {
        "resourceType": "AuditEvent",
        "type": {"system": dcm, "code": "110113", "display": "Security Alert"},
        "subtype": [{"system": dcm, "code": "110129", "display": "Security Configuration"}],
        "action": "U",
        "recorded": fhir_instant(now_ms()),
        "outcome": "0",
        "outcomeDesc": f"login modes switched off: {', '.join(disabled) or 'none'}",
        "agent": [
            {
                "who": who,
                "requestor": True,
                "network": {"address": request.client.host if request.client else "unknown", "type": "2"},
            }
        ],
        "source": {
            "observer": {"display": "fhir-server"},
            "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4"}],
        },
    }
