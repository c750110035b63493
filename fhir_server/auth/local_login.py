"""Fallback end-user login when Pro Santé Connect is unavailable: a local account's password, then a
one-time code sent by e-mail (second factor). Enabled by FHIR_LOCAL_LOGIN=true (off by default).

Flow: `/oauth/authorize` (with `idp=local`, or local the only enabled mode) keeps the validated request
as a pending authorisation `authz:<id>` and redirects to

- `GET  /oauth/login/local?authz=<id>`  starts a login session (an opaque random id in the cookie
  `fhir_local_login`: HttpOnly, SameSite=Lax, Secure when the OAuth base URL is https) and serves the
  login + password form;
- `POST /oauth/login/local`  (form) first `login` + `password`: after 5 consecutive failures the account
  is locked for FHIR_LOCAL_LOCKOUT_MINUTES (a locked, disabled or unknown account gets the same generic
  error; success resets the count); on success a 6-digit code, valid 5 minutes, is e-mailed (SMTP
  settings FHIR_SMTP_*) and a second form asks for it. Then `code`: 3 attempts; the right code issues
  our authorization code (`oauth.complete_authorization`) and redirects to the app.

The session is refused after FHIR_LOCAL_SESSION_IDLE_MINUTES without a request, and when the pending
authorisation expired (FHIR_FEDERATION_LOGIN_LIFETIME_SECONDS). Every attempt is audited
(`audit.record_login`, mode `local-password` | `local-otp`).

Accounts (admin API: a Bearer token with scope `system/*.*`, like `/oauth/clients`):

- `POST /oauth/users`  creates one from
      {
        "login": "jdupont",                      # required, [A-Za-z0-9._@+-]{1,128}, stored lower-case
        "user": "Practitioner/123",              # required: an existing Practitioner, Patient or RelatedPerson
        "email": "jean.dupont@example.fr",       # required: where the one-time codes go by e-mail
        "password": "Correct-Horse-42",          # required, the policy below
        "phone": "+33612345678",                 # optional: a mobile number (E.164 or 06…)
        "otp_channel": "sms",                    # optional: "email" (default) or "sms" (needs phone and
                                                 #   FHIR_SMS_GATEWAY_URL, jobs/senders.py)
        "disabled": false                        # optional
      }
  answers 201 with the account (never the password hash), 409 if the login exists;
- `GET /oauth/users/{login}`, `DELETE /oauth/users/{login}`;
- `PATCH /oauth/users/{login}`  with any of `password`, `email`, `phone`, `otp_channel`, `user`, `disabled`,
  and `"unlock": true`
  (a new password also unlocks).

Other modules create accounts with `create_account` (same checks; the téléexpertise invitation enrolment,
teleexpertise/enrolment.py) and find a user's account with `account_of`.

Password policy: at least 12 characters, at least 3 of the 4 classes (lower case, upper case, digit,
other), not containing the login; else 400 `{"error": "invalid_password", "error_description": ...}`.

State, single-document operations and equality filters only (FerretDB v1): `local_users` {_id: login,
user, email, phone, otp_channel, password_hash ("scrypt$n$r$p$salt$hash", base64), failures, locked_until, disabled,
created, updated, last_login}; the login sessions are kept in `oauth_codes` (and purged with its other
expired documents) {_id: "local:" + sha256 of the cookie value, authz, client_id, stage "password" |
"otp", login, otp (sha256 of cookie value + code), otp_exp, otp_attempts, last, exp}.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import re
import secrets
import smtplib
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from fhir_server.auth import login_modes
from fhir_server.auth.clients import ClientError
from fhir_server.auth.oauth import (
    USER_TYPES,
    AuthServer,
    OAuthError,
    _admin,
    _error,
    _form,
    _json,
    _json_body,
    _redirect,
    auth_server,
    complete_authorization,
)
from fhir_server.jobs.senders import NotConfigured, normalise_phone, send_mail, send_sms

USERS = "local_users"
SESSION_PREFIX = "local:"
COOKIE = "fhir_local_login"
MAX_FAILURES = 5
OTP_DIGITS = 6
OTP_LIFETIME = 300
OTP_ATTEMPTS = 3
OTP_CHANNELS = ("email", "sms")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
_LOGIN = re.compile(r"^[a-z0-9._@+-]{1,128}$")
_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
GENERIC = "Identifiant ou mot de passe incorrect, ou compte temporairement verrouillé."
# Headers of the login and enrolment forms: never cached, never framed, posting only to ourselves.
FORM_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}


def _now() -> float:
    return time.time()


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# ---- passwords ------------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        algo, n, r, p, salt, digest = stored.split("$")
        if algo != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, TypeError):
        return False
    return secrets.compare_digest(got, expected)


# Verified against when the login is unknown, so that answers take the same time.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def password_problem(password: Any, login: str) -> str | None:
    """Why the password breaks the policy, or None."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        return f"the password must have at least {MIN_PASSWORD} characters"
    if len(password) > MAX_PASSWORD:
        return f"the password must have at most {MAX_PASSWORD} characters"
    classes = (
        any(c.islower() for c in password),
        any(c.isupper() for c in password),
        any(c.isdigit() for c in password),
        any(not c.isalnum() for c in password),
    )
    if sum(classes) < 3:
        return "the password must mix at least 3 of: lower case, upper case, digits, other characters"
    if login and login.lower() in password.lower():
        return "the password must not contain the login"
    return None


# ---- accounts (admin API) -------------------------------------------------------------------------


def _users(srv: AuthServer) -> Any:
    return srv.ctx.database.db[USERS]


def _sessions(srv: AuthServer) -> Any:
    """Sessions live among the pending authorisations (`oauth_codes`), purged with them once expired."""
    return srv.codes


def _session_key(sid: str) -> str:
    return SESSION_PREFIX + _sha(sid)


def _cookie_path(srv: AuthServer) -> str:
    return urlsplit(srv.oauth_base).path.rstrip("/") + "/oauth/login/local"


def _describe(doc: dict[str, Any]) -> dict[str, Any]:
    out = {"login": doc["_id"]}
    for name in ("user", "email", "phone", "otp_channel", "disabled", "failures", "locked_until", "created", "updated"):
        if doc.get(name) is not None:
            out[name] = doc[name]
    return out


async def _check_fields(srv: AuthServer, body: dict[str, Any], login: str) -> dict[str, Any]:
    """The settable fields of `body`, validated; the password is hashed."""
    out: dict[str, Any] = {}
    if "user" in body:
        user = body["user"]
        utype, _, uid = user.partition("/") if isinstance(user, str) else ("", "", "")
        if utype not in USER_TYPES or not await srv.resource_exists(utype, uid):
            raise OAuthError("invalid_request", "user must name an existing Practitioner, Patient or RelatedPerson")
        out["user"] = user
    if "email" in body:
        if not isinstance(body["email"], str) or not _EMAIL.match(body["email"]) or len(body["email"]) > 254:
            raise OAuthError("invalid_request", "email must be an e-mail address")
        out["email"] = body["email"]
    if "phone" in body:
        phone = normalise_phone(body["phone"]) if isinstance(body["phone"], str) else None
        if phone is None:
            raise OAuthError("invalid_request", "phone must be a telephone number (E.164, or 0X XX XX XX XX)")
        out["phone"] = phone
    if "otp_channel" in body:
        if body["otp_channel"] not in OTP_CHANNELS:
            raise OAuthError("invalid_request", f"otp_channel must be one of {', '.join(OTP_CHANNELS)}")
        out["otp_channel"] = body["otp_channel"]
    if "disabled" in body:
        if not isinstance(body["disabled"], bool):
            raise OAuthError("invalid_request", "disabled must be true or false")
        out["disabled"] = body["disabled"]
    if "password" in body:
        problem = password_problem(body["password"], login)
        if problem:
            raise OAuthError("invalid_password", problem)
        out["password_hash"] = await asyncio.to_thread(hash_password, body["password"])
        out["failures"] = 0
        out["locked_until"] = None
    return out


async def users_create(request: Request) -> Response:
    try:
        srv = auth_server(request)
        await _admin(request, srv)
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise OAuthError("invalid_request", "the body must be a JSON object")
        unknown = set(body) - {"login", "user", "email", "password", "phone", "otp_channel", "disabled"}
        if unknown:
            raise OAuthError("invalid_request", f"unknown fields: {', '.join(sorted(unknown))}")
        login = body.get("login")
        if not isinstance(login, str) or not _LOGIN.match(login.lower()):
            raise OAuthError("invalid_request", "login is required: 1-128 characters among A-Z a-z 0-9 . _ @ + -")
        login = login.lower()
        for name in ("user", "email", "password"):
            if name not in body:
                raise OAuthError("invalid_request", f"{name} is required")
        fields = await _check_fields(srv, body, login)
        now = int(_now())
        doc = {"_id": login, "disabled": False, **fields, "created": now, "updated": now}
        try:
            await _users(srv).insert_one(doc)
        except DuplicateKeyError:
            raise OAuthError("invalid_request", f"the login {login!r} already exists", 409) from None
    except OAuthError as exc:
        return _error(exc)
    return _json(_describe(doc), 201, {"Location": f"{srv.oauth_base}/oauth/users/{login}"})


# ---- accounts for other modules (the téléexpertise invitation enrolment, teleexpertise/enrolment.py) -----


async def create_account(database: Any, *, login: str, user: str, email: str, password: str) -> dict[str, Any]:
    """Create the local account `login` for `user` (a resource the caller checked exists), with the rules of
    `POST /oauth/users`: login syntax, e-mail, password policy (OAuthError `invalid_request` /
    `invalid_password`), 409 when the login is taken. `database`: the motor database. Answers the account as
    the admin API shows it (never the hash)."""
    login = login.strip().lower()
    if not _LOGIN.match(login):
        raise OAuthError("invalid_request", "login: 1-128 characters among A-Z a-z 0-9 . _ @ + -")
    if not _EMAIL.match(email) or len(email) > 254:
        raise OAuthError("invalid_request", "email must be an e-mail address")
    problem = password_problem(password, login)
    if problem:
        raise OAuthError("invalid_password", problem)
    now = int(_now())
    doc = {
        "_id": login,
        "user": user,
        "email": email,
        "disabled": False,
        "password_hash": await asyncio.to_thread(hash_password, password),
        "failures": 0,
        "locked_until": None,
        "created": now,
        "updated": now,
    }
    try:
        await database[USERS].insert_one(doc)
    except DuplicateKeyError:
        raise OAuthError("invalid_request", f"the login {login!r} already exists", 409) from None
    return _describe(doc)


async def account_of(database: Any, user: str) -> dict[str, Any] | None:
    """The local account bound to `user` (`Practitioner/…`), if any."""
    doc = await database[USERS].find_one({"user": user})
    return _describe(doc) if doc else None


async def users_read(request: Request) -> Response:
    try:
        srv = auth_server(request)
        await _admin(request, srv)
        doc = await _users(srv).find_one({"_id": request.path_params["login"].lower()})
    except OAuthError as exc:
        return _error(exc)
    if doc is None:
        return _error(OAuthError("not_found", "no such account", 404))
    return _json(_describe(doc))


async def users_update(request: Request) -> Response:
    try:
        srv = auth_server(request)
        await _admin(request, srv)
        login = request.path_params["login"].lower()
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise OAuthError("invalid_request", "the body must be a JSON object")
        unknown = set(body) - {"user", "email", "password", "phone", "otp_channel", "disabled", "unlock"}
        if unknown:
            raise OAuthError("invalid_request", f"unknown fields: {', '.join(sorted(unknown))}")
        fields = await _check_fields(srv, body, login)
        if body.get("unlock") is True:
            fields.update(failures=0, locked_until=None)
        fields["updated"] = int(_now())
        doc = await _users(srv).find_one_and_update(
            {"_id": login}, {"$set": fields}, return_document=ReturnDocument.AFTER
        )
    except OAuthError as exc:
        return _error(exc)
    if doc is None:
        return _error(OAuthError("not_found", "no such account", 404))
    return _json(_describe(doc))


async def users_delete(request: Request) -> Response:
    try:
        srv = auth_server(request)
        await _admin(request, srv)
        result = await _users(srv).delete_one({"_id": request.path_params["login"].lower()})
    except OAuthError as exc:
        return _error(exc)
    if not result.deleted_count:
        return _error(OAuthError("not_found", "no such account", 404))
    return Response(status_code=204)


# ---- the one-time code, by e-mail or SMS (jobs/senders.py) ----------------------------------------


def _code_text(code: str) -> str:
    return (
        f"Votre code de connexion : {code}\n\nIl est valable {OTP_LIFETIME // 60} minutes. "
        "Si vous n'avez pas demandé à vous connecter, ignorez ce message et prévenez votre administrateur.\n"
    )


async def send_code(srv: AuthServer, account: dict[str, Any], code: str) -> str:
    """Send the code through the account's channel; where it went (for the audit trail)."""
    if account.get("otp_channel") == "sms":
        if not account.get("phone"):
            raise OSError("the account asks for codes by SMS but has no phone number")
        await send_sms(srv.settings, account["phone"], f"Code de connexion : {code} (valable {OTP_LIFETIME // 60} min)")
        return "sms"
    await send_mail(srv.settings, account["email"], "Votre code de connexion", _code_text(code))
    return "email"


# ---- pages ----------------------------------------------------------------------------------------


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    doc = (
        '<!doctype html><html lang="fr"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:24em;margin:3em auto}label,input,button{display:block;"
        "width:100%;margin:.3em 0}.error{color:#a00}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(doc, status_code=status, headers=FORM_HEADERS)


def _error_line(error: str | None) -> str:
    return f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""


def password_form(error: str | None = None, status: int = 200) -> HTMLResponse:
    return _page(
        "Connexion",
        _error_line(error) + '<form method="post" action="local">'
        '<label for="login">Identifiant</label>'
        '<input id="login" name="login" autocomplete="username" required autofocus>'
        '<label for="password">Mot de passe</label>'
        '<input id="password" name="password" type="password" autocomplete="current-password" required>'
        "<button>Continuer</button></form>",
        status,
    )


def code_form(error: str | None = None, status: int = 200) -> HTMLResponse:
    return _page(
        "Code de vérification",
        _error_line(error) + "<p>Un code à 6 chiffres vient de vous être envoyé par courriel.</p>"
        '<form method="post" action="local">'
        '<label for="code">Code reçu</label>'
        '<input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" '
        "required autofocus><button>Valider</button></form>",
        status,
    )


def ended(srv: AuthServer, message: str, status: int = 400) -> HTMLResponse:
    response = _page(
        "Connexion interrompue",
        f"<p>{html.escape(message)}</p><p>Relancez la connexion depuis l'application.</p>",
        status,
    )
    response.delete_cookie(COOKIE, path=_cookie_path(srv))
    return response


# ---- the login flow -------------------------------------------------------------------------------


async def _audit(
    request: Request, client_id: str | None, mode: str, success: bool, reason: str = "", user: str | None = None
) -> None:
    from fhir_server import audit

    await audit.record_login(
        request.app.state.server, request, client_id=client_id, mode=mode, success=success, reason=reason, user=user
    )


def _with_cookie(srv: AuthServer, response: Response, sid: str) -> Response:
    response.set_cookie(
        COOKIE,
        sid,
        path=_cookie_path(srv),
        httponly=True,
        samesite="lax",
        secure=srv.oauth_base.startswith("https://"),
    )
    return response


async def _new_session(srv: AuthServer, fields: dict[str, Any]) -> str:
    sid = secrets.token_urlsafe(32)
    await _sessions(srv).insert_one({"_id": _session_key(sid), **fields, "last": _now()})
    return sid


def _enabled(request: Request) -> AuthServer:
    srv = auth_server(request)
    if not srv.settings.local_login:
        raise OAuthError("invalid_request", "login provider 'local' is not enabled", 404)
    return srv


async def login_page(request: Request) -> Response:
    """`GET /oauth/login/local?authz=<id>`: a new login session, and the password form."""
    try:
        srv = _enabled(request)
        await login_modes.refuse_if_disabled(srv, "local")
    except OAuthError as exc:
        return _error(exc)
    authz = request.query_params.get("authz", "")
    doc = await srv.codes.find_one({"_id": "authz:" + authz})
    if doc is None or doc["exp"] < _now() or doc.get("provider") != "local":
        return _error(OAuthError("invalid_request", "unknown or expired authorization request"))
    old = request.cookies.get(COOKIE)
    if old:
        await _sessions(srv).delete_one({"_id": _session_key(old)})
    fields = {"authz": authz, "client_id": doc["client_id"], "stage": "password", "exp": doc["exp"]}
    sid = await _new_session(srv, fields)
    return _with_cookie(srv, password_form(), sid)


async def login_submit(request: Request) -> Response:
    """`POST /oauth/login/local`: the password, then the e-mailed code, of the session's login."""
    try:
        srv = _enabled(request)
        form = await _form(request)
        await login_modes.refuse_if_disabled(srv, "local")
    except OAuthError as exc:
        if exc.status == 401:
            await _audit(request, None, "local-login", False, exc.description)
        return _error(exc)
    sid = request.cookies.get(COOKIE, "")
    sessions = _sessions(srv)
    session = await sessions.find_one({"_id": _session_key(sid)}) if sid else None
    now = _now()
    if session is None:
        return ended(srv, "Session de connexion inconnue ou terminée.")
    idle = srv.settings.local_session_idle_minutes * 60
    if now - session["last"] > idle or session["exp"] < now:
        await sessions.delete_one({"_id": session["_id"]})
        await _audit(request, session["client_id"], "local-" + session["stage"], False, "login session expired")
        return ended(srv, "Session de connexion expirée après inactivité.")
    await sessions.update_one({"_id": session["_id"]}, {"$set": {"last": now}})
    if session["stage"] == "password":
        return await _password_step(request, srv, session, form)
    return await _code_step(request, srv, session, form)


async def _password_step(request: Request, srv: AuthServer, session: dict[str, Any], form: dict[str, str]) -> Response:
    users = _users(srv)
    client_id = session["client_id"]
    login = form.get("login", "").strip().lower()
    password = form.get("password", "")
    doc = await users.find_one({"_id": login}) if login and len(password) <= MAX_PASSWORD else None
    ok = await asyncio.to_thread(check_password, password, doc["password_hash"] if doc else _DUMMY_HASH)
    now = _now()

    async def refused(reason: str) -> Response:
        await _audit(request, client_id, "local-password", False, reason)
        return password_form(GENERIC, 401)

    if doc is None:
        return await refused(f"unknown login {login[:64]!r}")
    if (doc.get("locked_until") or 0) > now:
        return await refused(f"account {login!r} is locked")
    if doc.get("disabled"):
        return await refused(f"account {login!r} is disabled")
    if not ok:
        doc = await users.find_one_and_update(
            {"_id": login}, {"$inc": {"failures": 1}}, return_document=ReturnDocument.AFTER
        )
        if doc is not None and doc.get("failures", 0) >= MAX_FAILURES:
            lock = now + srv.settings.local_lockout_minutes * 60
            await users.update_one({"_id": login}, {"$set": {"failures": 0, "locked_until": lock}})
            return await refused(f"wrong password for {login!r}; account locked after {MAX_FAILURES} failures")
        return await refused(f"wrong password for {login!r}")
    await users.update_one({"_id": login}, {"$set": {"failures": 0, "locked_until": None, "last_login": int(now)}})
    await _audit(request, client_id, "local-password", True)
    # A new session id for the second step; the code is bound to it.
    code = f"{secrets.randbelow(10**OTP_DIGITS):0{OTP_DIGITS}d}"
    sid = secrets.token_urlsafe(32)
    fields = {k: session[k] for k in ("authz", "client_id", "exp")}
    await _sessions(srv).insert_one(
        {
            "_id": _session_key(sid),
            **fields,
            "stage": "otp",
            "login": login,
            "otp": _sha(sid + ":" + code),
            "otp_exp": now + OTP_LIFETIME,
            "otp_attempts": 0,
            "last": now,
        }
    )
    await _sessions(srv).delete_one({"_id": session["_id"]})
    try:
        await send_code(srv, doc, code)
    except (OSError, smtplib.SMTPException, httpx.HTTPError, NotConfigured) as exc:
        await _sessions(srv).delete_one({"_id": _session_key(sid)})
        await _audit(request, client_id, "local-otp", False, f"the code could not be sent to {login!r}: {exc}"[:200])
        return ended(srv, "Le code de vérification n'a pas pu être envoyé ; réessayez plus tard.", 503)
    return _with_cookie(srv, code_form(), sid)


async def _code_step(request: Request, srv: AuthServer, session: dict[str, Any], form: dict[str, str]) -> Response:
    sessions = _sessions(srv)
    client_id, login = session["client_id"], session["login"]
    sid = request.cookies.get(COOKIE, "")
    code = form.get("code", "").strip()

    async def refused(reason: str, message: str | None = None) -> Response:
        await _audit(request, client_id, "local-otp", False, reason)
        if message is None:
            return code_form("Code incorrect.", 401)
        await sessions.delete_one({"_id": session["_id"]})
        return ended(srv, message, 401)

    if session["otp_exp"] < _now():
        return await refused(f"code expired for {login!r}", "Le code a expiré.")
    if not secrets.compare_digest(_sha(sid + ":" + code), session["otp"]):
        doc = await sessions.find_one_and_update(
            {"_id": session["_id"]}, {"$inc": {"otp_attempts": 1}}, return_document=ReturnDocument.AFTER
        )
        if doc is None or doc["otp_attempts"] >= OTP_ATTEMPTS:
            return await refused(f"wrong code for {login!r}; no attempt left", "Trop de codes incorrects.")
        return await refused(f"wrong code for {login!r}")
    # Single use: the session, then the pending authorisation, are consumed.
    if await sessions.find_one_and_delete({"_id": session["_id"]}) is None:
        return ended(srv, "Session de connexion terminée.")
    pending = await srv.codes.find_one_and_delete({"_id": "authz:" + session["authz"]})
    if pending is None or pending["exp"] < _now():
        await _audit(request, client_id, "local-otp", False, "the authorization request expired")
        return ended(srv, "La demande d'autorisation a expiré.")
    account = await _users(srv).find_one({"_id": login})
    user = account.get("user", "") if account else ""
    utype, _, uid = user.partition("/")
    try:
        client = await srv.clients.get(client_id)
    except ClientError as exc:
        return _error(exc)
    if client is None or pending["redirect_uri"] not in client.redirect_uris:
        await _audit(request, client_id, "local-otp", False, "the client is no longer registered")
        return ended(srv, "L'application n'est plus enregistrée.")
    if account is None or account.get("disabled") or not await srv.resource_exists(utype, uid):
        await _audit(request, client_id, "local-otp", False, f"account {login!r} is disabled or has no valid user")
        reason = "this account cannot log in"
        params = {"error": "access_denied", "error_description": reason, "state": pending.get("state")}
        return _redirect(pending["redirect_uri"], params)
    response = await complete_authorization(srv, client, pending, user)
    location = response.headers.get("location", "")
    ok = "?code=" in location or "&code=" in location
    reason = "" if ok else f"login of {user} refused: " + location[-150:]
    await _audit(request, client_id, "local-otp", ok, reason, user=user if ok else None)
    response.delete_cookie(COOKIE, path=_cookie_path(srv))
    return response


def routes() -> list[Route]:
    return [
        Route("/oauth/login/local", login_page, methods=["GET"]),
        Route("/oauth/login/local", login_submit, methods=["POST"]),
        Route("/oauth/users", users_create, methods=["POST"]),
        Route("/oauth/users/{login}", users_read, methods=["GET"]),
        Route("/oauth/users/{login}", users_update, methods=["PATCH"]),
        Route("/oauth/users/{login}", users_delete, methods=["DELETE"]),
    ]
