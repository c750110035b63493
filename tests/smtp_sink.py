"""A real SMTP server for the tests (aiosmtpd on 127.0.0.1): the e-mails the server sends, as received."""

from __future__ import annotations

import email
import re
import socket
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

from aiosmtpd.controller import Controller


class Mailbox:
    """An SMTP server's handler: keeps every message, refuses recipients whose address contains 'refuse'."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if "refuse" in address:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=default_policy)
        msg["X-Rcpt"] = ", ".join(envelope.rcpt_tos)
        self.messages.append(msg)  # type: ignore[arg-type]
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address.lower() in m["X-Rcpt"].lower()]

    def last_code(self, to: str) -> str:
        """The 6-digit code of the last message to `to`."""
        for msg in reversed(self.to(to)):
            body = msg.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
            match = re.search(r"\b(\d{6})\b", body)
            assert match, body
            return match.group(1)
        raise AssertionError(f"no mail for {to}")


def run_mailbox() -> Iterator[tuple[Mailbox, int]]:
    """Serve a Mailbox on a free port until the generator is closed (use from a fixture with `yield from`)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()
