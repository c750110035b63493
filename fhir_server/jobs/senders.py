"""E-mail (SMTP, the FHIR_SMTP_* settings the local login uses too) and SMS (an HTTP gateway) senders.

The SMS gateway contract is deliberately small, so that any provider can be put behind a thin adapter:
`POST FHIR_SMS_GATEWAY_URL` with `Content-Type: application/json`, body `{"to": "+33612345678", "text":
"…"}` and, when FHIR_SMS_GATEWAY_TOKEN is set, `Authorization: Bearer <token>`; any 2xx answer means
accepted. Numbers are sent in E.164 form (French national numbers `06…` become `+336…`).
"""

from __future__ import annotations

import asyncio
import re
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import httpx

from fhir_server.config import Settings
from fhir_server.jobs.outbox import Permanent

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE_SEPARATORS = re.compile(r"[\s.\-()/]")


class NotConfigured(Permanent):
    pass


def normalise_email(value: str) -> str | None:
    value = value.strip()
    if value.lower().startswith("mailto:"):
        value = value[7:]
    return value if _EMAIL.match(value) else None


def normalise_phone(value: str) -> str | None:
    """E.164 (`+33612345678`) from the usual French and international spellings; None if not a number."""
    value = value.strip()
    for prefix in ("tel:", "sms:"):
        if value.lower().startswith(prefix):
            value = value[len(prefix) :]
    value = _PHONE_SEPARATORS.sub("", value)
    if value.startswith("00"):
        value = "+" + value[2:]
    elif re.fullmatch(r"0\d{9}", value):
        value = "+33" + value[1:]
    return value if re.fullmatch(r"\+\d{8,15}", value) else None


def _send_mail_sync(settings: Settings, to: str, subject: str, text: str) -> str:
    msg = EmailMessage()
    msg["From"] = settings.smtp_from
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain=settings.smtp_from.rpartition("@")[2] or None)
    msg.set_content(text)
    with smtplib.SMTP(settings.smtp_host or "", settings.smtp_port, timeout=settings.smtp_timeout_seconds) as smtp:
        if settings.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.smtp_user:
            smtp.login(settings.smtp_user, settings.smtp_password)
        smtp.send_message(msg)
    return str(msg["Message-ID"])


async def send_mail(settings: Settings, to: str, subject: str, text: str) -> str:
    """Send a plain-text e-mail; its Message-ID. Raises on any SMTP or network error (to be retried)."""
    if not settings.smtp_host or not settings.smtp_from:
        raise NotConfigured("no SMTP server configured (FHIR_SMTP_HOST, FHIR_SMTP_FROM)")
    return await asyncio.to_thread(_send_mail_sync, settings, to, subject, text)


async def send_sms(settings: Settings, to: str, text: str) -> None:
    """Hand one SMS to the gateway. Raises on a network error or a non-2xx answer (to be retried)."""
    if not settings.sms_gateway_url:
        raise NotConfigured("no SMS gateway configured (FHIR_SMS_GATEWAY_URL)")
    headers = {"Authorization": f"Bearer {settings.sms_gateway_token}"} if settings.sms_gateway_token else {}
    body: dict[str, Any] = {"to": to, "text": text}
    async with httpx.AsyncClient(timeout=settings.notify_timeout_seconds) as http:
        response = await http.post(settings.sms_gateway_url, json=body, headers=headers)
    if not response.is_success:
        raise OSError(f"SMS gateway answered {response.status_code}")
