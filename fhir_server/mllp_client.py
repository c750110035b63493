"""MLLP client: send one HL7 v2 message to a peer and read its ACK (asyncio, one connection per send).

Framing is 0x0B <message> 0x1C 0x0D both ways. The ACK must acknowledge the message sent (MSA-2 =
our MSH-10); anything else (connection refused or reset, timeout, garbage, an ACK for another
message) is a transport failure the outbound queue retries (`jobs/hl7_outbox.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from mappings.hl7v2.ack import CHARSETS

START, END = b"\x0b", b"\x1c\x0d"


class TransportError(Exception):
    """The message may or may not have arrived; sending it again is safe (the peer de-duplicates MSH-10)."""


@dataclass
class Ack:
    code: str  # MSA-1: AA, AE, AR (or CA, CE, CR)
    control_id: str  # MSA-2
    text: str  # MSA-3, or the ERR diagnostics
    raw: str


def parse_ack(raw: bytes) -> Ack:
    head = raw[: raw.find(b"\r")] if b"\r" in raw else raw
    fields = head.decode("latin-1").split("|")
    charset = fields[17].split("^")[0].strip().upper() if len(fields) > 17 else ""
    text = raw.decode(CHARSETS.get(charset, "utf-8"), errors="replace")
    segments = [s for s in text.replace("\n", "\r").split("\r") if s.strip()]
    msa = next((s.split("|") for s in segments if s.startswith("MSA|")), None)
    if not segments or not segments[0].startswith("MSH") or msa is None or len(msa) < 3:
        raise TransportError(f"not an HL7 acknowledgement: {text[:80]!r}")
    detail = msa[3] if len(msa) > 3 else ""
    err = next((s.split("|") for s in segments if s.startswith("ERR|")), None)
    if not detail and err is not None and len(err) > 8:
        detail = err[8]
    return Ack(msa[1].strip().upper(), msa[2].strip(), detail, text)


async def send(host: str, port: int, payload: bytes, control_id: str, timeout: float = 30.0) -> Ack:  # noqa: ASYNC109
    """Send one framed message and return the peer's ACK for it."""
    writer = None
    try:
        # asyncio.timeout, not wait_for: a shutdown's cancellation must not be lost (see fhir_server.aio)
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
        writer.write(START + payload + END)
        await writer.drain()
        async with asyncio.timeout(timeout):
            frame = await reader.readuntil(END)
    except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        raise TransportError(f"{host}:{port}: {type(exc).__name__} {exc}".strip()) from None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
    start = frame.find(START)
    ack = parse_ack(frame[start + 1 : -len(END)] if start >= 0 else frame[: -len(END)])
    if ack.control_id != control_id:
        raise TransportError(f"the peer acknowledged message {ack.control_id!r}, not {control_id!r}")
    return ack
