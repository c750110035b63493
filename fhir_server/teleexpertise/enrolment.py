"""Enrolment of an invited professional (teleexpertise/invitation.py): the link of the invitation e-mail.

- `GET  /oauth/invitation?token=<token>`  a small form (the e-mail invited, a login, a password twice);
- `POST /oauth/invitation`  (form: `token`, `login`, `password`, `confirm`) creates the local account
  (auth/local_login.py `create_account`: its login syntax and password policy, the account's one-time codes
  go to the invited e-mail), bound to the invited Practitioner, which becomes `active`; the token is consumed.
  The Practitioner's activation and an AuditEvent (DICOM 110137 User Security Attributes Changed, subtype
  teleexpertise-operation `enrol`) are one transaction. The invitee then logs in like any local account
  (`/oauth/login/local`: password, then a code by e-mail) and sees the dossier they were invited to.

Tokens: 32 random bytes (URL-safe), valid FHIR_TLX_INVITATION_HOURS, single use. Only their SHA-256 is
stored, in `tlx_invitations` {_id: sha256(token), practitioner, role, service_request, email, created,
exp, used, login}; the outbox item that sends the e-mail never holds the token (it is drawn when the e-mail
is sent) and the Communication recording the e-mail holds a placeholder instead of the link.

Refusals (an HTML page, nothing created, an AuditEvent with outcome 4 for POSTs): unknown token 400; token
already used, expired, or whose Practitioner is enrolled already or gone 410; a bad login, a password
against the policy or two different passwords 400 (the token stays usable); a login already taken 409.
Needs the local login (FHIR_LOCAL_LOGIN=true; else 404): the account is useless without it; while an
administrator has switched the `local` login mode off (auth/login_modes.py), 403.
"""

from __future__ import annotations

import hashlib
import html
import logging
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from fhir_server import audit
from fhir_server.auth.local_login import FORM_HEADERS, account_of, create_account
from fhir_server.auth.login_modes import disabled_modes
from fhir_server.auth.oauth import OAuthError, oauth_base
from fhir_server.context import ServerContext
from fhir_server.errors import FHIRError
from fhir_server.teleexpertise.changes import Changes, retrying
from fhir_server.teleexpertise.codes import OPERATION, coding
from fhir_server.teleexpertise.dossier import now_instant
from fhir_server.teleexpertise.invitation import pending
from fhir_server.teleexpertise.notify import app_link

log = logging.getLogger(__name__)

PATH = "/oauth/invitation"
TOKENS = "tlx_invitations"
MAX_FORM_BYTES = 16 * 1024
DCM = "http://dicom.nema.org/resources/ontology/DCM"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue_token(
    ctx: ServerContext, *, practitioner: str, role: str, service_request: str, email: str
) -> tuple[str, float]:
    """A new enrolment token (only its hash is kept) and its expiry (epoch seconds)."""
    token = secrets.token_urlsafe(32)
    now = time.time()
    exp = now + ctx.settings.tlx_invitation_hours * 3600
    await ctx.database.db[TOKENS].insert_one(
        {
            "_id": token_hash(token),
            "practitioner": practitioner,
            "role": role,
            "service_request": service_request,
            "email": email,
            "created": now,
            "exp": exp,
            "used": None,
            "login": None,
        }
    )
    return token, exp


# An expired link is kept a while so that a late click is told "expired" (410), not "unknown" (400).
KEEP_EXPIRED_SECONDS = 30 * 24 * 3600


async def purge_expired(ctx: ServerContext) -> int:
    """Forget enrolment links expired for more than KEEP_EXPIRED_SECONDS (maintenance loop, hourly)."""
    result = await ctx.database.db[TOKENS].delete_many({"exp": {"$lt": time.time() - KEEP_EXPIRED_SECONDS}})
    return result.deleted_count


def enrolment_link(ctx: ServerContext, token: str) -> str:
    return f"{oauth_base(ctx)}{PATH}?token={token}"


# ---- pages ------------------------------------------------------------------------------------------


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    doc = (
        '<!doctype html><html lang="fr"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:28em;margin:3em auto}label,input,button{display:block;"
        "width:100%;margin:.3em 0}.error{color:#a00}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(doc, status_code=status, headers=FORM_HEADERS)


def _refusal(message: str, status: int) -> HTMLResponse:
    return _page("Inscription impossible", f'<p class="error" role="alert">{html.escape(message)}</p>', status)


def _form_page(token: str, email: str, error: str | None = None, status: int = 200, login: str = "") -> HTMLResponse:
    alert = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    return _page(
        "Inscription à la téléexpertise",
        alert + f"<p>Invitation adressée à <strong>{html.escape(email)}</strong>. Choisissez votre identifiant "
        "et votre mot de passe (au moins 12 caractères, mêlant au moins 3 types parmi minuscules, majuscules, "
        "chiffres et autres caractères, sans l'identifiant). Les codes de connexion vous seront envoyés à "
        "cette adresse.</p>"
        f'<form method="post" action="invitation"><input type="hidden" name="token" value="{html.escape(token)}">'
        '<label for="login">Identifiant</label>'
        f'<input id="login" name="login" autocomplete="username" required autofocus value="{html.escape(login)}">'
        '<label for="password">Mot de passe</label>'
        '<input id="password" name="password" type="password" autocomplete="new-password" required>'
        '<label for="confirm">Confirmation du mot de passe</label>'
        '<input id="confirm" name="confirm" type="password" autocomplete="new-password" required>'
        "<button>Créer mon compte</button></form>",
        status,
    )


# ---- the token's state ------------------------------------------------------------------------------


class Refused(Exception):
    def __init__(self, message: str, status: int, reason: str, record: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.reason, self.record = message, status, reason, record


async def _usable(ctx: ServerContext, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(token record, Practitioner document) of a token that can enrol; Refused otherwise."""
    record = await ctx.database.db[TOKENS].find_one({"_id": token_hash(token)}) if token else None
    if record is None:
        raise Refused("Ce lien d'inscription est inconnu. Vérifiez qu'il a été copié en entier.", 400, "unknown token")
    if record.get("used"):
        raise Refused(
            "Ce lien d'inscription a déjà été utilisé. Connectez-vous avec votre identifiant et votre mot de passe.",
            410,
            "token already used",
            record,
        )
    if record["exp"] < time.time():
        raise Refused(
            "Ce lien d'inscription a expiré. Demandez au professionnel qui vous a invité de vous inviter à nouveau.",
            410,
            "token expired",
            record,
        )
    rtype, _, rid = record["practitioner"].partition("/")
    doc = await ctx.store.current(rtype, rid)
    if doc is None or not doc.get("res"):
        raise Refused("Cette invitation a été annulée.", 410, f"{record['practitioner']} is gone", record)
    if not pending(doc["res"]) or await account_of(ctx.database.db, record["practitioner"]):
        raise Refused(
            "Vous êtes déjà inscrit : connectez-vous avec votre identifiant et votre mot de passe.",
            410,
            f"{record['practitioner']} is enrolled already",
            record,
        )
    return record, doc


def _event(request: Request, record: dict[str, Any] | None, success: bool, detail: str) -> dict[str, Any]:
    """The AuditEvent of an enrolment (or of a refused attempt)."""
    agent: dict[str, Any] = {
        "type": {"coding": [coding("http://terminology.hl7.org/CodeSystem/extra-security-role-type", "humanuser")]},
        "who": {"reference": record["practitioner"]} if record else {"display": "unknown (invitation link)"},
        "requestor": True,
        "network": {"address": request.client.host if request.client else "unknown", "type": "2"},
    }
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": coding(DCM, "110137", "User Security Attributes Changed"),
        "subtype": [coding(OPERATION, "enrol")],
        "action": "C",
        "recorded": now_instant(),
        "outcome": "0" if success else "4",
        "outcomeDesc": f"invitation enrolment: {detail}"[:1000],
        "agent": [agent],
        "source": {
            "observer": {"display": "fhir-server"},
            "type": [coding("http://terminology.hl7.org/CodeSystem/security-source-type", "4")],
        },
    }
    if record:
        event["entity"] = [
            {"what": {"reference": ref}, "type": coding("http://terminology.hl7.org/CodeSystem/audit-entity-type", "2")}
            for ref in (record["practitioner"], record["role"], record["service_request"])
        ]
    return event


async def _audit_refusal(ctx: ServerContext, request: Request, refused: Refused) -> None:
    if ctx.settings.audit_enabled:
        await audit.write(ctx, _event(request, refused.record, False, refused.reason))


async def _activate(ctx: ServerContext, request: Request, record: dict[str, Any], login: str) -> None:
    """The Practitioner becomes active, with the enrolment's AuditEvent, in one transaction."""
    rtype, _, rid = record["practitioner"].partition("/")

    async def step() -> None:
        doc = await ctx.store.current(rtype, rid)
        if doc is None or not doc.get("res"):
            return
        changes = Changes(ctx)
        if doc["res"].get("active") is not True:
            changes.update(rtype, doc, {**doc["res"], "active": True})
        if ctx.settings.audit_enabled:
            detail = (
                f"local account {login!r} created for {record['practitioner']} (invited to {record['service_request']})"
            )
            changes.create("AuditEvent", _event(request, record, True, detail))
        await changes.commit()

    await retrying(step)


# ---- routes -----------------------------------------------------------------------------------------


def _context(request: Request) -> ServerContext | None:
    ctx: ServerContext | None = getattr(request.app.state, "server", None)
    return ctx if ctx is not None and ctx.settings.local_login else None


async def _read_form(request: Request) -> dict[str, str] | None:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    try:
        return dict(parse_qsl(body.decode(), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        return None


def _unavailable() -> HTMLResponse:
    return _refusal("L'inscription par invitation n'est pas disponible sur ce serveur.", 404)


async def _suspended(ctx: ServerContext) -> HTMLResponse | None:
    """403 while an administrator has switched the local login off (auth/login_modes.py): an account made
    now could not log in, and the switch may be a response to an attack on that channel."""
    if "local" not in await disabled_modes(ctx.database.db):
        return None
    return _refusal("La connexion par identifiant et mot de passe est suspendue : réessayez plus tard.", 403)


async def enrolment_page(request: Request) -> Response:
    """`GET /oauth/invitation?token=…`: the form, or why the link cannot be used."""
    ctx = _context(request)
    if ctx is None:
        return _unavailable()
    if (suspended := await _suspended(ctx)) is not None:
        return suspended
    token = request.query_params.get("token", "")
    try:
        record, _ = await _usable(ctx, token)
    except Refused as refused:
        return _refusal(refused.message, refused.status)
    return _form_page(token, record["email"])


async def enrol(request: Request) -> Response:
    """`POST /oauth/invitation`: create the account, activate the Practitioner, consume the token."""
    ctx = _context(request)
    if ctx is None:
        return _unavailable()
    if (suspended := await _suspended(ctx)) is not None:
        return suspended
    form = await _read_form(request)
    if form is None:
        return _refusal("Formulaire illisible : utilisez le formulaire du lien d'inscription.", 400)
    token, login = form.get("token", ""), form.get("login", "").strip()
    password, confirm = form.get("password", ""), form.get("confirm", "")
    try:
        record, _ = await _usable(ctx, token)
    except Refused as refused:
        await _audit_refusal(ctx, request, refused)
        return _refusal(refused.message, refused.status)
    if password != confirm:
        return _form_page(token, record["email"], "Les deux mots de passe diffèrent.", 400, login)
    tokens = ctx.database.db[TOKENS]
    # Consume first (one enrolment per token, even for two submissions at once), give back on failure.
    claimed = await tokens.find_one_and_update(
        {"_id": record["_id"], "used": None}, {"$set": {"used": time.time(), "login": login.lower()}}
    )
    if claimed is None:
        refused = Refused("Ce lien d'inscription a déjà été utilisé.", 410, "token already used", record)
        await _audit_refusal(ctx, request, refused)
        return _refusal(refused.message, refused.status)
    try:
        account = await create_account(
            ctx.database.db, login=login, user=record["practitioner"], email=record["email"], password=password
        )
    except OAuthError as exc:
        await tokens.update_one({"_id": record["_id"]}, {"$set": {"used": None, "login": None}})
        if exc.status == 409:
            message = "Cet identifiant est déjà pris : choisissez-en un autre."
        elif exc.error == "invalid_password":
            message = f"Mot de passe refusé : {_french_policy(exc.description)}"
        else:
            message = "Identifiant refusé : 1 à 128 caractères parmi lettres, chiffres et . _ @ + -"
        return _form_page(token, record["email"], message, exc.status if exc.status == 409 else 400, login)
    try:
        await _activate(ctx, request, record, account["login"])
    except (FHIRError, OSError):
        # The account exists and logs in (the roles are active); the Practitioner's flag stays behind.
        log.exception("the invited Practitioner could not be activated", extra={"user": record["practitioner"]})
    link = app_link(ctx.settings.app_url, record["service_request"].partition("/")[2])
    where = (
        f'<p><a href="{html.escape(link)}">Accéder au télédossier</a></p>'
        if link
        else "<p>Connectez-vous à l'application de téléexpertise.</p>"
    )
    return _page(
        "Compte créé",
        f"<p>Votre compte <strong>{html.escape(account['login'])}</strong> est créé. Connectez-vous avec cet "
        "identifiant, votre mot de passe et le code à usage unique envoyé par courriel.</p>" + where,
        201,
    )


def _french_policy(description: str) -> str:
    if "at least 12" in description or "at most" in description:
        return "il doit compter de 12 à 1024 caractères."
    if "3 of" in description:
        return "il doit mêler au moins 3 types parmi minuscules, majuscules, chiffres et autres caractères."
    if "login" in description:
        return "il ne doit pas contenir l'identifiant."
    return description


def routes() -> list[Route]:
    return [
        Route(PATH, enrolment_page, methods=["GET"]),
        Route(PATH, enrol, methods=["POST"]),
    ]
